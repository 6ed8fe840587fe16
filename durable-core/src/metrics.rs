//! Metrics on the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), for a
//! dict built with [`Builder::metrics`](crate::Builder::metrics): what an application's
//! recorder (a Prometheus exporter, say) collects. Without a recorder installed each
//! update is one check of the facade's global recorder; without `.metrics(..)` nothing
//! is recorded and no wrapper is installed.
//!
//! Every metric carries the label `dict` (the name given to `.metrics`).
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `durable_sync_seconds` | histogram | `outcome`: `free`, `unchanged`, `delta`, `full`, `error` | one `sync()` (or background trip) |
//! | `durable_store_requests_total` | counter | `operation` (a [`Backend`] method) | requests to the store |
//! | `durable_store_errors_total` | counter | `operation` | requests that failed |
//! | `durable_write_seconds` | histogram | `operation` (`persist`, `apply`, …) | a write's round trip |
//! | `durable_write_conflicts_total` | counter | | writes refused by a compare-and-swap or guard |
//! | `durable_snapshot_version` | gauge | | the snapshot's version |
//! | `durable_snapshot_keys` | gauge | | keys in the snapshot |
//! | `durable_staleness_seconds` | gauge | | [`Status::staleness`](crate::Status::staleness) at the last sync |
//! | `durable_hints_up` | gauge | | 1 while the hint listener is connected, else 0 |
//! | `durable_hint_reconnects_total` | counter | | times the hint listener subscribed again |

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use metrics::{counter, gauge, histogram};

use crate::backend::{Backend, Changes, Durables, HintStream, Version};
use crate::batch::Batch;
use crate::engine::SyncOutcome;
use crate::error::{Error, Result};
use crate::journal::{JournalPage, JournalRecord};
use crate::lease::{LeaseAnswer, LeaseOp};

/// The engine's side: sync outcomes, the snapshot, the listener.
#[derive(Debug, Clone)]
pub(crate) struct DictMetrics {
    dict: Arc<str>,
}

impl DictMetrics {
    pub(crate) fn new(dict: &str) -> Self {
        Self { dict: Arc::from(dict) }
    }

    fn label(&self) -> String {
        self.dict.to_string()
    }

    /// A `sync()` that made no trip (the hints said nothing changed).
    pub(crate) fn free_sync(&self, elapsed: Duration) {
        histogram!("durable_sync_seconds", "dict" => self.label(), "outcome" => "free").record(elapsed);
    }

    /// A trip's outcome, and the snapshot and staleness after it.
    pub(crate) fn trip(
        &self,
        result: &Result<SyncOutcome>,
        elapsed: Duration,
        version: Version,
        keys: usize,
        staleness: Duration,
    ) {
        let outcome = match result {
            Ok(SyncOutcome::Unchanged) => "unchanged",
            Ok(SyncOutcome::Delta { .. }) => "delta",
            Ok(SyncOutcome::Full { .. }) => "full",
            Err(_) => "error",
        };
        histogram!("durable_sync_seconds", "dict" => self.label(), "outcome" => outcome).record(elapsed);
        gauge!("durable_snapshot_version", "dict" => self.label()).set(version as f64);
        gauge!("durable_snapshot_keys", "dict" => self.label()).set(keys as f64);
        let staleness = if staleness == Duration::MAX { f64::INFINITY } else { staleness.as_secs_f64() };
        gauge!("durable_staleness_seconds", "dict" => self.label()).set(staleness);
    }

    /// A new snapshot was swapped in (by a trip or by a local write).
    pub(crate) fn swapped(&self, version: Version, keys: usize) {
        gauge!("durable_snapshot_version", "dict" => self.label()).set(version as f64);
        gauge!("durable_snapshot_keys", "dict" => self.label()).set(keys as f64);
    }

    /// The hint listener connected (`true`) or lost its connection.
    pub(crate) fn hints_up(&self, up: bool) {
        gauge!("durable_hints_up", "dict" => self.label()).set(if up { 1.0 } else { 0.0 });
    }

    /// The hint listener subscribed again after losing its stream.
    pub(crate) fn reconnected(&self) {
        counter!("durable_hint_reconnects_total", "dict" => self.label()).increment(1);
    }
}

/// The store's side: a wrapper that counts and times every request. Installed by
/// [`Builder::metrics`](crate::Builder::metrics); it forwards every method (each is
/// required, so none can be forgotten) and adds nothing else.
pub(crate) struct MetricsBackend {
    inner: Arc<dyn Backend>,
    dict: Arc<str>,
}

impl MetricsBackend {
    pub(crate) fn new(inner: Arc<dyn Backend>, dict: &str) -> Self {
        Self { inner, dict: Arc::from(dict) }
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        write: bool,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        let dict = self.dict.to_string();
        counter!("durable_store_requests_total", "dict" => dict.clone(), "operation" => operation).increment(1);
        if write {
            histogram!("durable_write_seconds", "dict" => dict.clone(), "operation" => operation)
                .record(started.elapsed());
        }
        if let Err(err) = &result {
            counter!("durable_store_errors_total", "dict" => dict.clone(), "operation" => operation).increment(1);
            if matches!(err, Error::Conflict { .. } | Error::VersionConflict { .. }) {
                counter!("durable_write_conflicts_total", "dict" => dict).increment(1);
            }
        }
        result
    }
}

#[async_trait]
impl Backend for MetricsBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn describe(&self) -> String {
        format!("metrics({})", self.inner.describe())
    }
    fn validate_key(&self, key: &str) -> Result<()> {
        self.inner.validate_key(key)
    }
    fn max_value_size(&self) -> Option<usize> {
        self.inner.max_value_size()
    }
    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.observe("persist", true, self.inner.persist(key, value)).await
    }
    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.observe("depersist", true, self.inner.depersist(key)).await
    }
    async fn durables(&self) -> Result<Durables> {
        self.observe("durables", false, self.inner.durables()).await
    }
    async fn last_updated(&self) -> Result<Version> {
        self.observe("last_updated", false, self.inner.last_updated()).await
    }
    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        self.observe("apply", true, self.inner.apply(batch)).await
    }
    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.observe("pop", true, self.inner.pop(key)).await
    }
    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.observe("setdefault", true, self.inner.setdefault(key, value)).await
    }
    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.observe("changes_since", false, self.inner.changes_since(since)).await
    }
    async fn watch(&self) -> Result<Option<HintStream>> {
        self.observe("watch", false, self.inner.watch()).await
    }
    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.observe("compare_and_swap", true, self.inner.compare_and_swap(key, old, new)).await
    }
    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        self.observe("journal", false, self.inner.journal(after, limit)).await
    }
    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.observe("history", false, self.inner.history(key, limit)).await
    }
    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        self.observe("lease", true, self.inner.lease(key, op)).await
    }
    async fn remove_namespace(&self) -> Result<()> {
        self.observe("remove_namespace", true, self.inner.remove_namespace()).await
    }
}
