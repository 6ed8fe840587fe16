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
    durable_core::conformance_tests!(@leases durable_core::conformance::Wrapped(super::Memory::new()));
}

mod leases {
    use std::time::Duration;

    use durable_core::conformance::BackendFactory;
    use durable_core::{DurableDict, Error, LeaseState};

    durable_core::conformance_tests!(@leases super::Memory::new());

    /// A store whose clock is an hour ahead of, or behind, this process's: the lease still
    /// lasts its ttl, because expiry is judged by the store's clock alone and the holder
    /// counts down on its monotonic clock from what the store said was left.
    #[tokio::test]
    async fn a_skewed_clock_does_not_change_how_long_a_lease_lasts() {
        for offset_ms in [3_600_000, -3_600_000] {
            let memory = super::Memory::new();
            memory.0.set_clock_offset_ms(offset_ms);
            let a = DurableDict::<u32>::builder(memory.backend("skew").await).build().await.unwrap();
            let b = DurableDict::<u32>::builder(memory.backend("skew").await).build().await.unwrap();
            let ttl = Duration::from_millis(400);
            let lease = a.lease("k").ttl(ttl).no_wait().await.unwrap();
            let expires_in = lease.expires_at().unwrap().duration_since(std::time::SystemTime::now());
            // The store's expiry is an hour off this process's wall clock...
            assert_eq!(expires_in.is_ok(), offset_ms > 0, "{offset_ms}: {expires_in:?}");
            // ...and yet the lease lasts its ttl, no more, no less.
            assert!(lease.remaining() > ttl / 2 && lease.remaining() <= ttl, "{:?}", lease.remaining());
            assert!(matches!(b.lease("k").no_wait().await, Err(Error::Leased { .. })));
            let mut state = lease.watch();
            state.wait_for(|s| *s == LeaseState::Lost).await.unwrap();
            let taken = b.lease("k").wait(Duration::from_secs(2)).await.unwrap();
            assert!(taken.token() > lease.token());
        }
    }
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
