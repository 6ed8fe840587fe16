//! Events, codecs and the dict's lifetime.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use durable_core::conformance::wait_until;
use durable_core::testing::FaultyBackend;
use durable_core::{
    Backend, CountingBackend, DurableDict, Event, Hint, Json, Lz4, MemoryBackend, MemoryStore, MsgPack, SyncOutcome,
};
use serde_json::{Value, json};

use crate::support::*;

// ---- events, codecs, lifetime --------------------------------------------------------

#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged_and_never_blocks_sync() {
    let dict =
        DurableDict::<u64>::builder(Arc::new(memory("ns"))).event_capacity(4).hints(false).build().await.unwrap();
    let mut slow = dict.subscribe();
    for i in 0..20 {
        dict.insert(&format!("k{i}"), i).await.unwrap();
    }
    assert!(matches!(slow.recv().await, Some(Event::Lagged { missed }) if missed >= 16));
    assert_eq!(dict.snapshot().len(), 20, "every write went through");
}

#[tokio::test]
async fn msgpack_and_lz4_codecs_work_through_the_dict() {
    let store = MemoryStore::new();
    let packed = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "mp")))
        .codec(MsgPack)
        .build()
        .await
        .unwrap();
    packed.insert("k", json!({"a": [1, 2, 3]})).await.unwrap();
    let compressed = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "lz")))
        .codec(Lz4::new(Json))
        .build()
        .await
        .unwrap();
    compressed.insert("k", json!("text ".repeat(500))).await.unwrap();
    let raw = MemoryBackend::in_store(store.clone(), "lz").durables().await.unwrap();
    assert!(raw.entries[0].1.len() < 100, "stored compressed: {} bytes", raw.entries[0].1.len());
    let reread = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store, "lz")))
        .codec(Lz4::new(Json))
        .build()
        .await
        .unwrap();
    assert_eq!(reread.get("k").await.as_deref(), Some(&json!("text ".repeat(500))));
}

#[tokio::test]
async fn dropping_the_dict_stops_its_background_task() {
    let backend: Arc<dyn Backend> = Arc::new(memory("ns"));
    let dict = DurableDict::<Value>::builder(backend.clone())
        .background_refresh(true)
        .poll_interval(Duration::from_millis(5))
        .build()
        .await
        .unwrap();
    assert!(Arc::strong_count(&backend) > 1);
    drop(dict);
    wait_until("the background task to release the backend", || Arc::strong_count(&backend) == 1).await;
}

/// A store whose writers may change data without moving the version (as durabledict's
/// ZooKeeper writers do): it answers every `changes_since` with all its entries.
struct VersionlessWriters(std::sync::Mutex<Vec<(String, Bytes)>>);

impl VersionlessWriters {
    fn unused<T>(method: &str) -> durable_core::Result<T> {
        Err(durable_core::Error::store("versionless", format!("{method} is not part of this test")))
    }
}

#[durable_core::async_trait]
impl Backend for VersionlessWriters {
    fn name(&self) -> &'static str {
        "versionless"
    }
    async fn apply(&self, _batch: durable_core::Batch) -> durable_core::Result<Option<u64>> {
        Self::unused("apply")
    }
    async fn pop(&self, _key: &str) -> durable_core::Result<Option<(Bytes, u64)>> {
        Self::unused("pop")
    }
    async fn setdefault(&self, _key: &str, _value: Bytes) -> durable_core::Result<(Bytes, Option<u64>)> {
        Self::unused("setdefault")
    }
    async fn compare_and_swap(
        &self,
        _key: &str,
        _old: Option<Bytes>,
        _new: Option<Bytes>,
    ) -> durable_core::Result<Option<u64>> {
        Self::unused("compare_and_swap")
    }
    async fn persist(&self, key: &str, value: Bytes) -> durable_core::Result<u64> {
        self.0.lock().unwrap().push((key.to_owned(), value));
        Ok(1)
    }
    async fn depersist(&self, _key: &str) -> durable_core::Result<Option<u64>> {
        Ok(None)
    }
    async fn durables(&self) -> durable_core::Result<durable_core::Durables> {
        Ok(durable_core::Durables { entries: self.0.lock().unwrap().clone(), version: 1 })
    }
    async fn last_updated(&self) -> durable_core::Result<u64> {
        Ok(1)
    }
    async fn changes_since(&self, _since: u64) -> durable_core::Result<durable_core::Changes> {
        let changes = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(key, value)| durable_core::KeyChange { key: key.clone(), value: Some(value.clone()), version: 1 })
            .collect();
        Ok(durable_core::Changes::Delta { changes, version: 1 })
    }
    async fn watch(&self) -> durable_core::Result<Option<durable_core::HintStream>> {
        Ok(Some(Box::pin(futures::stream::pending())))
    }
    async fn journal(&self, _after: u64, _limit: usize) -> durable_core::Result<durable_core::JournalPage> {
        Self::unused("journal")
    }
    async fn history(&self, _key: &str, _limit: usize) -> durable_core::Result<Vec<durable_core::JournalRecord>> {
        Self::unused("history")
    }
    async fn lease(&self, _key: &str, _op: durable_core::LeaseOp) -> durable_core::Result<durable_core::LeaseAnswer> {
        Self::unused("lease")
    }
    async fn remove_namespace(&self) -> durable_core::Result<()> {
        Self::unused("remove_namespace")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_without_a_version_makes_sync_ask_for_changes_at_the_same_version() {
    let store = Arc::new(VersionlessWriters(std::sync::Mutex::new(vec![("a".into(), Bytes::from_static(b"1"))])));
    let faulty = Arc::new(FaultyBackend::new(store.clone()));
    let dict = manual::<Value>(faulty.clone()).await;
    store.0.lock().unwrap().push(("b".into(), Bytes::from_static(b"2")));
    assert_eq!(dict.resync().await.unwrap(), SyncOutcome::Unchanged, "the version alone shows nothing");
    faulty.inject_hint(Hint::Changed { version: None });
    wait_until("the hint to land and a sync to find b", || {
        futures::executor::block_on(dict.sync()).is_ok() && dict.snapshot().get("b") == Some(&json!(2))
    })
    .await;
    assert_eq!(dict.version(), 1);
    // And a listener that resumed after a gap asks the same way.
    store.0.lock().unwrap().push(("c".into(), Bytes::from_static(b"3")));
    faulty.inject_hint(Hint::Resumed);
    wait_until("the resume to make a sync find c", || {
        futures::executor::block_on(dict.sync()).is_ok() && dict.snapshot().get("c") == Some(&json!(3))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_announced_by_a_hint_costs_one_round_trip() {
    let (mine, writer) = two_handles();
    let counting = Arc::new(CountingBackend::new(Arc::new(mine)));
    let dict = manual::<Value>(counting.clone()).await;
    writer.persist("k", Bytes::from_static(b"1")).await.unwrap();
    // The hint (carrying version 1) reaches the listener.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = counting.counts();
    assert_eq!(dict.sync().await.unwrap(), SyncOutcome::Delta { keys: 1, version: 1 });
    let after = counting.counts();
    assert_eq!(after.last_updated, before.last_updated, "the hint's version stands in for the version check");
    assert_eq!(after.total() - before.total(), 1, "one round trip: the delta");
}
