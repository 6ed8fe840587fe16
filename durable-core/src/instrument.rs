//! `CountingBackend`: a wrapper that counts the calls a dict makes to its store — one call
//! is one round trip in every backend of this workspace. Tests use it to prove that a
//! no-change `sync()` makes no trip, benchmarks to report round trips per sync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::backend::Backend;
use crate::error::Result;
use crate::wrap::{Call, Delegate, Wrap};

/// Calls made through a [`CountingBackend`], per method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `persist` calls.
    pub persist: u64,
    /// `depersist` calls.
    pub depersist: u64,
    /// `durables` calls (full reloads).
    pub durables: u64,
    /// `last_updated` calls (version checks).
    pub last_updated: u64,
    /// `persist_many` calls.
    pub persist_many: u64,
    /// `pop` calls.
    pub pop: u64,
    /// `setdefault` calls.
    pub setdefault: u64,
    /// `changes_since` calls (deltas).
    pub changes_since: u64,
    /// `watch` calls (subscriptions).
    pub watch: u64,
    /// `compare_and_swap` calls.
    pub compare_and_swap: u64,
}

impl CallCounts {
    /// Every call, summed.
    pub fn total(&self) -> u64 {
        self.persist
            + self.depersist
            + self.durables
            + self.last_updated
            + self.persist_many
            + self.pop
            + self.setdefault
            + self.changes_since
            + self.watch
            + self.compare_and_swap
    }
}

/// Wraps a backend and counts calls to it; see [`CallCounts`]. Everything else is the
/// wrapped backend's (it is a [`Wrap`]).
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    counters: [AtomicU64; Call::METHODS.len()],
}

impl CountingBackend {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner, counters: Default::default() }
    }

    /// The calls counted so far.
    pub fn counts(&self) -> CallCounts {
        let [
            persist,
            depersist,
            durables,
            last_updated,
            persist_many,
            pop,
            setdefault,
            changes_since,
            watch,
            compare_and_swap,
        ] = self.counters.each_ref().map(|counter| counter.load(Ordering::Relaxed));
        CallCounts {
            persist,
            depersist,
            durables,
            last_updated,
            persist_many,
            pop,
            setdefault,
            changes_since,
            watch,
            compare_and_swap,
        }
    }
}

#[async_trait]
impl Wrap for CountingBackend {
    fn label(&self) -> &'static str {
        "counting"
    }
    fn wrapped(&self) -> Option<Delegate<'_>> {
        Some(Delegate::from(&self.inner))
    }
    async fn enter(&self, call: Call<'_>) -> Result<Delegate<'_>> {
        self.counters[call.index()].fetch_add(1, Ordering::Relaxed);
        Ok(Delegate::from(&self.inner))
    }
}
