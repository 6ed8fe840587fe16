//! What the invariant tests share: stores and dicts set up the usual ways.

use std::sync::Arc;
use std::time::Duration;

use durable_core::testing::FaultyBackend;
use durable_core::{Backend, Codec, DurableDict, Json, MemoryBackend, MemoryStore};

/// A namespace in a store of its own.
pub fn memory(ns: &str) -> MemoryBackend {
    MemoryBackend::in_store(MemoryStore::new(), ns)
}

/// Two handles on namespace `ns` of one fresh store: one for the dict under test, one for
/// another writer.
pub fn two_handles() -> (MemoryBackend, MemoryBackend) {
    let store = MemoryStore::new();
    (MemoryBackend::in_store(store.clone(), "ns"), MemoryBackend::in_store(store, "ns"))
}

/// The dict's handle of [`two_handles`] behind a fault injector, and the other writer.
pub fn faulty_and_writer() -> (Arc<FaultyBackend>, MemoryBackend) {
    let (mine, writer) = two_handles();
    (Arc::new(FaultyBackend::new(Arc::new(mine))), writer)
}

/// A dict on `backend` that syncs only when asked.
pub async fn manual<V>(backend: Arc<dyn Backend>) -> DurableDict<V>
where
    V: Send + Sync + 'static,
    Json: Codec<V>,
{
    DurableDict::<V>::builder(backend).autosync(false).build().await.unwrap()
}

/// A dict on `backend` that refreshes in the background, polling every `poll`.
pub async fn refreshing<V>(backend: Arc<dyn Backend>, poll: Duration) -> DurableDict<V>
where
    V: Send + Sync + 'static,
    Json: Codec<V>,
{
    DurableDict::<V>::builder(backend)
        .autosync(false)
        .background_refresh(true)
        .poll_interval(poll)
        .build()
        .await
        .unwrap()
}
