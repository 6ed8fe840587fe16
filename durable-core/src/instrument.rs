//! `CountingBackend`: a wrapper that counts the calls a dict makes to its store — one call
//! is one round trip in every backend of this workspace. Tests use it to prove that a
//! no-change `sync()` makes no trip, benchmarks to report round trips per sync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{Backend, Changes, Durables, HintStream, Version};
use crate::error::Result;

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

#[derive(Default)]
struct Counters([AtomicU64; 10]);

/// Wraps a backend and counts calls to it; see [`CallCounts`].
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    counters: Counters,
}

const PERSIST: usize = 0;
const DEPERSIST: usize = 1;
const DURABLES: usize = 2;
const LAST_UPDATED: usize = 3;
const PERSIST_MANY: usize = 4;
const POP: usize = 5;
const SETDEFAULT: usize = 6;
const CHANGES_SINCE: usize = 7;
const WATCH: usize = 8;
const COMPARE_AND_SWAP: usize = 9;

impl CountingBackend {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner, counters: Counters::default() }
    }

    /// The calls counted so far.
    pub fn counts(&self) -> CallCounts {
        let c = |i: usize| self.counters.0[i].load(Ordering::Relaxed);
        CallCounts {
            persist: c(PERSIST),
            depersist: c(DEPERSIST),
            durables: c(DURABLES),
            last_updated: c(LAST_UPDATED),
            persist_many: c(PERSIST_MANY),
            pop: c(POP),
            setdefault: c(SETDEFAULT),
            changes_since: c(CHANGES_SINCE),
            watch: c(WATCH),
            compare_and_swap: c(COMPARE_AND_SWAP),
        }
    }

    fn count(&self, which: usize) {
        self.counters.0[which].fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Backend for CountingBackend {
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
        self.count(PERSIST);
        self.inner.persist(key, value).await
    }
    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.count(DEPERSIST);
        self.inner.depersist(key).await
    }
    async fn durables(&self) -> Result<Durables> {
        self.count(DURABLES);
        self.inner.durables().await
    }
    async fn last_updated(&self) -> Result<Version> {
        self.count(LAST_UPDATED);
        self.inner.last_updated().await
    }
    async fn persist_many(&self, entries: Vec<(String, Bytes)>) -> Result<Version> {
        self.count(PERSIST_MANY);
        self.inner.persist_many(entries).await
    }
    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.count(POP);
        self.inner.pop(key).await
    }
    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.count(SETDEFAULT);
        self.inner.setdefault(key, value).await
    }
    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.count(CHANGES_SINCE);
        self.inner.changes_since(since).await
    }
    async fn watch(&self) -> Result<Option<HintStream>> {
        self.count(WATCH);
        self.inner.watch().await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<Option<Version>> {
        self.count(COMPARE_AND_SWAP);
        self.inner.compare_and_swap(key, expected, new).await
    }
}
