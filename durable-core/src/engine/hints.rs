//! Change hints and the listener: the bookkeeping `sync()` reads to know whether it may
//! skip the store (invariant 4), and the background task that follows the backend's hint
//! stream — re-subscribing when it ends, catching up after a gap (invariant 3), retrying
//! failed trips, and polling with background refresh.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};

use crate::backend::{Backend, Hint, HintStream, Version};
use crate::backoff::Backoff;
use crate::codec::Codec;

use super::Engine;

/// The state of a dict's change-hint listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintHealth {
    /// Hints flow: `sync()` costs nothing until one arrives.
    Healthy,
    /// The listener is disconnected or reconnecting: every `sync()` asks the store.
    Down,
    /// The backend pushes no hints (or hints were turned off): every `sync()` asks the store.
    Unavailable,
}

const HINTS_UNAVAILABLE: u8 = 0;
const HINTS_DOWN: u8 = 1;
const HINTS_HEALTHY: u8 = 2;

/// Change-hint bookkeeping shared between the listener task and `sync()`.
#[derive(Default)]
pub(super) struct Hints {
    state: AtomicU8,
    /// Hints that may mean "something changed", counted.
    pub(super) received: AtomicU64,
    /// The value of `received` that the last successful trip covered.
    pub(super) handled: AtomicU64,
    /// The highest version a hint announced: when it is above the snapshot's, the next trip
    /// skips the version check and asks for the changes at once (one round trip, not two).
    pub(super) announced: AtomicU64,
    /// A hint said "something changed" without a version, or the listener resumed after a
    /// gap: the store may have changed without its version moving (writers that keep no
    /// version, such as durabledict's ZooKeeper writers), so the next trip asks for the
    /// changes even when the version is the same.
    pub(super) unversioned: AtomicBool,
}

impl Hints {
    pub(crate) fn set_health(&self, health: HintHealth) {
        let raw = match health {
            HintHealth::Unavailable => HINTS_UNAVAILABLE,
            HintHealth::Down => HINTS_DOWN,
            HintHealth::Healthy => HINTS_HEALTHY,
        };
        self.state.store(raw, Ordering::Release);
    }

    pub(crate) fn health(&self) -> HintHealth {
        match self.state.load(Ordering::Acquire) {
            HINTS_HEALTHY => HintHealth::Healthy,
            HINTS_DOWN => HintHealth::Down,
            _ => HintHealth::Unavailable,
        }
    }

    /// Records a hint that may mean a change.
    pub(crate) fn arrived(&self) {
        self.received.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a hint that announced `version`.
    pub(crate) fn arrived_at(&self, version: Version) {
        self.announced.fetch_max(version, Ordering::AcqRel);
        self.arrived();
    }

    /// Records a hint that may mean a change the version does not show.
    pub(crate) fn arrived_unversioned(&self) {
        self.unversioned.store(true, Ordering::Release);
        self.arrived();
    }

    /// True when the listener is healthy and nothing arrived since the last trip.
    pub(crate) fn quiet(&self) -> bool {
        self.state.load(Ordering::Acquire) == HINTS_HEALTHY
            && self.received.load(Ordering::Acquire) == self.handled.load(Ordering::Acquire)
    }
}

/// The background task: follows change hints (re-subscribing when the stream ends) and,
/// with background refresh, syncs on each hint and every poll interval. After a
/// reconnection it syncs whether or not background refresh is on, and a trip of its own that
/// failed is retried soon (50 ms, doubling to 250 ms), so a dict recovers from an outage on
/// its own within a fraction of a second of the store coming back. It holds the dict weakly
/// and is aborted when the last clone of the dict is dropped.
pub(super) struct Listener<V, C> {
    pub(super) inner: Weak<Engine<V, C>>,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) refresh: bool,
    pub(super) poll_interval: Duration,
    pub(super) supported: bool,
}

/// What a hint asks of the listener, in rising order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Wants {
    Nothing,
    /// A change this snapshot may lack: synced now with background refresh.
    Change,
    /// Hints flow again after a gap: always synced now.
    Catchup,
}

/// When to try again ([`Backoff::RECONNECT`]): re-subscribing, or a failed trip.
struct Retry {
    backoff: Backoff,
    at: Option<tokio::time::Instant>,
}

impl Retry {
    fn new() -> Self {
        Self { backoff: Backoff::RECONNECT, at: None }
    }

    fn failed(&mut self) {
        self.at = Some(tokio::time::Instant::now() + self.backoff.next_delay());
    }

    fn succeeded(&mut self) {
        *self = Self::new();
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Listener<V, C> {
    /// Runs until the dict is dropped; with `catch_up`, the store is retried from the start
    /// (the dict started from its backup file).
    pub(super) async fn run(mut self, mut stream: Option<HintStream>, catch_up: bool) {
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await; // the first tick is immediate; the build just loaded.
        let mut resubscribe = Retry::new();
        if stream.is_none() {
            resubscribe.failed();
        }
        let mut trip = Retry::new();
        if catch_up {
            trip.failed();
        }
        // While the listener is connected but interrupted (its store connection dropped), a
        // refreshing dict checks the store at the retry cadence rather than at the poll.
        let mut interrupted_poll = tokio::time::interval(Backoff::RECONNECT.max());
        interrupted_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let interrupted = self.refresh
                && stream.is_some()
                && self.inner.upgrade().is_some_and(|inner| inner.hints.health() == HintHealth::Down);
            // A polled refreshing dict looks at the same cadence whether the store is failing
            // (a sync of the service's own failed, which no hint announces), so that it
            // recovers within a fraction of a second, not at the next poll.
            let polled = self.refresh && !self.supported;
            tokio::select! {
                _ = interrupted_poll.tick(), if interrupted || polled => {
                    let Some(inner) = self.inner.upgrade() else { return };
                    if interrupted || inner.status().failing_since.is_some() {
                        Self::sync(&inner, &mut trip, true).await;
                    }
                }
                hint = next_hint(&mut stream) => {
                    let Some(inner) = self.inner.upgrade() else { return };
                    match hint {
                        Some(hint) => {
                            // Take every hint already here, then make one trip for all of them.
                            let mut wants = self.handle(&inner, hint);
                            while let Some(Some(hint)) = stream.as_mut().and_then(|s| s.next().now_or_never()) {
                                wants = wants.max(self.handle(&inner, hint));
                            }
                            // While a failed trip waits for its retry, the retry covers changes.
                            let change = self.refresh && trip.at.is_none();
                            if wants == Wants::Catchup || (wants == Wants::Change && change) {
                                Self::sync(&inner, &mut trip, false).await;
                            }
                        }
                        None => {
                            tracing::debug!(backend = self.backend.name(), "durable: hint stream ended; re-subscribing");
                            inner.set_hint_health(HintHealth::Down);
                            stream = None;
                            resubscribe.succeeded();
                            resubscribe.failed();
                        }
                    }
                }
                _ = poll.tick(), if self.refresh => {
                    let Some(inner) = self.inner.upgrade() else { return };
                    Self::sync(&inner, &mut trip, true).await;
                }
                _ = sleep_until(trip.at), if trip.at.is_some() => {
                    let Some(inner) = self.inner.upgrade() else { return };
                    Self::sync(&inner, &mut trip, true).await;
                }
                _ = sleep_until(resubscribe.at), if stream.is_none() && self.supported => {
                    let Some(inner) = self.inner.upgrade() else { return };
                    match (*self.backend).watch().await {
                        Ok(Some(new_stream)) => {
                            stream = Some(new_stream);
                            resubscribe.succeeded();
                            inner.hints_reconnected();
                            // Changes may have happened while nobody listened.
                            inner.hints.arrived_unversioned();
                            inner.set_hint_health(HintHealth::Healthy);
                            Self::sync(&inner, &mut trip, false).await;
                        }
                        Ok(None) => {
                            self.supported = false;
                            inner.set_hint_health(HintHealth::Unavailable);
                        }
                        Err(err) => {
                            tracing::debug!(backend = self.backend.name(), error = %err, "durable: re-subscribing to hints failed");
                            resubscribe.failed();
                        }
                    }
                }
            }
        }
    }

    /// One trip of the listener's own; a failure is retried soon rather than at the next
    /// poll.
    async fn sync(inner: &Engine<V, C>, trip: &mut Retry, force: bool) {
        match inner.sync(force).await {
            Ok(_) => trip.succeeded(),
            Err(_) => trip.failed(),
        }
    }

    /// Records a hint and says what it asks for.
    fn handle(&self, inner: &Engine<V, C>, hint: Hint) -> Wants {
        match hint {
            Hint::Changed { version: Some(version) } => {
                if version <= inner.current.load().version {
                    return Wants::Nothing;
                }
                inner.hints.arrived_at(version);
                Wants::Change
            }
            Hint::Changed { version: None } => {
                inner.hints.arrived_unversioned();
                Wants::Change
            }
            Hint::Interrupted => {
                inner.set_hint_health(HintHealth::Down);
                Wants::Nothing
            }
            Hint::Resumed => {
                inner.hints.arrived_unversioned();
                inner.set_hint_health(HintHealth::Healthy);
                Wants::Catchup
            }
            Hint::LeaseReleased => Wants::Nothing,
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_hint(stream: &mut Option<HintStream>) -> Option<Hint> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
