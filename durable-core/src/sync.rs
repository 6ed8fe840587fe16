//! The sync engine: how a dict's snapshot is brought up to date.
//!
//! - Fast path: when the hint listener is healthy and no hint arrived since the last trip,
//!   `sync()` returns without touching the store — two atomic loads (invariant 4).
//! - Otherwise one trip: `last_updated()`; if the version moved, `changes_since()` and an
//!   O(k) delta (invariant 5), or `durables()` and a full reload when the store cannot give
//!   a delta. Trips are serialized, and a caller whose request is covered by a trip that
//!   *started after it asked* takes that trip's result instead of making its own, so
//!   concurrent `sync()` calls coalesce into one store trip.
//! - The next snapshot is built aside and swapped in whole (invariant 6); a failed trip
//!   leaves the snapshot as it was (invariant 7); values are decoded once, here, and an
//!   undecodable value is reported with its key and skipped (invariant 8).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{Mutex, Notify, broadcast};
use tokio::task::AbortHandle;

use crate::backend::{Backend, Changes, Durables, KeyChange, Version};
use crate::backup::BackupError;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::events::{Change, Event};
use crate::snapshot::{Entry, SnapshotData};

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
pub(crate) struct Hints {
    state: AtomicU8,
    /// Hints that may mean "something changed", counted.
    received: AtomicU64,
    /// The value of `received` that the last successful trip covered.
    handled: AtomicU64,
    /// The highest version a hint announced: when it is above the snapshot's, the next trip
    /// skips the version check and asks for the changes at once (one round trip, not two).
    announced: AtomicU64,
    /// A hint said "something changed" without a version, or the listener resumed after a
    /// gap: the store may have changed without its version moving (writers that keep no
    /// version, such as durabledict's ZooKeeper writers), so the next trip asks for the
    /// changes even when the version is the same.
    unversioned: AtomicBool,
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
pub(crate) struct Inner<V, C> {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) codec: C,
    pub(crate) autosync: bool,
    pub(crate) current: ArcSwap<SnapshotData<V>>,
    pub(crate) hints: Hints,
    pub(crate) events: broadcast::Sender<Event<V>>,
    pub(crate) tasks: StdMutex<Vec<AbortHandle>>,
    hasher: std::hash::RandomState,
    trips_started: AtomicU64,
    /// The generation of the last trip that finished (mirrors the ledger without its lock).
    trips_finished: AtomicU64,
    ledger: Mutex<Ledger>,
    health: StdMutex<Health>,
    /// Counts snapshot swaps, and wakes the backup writer on each.
    pub(crate) swaps: AtomicU64,
    pub(crate) swapped: Arc<Notify>,
    /// The snapshot came from the backup file: the next trip is a full reload, and local
    /// writes are not applied on top of it.
    restored: AtomicBool,
}

impl<V, C> Drop for Inner<V, C> {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().map(std::mem::take).unwrap_or_default();
        for task in tasks {
            task.abort();
        }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Inner<V, C> {
    pub(crate) fn new(backend: Arc<dyn Backend>, codec: C, autosync: bool, capacity: usize) -> Self {
        Self {
            backend,
            codec,
            autosync,
            current: ArcSwap::from_pointee(SnapshotData::empty()),
            hints: Hints::default(),
            events: broadcast::channel(capacity.max(1)).0,
            tasks: StdMutex::new(Vec::new()),
            hasher: std::hash::RandomState::new(),
            trips_started: AtomicU64::new(0),
            trips_finished: AtomicU64::new(0),
            ledger: Mutex::new(Ledger { completed: 0, last: Ok(SyncOutcome::Unchanged) }),
            health: StdMutex::new(Health { last_success: None, last_error: None, failing_since: None }),
            swaps: AtomicU64::new(0),
            swapped: Arc::new(Notify::new()),
            restored: AtomicBool::new(false),
        }
    }

    /// Brings the snapshot up to date; see the module docs. With `force`, asks the store
    /// even when the hints are quiet.
    pub(crate) async fn sync(&self, force: bool) -> Result<SyncOutcome> {
        if !force && self.hints.quiet() {
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
            self.backend.last_updated().await?
        };
        if version == current.version && !unversioned {
            return Ok(SyncOutcome::Unchanged);
        }
        if version >= current.version {
            if let Changes::Delta { changes, version } = self.backend.changes_since(current.version).await? {
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
        let durables = self.backend.durables().await?;
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

    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// Decodes `bytes` for `key` unless they are the bytes `old` came from. `Ok(None)`: the
    /// value did not change.
    fn decode_changed(&self, key: &str, bytes: &[u8], old: Option<&Entry<V>>) -> Result<Option<Entry<V>>> {
        let raw_hash = self.hash(bytes);
        if old.is_some_and(|old| old.raw_hash == raw_hash) {
            return Ok(None);
        }
        match self.codec.decode(bytes) {
            Ok(value) => Ok(Some(Entry { value: Arc::new(value), raw_hash })),
            Err(source) => Err(Error::Decode { key: key.into(), source }),
        }
    }

    fn apply_delta(
        &self,
        current: &Arc<SnapshotData<V>>,
        mut changes: Vec<KeyChange>,
        version: Version,
    ) -> SyncOutcome {
        let keys = changes.len();
        // Events within one update come in the order the store wrote the keys (stable: the
        // keys of one batch keep the store's order).
        changes.sort_by_key(|change| change.version);
        let mut undecodable = Vec::new();
        let mut incoming = Vec::with_capacity(changes.len());
        for KeyChange { key, value, .. } in changes {
            let key: Arc<str> = key.into();
            let entry = match value {
                None => None,
                Some(bytes) => match self.decode_changed(&key, &bytes, current.entries.get(&key)) {
                    Ok(None) => continue,
                    Ok(Some(entry)) => Some(entry),
                    Err(err) => {
                        undecodable.push((key, err));
                        continue;
                    }
                },
            };
            incoming.push(Incoming { key, entry });
        }
        self.apply(current, incoming, undecodable, version);
        SyncOutcome::Delta { keys, version }
    }

    fn apply_full(&self, current: &Arc<SnapshotData<V>>, durables: Durables) -> SyncOutcome {
        let Durables { entries, version } = durables;
        let keys = entries.len();
        let mut next = imbl::HashMap::new();
        let mut undecodable = imbl::HashMap::new();
        let mut changes = Vec::new();
        let notify = self.events.receiver_count() > 0;
        for (key, bytes) in entries {
            let key: Arc<str> = key.into();
            let old = current.entries.get(&key);
            match self.decode_changed(&key, &bytes, old) {
                Ok(None) => {
                    if let Some(old) = old {
                        next.insert(key, old.clone());
                    }
                }
                Ok(Some(entry)) => {
                    if notify {
                        changes.push(change(&key, old, Some(&entry), version));
                    }
                    next.insert(key, entry);
                }
                Err(err) => {
                    self.report_undecodable(&key, &err);
                    if let Some(old) = old {
                        next.insert(key.clone(), old.clone());
                    }
                    undecodable.insert(key, err);
                }
            }
        }
        if notify {
            for (key, old) in current.entries.iter() {
                if !next.contains_key(key) {
                    changes.push(change(key, Some(old), None, version));
                }
            }
        }
        self.swap_in(SnapshotData { entries: next, undecodable, version });
        self.emit(changes);
        SyncOutcome::Full { keys, version }
    }

    /// Builds the next snapshot from `current` and `incoming` (O(k)), swaps it in at
    /// `version` and tells subscribers; every event carries `version`, the version of the
    /// first snapshot that shows it. The caller holds the ledger lock, so snapshots only
    /// move forward, and events come in version order.
    pub(crate) fn apply(
        &self,
        current: &Arc<SnapshotData<V>>,
        incoming: Vec<Incoming<V>>,
        bad: Vec<(Arc<str>, Error)>,
        version: Version,
    ) {
        let mut entries = current.entries.clone();
        let mut undecodable = current.undecodable.clone();
        let notify = self.events.receiver_count() > 0;
        let mut changes = Vec::new();
        for Incoming { key, entry } in incoming {
            undecodable.remove(&key);
            let old = match entry {
                Some(entry) => {
                    if notify {
                        changes.push(change(&key, entries.get(&key), Some(&entry), version));
                    }
                    entries.insert(key, entry)
                }
                None => {
                    let old = entries.remove(&key);
                    if notify && let Some(old) = &old {
                        changes.push(change(&key, Some(old), None, version));
                    }
                    old
                }
            };
            drop(old);
        }
        for (key, err) in bad {
            self.report_undecodable(&key, &err);
            undecodable.insert(key, err);
        }
        self.swap_in(SnapshotData { entries, undecodable, version });
        self.emit(changes);
    }

    fn swap_in(&self, data: SnapshotData<V>) {
        self.current.store(Arc::new(data));
        self.swaps.fetch_add(1, Ordering::AcqRel);
        self.swapped.notify_one();
    }

    fn report_undecodable(&self, key: &Arc<str>, err: &Error) {
        tracing::warn!(backend = self.backend.name(), key = %&**key, error = %err, "durable: skipping a value that cannot be decoded");
        let _ = self.events.send(Event::Undecodable { key: Arc::clone(key), error: err.clone() });
    }

    fn emit(&self, changes: Vec<Change<V>>) {
        for change in changes {
            // No receiver is not an error: nobody subscribed.
            let _ = self.events.send(Event::Changed(change));
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

    /// Installs a snapshot read from the backup file, after the first load failed with
    /// `error`. Every value must decode: a file this dict cannot read whole is not used.
    pub(crate) fn restore(
        &self,
        path: &std::path::Path,
        durables: Durables,
        error: Error,
    ) -> std::result::Result<(), BackupError> {
        let mut entries = imbl::HashMap::new();
        for (key, bytes) in durables.entries {
            let value = self.codec.decode(&bytes).map_err(|source| BackupError::Undecodable {
                path: path.to_owned(),
                key: key.clone(),
                reason: source.to_string(),
            })?;
            entries.insert(Arc::from(key), self.local_entry(&bytes, value));
        }
        self.restored.store(true, Ordering::Release);
        self.current.store(Arc::new(SnapshotData {
            entries,
            undecodable: imbl::HashMap::new(),
            version: durables.version,
        }));
        self.record(&Err(error));
        Ok(())
    }

    /// The current snapshot as a backup file's bytes, with the swap count it was taken at;
    /// `None` when a value cannot be encoded (then no backup is written).
    pub(crate) fn backup_bytes(&self) -> Option<(u64, Vec<u8>)> {
        let swaps = self.swaps.load(Ordering::Acquire);
        let data = self.current.load_full();
        let mut encoded = Vec::with_capacity(data.entries.len());
        for (key, entry) in data.entries.iter() {
            match self.codec.encode(&entry.value) {
                Ok(bytes) => encoded.push((&**key, bytes)),
                Err(err) => {
                    tracing::warn!(key = %&**key, error = %err, "durable: cannot encode a value for the backup file; not writing it");
                    return None;
                }
            }
        }
        Some((swaps, crate::backup::encode(data.version, encoded.into_iter())))
    }

    /// Installs the first snapshot (the builder's initial load): always a full read, since
    /// a store may hold data written by writers that keep no version (durabledict's
    /// ZooKeeper writers).
    pub(crate) async fn initial_load(&self) -> Result<SyncOutcome> {
        let mut ledger = self.ledger.lock().await;
        self.trip_locked(&mut ledger, true).await
    }
}

fn change<V>(key: &Arc<str>, old: Option<&Entry<V>>, new: Option<&Entry<V>>, version: Version) -> Change<V> {
    Change {
        key: Arc::clone(key),
        old: old.map(|entry| Arc::clone(&entry.value)),
        new: new.map(|entry| Arc::clone(&entry.value)),
        version,
    }
}
