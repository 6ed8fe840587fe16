//! [`ReadOnlyBackend`]: a wrapper that refuses every write before any I/O.

use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::wrap::{Call, Delegate, Wrap};

/// Wraps a backend so that every write — `persist`, `depersist`, `apply`, `pop`,
/// `setdefault`, `compare_and_swap` — fails with [`Error::ReadOnly`] before any I/O, while
/// full reads, version checks, deltas and hints go through unchanged: a dict on it syncs
/// and follows changes like any other. [`Builder::read_only`](crate::Builder::read_only)
/// puts a dict's backend behind one.
///
/// It protects against this process's own writes. To have the store refuse them too (a
/// process whose credentials must not allow writing at all), also give it a store account
/// that can only read.
///
/// ```
/// use std::sync::Arc;
/// use durable_core::{Backend, Bytes, Error, MemoryBackend, ReadOnlyBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = Arc::new(MemoryBackend::new("read-only-doc"));
/// let reader = ReadOnlyBackend::new(store.clone());
/// store.persist("k", Bytes::from_static(b"1")).await.unwrap();
/// assert_eq!(reader.durables().await.unwrap().entries.len(), 1);
/// let refused = reader.persist("k", Bytes::from_static(b"2")).await;
/// assert!(matches!(refused, Err(Error::ReadOnly { operation: "persist", .. })));
/// assert_eq!(reader.describe(), "read_only(memory)");
/// # }
/// ```
pub struct ReadOnlyBackend {
    inner: Arc<dyn Backend>,
}

impl ReadOnlyBackend {
    /// Refuses writes to `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Wrap for ReadOnlyBackend {
    fn label(&self) -> &'static str {
        "read_only"
    }
    fn wrapped(&self) -> Option<Delegate<'_>> {
        Some(Delegate::from(&self.inner))
    }
    async fn enter(&self, call: Call<'_>) -> Result<Delegate<'_>> {
        if call.is_write() {
            return Err(Error::ReadOnly { backend: self.inner.name(), operation: call.method() });
        }
        Ok(Delegate::from(&self.inner))
    }
}
