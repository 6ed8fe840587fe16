//! Test helpers (feature `conformance`): [`FaultyBackend`], a wrapper that makes any backend
//! fail, slow down, or lose and interrupt its hints on command — the way object_store's
//! `ThrottledStore` wraps a store — so the dict's behaviour under faults can be tested
//! against any backend, real ones included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::backend::{Backend, Changes, Durables, Hint, HintStream, Version};
use crate::error::{Error, Result, Source};

/// Wraps a backend and injects faults on command.
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    failing: AtomicBool,
    dropping_hints: Arc<AtomicBool>,
    delay_ms: AtomicU64,
    injected: broadcast::Sender<Control>,
}

#[derive(Clone, Copy)]
enum Control {
    Hint(Hint),
    Close,
}

impl FaultyBackend {
    /// Wraps `inner`; no fault is on until asked for.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            dropping_hints: Arc::new(AtomicBool::new(false)),
            delay_ms: AtomicU64::new(0),
            injected: broadcast::channel(64).0,
        }
    }

    /// While on, every call fails with [`Error::StoreUnavailable`] (as if the store were
    /// down) and `watch()` cannot subscribe.
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// While on, hints from the store are silently lost (the listener stays "healthy").
    pub fn set_dropping_hints(&self, on: bool) {
        self.dropping_hints.store(on, Ordering::SeqCst);
    }

    /// Delays every call by `delay` (a slow store).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sends `hint` to every open hint stream, as a listener that lost or regained its
    /// connection would.
    pub fn inject_hint(&self, hint: Hint) {
        let _ = self.injected.send(Control::Hint(hint));
    }

    /// Ends every open hint stream, as a listener that gave up would.
    pub fn close_hint_streams(&self) {
        let _ = self.injected.send(Control::Close);
    }

    async fn enter(&self) -> Result<()> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::StoreUnavailable {
                backend: self.inner.name(),
                source: Source::msg("injected fault: store down"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn validate_key(&self, key: &str) -> Result<()> {
        self.inner.validate_key(key)
    }
    fn max_value_size(&self) -> Option<usize> {
        self.inner.max_value_size()
    }
    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.enter().await?;
        self.inner.persist(key, value).await
    }
    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.enter().await?;
        self.inner.depersist(key).await
    }
    async fn durables(&self) -> Result<Durables> {
        self.enter().await?;
        self.inner.durables().await
    }
    async fn last_updated(&self) -> Result<Version> {
        self.enter().await?;
        self.inner.last_updated().await
    }
    async fn persist_many(&self, entries: Vec<(String, Bytes)>) -> Result<Version> {
        self.enter().await?;
        self.inner.persist_many(entries).await
    }
    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.enter().await?;
        self.inner.pop(key).await
    }
    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.enter().await?;
        self.inner.setdefault(key, value).await
    }
    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.enter().await?;
        self.inner.changes_since(since).await
    }
    async fn watch(&self) -> Result<Option<HintStream>> {
        self.enter().await?;
        let injected =
            BroadcastStream::new(self.injected.subscribe()).filter_map(|control| async move { control.ok() });
        let Some(real) = self.inner.watch().await? else {
            return Ok(None);
        };
        let dropping = Arc::clone(&self.dropping_hints);
        let real = real.filter_map(move |hint| {
            let keep = !dropping.load(Ordering::SeqCst);
            async move { keep.then_some(Control::Hint(hint)) }
        });
        let merged = futures::stream::select(real, injected).take_while(|control| {
            let open = matches!(control, Control::Hint(_));
            async move { open }
        });
        Ok(Some(Box::pin(merged.filter_map(|control| async move {
            match control {
                Control::Hint(hint) => Some(hint),
                Control::Close => None,
            }
        }))))
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<Option<Version>> {
        self.enter().await?;
        self.inner.compare_and_swap(key, expected, new).await
    }
}
