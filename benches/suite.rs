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

use durable::backend::{Backend, CountingBackend};
use durable::{DurableDict, Event, MemoryBackend, MemoryStore, SyncOutcome};

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
        // Plain TCP, so that the figures measure the library and not TLS: with the
        // `postgres-tls` feature sqlx's default `sslmode=prefer` encrypts whenever the server
        // offers TLS (Debian's does), which costs about a third more per round trip here.
        "postgres" => {
            let url = durable_testkit::env::postgres_url();
            if url.contains("sslmode=") {
                url
            } else {
                format!("{url}{}sslmode=disable", if url.contains('?') { '&' } else { '?' })
            }
        }
        "mysql" => durable_testkit::env::mysql_url(),
        "redis" => durable_testkit::env::redis_url(),
        "zk" => durable_testkit::env::zk_url(),
        other => panic!("unknown backend {other}"),
    }
}

fn unique(label: &str) -> String {
    durable_core::conformance::unique_namespace(label)
}

/// The backend's own client, beside the library: its cheapest request (PING, `SELECT 1`,
/// `exists` of the root) and the polled sync's own request (the namespace's version: `GET`
/// of the counter, `SELECT version ...`, `exists` of the namespace znode).
enum Raw {
    None,
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
    Redis(redis::aio::ConnectionManager, String),
    Zk(zookeeper_client::Client, String),
}

impl Raw {
    async fn connect(backend: &str, url: &str, ns: &str) -> Self {
        match backend {
            "memory" => Self::None,
            "sqlite" => Self::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap()),
            "postgres" => Self::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
            "mysql" => Self::Mysql(sqlx::MySqlPool::connect(url).await.unwrap()),
            "redis" => {
                let client = redis::Client::open(url).unwrap();
                Self::Redis(redis::aio::ConnectionManager::new(client).await.unwrap(), format!("{ns}last_updated"))
            }
            "zk" => {
                let rest = url.trim_start_matches("zk://");
                let (hosts, base) = rest.split_once('/').unwrap_or((rest, ""));
                let path = if base.is_empty() { format!("/{ns}") } else { format!("/{base}/{ns}") };
                Self::Zk(zookeeper_client::Client::connect(hosts).await.unwrap(), path)
            }
            other => panic!("unknown backend {other}"),
        }
    }

    async fn roundtrip(&self) {
        match self {
            Self::None => {}
            Self::Sqlite(pool) => drop(sqlx::query("SELECT 1").execute(pool).await.unwrap()),
            Self::Postgres(pool) => drop(sqlx::query("SELECT 1").execute(pool).await.unwrap()),
            Self::Mysql(pool) => drop(sqlx::query("SELECT 1").execute(pool).await.unwrap()),
            Self::Redis(connection, _) => {
                let _: String = redis::cmd("PING").query_async(&mut connection.clone()).await.unwrap();
            }
            Self::Zk(client, _) => drop(black_box(client.check_stat("/").await.unwrap())),
        }
    }

    async fn version_read(&self, ns: &str) {
        const SQL: &str = "SELECT version FROM \"durable_namespaces\" WHERE namespace = $1";
        match self {
            Self::None => {}
            Self::Sqlite(pool) => drop(black_box(sqlx::query(SQL).bind(ns).fetch_optional(pool).await.unwrap())),
            Self::Postgres(pool) => drop(black_box(sqlx::query(SQL).bind(ns).fetch_optional(pool).await.unwrap())),
            Self::Mysql(pool) => {
                let sql = "SELECT version FROM `durable_namespaces` WHERE namespace = ?";
                drop(black_box(sqlx::query(sql).bind(ns).fetch_optional(pool).await.unwrap()));
            }
            Self::Redis(connection, counter) => {
                let _: Option<Vec<u8>> =
                    redis::cmd("GET").arg(counter).query_async(&mut connection.clone()).await.unwrap();
            }
            Self::Zk(client, path) => {
                assert!(client.check_stat(path).await.unwrap().is_some(), "the namespace znode exists");
            }
        }
    }
}

/// Removes a namespace the run wrote (its 1k, 10k and 100k keys), so that repeated runs
/// neither fill the stores — ZooKeeper and Redis hold everything in their heaps — nor
/// measure tables and indexes grown by earlier runs. Written against each store's layout
/// (the crate docs), as an operator would; `durable` has no drop-namespace operation yet.
async fn forget(backend: &str, url: &str, ns: &str) {
    // The same statements for SQLite and PostgreSQL (both take `$1`), backquoted for MySQL.
    const ANSI: [&str; 2] = [
        "DELETE FROM \"durable_entries\" WHERE namespace = $1",
        "DELETE FROM \"durable_namespaces\" WHERE namespace = $1",
    ];
    const MYSQL: [&str; 2] =
        ["DELETE FROM `durable_entries` WHERE namespace = ?", "DELETE FROM `durable_namespaces` WHERE namespace = ?"];
    macro_rules! delete_rows {
        ($pool:expr, $statements:expr) => {
            for statement in $statements {
                sqlx::query(statement).bind(ns).execute(&$pool).await.unwrap();
            }
        };
    }
    match Raw::connect(backend, url, ns).await {
        Raw::None => {}
        Raw::Sqlite(pool) => delete_rows!(pool, ANSI),
        Raw::Postgres(pool) => delete_rows!(pool, ANSI),
        Raw::Mysql(pool) => delete_rows!(pool, MYSQL),
        Raw::Redis(connection, _) => {
            let keys = ["", "last_updated", ":log", ":log:head", ":log:floor"].map(|suffix| format!("{ns}{suffix}"));
            let _: i64 = redis::cmd("DEL").arg(&keys[..]).query_async(&mut connection.clone()).await.unwrap();
        }
        Raw::Zk(client, path) => {
            let children = match client.list_children(&path).await {
                Ok(children) => children,
                Err(zookeeper_client::Error::NoNode) => return,
                Err(err) => panic!("listing {path}: {err}"),
            };
            for batch in children.chunks(1_000) {
                let deletes = batch.iter().map(|key| {
                    let (client, child) = (&client, format!("{path}/{key}"));
                    async move { client.delete(&child, None).await }
                });
                for deleted in futures::future::join_all(deletes).await {
                    deleted.unwrap();
                }
            }
            client.delete(&path, None).await.unwrap();
        }
    }
}

/// The mean time of one call of each of `ops` in microseconds, and each one's ratio to the
/// first: rounds of the three interleaved (one round of each in turn), so that the store's
/// and the machine's noise — a JVM's collections, another process — falls on all alike;
/// medians over the rounds.
async fn interleaved_us<'a>(
    rounds: usize,
    ops: usize,
    mut calls: Vec<Box<dyn FnMut() -> futures::future::BoxFuture<'a, ()> + 'a>>,
) -> Vec<(f64, f64)> {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); calls.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); calls.len()];
    for _ in 0..rounds {
        let mut round = Vec::with_capacity(calls.len());
        for call in calls.iter_mut() {
            let started = Instant::now();
            for _ in 0..ops {
                call().await;
            }
            round.push(started.elapsed().as_nanos() as f64 / ops as f64 / 1_000.0);
        }
        for (i, t) in round.iter().enumerate() {
            times[i].push(*t);
            ratios[i].push(round[0] / t);
        }
    }
    times.into_iter().zip(ratios).map(|(t, r)| (median(t), median(r))).collect()
}

async fn connect(url: &str, ns: &str) -> Arc<dyn Backend> {
    durable::connect(url, ns).await.unwrap_or_else(|e| panic!("{}: {e}", durable::backend::redact_url(url)))
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
    let raw = Raw::connect(name, url, &ns).await;
    let figures = interleaved_us(
        rounds * 2,
        ops / 2,
        vec![
            Box::new(|| {
                Box::pin(async {
                    black_box(polled.sync().await.unwrap());
                })
            }),
            Box::new(|| Box::pin(raw.roundtrip())),
            Box::new(|| Box::pin(raw.version_read(&ns))),
        ],
    )
    .await;
    let [(polled_us, _), (raw_us, polled_vs_raw), (version_us, polled_vs_version)] = figures[..] else {
        unreachable!()
    };
    out.put(format!("{name}.sync_nochange_polled_us"), polled_us);
    out.put(format!("{name}.raw_roundtrip_us"), raw_us);
    if name != "memory" {
        out.put(format!("{name}.polled_vs_raw_ratio"), polled_vs_raw);
        // The same version read the polled sync makes, through the raw client: what the
        // store charges for it, apart from the library.
        out.put(format!("{name}.raw_version_read_us"), version_us);
        out.put(format!("{name}.polled_vs_raw_version_read_ratio"), polled_vs_version);
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
    drop((hinted, polled));
    forget(name, url, &ns).await;

    // Delta vs full reload, one key changed in dicts of growing size.
    for &(size, label) in config.sizes() {
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
        let (mut writes, mut deltas) = (Vec::with_capacity(delta_rounds), Vec::with_capacity(delta_rounds));
        for i in 0..delta_rounds {
            let started = Instant::now();
            writer.insert(&all[(i * 97) % size], i as u64 + 1_000_000).await.unwrap();
            writes.push(started.elapsed().as_nanos() as f64 / 1_000.0);
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
        // A write's cost must not grow with the dict either.
        out.put(format!("{name}.write_us_{label}"), median(writes));
        forget(name, url, &ns).await;
    }

    propagation_figures(config, name, url, out).await;
}

/// Propagation: from a write returning in one dict to the change event in another — back
/// to back, spaced, and (Redis, PostgreSQL) fanned out to many dicts.
async fn propagation_figures(config: &Config, name: &str, url: &str, out: &mut Results) {
    let samples = config.samples();
    let ns = unique(&format!("bench-{name}-prop"));
    let listener = vec![connect(url, &ns).await];
    let p = propagation(connect(url, &ns).await, listener, samples, Duration::ZERO).await;
    out.put(format!("{name}.propagation_p50_us"), percentile(&p, 0.50));
    out.put(format!("{name}.propagation_p99_us"), percentile(&p, 0.99));
    forget(name, url, &ns).await;
    // The same with writes spaced 5 ms apart, as a service's writes come: every process
    // involved has gone idle before each write.
    let ns = unique(&format!("bench-{name}-spaced"));
    let listener = vec![connect(url, &ns).await];
    let spaced_samples = if config.quick { 50 } else { 400 };
    let p = propagation(connect(url, &ns).await, listener, spaced_samples, Duration::from_millis(5)).await;
    out.put(format!("{name}.propagation_p50_us_spaced"), percentile(&p, 0.50));
    out.put(format!("{name}.propagation_p99_us_spaced"), percentile(&p, 0.99));
    forget(name, url, &ns).await;
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
            let p = propagation(connect(url, &ns).await, dicts, samples, Duration::ZERO).await;
            out.put(format!("{name}.propagation_p50_us_{listeners}subscribers"), percentile(&p, 0.50));
            out.put(format!("{name}.propagation_p99_us_{listeners}subscribers"), percentile(&p, 0.99));
            forget(name, url, &ns).await;
        }
    }
}

/// `n` backend handles on `ns` sharing one connection (Redis) or one pool (PostgreSQL).
async fn shared_handles(name: &str, url: &str, ns: &str, n: usize) -> Vec<Arc<dyn Backend>> {
    match name {
        "redis" => {
            let backend = durable::redis::RedisBackend::connect(url, ns).await.unwrap();
            (0..n).map(|_| Arc::new(backend.clone()) as Arc<dyn Backend>).collect()
        }
        "postgres" => {
            let backend = durable::sql::SqlBackend::connect(url, ns).await.unwrap();
            (0..n).map(|_| Arc::new(backend.namespace(ns).unwrap()) as Arc<dyn Backend>).collect()
        }
        other => panic!("no shared handles for {other}"),
    }
}

/// Sorted microseconds from `writer.insert` returning to the change event arriving in
/// each listener's dict (background refresh on), `spacing` between one sample's last event
/// and the next write. Backends with hints keep the default poll interval, so the figure is
/// the hint's; polled backends poll every millisecond.
async fn propagation(
    writer: Arc<dyn Backend>,
    listeners: Vec<Arc<dyn Backend>>,
    samples: usize,
    spacing: Duration,
) -> Vec<f64> {
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
        if !spacing.is_zero() {
            tokio::time::sleep(spacing).await;
        }
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

// ---- durabledict ----------------------------------------------------------------------

/// durabledict 0.9.4's Redis figures (benches/durabledict_bench.py, with the interpreter
/// scripts/bench.sh installs it into) beside ours on the same Redis, and their ratios.
async fn durabledict_figures(config: &Config, out: &mut Results) {
    let root = env!("CARGO_MANIFEST_DIR");
    let python =
        std::env::var("DURABLE_BENCH_PYTHON").unwrap_or_else(|_| format!("{root}/target/bench/venv/bin/python"));
    let importable = std::process::Command::new(&python)
        .args(["-c", "import durabledict, redis"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !importable {
        println!("durabledict: skipped ({python} cannot import durabledict; scripts/bench.sh installs it)");
        return;
    }
    let url = url_of("redis", std::path::Path::new(""));
    let mut command = std::process::Command::new(&python);
    command.arg(format!("{root}/benches/durabledict_bench.py")).arg(&url);
    if config.quick {
        command.arg("--quick");
    }
    let output = command.output().expect("running the durabledict benchmark");
    assert!(output.status.success(), "durabledict_bench.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let figures: BTreeMap<String, f64> = serde_json::from_slice(&output.stdout).expect("one JSON object of figures");
    for (name, value) in figures {
        out.put(name, value);
    }

    // Ours, on the same Redis: a read with autosync on (the default), hints healthy.
    let ns = unique("bench-durabledict-ours");
    let dict = DurableDict::<bool>::builder(connect(&url, &ns).await).build().await.unwrap();
    dict.insert("flag", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ops = if config.quick { 20_000 } else { 200_000 };
    let get_ns = time_ns_async(config.rounds(), ops, |_| {
        let dict = &dict;
        async move {
            black_box(dict.get("flag").await);
        }
    })
    .await;
    out.put("redis.get_autosync_hinted_ns", get_ns);
    let theirs = |name: &str| out.0.get(name).copied();
    let ratios = [
        ("durabledict.get_autosync_vs_durable_ratio", theirs("durabledict.get_autosync_us"), Some(get_ns / 1_000.0)),
        (
            "durabledict.sync_nochange_vs_durable_polled_ratio",
            theirs("durabledict.sync_nochange_us"),
            theirs("redis.sync_nochange_polled_us"),
        ),
        (
            "durabledict.sync_after_1_change_100k_vs_durable_delta_ratio",
            theirs("durabledict.sync_after_1_change_100k_ms").map(|ms| ms * 1_000.0),
            theirs("redis.sync_delta_us_100k"),
        ),
    ];
    for (name, theirs, ours) in ratios {
        if let (Some(theirs), Some(ours)) = (theirs, ours) {
            out.put(name, theirs / ours);
        }
    }
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
    // `--only propagation`: the propagation figures alone (`backends` includes them).
    for backend in
        config.backends.iter().filter(|_| only.as_deref().is_some_and(|o| o.split(',').any(|g| g == "propagation")))
    {
        propagation_figures(&config, backend, &url_of(backend, &dir), &mut results).await;
    }
    if wanted("durabledict") && config.backends.iter().any(|b| b == "redis") {
        durabledict_figures(&config, &mut results).await;
    }
    if let Some(parent) = out_path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let json = serde_json::to_string_pretty(&results.0).unwrap();
    std::fs::write(&out_path, json).unwrap();
    println!("wrote {} figures to {}", results.0.len(), out_path.display());
    let _ = std::fs::remove_dir_all(dir);
}
