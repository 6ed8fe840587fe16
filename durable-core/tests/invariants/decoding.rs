//! Invariant 8: values are decoded once, at sync, never on read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use durable_core::{Backend, Codec, DurableDict, Event, Json, MemoryBackend, MemoryStore, Source, SyncOutcome};
use serde_json::{Value, json};

use crate::support::*;

// ---- invariant 8: values are decoded once, at sync ------------------------------------

/// JSON, counting its decodes.
#[derive(Clone, Default)]
struct CountingJson(Arc<AtomicUsize>);

impl Codec<Value> for CountingJson {
    fn encode(&self, value: &Value) -> Result<Bytes, Source> {
        Json.encode(value)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Value, Source> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Json.decode(bytes)
    }
}

#[tokio::test]
async fn values_are_decoded_once_at_sync_never_on_read() {
    let (mine, writer) = two_handles();
    for i in 0..10 {
        writer.persist(&format!("k{i}"), Bytes::from(format!("{{\"n\": {i}}}"))).await.unwrap();
    }
    let decodes = CountingJson::default();
    let dict = DurableDict::<Value>::builder(Arc::new(mine)).codec(decodes.clone()).hints(false).build().await.unwrap();
    assert_eq!(decodes.0.load(Ordering::SeqCst), 10, "the first load decodes each value once");
    for _ in 0..100 {
        assert_eq!(dict.get("k3").await.as_deref(), Some(&json!({"n": 3})));
    }
    assert_eq!(decodes.0.load(Ordering::SeqCst), 10, "reads decode nothing");
    writer.persist("k3", Bytes::from_static(b"{\"n\": 33}")).await.unwrap();
    dict.sync().await.unwrap();
    assert_eq!(decodes.0.load(Ordering::SeqCst), 11, "a one-key delta decodes one value");
    // A local write needs no decode at all.
    dict.insert("k4", json!({"n": 44})).await.unwrap();
    assert_eq!(decodes.0.load(Ordering::SeqCst), 11);
}

#[tokio::test]
async fn a_full_reload_does_not_decode_unchanged_values_again() {
    let store = MemoryStore::new();
    let writer = MemoryBackend::in_store(store.clone(), "ns").with_change_log(1);
    for i in 0..10 {
        writer.persist(&format!("k{i}"), Bytes::from(i.to_string())).await.unwrap();
    }
    let decodes = CountingJson::default();
    let dict = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store, "ns").with_change_log(1)))
        .codec(decodes.clone())
        .hints(false)
        .build()
        .await
        .unwrap();
    writer.persist("k1", Bytes::from_static(b"100")).await.unwrap();
    writer.persist("k2", Bytes::from_static(b"200")).await.unwrap();
    let outcome = dict.sync().await.unwrap();
    assert!(matches!(outcome, SyncOutcome::Full { keys: 10, .. }), "the 1-entry log forces a full reload");
    assert_eq!(decodes.0.load(Ordering::SeqCst), 12, "only the two changed values were decoded again");
}

#[tokio::test]
async fn an_undecodable_value_keeps_the_keys_last_good_value() {
    let (mine, writer) = two_handles();
    writer.persist("flag", Bytes::from_static(b"true")).await.unwrap();
    let dict = DurableDict::<bool>::builder(Arc::new(mine)).hints(false).build().await.unwrap();
    let mut events = dict.subscribe();
    writer.persist("flag", Bytes::from_static(b"\"not a bool\"")).await.unwrap();
    dict.sync().await.unwrap();
    assert_eq!(dict.snapshot().get("flag"), Some(&true), "the last good value stays");
    assert_eq!(dict.snapshot().undecodable().map(|(k, _)| k).collect::<Vec<_>>(), vec!["flag"]);
    assert!(matches!(events.recv().await, Some(Event::Undecodable { key, .. }) if &*key == "flag"));
}
