//! Test helpers (feature `conformance`): [`FaultyBackend`], a wrapper that makes any backend
//! fail, slow down, or lose and interrupt its hints on command — the way object_store's
//! `ThrottledStore` wraps a store — so the dict's behaviour under faults can be tested
//! against any backend, real ones included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::backend::{Backend, Hint, HintStream};
use crate::error::{Error, Result, Source};
use crate::wrap::{Call, Delegate, Wrap};

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
}

#[async_trait]
impl Wrap for FaultyBackend {
    fn label(&self) -> &'static str {
        "faulty"
    }
    fn wrapped(&self) -> Option<Delegate<'_>> {
        Some(Delegate::from(&self.inner))
    }
    async fn enter(&self, _call: Call<'_>) -> Result<Delegate<'_>> {
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
        Ok(Delegate::from(&self.inner))
    }
    /// The store's hints, unless dropped, merged with injected ones; ends when told to.
    fn wrap_hints(&self, real: HintStream) -> HintStream {
        let injected =
            BroadcastStream::new(self.injected.subscribe()).filter_map(|control| async move { control.ok() });
        let dropping = Arc::clone(&self.dropping_hints);
        let real = real.filter_map(move |hint| {
            let keep = !dropping.load(Ordering::SeqCst);
            async move { keep.then_some(Control::Hint(hint)) }
        });
        let merged = futures::stream::select(real, injected).take_while(|control| {
            let open = matches!(control, Control::Hint(_));
            async move { open }
        });
        Box::pin(merged.filter_map(|control| async move {
            match control {
                Control::Hint(hint) => Some(hint),
                Control::Close => None,
            }
        }))
    }
}
