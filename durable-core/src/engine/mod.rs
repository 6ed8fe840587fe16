//! The engine behind a dict: its state, private to this module and its children, and how
//! its snapshot is brought up to date. `apply.rs` builds the next snapshot, `hints.rs`
//! holds the hint bookkeeping and the listener task, `deltas.rs` the delta fetches shared
//! between dicts, `backup.rs` the backup file (format, writer, restore); `dict.rs` and
//! `builder.rs` only call methods.
//!
//! - Fast path: when the hint listener is healthy and no hint arrived since the last trip,
//!   `sync()` returns without touching the store — two atomic loads (invariant 4).
//! - Otherwise one trip: `last_updated()`; if the version moved, `changes_since()` and an
//!   O(k) delta (invariant 5), or `durables()` and a full reload when the store cannot give
//!   a delta. Trips are serialized, and a caller whose request is covered by a trip that
//!   *started after it asked* takes that trip's result instead of making its own, so
//!   concurrent `sync()` calls coalesce into one store trip. The dicts of a process on one
//!   store and namespace share their delta fetches too (`deltas.rs`).
//! - The next snapshot is built aside and swapped in whole (invariant 6); a failed trip
//!   leaves the snapshot as it was (invariant 7); values are decoded once, here, and an
//!   undecodable value is reported with its key and skipped (invariant 8).

use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{Mutex, Notify, broadcast};
use tokio::task::AbortHandle;

use crate::backend::{Backend, Changes, Version};
use crate::builder::Options;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::snapshot::{Entry, SnapshotData};

mod apply;
pub(crate) mod backup;
mod deltas;
mod hints;

pub use hints::HintHealth;
use hints::{Hints, Listener};

/// What a `sync()` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Nothing changed: either the hints said so (no store trip) or the store did.
    Unchanged,
    /// A delta brought `keys` changed keys and the snapshot to `version`.
    Delta {
        /// How many keys the delta carried.
        keys: usize,
        /// The snapshot version afterwards.
        version: Version,
    },
    /// A full reload of `keys` keys at `version`.
    Full {
        /// How many keys the store holds.
        keys: usize,
        /// The snapshot version afterwards.
        version: Version,
    },
}

/// The health of a dict, for health endpoints and dashboards.
#[derive(Debug, Clone)]
pub struct Status {
    /// The snapshot's version.
    pub version: Version,
    /// When a store trip last succeeded (`None`: never since the dict was built).
    pub last_success: Option<Instant>,
    /// The error of the last failed trip, if the store has been failing since.
    pub last_error: Option<Error>,
    /// Since when the store has been failing, if it is.
    pub failing_since: Option<Instant>,
    /// The state of the change-hint listener.
    pub hints: HintHealth,
    /// The snapshot came from the local backup file because the store was unreachable when
    /// the dict was built, and no trip has succeeded since: it may be stale by any amount.
    pub from_backup: bool,
}

impl Status {
    /// How long the dict may have been missing changes: zero while hints are healthy and
    /// trips succeed, else the time since the last successful trip.
    pub fn staleness(&self) -> Duration {
        if self.failing_since.is_none() && self.hints == HintHealth::Healthy && !self.from_backup {
            return Duration::ZERO;
        }
        self.last_success.map_or(Duration::MAX, |at| at.elapsed())
    }
}

/// The result of the last completed trip, for callers that coalesce onto it.
struct Ledger {
    completed: u64,
    last: Result<SyncOutcome>,
}

struct Health {
    last_success: Option<Instant>,
    last_error: Option<Error>,
    failing_since: Option<Instant>,
}

/// A value on its way into a snapshot: decoded, or given by a local write.
pub(crate) struct Incoming<V> {
    pub(crate) key: Arc<str>,
    /// `None` removes the key.
    pub(crate) entry: Option<Entry<V>>,
}

/// Everything a dict shares between its clones and its background task.
pub(crate) struct Engine<V, C> {
    backend: Arc<dyn Backend>,
    codec: C,
    autosync: bool,
    current: ArcSwap<SnapshotData<V>>,
    /// Folds the snapshot map's overlay into its base off the sync path.
    folder: crate::entry_map::Folder<V>,
    /// Delta fetches shared with the process's other dicts on the same store and namespace.
    deltas: Option<Arc<deltas::Deltas>>,
    hints: Hints,
    events: crate::events::Channel<V>,
    tasks: StdMutex<Vec<AbortHandle>>,
    hasher: std::hash::RandomState,
    trips_started: AtomicU64,
    /// The generation of the last trip that finished (mirrors the ledger without its lock).
    trips_finished: AtomicU64,
    ledger: Mutex<Ledger>,
    health: StdMutex<Health>,
    /// Counts snapshot swaps, and wakes the backup writer on each.
    swaps: AtomicU64,
    swapped: Arc<Notify>,
    /// The snapshot came from the backup file: the next trip is a full reload, and local
    /// writes are not applied on top of it.
    restored: AtomicBool,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::DictMetrics>,
}

impl<V, C> Drop for Engine<V, C> {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().map(std::mem::take).unwrap_or_default();
        for task in tasks {
            task.abort();
        }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Engine<V, C> {
    /// Subscribes to hints (when on), loads the whole namespace — or, when the store is
    /// unreachable, the backup file — and starts the background tasks.
    pub(crate) async fn start(options: Options, codec: C) -> Result<Arc<Self>> {
        #[allow(unused_mut)]
        let mut engine = Self::new(options.backend, codec, options.autosync, options.event_capacity);
        #[cfg(feature = "metrics")]
        {
            engine.metrics = options.metrics.as_deref().map(crate::metrics::DictMetrics::new);
        }
        let engine = Arc::new(engine);
        // Subscribe before the first load, so no change falls between the two.
        let (stream, supported) = if options.hints {
            match engine.store().watch().await {
                Ok(Some(stream)) => (Some(stream), true),
                Ok(None) => (None, false),
                Err(err) => {
                    tracing::warn!(backend = engine.backend.name(), error = %err, "durable: cannot subscribe to change hints yet; polling until it can");
                    (None, true)
                }
            }
        } else {
            (None, false)
        };
        if stream.is_some() {
            engine.set_hint_health(HintHealth::Healthy);
        } else if supported {
            engine.set_hint_health(HintHealth::Down);
        }
        let restored = match engine.initial_load().await {
            Ok(_) => false,
            Err(err) => match &options.backup_file {
                Some(path) => engine.start_from_backup(path, err).await?,
                None => return Err(err),
            },
        };
        let mut tasks = Vec::new();
        if supported || options.background_refresh || restored {
            let listener = Listener {
                inner: Arc::downgrade(&engine),
                backend: Arc::clone(&engine.backend),
                refresh: options.background_refresh,
                poll_interval: options.poll_interval,
                supported,
            };
            tasks.push(tokio::spawn(listener.run(stream, restored)).abort_handle());
        }
        if let Some(path) = options.backup_file {
            // The file just read needs no rewrite; a fresh load does.
            let written = restored.then(|| engine.swaps.load(Ordering::Acquire));
            let task = backup::keep_backup(Arc::downgrade(&engine), Arc::clone(&engine.swapped), path, written);
            tasks.push(tokio::spawn(task).abort_handle());
        }
        if let Ok(mut registered) = engine.tasks.lock() {
            registered.extend(tasks);
        }
        Ok(engine)
    }
}

/// What the dict reads.
impl<V, C> Engine<V, C> {
    /// The backend.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The backend to call. Through `&dyn Backend`, not the `Arc`: `Arc<dyn Backend>` is a
    /// backend too (a transparent [`Wrap`](crate::Wrap)), and calling through it would add
    /// a forwarding step to every store call.
    pub(crate) fn store(&self) -> &dyn Backend {
        &*self.backend
    }

    /// The codec.
    pub(crate) fn codec(&self) -> &C {
        &self.codec
    }

    /// Whether reads sync first.
    pub(crate) fn autosync(&self) -> bool {
        self.autosync
    }

    /// The current snapshot's data, borrowed through a per-thread slot (no shared
    /// reference count touched).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<SnapshotData<V>>> {
        self.current.load()
    }

    /// The current snapshot's version, without taking a reference to it.
    pub(crate) fn version(&self) -> Version {
        self.current.load().version
    }

    /// The number of keys in the current snapshot.
    pub(crate) fn len(&self) -> usize {
        self.current.load().entries.len()
    }

    /// True when `sync()` would not ask the store.
    pub(crate) fn quiet(&self) -> bool {
        self.hints.quiet()
    }

    /// Sets the hint listener's health (and its metric).
    pub(crate) fn set_hint_health(&self, health: HintHealth) {
        self.hints.set_health(health);
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.hints_up(health == HintHealth::Healthy);
        }
    }

    /// The hint listener subscribed again after losing its stream.
    pub(crate) fn hints_reconnected(&self) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.reconnected();
        }
    }

    /// A receiver of change events.
    pub(crate) fn events(&self) -> broadcast::Receiver<Event<V>> {
        self.events.subscribe()
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Engine<V, C> {
    fn new(backend: Arc<dyn Backend>, codec: C, autosync: bool, capacity: usize) -> Self {
        Self {
            deltas: deltas::Deltas::for_backend(&*backend),
            backend,
            codec,
            autosync,
            current: ArcSwap::from_pointee(SnapshotData::empty()),
            folder: Default::default(),
            hints: Hints::default(),
            events: crate::events::Channel::new(capacity),
            tasks: StdMutex::new(Vec::new()),
            hasher: std::hash::RandomState::new(),
            trips_started: AtomicU64::new(0),
            trips_finished: AtomicU64::new(0),
            ledger: Mutex::new(Ledger { completed: 0, last: Ok(SyncOutcome::Unchanged) }),
            health: StdMutex::new(Health { last_success: None, last_error: None, failing_since: None }),
            swaps: AtomicU64::new(0),
            swapped: Arc::new(Notify::new()),
            restored: AtomicBool::new(false),
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Brings the snapshot up to date; see the module docs. With `force`, asks the store
    /// even when the hints are quiet.
    pub(crate) async fn sync(&self, force: bool) -> Result<SyncOutcome> {
        #[cfg(feature = "metrics")]
        let started = self.metrics.as_ref().map(|_| Instant::now());
        if !force && self.hints.quiet() {
            #[cfg(feature = "metrics")]
            if let (Some(metrics), Some(started)) = (&self.metrics, started) {
                metrics.free_sync(started.elapsed());
            }
            return Ok(SyncOutcome::Unchanged);
        }
        let ticket = self.trips_started.load(Ordering::Acquire);
        let in_flight = self.trips_finished.load(Ordering::Acquire) < ticket;
        let mut ledger = self.ledger.lock().await;
        if ledger.completed > ticket {
            // A trip that started after this call asked has finished: it covers this call.
            return ledger.last.clone();
        }
        if in_flight && ledger.completed == ticket && ledger.last.is_err() {
            // The trip under way when this call asked has just failed: the store is failing
            // now, and asking again at once would only double the caller's wait.
            return ledger.last.clone();
        }
        self.trip_locked(&mut ledger, false).await
    }

    /// One store trip (with `full`, straight to a full reload); the caller holds the ledger
    /// lock.
    async fn trip_locked(&self, ledger: &mut Ledger, full: bool) -> Result<SyncOutcome> {
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        let generation = self.trips_started.fetch_add(1, Ordering::AcqRel) + 1;
        let hints_seen = self.hints.received.load(Ordering::Acquire);
        let unversioned = self.hints.unversioned.swap(false, Ordering::AcqRel);
        // A snapshot from the backup file may come from another history of the store: only a
        // full reload can be trusted to replace it.
        let restored = self.restored.load(Ordering::Acquire);
        let result = if full || restored { self.reload().await } else { self.trip(unversioned).await };
        if result.is_ok() && restored {
            self.restored.store(false, Ordering::Release);
        }
        if result.is_err() && unversioned {
            self.hints.unversioned.store(true, Ordering::Release);
        }
        if result.is_ok() {
            self.hints.handled.fetch_max(hints_seen, Ordering::AcqRel);
        }
        self.record(&result);
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            let current = self.current.load();
            metrics.trip(&result, started.elapsed(), current.version, current.entries.len(), self.status().staleness());
        }
        self.trips_finished.fetch_max(generation, Ordering::AcqRel);
        ledger.completed = generation;
        ledger.last = result.clone();
        result
    }

    async fn trip(&self, unversioned: bool) -> Result<SyncOutcome> {
        let current = self.current.load_full();
        // A hint already said the store is ahead: the version check would only confirm it.
        // A hint without a version (ZooKeeper's watch) asks for the changes whatever the
        // version says, so the version check would only cost a round trip: the delta
        // carries the version.
        let announced = self.hints.announced.load(Ordering::Acquire);
        let version = if announced > current.version {
            announced
        } else if unversioned {
            current.version
        } else {
            self.store().last_updated().await?
        };
        if version == current.version && !unversioned {
            return Ok(SyncOutcome::Unchanged);
        }
        if version >= current.version {
            // A hint without a version gives no version to check a shared answer against.
            let delta = match &self.deltas {
                Some(deltas) if !unversioned => deltas.changes_since(self.store(), current.version, version).await?,
                _ => self.store().changes_since(current.version).await?,
            };
            if let Changes::Delta { changes, version } = delta {
                if version == current.version && changes.is_empty() {
                    return Ok(SyncOutcome::Unchanged);
                }
                if version >= current.version {
                    return Ok(self.apply_delta(&current, changes, version));
                }
            }
        }
        // No delta, or the store went backwards (flushed, restored): reload everything.
        self.reload().await
    }

    async fn reload(&self) -> Result<SyncOutcome> {
        let durables = self.store().durables().await?;
        Ok(self.apply_full(&self.current.load_full(), durables))
    }

    fn record(&self, result: &Result<SyncOutcome>) {
        let Ok(mut health) = self.health.lock() else { return };
        match result {
            Ok(_) => {
                if let Some(since) = health.failing_since.take() {
                    tracing::info!(
                        backend = self.backend.name(),
                        outage = ?since.elapsed(),
                        "durable: store reachable again"
                    );
                }
                health.last_error = None;
                health.last_success = Some(Instant::now());
            }
            Err(err) => {
                if health.failing_since.is_none() {
                    health.failing_since = Some(Instant::now());
                    tracing::warn!(
                        backend = self.backend.name(),
                        error = %err,
                        "durable: sync failed; serving the last good snapshot until the store answers"
                    );
                } else {
                    tracing::debug!(backend = self.backend.name(), error = %err, "durable: sync still failing");
                }
                health.last_error = Some(err.clone());
            }
        }
    }

    pub(crate) fn status(&self) -> Status {
        let version = self.current.load().version;
        let hints = self.hints.health();
        let from_backup = self.restored.load(Ordering::Acquire);
        match self.health.lock() {
            Ok(health) => Status {
                version,
                last_success: health.last_success,
                last_error: health.last_error.clone(),
                failing_since: health.failing_since,
                hints,
                from_backup,
            },
            Err(_) => Status { version, last_success: None, last_error: None, failing_since: None, hints, from_backup },
        }
    }

    /// After a write that *created* `version` (never a version merely read from the store:
    /// a write that changed nothing passes no version here): makes the writer's own
    /// snapshot show it. When nothing else happened in between (the snapshot is at
    /// `version - 1`) the write is applied locally, since the store at `version` is the
    /// snapshot plus this write; otherwise one trip brings in everything up to at least
    /// `version`.
    ///
    /// If that trip fails, the snapshot stays as it was: applying the write on top of an
    /// older snapshot would show a state the store never had. The store is known to be at
    /// `version` or later, which the next `sync()` acts on whatever the hints say.
    pub(crate) async fn after_write(&self, version: Version, local: Vec<Incoming<V>>) {
        let mut ledger = self.ledger.lock().await;
        let current = self.current.load_full();
        if current.version >= version {
            return;
        }
        if current.version + 1 == version && !self.restored.load(Ordering::Acquire) {
            self.apply(&current, local, Vec::new(), version);
            return;
        }
        if self.trip_locked(&mut ledger, false).await.is_err() {
            self.hints.arrived_at(version);
        }
    }

    /// The entry a local write puts in the snapshot.
    pub(crate) fn local_entry(&self, bytes: &Bytes, value: V) -> Entry<V> {
        Entry { value: Arc::new(value), raw_hash: self.hash(bytes) }
    }

    /// Installs the first snapshot (the builder's initial load): always a full read, since
    /// a store may hold data written by writers that keep no version (durabledict's
    /// ZooKeeper writers).
    pub(crate) async fn initial_load(&self) -> Result<SyncOutcome> {
        let mut ledger = self.ledger.lock().await;
        self.trip_locked(&mut ledger, true).await
    }
}
