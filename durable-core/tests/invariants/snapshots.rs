//! Invariants 2, 6 and 7: what a snapshot shows is a state the store had, whole, and a store error never takes it away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use durable_core::conformance::wait_until;
use durable_core::testing::FaultyBackend;
use durable_core::{DurableDict, Error, MemoryBackend, MemoryStore};
use serde_json::{Value, json};

use crate::support::*;

// ---- invariant 2: a snapshot never records a version newer than its data ----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_version_is_never_newer_than_its_data() {
    let (mine, theirs) = two_handles();
    let writer = manual::<u64>(Arc::new(mine)).await;
    let reader = refreshing::<u64>(Arc::new(theirs), Duration::from_millis(1)).await;
    let base = writer.insert("counter", 0).await.unwrap();
    let writes = tokio::spawn(async move {
        for n in 1..=500u64 {
            writer.insert("counter", n).await.unwrap();
        }
    });
    let mut observed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Watch the reader while the writes go on and until it has caught up with the last.
    loop {
        let done = writes.is_finished() && reader.version() >= base + 500;
        let snap = reader.snapshot();
        if let Some(counter) = snap.get("counter") {
            // The counter written at version base + n is n: data at least as new as version.
            assert!(base + counter >= snap.version(), "version {} with counter {counter}", snap.version());
            observed += 1;
        }
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the reader never caught up");
        tokio::task::yield_now().await;
    }
    writes.await.unwrap();
    assert!(observed > 0);
    assert_eq!(reader.snapshot().get("counter"), Some(&500));
}

// ---- invariant 6: readers never block and never see a half-applied sync ----------------

#[test]
fn readers_on_other_threads_never_see_a_half_applied_batch() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let store = MemoryStore::new();
    let (writer, reader) = runtime.block_on(async {
        let writer = manual::<u64>(Arc::new(MemoryBackend::in_store(store.clone(), "ns"))).await;
        let reader = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(store, "ns")))
            .autosync(false)
            .background_refresh(true)
            .build()
            .await
            .unwrap();
        (writer, reader)
    });
    let keys: Vec<String> = (0..32).map(|i| format!("k{i}")).collect();
    let done = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (reader, keys, done, checked) = (reader.clone(), keys.clone(), done.clone(), checked.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let snap = reader.snapshot();
                    let values: Vec<Option<&u64>> = keys.iter().map(|k| snap.get(k)).collect();
                    let first = values[0];
                    assert!(values.iter().all(|v| *v == first), "half-applied batch: {values:?}");
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    runtime.block_on(async {
        for n in 0..300u64 {
            writer.insert_many(keys.iter().map(|k| (k.clone(), n))).await.unwrap();
        }
        wait_until("the reader to catch up", || reader.snapshot().get("k0") == Some(&299)).await;
    });
    done.store(true, Ordering::Release);
    for thread in threads {
        thread.join().expect("a reader thread saw a half-applied batch");
    }
    assert!(checked.load(Ordering::Relaxed) > 0);
}

// ---- invariant 7: a store error never empties or corrupts the snapshot -------------------

#[tokio::test]
async fn a_failing_store_leaves_the_last_good_snapshot_serving() {
    let faulty = Arc::new(FaultyBackend::new(Arc::new(memory("ns"))));
    let dict = DurableDict::<Value>::builder(faulty.clone()).hints(false).build().await.unwrap();
    dict.insert("flag", json!(true)).await.unwrap();
    let version = dict.version();
    assert!(dict.status().last_success.is_some());

    faulty.set_failing(true);
    let err = dict.sync().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // Autosync reads still answer from the last good snapshot.
    assert_eq!(dict.get("flag").await.as_deref(), Some(&json!(true)));
    assert_eq!(dict.len().await, 1);
    assert_eq!(dict.version(), version);
    // Writes fail loudly and change nothing locally.
    assert!(dict.insert("flag", json!(false)).await.unwrap_err().is_unavailable());
    assert!(dict.remove("flag").await.unwrap_err().is_unavailable());
    assert_eq!(dict.snapshot().get("flag"), Some(&json!(true)));
    let status = dict.status();
    assert!(status.last_error.as_ref().is_some_and(Error::is_unavailable));
    assert!(status.failing_since.is_some());
    assert!(status.staleness() > Duration::ZERO);

    faulty.set_failing(false);
    dict.sync().await.unwrap();
    let status = dict.status();
    assert!(status.last_error.is_none() && status.failing_since.is_none());
    assert_eq!(dict.snapshot().get("flag"), Some(&json!(true)));
}

#[tokio::test]
async fn build_fails_rather_than_starting_empty() {
    let faulty = Arc::new(FaultyBackend::new(Arc::new(memory("ns"))));
    faulty.set_failing(true);
    let err = DurableDict::<Value>::builder(faulty).build().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}
