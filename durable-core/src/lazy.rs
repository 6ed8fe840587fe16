//! [`LazyBackend`]: a backend that connects on first use, so that a service can start while
//! its store is down — and serve its [backup file](crate::Builder::backup_file) meanwhile.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::backend::{Backend, Changes, Durables, HintStream, Version};
use crate::error::{Error, Result};

type Connecting = Pin<Box<dyn Future<Output = Result<Arc<dyn Backend>>> + Send>>;

/// Wraps a backend's `connect`, run on the first call that needs the store and again on the
/// next call after a failure; concurrent calls share one attempt. Once connected, every call
/// goes straight to the backend.
///
/// Until the first connection, keys get the default check ([`Backend::validate_key`]'s
/// default) before I/O, and the backend's own rules and value size limit are checked once it
/// is connected, before anything is written.
///
/// ```
/// use std::sync::Arc;
/// use durable_core::{Backend, LazyBackend, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durable_core::Result<()> {
/// let lazy = LazyBackend::new("memory", || async {
///     Ok(Arc::new(MemoryBackend::new("flags")) as Arc<dyn Backend>)
/// });
/// assert!(!lazy.is_connected());
/// lazy.last_updated().await?;
/// assert!(lazy.is_connected());
/// # Ok(()) }
/// ```
pub struct LazyBackend {
    name: &'static str,
    connect: Box<dyn Fn() -> Connecting + Send + Sync>,
    backend: OnceCell<Arc<dyn Backend>>,
}

impl fmt::Debug for LazyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyBackend").field("name", &self.name).field("connected", &self.is_connected()).finish()
    }
}

impl LazyBackend {
    /// `name` is what [`Backend::name`] says until connected; `connect` makes the backend.
    pub fn new<F, Fut>(name: &'static str, connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn Backend>>> + Send + 'static,
    {
        Self { name, connect: Box::new(move || Box::pin(connect())), backend: OnceCell::new() }
    }

    /// Whether the backend has been made.
    pub fn is_connected(&self) -> bool {
        self.backend.initialized()
    }

    async fn backend(&self) -> Result<&Arc<dyn Backend>> {
        self.backend.get_or_try_init(|| (self.connect)()).await
    }

    /// The connected backend, after its own key rule for `key`.
    async fn for_key(&self, key: &str) -> Result<&Arc<dyn Backend>> {
        let backend = self.backend().await?;
        backend.validate_key(key)?;
        Ok(backend)
    }

    /// The connected backend, after its key rule and size limit for an entry.
    async fn for_entry(&self, key: &str, value: &[u8]) -> Result<&Arc<dyn Backend>> {
        let backend = self.for_key(key).await?;
        check_size(backend, key, value)?;
        Ok(backend)
    }
}

fn check_size(backend: &Arc<dyn Backend>, key: &str, value: &[u8]) -> Result<()> {
    match backend.max_value_size() {
        Some(max) if value.len() > max => {
            Err(Error::ValueTooLarge { key: key.into(), size: value.len(), max, backend: backend.name() })
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Backend for LazyBackend {
    fn name(&self) -> &'static str {
        self.backend.get().map_or(self.name, |backend| backend.name())
    }

    fn validate_key(&self, key: &str) -> Result<()> {
        match self.backend.get() {
            Some(backend) => backend.validate_key(key),
            None => crate::backend::default_key_rule(key),
        }
    }

    fn max_value_size(&self) -> Option<usize> {
        self.backend.get().and_then(|backend| backend.max_value_size())
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.for_entry(key, &value).await?.persist(key, value).await
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.for_key(key).await?.depersist(key).await
    }

    async fn durables(&self) -> Result<Durables> {
        self.backend().await?.durables().await
    }

    async fn last_updated(&self) -> Result<Version> {
        self.backend().await?.last_updated().await
    }

    async fn persist_many(&self, entries: Vec<(String, Bytes)>) -> Result<Version> {
        let backend = self.backend().await?;
        for (key, value) in &entries {
            backend.validate_key(key)?;
            check_size(backend, key, value)?;
        }
        backend.persist_many(entries).await
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.for_key(key).await?.pop(key).await
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.for_entry(key, &value).await?.setdefault(key, value).await
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.backend().await?.changes_since(since).await
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        self.backend().await?.watch().await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<Option<Version>> {
        let backend = self.for_key(key).await?;
        if let Some(new) = &new {
            check_size(backend, key, new)?;
        }
        backend.compare_and_swap(key, expected, new).await
    }
}
