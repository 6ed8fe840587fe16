//! [`LazyBackend`]: a backend that connects on first use, so that a service can start while
//! its store is down — and serve its [backup file](crate::Builder::backup_file) meanwhile.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::wrap::{Call, Delegate, Wrap};

type Connecting = Pin<Box<dyn Future<Output = Result<Arc<dyn Backend>>> + Send>>;

/// Wraps a backend's `connect`, run on the first call that needs the store and again on the
/// next call after a failure; concurrent calls share one attempt. Once connected, every call
/// goes straight to the backend.
///
/// Until the first connection, keys get the default check ([`Backend::validate_key`]'s
/// default) before I/O; once connected, the backend's own key rules apply (it checks them
/// itself) and its value size limit is checked before anything is written.
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
}

#[async_trait]
impl Wrap for LazyBackend {
    fn label(&self) -> &'static str {
        "lazy"
    }

    fn wrapped(&self) -> Option<Delegate<'_>> {
        self.backend.get().map(Delegate::from)
    }

    fn unwrapped_name(&self) -> &'static str {
        self.name
    }

    /// Connects if not yet connected; a write is then checked against the connected
    /// backend's size limit, which the dict could not know before (the backend checks its
    /// own key rules).
    async fn enter(&self, call: Call<'_>) -> Result<Delegate<'_>> {
        let backend = self.backend.get_or_try_init(|| (self.connect)()).await?;
        if let Some(max) = backend.max_value_size() {
            for (key, value) in call.values() {
                if value.len() > max {
                    return Err(Error::ValueTooLarge {
                        key: key.into(),
                        size: value.len(),
                        max,
                        backend: backend.name(),
                    });
                }
            }
        }
        Ok(Delegate::from(backend))
    }
}
