//! The change journal: what it adds to a write, per backend.

use durable::backend::Backend;
use durable::{DurableDict, JournalConfig};
use std::sync::Arc;

use crate::Results;
use crate::backends::{forget, interleaved_us, unique};

/// A backend on `ns` keeping its journal as `journal` says, through each backend's builder.
pub(crate) async fn with_journal(name: &str, url: &str, ns: &str, journal: JournalConfig) -> Arc<dyn Backend> {
    match name {
        "memory" => {
            Arc::new(durable::MemoryBackend::in_store(durable::MemoryStore::named("bench"), ns).with_journal(journal))
        }
        "sqlite" | "postgres" | "mysql" => {
            Arc::new(durable::sql::SqlBackend::builder(url).journal(journal).connect(ns).await.unwrap())
        }
        "redis" => Arc::new(durable::redis::RedisBackend::builder(url).journal(journal).connect(ns).await.unwrap()),
        "zk" => Arc::new(durable::zookeeper::ZkBackend::builder(url).journal(journal).connect(ns).await.unwrap()),
        "s3" | "azure" | "localfs" => {
            Arc::new(durable::object::ObjectBackend::builder(url).journal(journal).connect(ns).await.unwrap())
        }
        other => panic!("unknown backend {other}"),
    }
}

/// `<backend>.journal_write_vs_plain_ratio`: a write of one small value with the journal on
/// vs off, same backend, rounds interleaved; and both times.
pub(crate) async fn journal_figures(rounds: usize, ops: usize, name: &str, url: &str, out: &mut Results) {
    let (on_ns, off_ns) = (unique(&format!("bench-{name}-journal")), unique(&format!("bench-{name}-plain")));
    let build = |backend| DurableDict::<u64>::builder(backend).autosync(false).hints(false).build();
    let journaled = build(with_journal(name, url, &on_ns, JournalConfig::default()).await).await.unwrap();
    let plain = build(with_journal(name, url, &off_ns, JournalConfig::off()).await).await.unwrap();
    let (mut i, mut j) = (0u64, 0u64);
    // Many short interleaved rounds: a store's periodic work (SQLite's WAL checkpoint, a
    // JVM's collection) lands on both sides alike instead of on a few long rounds of one.
    let figures = interleaved_us(
        rounds * 8,
        (ops / 8).max(10),
        vec![
            Box::new(|| {
                i += 1;
                let (dict, i) = (&journaled, i);
                Box::pin(async move {
                    dict.insert(&format!("w{}", i % 64), i).await.unwrap();
                })
            }),
            Box::new(|| {
                j += 1;
                let (dict, j) = (&plain, j);
                Box::pin(async move {
                    dict.insert(&format!("w{}", j % 64), j).await.unwrap();
                })
            }),
        ],
    )
    .await;
    let [(journaled_us, _), (plain_us, ratio)] = figures[..] else { unreachable!() };
    out.put(format!("{name}.journal_write_us"), journaled_us);
    out.put(format!("{name}.plain_write_us"), plain_us);
    out.put(format!("{name}.journal_write_vs_plain_ratio"), ratio);
    drop((journaled, plain));
    forget(name, url, &on_ns).await;
    forget(name, url, &off_ns).await;
}

/// The archive and restore figures, on SQLite (a real store that needs no server): a
/// namespace with 100k journaled changes (1,000 batches of 100 puts over 20k keys) drained
/// into an archive, then restored into another namespace and compared with a full reload of
/// the same final state.
pub(crate) async fn archive_figures(url: &str, out: &mut Results) {
    use durable::archive::{ArchiveOptions, Archiver, restore};
    use durable::backend::Batch;
    use std::time::Instant;

    const CHANGES: usize = 100_000;
    const PER_BATCH: usize = 100;
    const KEYS: usize = 20_000;
    let ns = unique("bench-archive");
    let journal = JournalConfig::default().keep_all_versions();
    let source = with_journal("sqlite", url, &ns, journal).await;
    let mut raw_bytes = 0usize;
    for batch in 0..CHANGES / PER_BATCH {
        let mut puts = Batch::new();
        for i in 0..PER_BATCH {
            let n = batch * PER_BATCH + i;
            let key = format!("flag-{:06}", (n * 7_919) % KEYS);
            let value =
                format!("{{\"enabled\": {}, \"rollout\": {}, \"owner\": \"team-{}\"}}", n % 2 == 0, n % 100, n % 9);
            puts = puts.put(key, value.into());
        }
        source.apply(puts).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut archiver = Archiver::open(dir.path(), ArchiveOptions::default()).unwrap();
    let started = Instant::now();
    let items = archiver.drain(&*source).await.unwrap();
    let archive_secs = started.elapsed().as_secs_f64();
    archiver.close_file().unwrap();
    assert_eq!(items as usize, CHANGES);
    // Raw record bytes: key, old and new value, actor, reason, and 8 bytes each for the
    // version and the time — what a record holds before framing and compression.
    for item in durable::archive::read_archive(dir.path()).unwrap() {
        if let durable::JournalItem::Record(record) = item.unwrap() {
            raw_bytes += record.key.len()
                + record.old.map_or(0, |v| v.len())
                + record.new.map_or(0, |v| v.len())
                + record.actor.len()
                + record.reason.map_or(0, |r| r.len())
                + 16;
        }
    }
    let archive_bytes: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    out.put("journal.archive_records_per_s", CHANGES as f64 / archive_secs);
    out.put("journal.archive_bytes_vs_raw_ratio", archive_bytes as f64 / raw_bytes as f64);

    let version = source.last_updated().await.unwrap();
    let target_ns = unique("bench-restored");
    let target = with_journal("sqlite", url, &target_ns, JournalConfig::off()).await;
    let started = Instant::now();
    let restored = restore(Some(dir.path()), &*source, version, &*target).await.unwrap();
    let restore_ms = started.elapsed().as_secs_f64() * 1_000.0;
    assert_eq!(restored.keys, KEYS);
    let started = Instant::now();
    let reloaded =
        DurableDict::<serde_json::Value>::builder(source.clone()).autosync(false).hints(false).build().await.unwrap();
    let reload_ms = started.elapsed().as_secs_f64() * 1_000.0;
    assert_eq!(reloaded.snapshot().len(), KEYS);
    out.put("journal.restore_100k_ms", restore_ms);
    out.put("journal.full_reload_ms", reload_ms);
    out.put("journal.restore_vs_full_reload_ratio", restore_ms / reload_ms);
    drop((reloaded, source, target));
    forget("sqlite", url, &ns).await;
    forget("sqlite", url, &target_ns).await;
}
