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
    let figures = interleaved_us(
        rounds * 2,
        ops / 2,
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
