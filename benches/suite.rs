//! The benchmark suite: every speed claim of `durable` measured beside its reference, in one
//! run, written as one flat JSON object (`target/bench/results.json`) plus a table.
//!
//! `scripts/bench.sh [--quick]` runs it against the real servers. A custom harness rather
//! than criterion: the figures are ratios of things measured side by side in the same
//! process, several need a second party (a listener, a concurrent writer, a load generator),
//! and the output is one flat object that CI and BENCHMARKS.md read.
//!
//! Timing: each figure is the median of several rounds, each round many operations long.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use durable::{Backend, CountingBackend, DurableDict, Event, MemoryBackend, MemoryStore, SyncOutcome};

/// Counts live heap bytes, for the memory figures.
struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

struct Config {
    quick: bool,
    backends: Vec<String>,
}

impl Config {
    fn rounds(&self) -> usize {
        if self.quick { 3 } else { 7 }
    }
    fn sizes(&self) -> &'static [(usize, &'static str)] {
        if self.quick {
            &[(1_000, "1k"), (10_000, "10k")]
        } else {
            &[(1_000, "1k"), (10_000, "10k"), (100_000, "100k")]
        }
    }
    fn samples(&self) -> usize {
        if self.quick { 100 } else { 1_000 }
    }
}

#[derive(Default)]
struct Results(BTreeMap<String, f64>);

impl Results {
    fn put(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        println!("{name:<48} {value:>14.2}");
        self.0.insert(name, value);
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Median over `rounds` of the mean time of `ops` calls of `op`, in nanoseconds.
fn time_ns(rounds: usize, ops: usize, mut op: impl FnMut(usize)) -> f64 {
    median(
        (0..rounds)
            .map(|_| {
                let started = Instant::now();
                for i in 0..ops {
                    op(i);
                }
                started.elapsed().as_nanos() as f64 / ops as f64
            })
            .collect(),
    )
}

/// The async version of [`time_ns`].
async fn time_ns_async<F, Fut>(rounds: usize, ops: usize, mut op: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut per_round = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for i in 0..ops {
            op(i).await;
        }
        per_round.push(started.elapsed().as_nanos() as f64 / ops as f64);
    }
    median(per_round)
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("flag-{i:06}")).collect()
}

// ---- read path ------------------------------------------------------------------------

async fn read_figures(config: &Config, out: &mut Results) {
    let keys = keys(10_000);
    let dict = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(MemoryStore::new(), "read")))
        .autosync(false)
        .build()
        .await
        .unwrap();
    dict.insert_many(keys.iter().cloned().zip(0u64..)).await.unwrap();
    let plain: HashMap<String, Arc<u64>> = keys.iter().cloned().zip((0u64..).map(Arc::new)).collect();
    let locked = RwLock::new(plain.clone());
    let lookups: Arc<Vec<String>> = Arc::new((0..4096).map(|i| keys[(i * 7919) % keys.len()].clone()).collect());
    let ops = if config.quick { 200_000 } else { 2_000_000 };
    let rounds = config.rounds();

    let snapshot = dict.snapshot();
    let snap = time_ns(rounds, ops, |i| {
        black_box(snapshot.get(black_box(lookups[i & 4095].as_str())));
    });
    let map = time_ns(rounds, ops, |i| {
        black_box(plain.get(black_box(lookups[i & 4095].as_str())));
    });
    let rw = time_ns(rounds, ops, |i| {
        black_box(locked.read().unwrap().get(black_box(lookups[i & 4095].as_str())).cloned());
    });
    out.put("read.snapshot_get_ns", snap);
    out.put("read.hashmap_get_ns", map);
    out.put("read.rwlock_hashmap_get_ns", rw);
    out.put("read.snapshot_vs_hashmap_ratio", snap / map);

    // A reader thread taking the current snapshot per lookup while a writer syncs changes in.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dict, stop, keys) = (dict.clone(), stop.clone(), keys.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                dict.insert(&keys[(n as usize * 31) % keys.len()], n).await.unwrap();
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let reader_dict = dict.clone();
    let concurrent = tokio::task::spawn_blocking(move || {
        time_ns(rounds, ops, |i| {
            black_box(reader_dict.snapshot().get(black_box(lookups[i & 4095].as_str())).copied());
        })
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    out.put("read.snapshot_get_ns_2threads", concurrent);
    out.put("read.writes_during_2threads", writes as f64);
}

// ---- memory ---------------------------------------------------------------------------

async fn memory_figures(out: &mut Results) {
    let n = 100_000;
    let keys = keys(n);
    let backend = Arc::new(MemoryBackend::in_store(MemoryStore::new(), "mem"));
    backend.persist_many(keys.iter().map(|k| (k.clone(), bytes::Bytes::from_static(b"true"))).collect()).await.unwrap();
    let before = LIVE.load(Ordering::SeqCst);
    let dict = DurableDict::<bool>::builder(backend).autosync(false).hints(false).build().await.unwrap();
    let after = LIVE.load(Ordering::SeqCst);
    let raw: usize = keys.iter().map(|k| k.len() + 4).sum();
    assert_eq!(dict.snapshot().len(), n);
    out.put("memory.snapshot_bytes_per_entry", (after.saturating_sub(before)) as f64 / n as f64);
    out.put("memory.raw_bytes_per_entry", raw as f64 / n as f64);
}

// ---- per backend ----------------------------------------------------------------------

fn url_of(backend: &str, dir: &std::path::Path) -> String {
    match backend {
        "memory" => "memory://bench".into(),
        "sqlite" => format!("sqlite://{}/bench.db", dir.display()),
        "postgres" => {
            std::env::var("DURABLE_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        }
        "mysql" => std::env::var("DURABLE_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        "redis" => std::env::var("DURABLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        "zk" => std::env::var("DURABLE_ZK_URL").unwrap_or_else(|_| "zk://127.0.0.1:2181/durable-bench".into()),
        other => panic!("unknown backend {other}"),
    }
}

fn unique(label: &str) -> String {
    durable::conformance::unique_namespace(label)
}

/// The cheapest request the backend's own client can make, timed the same way.
async fn raw_roundtrip_us(backend: &str, url: &str, rounds: usize, ops: usize) -> f64 {
    match backend {
        "memory" => time_ns_async(rounds, ops, |_| async { black_box(()) }).await / 1_000.0,
        "sqlite" => select_one(&sqlx::SqlitePool::connect(url).await.unwrap(), rounds, ops).await,
        "postgres" => select_one(&sqlx::PgPool::connect(url).await.unwrap(), rounds, ops).await,
        "mysql" => select_one(&sqlx::MySqlPool::connect(url).await.unwrap(), rounds, ops).await,
        "redis" => {
            let client = redis::Client::open(url).unwrap();
            let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
            time_ns_async(rounds, ops, |_| {
                let mut connection = connection.clone();
                async move {
                    let _: String = redis::cmd("PING").query_async(&mut connection).await.unwrap();
                }
            })
            .await
                / 1_000.0
        }
        "zk" => {
            let hosts = url.trim_start_matches("zk://").split('/').next().unwrap().to_owned();
            let client = zookeeper_client::Client::connect(&hosts).await.unwrap();
            time_ns_async(rounds, ops, |_| {
                let client = &client;
                async move {
                    black_box(client.check_stat("/").await.unwrap());
                }
            })
            .await
                / 1_000.0
        }
        other => panic!("unknown backend {other}"),
    }
}

/// The polled sync's own request (the namespace's version) through the raw client.
async fn raw_version_read_us(backend: &str, url: &str, ns: &str, rounds: usize, ops: usize) -> Option<f64> {
    macro_rules! version_read {
        ($pool:expr, $sql:expr) => {{
            let pool = $pool;
            let sql = $sql;
            time_ns_async(rounds, ops, |_| {
                let pool = &pool;
                async move {
                    black_box(sqlx::query(sql).bind(ns).fetch_optional(pool).await.unwrap());
                }
            })
            .await
                / 1_000.0
        }};
    }
    Some(match backend {
        "postgres" => version_read!(
            sqlx::PgPool::connect(url).await.unwrap(),
            "SELECT version FROM \"durable_namespaces\" WHERE namespace = $1"
        ),
        "mysql" => version_read!(
            sqlx::MySqlPool::connect(url).await.unwrap(),
            "SELECT version FROM `durable_namespaces` WHERE namespace = ?"
        ),
        "redis" => {
            let client = redis::Client::open(url).unwrap();
            let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
            let counter = format!("{ns}last_updated");
            time_ns_async(rounds, ops, |_| {
                let (mut connection, counter) = (connection.clone(), &counter);
                async move {
                    let _: Option<Vec<u8>> = redis::cmd("GET").arg(counter).query_async(&mut connection).await.unwrap();
                }
            })
            .await
                / 1_000.0
        }
        _ => return None,
    })
}

/// `SELECT 1` through a pool of any SQL database, in microseconds.
async fn select_one<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, rounds: usize, ops: usize) -> f64
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    time_ns_async(rounds, ops, |_| async move {
        sqlx::query::<DB>("SELECT 1").execute(pool).await.unwrap();
    })
    .await
        / 1_000.0
}

async fn connect(url: &str, ns: &str) -> Arc<dyn Backend> {
    durable::connect(url, ns).await.unwrap_or_else(|e| panic!("{}: {e}", durable::redact_url(url)))
}

async fn backend_figures(config: &Config, name: &str, url: &str, out: &mut Results) {
    let rounds = config.rounds();
    let ops = if config.quick { 200 } else { 2_000 };
    let ns = unique(&format!("bench-{name}"));

    // No-change sync: hinted (expected free) and polled (one cheap trip), vs the raw trip.
    let counting = Arc::new(CountingBackend::new(connect(url, &ns).await));
    let hinted = DurableDict::<u64>::builder(counting.clone()).autosync(false).build().await.unwrap();
    hinted.insert("k", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    hinted.sync().await.unwrap();
    let before = counting.counts().total();
    let hinted_ops = ops * 100;
    let hinted_ns = time_ns_async(rounds, hinted_ops, |_| {
        let hinted = &hinted;
        async move {
            black_box(hinted.sync().await.unwrap());
        }
    })
    .await;
    let trips = (counting.counts().total() - before) as f64 / (rounds * hinted_ops) as f64;
    out.put(format!("{name}.sync_nochange_hinted_ns"), hinted_ns);
    out.put(format!("{name}.roundtrips_per_sync_nochange_hinted"), trips);

    let polled =
        DurableDict::<u64>::builder(connect(url, &ns).await).autosync(false).hints(false).build().await.unwrap();
    let polled_us = time_ns_async(rounds, ops, |_| {
        let polled = &polled;
        async move {
            black_box(polled.sync().await.unwrap());
        }
    })
    .await
        / 1_000.0;
    let raw_us = raw_roundtrip_us(name, url, rounds, ops).await;
    out.put(format!("{name}.sync_nochange_polled_us"), polled_us);
    out.put(format!("{name}.raw_roundtrip_us"), raw_us);
    if raw_us > 0.0 && name != "memory" {
        out.put(format!("{name}.polled_vs_raw_ratio"), polled_us / raw_us);
        // The same version read the polled sync makes, through the raw client: what the
        // store charges for it, apart from the library.
        if let Some(version_us) = raw_version_read_us(name, url, &ns, rounds, ops).await {
            out.put(format!("{name}.raw_version_read_us"), version_us);
            out.put(format!("{name}.polled_vs_raw_version_read_ratio"), polled_us / version_us);
        }
    }

    // A write of one small value.
    let write_us = time_ns_async(rounds, ops, |i| {
        let polled = &polled;
        async move {
            polled.insert(&format!("w{}", i % 64), i as u64).await.unwrap();
        }
    })
    .await
        / 1_000.0;
    out.put(format!("{name}.write_us"), write_us);

    // Delta vs full reload, one key changed in dicts of growing size.
    for &(size, label) in config.sizes() {
        if name == "zk" && size > 10_000 {
            continue; // 100k znodes take minutes to create; the figure is stated as missing.
        }
        let ns = unique(&format!("bench-{name}-{label}"));
        let writer =
            DurableDict::<u64>::builder(connect(url, &ns).await).autosync(false).hints(false).build().await.unwrap();
        let all = keys(size);
        let chunk = if name == "zk" { 1_000 } else { 5_000 };
        for part in all.chunks(chunk) {
            writer.insert_many(part.iter().cloned().zip(0u64..)).await.unwrap();
        }
        let reader =
            DurableDict::<u64>::builder(connect(url, &ns).await).autosync(false).hints(false).build().await.unwrap();
        let delta_rounds = if config.quick { 20 } else { 100 };
        let mut deltas = Vec::with_capacity(delta_rounds);
        for i in 0..delta_rounds {
            writer.insert(&all[(i * 97) % size], i as u64 + 1_000_000).await.unwrap();
            let started = Instant::now();
            let outcome = reader.sync().await.unwrap();
            deltas.push(started.elapsed().as_nanos() as f64 / 1_000.0);
            assert!(matches!(outcome, SyncOutcome::Delta { keys: 1, .. }), "{name} {label}: {outcome:?}");
        }
        let full_rounds = if config.quick { 3 } else { 5 };
        let mut fulls = Vec::with_capacity(full_rounds);
        for _ in 0..full_rounds {
            let backend = connect(url, &ns).await;
            let started = Instant::now();
            let dict = DurableDict::<u64>::builder(backend).autosync(false).hints(false).build().await.unwrap();
            fulls.push(started.elapsed().as_nanos() as f64 / 1_000.0);
            assert_eq!(dict.snapshot().len(), size);
        }
        let (delta, full) = (median(deltas), median(fulls));
        out.put(format!("{name}.sync_delta_us_{label}"), delta);
        out.put(format!("{name}.sync_full_us_{label}"), full);
        out.put(format!("{name}.full_vs_delta_ratio_{label}"), full / delta);
    }

    // Propagation: from a write returning in one dict to the change event in another.
    let samples = config.samples();
    let ns = unique(&format!("bench-{name}-prop"));
    let listener = vec![connect(url, &ns).await];
    let p = propagation(connect(url, &ns).await, listener, samples).await;
    out.put(format!("{name}.propagation_p50_us"), percentile(&p, 0.50));
    out.put(format!("{name}.propagation_p99_us"), percentile(&p, 0.99));
    if name == "redis" || name == "postgres" {
        // Many dicts in one process, each on a backend handle of its own over one shared
        // command connection pool and the process's one shared hint subscription.
        let fanouts: &[usize] = if name == "redis" { &[100, 1000] } else { &[1000] };
        for &listeners in fanouts {
            let ns = unique(&format!("bench-{name}-fanout"));
            let dicts = shared_handles(name, url, &ns, listeners).await;
            let samples = if config.quick {
                5
            } else if listeners > 100 {
                50
            } else {
                samples / 4
            };
            let p = propagation(connect(url, &ns).await, dicts, samples).await;
            out.put(format!("{name}.propagation_p50_us_{listeners}subscribers"), percentile(&p, 0.50));
            out.put(format!("{name}.propagation_p99_us_{listeners}subscribers"), percentile(&p, 0.99));
        }
    }
}

/// `n` backend handles on `ns` sharing one connection (Redis) or one pool (PostgreSQL).
async fn shared_handles(name: &str, url: &str, ns: &str, n: usize) -> Vec<Arc<dyn Backend>> {
    match name {
        "redis" => {
            let backend = durable::RedisBackend::connect(url, ns).await.unwrap();
            (0..n).map(|_| Arc::new(backend.clone()) as Arc<dyn Backend>).collect()
        }
        "postgres" => {
            let backend = durable::SqlBackend::connect(url, ns).await.unwrap();
            (0..n).map(|_| Arc::new(backend.namespace(ns).unwrap()) as Arc<dyn Backend>).collect()
        }
        other => panic!("no shared handles for {other}"),
    }
}

/// Sorted microseconds from `writer.insert` returning to the change event arriving in
/// each listener's dict (background refresh on). Backends with hints keep the default poll
/// interval, so the figure is the hint's; polled backends poll every millisecond.
async fn propagation(writer: Arc<dyn Backend>, listeners: Vec<Arc<dyn Backend>>, samples: usize) -> Vec<f64> {
    let hinted = matches!(writer.name(), "redis" | "postgres" | "zookeeper" | "memory");
    let writer = DurableDict::<u64>::builder(writer).autosync(false).build().await.unwrap();
    let mut subscriptions = Vec::with_capacity(listeners.len());
    let mut dicts = Vec::with_capacity(listeners.len());
    let listeners_count = listeners.len();
    for backend in listeners {
        let mut builder = DurableDict::<u64>::builder(backend).autosync(false).background_refresh(true);
        if !hinted {
            builder = builder.poll_interval(Duration::from_millis(1));
        }
        let dict = builder.build().await.unwrap();
        subscriptions.push(dict.watch_key("p"));
        dicts.push(dict);
    }
    let listeners = listeners_count;
    let mut times = Vec::with_capacity(samples * listeners);
    for i in 0..samples as u64 {
        writer.insert("p", i).await.unwrap();
        let written = Instant::now();
        for subscription in &mut subscriptions {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await {
                    Ok(Some(Event::Changed(change))) if change.new.as_deref() == Some(&i) => break,
                    Ok(Some(_)) => continue,
                    other => panic!("no change event within 10 s: {other:?}"),
                }
            }
            times.push(written.elapsed().as_nanos() as f64 / 1_000.0);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times
}

// ---- middleware -----------------------------------------------------------------------

/// Requests per second a service answers over loopback with `concurrency` clients for
/// `seconds`, measured with hyper's client in this process.
async fn load(app: axum::Router, concurrency: usize, duration: Duration) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: http::Uri = format!("http://{}/flag", listener.local_addr().unwrap()).parse().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let response = client.get(url.clone()).await.unwrap();
                    assert_eq!(response.status(), 200);
                    let _ = http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    done.load(Ordering::Relaxed) as f64 / elapsed
}

async fn middleware_figures(config: &Config, out: &mut Results) {
    use axum::routing::get;
    let backend = Arc::new(MemoryBackend::in_store(MemoryStore::new(), "mw"));
    let dict = DurableDict::<bool>::builder(backend).autosync(false).build().await.unwrap();
    dict.insert("flag", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let with_layer =
        axum::Router::new()
            .route(
                "/flag",
                get(|flags: durable::Flags<bool>| async move {
                    if flags.get("flag") == Some(&true) { "on" } else { "off" }
                }),
            )
            .layer(durable::SyncLayer::new(dict.clone()));
    let plain_dict = dict.clone();
    let without = axum::Router::new().route(
        "/flag",
        get(move || {
            let dict = plain_dict.clone();
            async move { if dict.snapshot().get("flag") == Some(&true) { "on" } else { "off" } }
        }),
    );
    // Many short pairs rather than a few long runs: the two services alternate, each pair in
    // the other order than the last, so that machine noise (which moves throughput by 30 %
    // here from one ten-second stretch to the next) falls on both alike; the ratio is the
    // median of the pairs' own ratios.
    let (pairs, seconds) = if config.quick { (3, Duration::from_secs(1)) } else { (12, Duration::from_millis(2500)) };
    let (mut with, mut plain, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (w, p) = if pair % 2 == 0 {
            let p = load(without.clone(), 32, seconds).await;
            (load(with_layer.clone(), 32, seconds).await, p)
        } else {
            let w = load(with_layer.clone(), 32, seconds).await;
            (w, load(without.clone(), 32, seconds).await)
        };
        with.push(w);
        plain.push(p);
        ratios.push(w / p);
    }
    out.put("middleware.rps_with_sync", median(with));
    out.put("middleware.rps_without", median(plain));
    out.put("middleware.with_vs_without_ratio", median(ratios));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let backends = args.iter().position(|a| a == "--backends").and_then(|i| args.get(i + 1)).map_or_else(
        || ["memory", "sqlite", "postgres", "mysql", "redis", "zk"].map(String::from).to_vec(),
        |list| list.split(',').map(String::from).collect(),
    );
    let out_path = std::path::PathBuf::from(
        std::env::var("DURABLE_BENCH_OUT").unwrap_or_else(|_| "target/bench/results.json".into()),
    );
    let config = Config { quick, backends };
    let dir = std::env::temp_dir().join(format!("durable-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut results = Results::default();
    println!("{:<48} {:>14}", "figure", "value");
    // `--only read,memory,middleware,backends,durabledict` runs some groups (default: all).
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let wanted = |group: &str| only.as_deref().is_none_or(|only| only.split(',').any(|g| g == group));
    if wanted("read") {
        read_figures(&config, &mut results).await;
    }
    if wanted("memory") {
        memory_figures(&mut results).await;
    }
    if wanted("middleware") {
        middleware_figures(&config, &mut results).await;
    }
    for backend in config.backends.iter().filter(|_| wanted("backends")) {
        backend_figures(&config, backend, &url_of(backend, &dir), &mut results).await;
    }
    if let Some(parent) = out_path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let json = serde_json::to_string_pretty(&results.0).unwrap();
    std::fs::write(&out_path, json).unwrap();
    println!("wrote {} figures to {}", results.0.len(), out_path.display());
    let _ = std::fs::remove_dir_all(dir);
}
