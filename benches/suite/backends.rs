//! Per backend: round trips and latency of sync and writes beside the raw client, and propagation to many subscribers.

use durable::backend::{Backend, CountingBackend};
use durable::{DurableDict, Event, SyncOutcome};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::raw::Raw;
use crate::{Config, Results, keys, median, percentile, time_ns_async};

// ---- per backend ----------------------------------------------------------------------

pub(crate) fn url_of(backend: &str, dir: &std::path::Path) -> String {
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
        // Object stores on loopback: moto's S3 server, Azurite (a bucket and a container of
        // their own, apart from what the tests wrote), a directory.
        "s3" => durable_testkit::env::s3_url().replacen("durable-test/t?", "durable-bench/bench?", 1),
        "azure" => durable_testkit::env::azure_url().replacen("durable-test/t?", "durable-bench/bench?", 1),
        "localfs" => format!("file://{}/objects", dir.display()),
        other => panic!("unknown backend {other}"),
    }
}

pub(crate) fn unique(label: &str) -> String {
    durable_core::conformance::unique_namespace(label)
}

/// Removes a namespace the run wrote (its 1k, 10k and 100k keys), so that repeated runs
/// neither fill the stores — ZooKeeper and Redis hold everything in their heaps — nor
/// measure tables and indexes grown by earlier runs. Written against each store's layout
/// (the crate docs), as an operator would; `durable` has no drop-namespace operation yet.
pub(crate) async fn forget(backend: &str, url: &str, ns: &str) {
    // The same statements for SQLite and PostgreSQL (both take `$1`), backquoted for MySQL.
    const ANSI: [&str; 4] = [
        "DELETE FROM \"durable_entries\" WHERE namespace = $1",
        "DELETE FROM \"durable_namespaces\" WHERE namespace = $1",
        "DELETE FROM \"durable_journal\" WHERE namespace = $1",
        "DELETE FROM \"durable_leases\" WHERE namespace = $1",
    ];
    const MYSQL: [&str; 4] = [
        "DELETE FROM `durable_entries` WHERE namespace = ?",
        "DELETE FROM `durable_namespaces` WHERE namespace = ?",
        "DELETE FROM `durable_journal` WHERE namespace = ?",
        "DELETE FROM `durable_leases` WHERE namespace = ?",
    ];
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
            let keys =
                ["", "last_updated", ":log", ":log:head", ":log:floor", ":journal", ":journal:trimmed", ":leases"]
                    .map(|suffix| format!("{ns}{suffix}"));
            let _: i64 = redis::cmd("DEL").arg(&keys[..]).query_async(&mut connection.clone()).await.unwrap();
        }
        // Azurite deletes through its batch API (object_store deletes even one object that
        // way), which timed out on a namespace of thousands of blobs and left Azurite hung:
        // its namespaces are left to it (the suite's own Azurite, in memory, which
        // scripts/bench.sh stops at the end of the run).
        Raw::Object(..) if backend == "azure" => {}
        Raw::Object(store, dir) => {
            // A namespace left behind costs nothing but room (the names are unique), so a
            // failure is reported, not fatal.
            let listed: Result<Vec<_>, _> = store.list(Some(&dir)).map_ok(|meta| meta.location).try_collect().await;
            let removed = match listed {
                Ok(paths) => {
                    futures::stream::iter(paths)
                        .map(|path| {
                            let store = store.clone();
                            async move { store.delete(&path).await }
                        })
                        .buffer_unordered(8)
                        .try_collect::<Vec<()>>()
                        .await
                }
                Err(err) => Err(err),
            };
            if let Err(err) = removed {
                eprintln!("bench: {backend} namespace {ns} not removed: {err}");
            }
        }
        Raw::Zk(client, path) => {
            forget_zk_node(&client, &format!("{path};journal")).await;
            forget_zk_node(&client, &format!("{path};leases")).await;
            forget_zk_node(&client, &format!("{path};clock")).await;
            forget_zk_node(&client, &path).await;
        }
    }
}

/// Deletes a ZooKeeper node and its children.
async fn forget_zk_node(client: &zookeeper_client::Client, path: &str) {
    let children = match client.list_children(path).await {
        Ok(children) => children,
        Err(zookeeper_client::Error::NoNode) => return,
        Err(err) => panic!("listing {path}: {err}"),
    };
    for batch in children.chunks(1_000) {
        let deletes = batch.iter().map(|key| {
            let child = format!("{path}/{key}");
            async move { client.delete(&child, None).await }
        });
        for deleted in futures::future::join_all(deletes).await {
            deleted.unwrap();
        }
    }
    client.delete(path, None).await.unwrap();
}

/// The mean time of one call of each of `ops` in microseconds, and each one's ratio to the
/// first: rounds of the three interleaved (one round of each in turn), so that the store's
/// and the machine's noise — a JVM's collections, another process — falls on all alike;
/// medians over the rounds.
pub(crate) async fn interleaved_us<'a>(
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

pub(crate) async fn connect(url: &str, ns: &str) -> Arc<dyn Backend> {
    durable::connect(url, ns).await.unwrap_or_else(|e| panic!("{}: {e}", durable::backend::redact_url(url)))
}

pub(crate) async fn backend_figures(config: &Config, name: &str, url: &str, out: &mut Results) {
    let rounds = config.rounds();
    let ops = config.write_ops(name);
    let ns = unique(&format!("bench-{name}"));

    // No-change sync: hinted (expected free) and polled (one cheap trip), vs the raw trip.
    let counting = Arc::new(CountingBackend::new(connect(url, &ns).await));
    let hinted = DurableDict::<u64>::builder(counting.clone()).autosync(false).build().await.unwrap();
    hinted.insert("k", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    hinted.sync().await.unwrap();
    let before = counting.counts().total();
    // Remote stores without hints make a request per sync here: fewer of them.
    let hinted_ops = if matches!(name, "s3" | "azure") { ops } else { ops * 100 };
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
    for &(size, label) in config.sizes_for(name) {
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
pub(crate) async fn propagation_figures(config: &Config, name: &str, url: &str, out: &mut Results) {
    let samples = config.samples();
    let ns = unique(&format!("bench-{name}-prop"));
    let listener = vec![connect(url, &ns).await];
    let p = propagation(connect(url, &ns).await, listener, samples, Duration::ZERO).await;
    out.put(format!("{name}.propagation_p50_us"), percentile(&p, 0.50));
    out.put(format!("{name}.propagation_p99_us"), percentile(&p, 0.99));
    out.keep(format!("{name}.propagation"), &p);
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
        let fanouts: &[usize] = &[10, 100, 1000];
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
        // The same dicts as deployments run them: spread over 10 processes (1, 10 and 100
        // dicts each).
        for per_process in [1, 10, 100] {
            let ns = unique(&format!("bench-{name}-fanout10"));
            let samples = if config.quick { 5 } else { 50 };
            let (p, load) = crate::fanout::propagation_across_processes(name, url, &ns, 10, per_process, samples).await;
            let listeners = per_process * 10;
            if let Some(load) = load {
                // What the store counts as a request: Redis a command, PostgreSQL a transaction.
                let requests = if name == "redis" { "commands" } else { "transactions" };
                out.put(format!("{name}.{requests}_per_change_{listeners}subscribers_10processes"), load.requests);
                out.put(format!("{name}.bytes_per_change_{listeners}subscribers_10processes"), load.bytes);
            }
            out.put(format!("{name}.propagation_p50_us_{listeners}subscribers_10processes"), percentile(&p, 0.50));
            out.put(format!("{name}.propagation_p99_us_{listeners}subscribers_10processes"), percentile(&p, 0.99));
            forget(name, url, &ns).await;
        }
    }
}

/// The version oracle (Redis) in front of MySQL and SQLite: `oracle.nochange_vs_sql_polled_ratio_mysql`
/// (a polled no-change sync through the oracle vs the same on MySQL alone, interleaved) and
/// `oracle.propagation_p99_us_{mysql,sqlite}` (hinted by the oracle, vs the polled
/// `<backend>.propagation_p99_us`).
pub(crate) async fn oracle_figures(config: &Config, dir: &std::path::Path, out: &mut Results) {
    let redis = url_of("redis", dir);
    for name in ["mysql", "sqlite"] {
        let url = url_of(name, dir);
        let over = |ns: String| {
            let (url, redis) = (url.clone(), redis.clone());
            async move {
                let oracle = durable::redis::VersionOracle::connect(connect(&url, &ns).await, &redis, &ns).await;
                Arc::new(oracle.unwrap()) as Arc<dyn Backend>
            }
        };
        if name == "mysql" {
            let ns = unique("bench-oracle-nochange");
            let polled = |backend| async move {
                DurableDict::<u64>::builder(backend).autosync(false).hints(false).build().await.unwrap()
            };
            let (oracled, plain) = (polled(over(ns.clone()).await).await, polled(connect(&url, &ns).await).await);
            plain.insert("k", 1).await.unwrap();
            oracled.sync().await.unwrap();
            let ops = if config.quick { 200 } else { 2_000 };
            let figures = interleaved_us(
                config.rounds() * 2,
                ops / 2,
                vec![
                    Box::new(|| {
                        Box::pin(async {
                            black_box(oracled.sync().await.unwrap());
                        })
                    }),
                    Box::new(|| {
                        Box::pin(async {
                            black_box(plain.sync().await.unwrap());
                        })
                    }),
                ],
            )
            .await;
            let [(oracle_us, _), (plain_us, ratio)] = figures[..] else { unreachable!() };
            out.put("oracle.sync_nochange_polled_us_mysql", oracle_us);
            out.put("oracle.sql_polled_us_mysql", plain_us);
            out.put("oracle.nochange_vs_sql_polled_ratio_mysql", ratio);
            forget(name, &url, &ns).await;
        }
        let ns = unique(&format!("bench-oracle-{name}"));
        let p =
            propagation(over(ns.clone()).await, vec![over(ns.clone()).await], config.samples(), Duration::ZERO).await;
        out.put(format!("oracle.propagation_p50_us_{name}"), percentile(&p, 0.50));
        out.put(format!("oracle.propagation_p99_us_{name}"), percentile(&p, 0.99));
        forget(name, &url, &ns).await;
    }
}

/// `n` backend handles on `ns` sharing one connection (Redis) or one pool (PostgreSQL).
pub(crate) async fn shared_handles(name: &str, url: &str, ns: &str, n: usize) -> Vec<Arc<dyn Backend>> {
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
pub(crate) async fn propagation(
    writer: Arc<dyn Backend>,
    listeners: Vec<Arc<dyn Backend>>,
    samples: usize,
    spacing: Duration,
) -> Vec<f64> {
    let hinted = matches!(writer.name(), "redis" | "postgres" | "zookeeper" | "memory")
        || writer.describe().starts_with("oracle(");
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
