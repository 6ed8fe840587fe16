//! Writes: what a write brings in, what it refuses before I/O, and stores with only the four primitives.

use std::sync::Arc;

use bytes::Bytes;
use durable_core::{
    Backend, CountingBackend, DurableDict, Error, HintHealth, MemoryBackend, MemoryStore, ReadThenWrite, SimpleStore,
    SyncOutcome,
};
use serde_json::{Value, json};

use crate::support::*;

// ---- writes ---------------------------------------------------------------------------

#[tokio::test]
async fn a_write_after_someone_elses_write_brings_both_in() {
    let (handle, theirs) = two_handles();
    let mine = DurableDict::<Value>::builder(Arc::new(handle)).autosync(false).hints(false).build().await.unwrap();
    theirs.persist("theirs", Bytes::from_static(b"1")).await.unwrap();
    let version = mine.insert("mine", json!(2)).await.unwrap();
    let snap = mine.snapshot();
    assert_eq!(snap.version(), version);
    assert_eq!(snap.get("mine"), Some(&json!(2)));
    assert_eq!(snap.get("theirs"), Some(&json!(1)), "one consistent version: theirs came in too");
}

/// A store with only durabledict's four primitives (and optionally a value size limit),
/// adapted by `ReadThenWrite`.
struct OnlyRequired {
    inner: MemoryBackend,
    max_value_size: Option<usize>,
}

#[durable_core::async_trait]
impl SimpleStore for OnlyRequired {
    fn name(&self) -> &'static str {
        "only-required"
    }
    fn max_value_size(&self) -> Option<usize> {
        self.max_value_size
    }
    async fn persist(&self, key: &str, value: Bytes) -> durable_core::Result<u64> {
        self.inner.persist(key, value).await
    }
    async fn depersist(&self, key: &str) -> durable_core::Result<Option<u64>> {
        self.inner.depersist(key).await
    }
    async fn durables(&self) -> durable_core::Result<durable_core::Durables> {
        self.inner.durables().await
    }
    async fn last_updated(&self) -> durable_core::Result<u64> {
        self.inner.last_updated().await
    }
}

#[tokio::test]
async fn oversized_values_are_refused_before_io() {
    let limited = OnlyRequired { inner: memory("ns"), max_value_size: Some(16) };
    let counting = Arc::new(CountingBackend::new(Arc::new(ReadThenWrite(limited))));
    let dict = DurableDict::<String>::builder(counting.clone()).hints(false).build().await.unwrap();
    let before = counting.counts();
    let err = dict.insert("k", "x".repeat(100)).await.unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { size: 102, max: 16, .. }), "{err}");
    assert_eq!(counting.counts(), before);
    dict.insert("k", "small".into()).await.unwrap();
}

/// A store with only the four primitives works through `ReadThenWrite`.
#[tokio::test]
async fn a_store_with_only_the_four_primitives_works_read_then_write() {
    let store = MemoryStore::new();
    let minimal = OnlyRequired { inner: MemoryBackend::in_store(store.clone(), "ns"), max_value_size: None };
    let dict = manual::<Value>(Arc::new(ReadThenWrite(minimal))).await;
    assert_eq!(dict.backend().describe(), "read-then-write(only-required)");
    assert_eq!(dict.status().hints, HintHealth::Unavailable);
    dict.insert_many([("a", json!(1)), ("b", json!(2))]).await.unwrap();
    assert_eq!(dict.pop("a").await.unwrap().as_deref(), Some(&json!(1)));
    assert_eq!(*dict.setdefault("b", json!(9)).await.unwrap(), json!(2));
    assert_eq!(*dict.setdefault("c", json!(3)).await.unwrap(), json!(3));
    assert!(matches!(dict.compare_and_swap("b", Some(&json!(7)), None).await, Err(Error::Conflict { .. })));
    dict.compare_and_swap("b", Some(&json!(2)), Some(json!(20))).await.unwrap();
    let other = MemoryBackend::in_store(store, "ns");
    other.persist("d", Bytes::from_static(b"4")).await.unwrap();
    assert!(matches!(dict.sync().await.unwrap(), SyncOutcome::Full { keys: 3, .. }), "no delta: full reloads");
    let mut all: Vec<(String, Value)> = dict.snapshot().iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(all, vec![("b".into(), json!(20)), ("c".into(), json!(3)), ("d".into(), json!(4))]);
}
