//! The conformance suite on `MemoryBackend`, each test on its own isolated store.

use std::sync::Arc;

use durable_core::conformance::BackendFactory;
use durable_core::{Backend, MemoryBackend, MemoryStore};

/// One isolated store per test; backends handed out share it, as clients of one server do.
struct Memory(Arc<MemoryStore>);

impl Memory {
    fn new() -> Self {
        Self(MemoryStore::new())
    }
}

#[durable_core::async_trait]
impl BackendFactory for Memory {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(MemoryBackend::in_store(Arc::clone(&self.0), namespace))
    }

    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(MemoryBackend::in_store(Arc::clone(&self.0), namespace).with_change_log(mutations)))
    }
}

durable_core::conformance_tests!(Memory::new());
