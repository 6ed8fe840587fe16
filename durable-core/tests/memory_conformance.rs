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

    async fn with_journal(&self, namespace: &str, journal: durable_core::JournalConfig) -> Arc<dyn Backend> {
        Arc::new(MemoryBackend::in_store(Arc::clone(&self.0), namespace).with_journal(journal))
    }

    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(MemoryBackend::in_store(Arc::clone(&self.0), namespace).with_change_log(mutations)))
    }
}

durable_core::conformance_tests!(Memory::new());

/// The same suite through `counting(faulty(lazy(memory)))`.
mod wrapped {
    durable_core::conformance_tests!(durable_core::conformance::Wrapped(super::Memory::new()));
}

#[tokio::test]
async fn wrappers_say_what_they_wrap() {
    let factory = durable_core::conformance::Wrapped(Memory::new());
    let backend = factory.backend("ns").await;
    assert_eq!(backend.name(), "memory");
    assert_eq!(backend.describe(), "counting(faulty(lazy(memory)))", "before the lazy wrapper connects");
    backend.last_updated().await.unwrap();
    assert_eq!(backend.describe(), "counting(faulty(lazy(memory)))", "once connected");
}
