//! The dicts and views the suite's tests are built from.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::backend::{Backend, Version};
use crate::dict::DurableDict;

/// A manual-sync dict without hints: every `sync()` asks the store, so a write acknowledged
/// anywhere is seen by the next `sync()` (the strict behaviour most tests check).
pub(super) async fn manual(backend: Arc<dyn Backend>) -> DurableDict<Value> {
    DurableDict::builder(backend).autosync(false).hints(false).build().await.expect("build a manual-sync dict")
}

/// durabledict's autosync: every read asks the store first.
pub(super) async fn autosync(backend: Arc<dyn Backend>) -> DurableDict<Value> {
    DurableDict::builder(backend).hints(false).build().await.expect("build an autosync dict")
}

/// A manual-sync dict that listens to hints (the default): `sync()` is free until a hint
/// arrives, so another writer's change shows once its hint has landed.
pub(super) async fn hinted(backend: Arc<dyn Backend>) -> DurableDict<Value> {
    DurableDict::builder(backend).autosync(false).build().await.expect("build a hinted dict")
}

/// The store's contents, decoded, read straight from the backend.
pub(super) async fn store_contents(backend: &dyn Backend) -> (BTreeMap<String, Value>, Version) {
    let durables = backend.durables().await.expect("durables");
    let entries = durables
        .entries
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_slice(&v).unwrap_or_else(|e| panic!("stored value of {k} is not JSON: {e}"));
            (k, value)
        })
        .collect();
    (entries, durables.version)
}

pub(super) fn snapshot_contents(dict: &DurableDict<Value>) -> BTreeMap<String, Value> {
    dict.snapshot().iter().map(|(k, v)| (k.to_owned(), v.clone())).collect()
}
