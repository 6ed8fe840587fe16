//! `DurableDict<V, C>`: the dictionary a service uses. Reads come from an immutable
//! in-memory snapshot; writes go to the store and return only once the store acknowledged
//! them, with the writer's own snapshot already showing them (read-your-writes).
//!
//! Two ways to keep it fresh, as in durabledict:
//! - **autosync** (the default, durabledict's): every read first calls `sync()`. With a
//!   backend that pushes change hints this costs nothing until something changes; without
//!   hints it costs one cheap round trip per read.
//! - **manual** (`autosync(false)`): reads use the snapshot as it is, and the service calls
//!   [`DurableDict::sync`] when it wants fresh data — once per request in middleware.
//!
//! Either way `background_refresh(true)` adds a task that applies changes as soon as a hint
//! arrives (and polls as a safety net), so subscribers hear of changes without anyone
//! calling `sync()`.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::backend::{Backend, Hint, HintStream, Version};
use crate::codec::{Codec, Json};
use crate::error::{Error, Result};
use crate::events::Subscription;
use crate::snapshot::Snapshot;
use crate::sync::{HintHealth, Incoming, Inner, Status, SyncOutcome};

/// A dictionary kept in a durable store and served from an immutable in-memory snapshot.
/// Cheap to clone: clones share one snapshot, one listener and one sync.
///
/// ```
/// use std::sync::Arc;
/// use durable_core::{DurableDict, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durable_core::Result<()> {
/// let store = Arc::new(MemoryBackend::new("settings"));
/// let settings = DurableDict::<String>::builder(store).autosync(false).build().await?;
/// settings.insert("greeting", "hello".to_owned()).await?;
/// assert_eq!(settings.snapshot().get("greeting").map(String::as_str), Some("hello"));
/// # Ok(()) }
/// ```
pub struct DurableDict<V, C = Json> {
    inner: Arc<Inner<V, C>>,
}

impl<V, C> Clone for DurableDict<V, C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<V, C> fmt::Debug for DurableDict<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.inner.current.load();
        f.debug_struct("DurableDict")
            .field("backend", &self.inner.backend.describe())
            .field("version", &current.version)
            .field("entries", &current.entries.len())
            .field("autosync", &self.inner.autosync)
            .finish()
    }
}

impl<V> DurableDict<V, Json> {
    /// Starts building a dict on `backend` with the [`Json`] codec; change it with
    /// [`Builder::codec`].
    pub fn builder(backend: Arc<dyn Backend>) -> Builder<V, Json> {
        Builder {
            backend,
            codec: Json,
            autosync: true,
            hints: true,
            background_refresh: false,
            poll_interval: Duration::from_secs(5),
            event_capacity: 1024,
            backup_file: None,
            value: PhantomData,
        }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> DurableDict<V, C> {
    // ---- freshness -------------------------------------------------------------------

    /// Brings the snapshot up to date and says what it did. Costs nothing when the hint
    /// listener is healthy and nothing arrived; one cheap round trip otherwise; concurrent
    /// calls share one trip. On error the snapshot stays as it was and keeps being served.
    pub async fn sync(&self) -> Result<SyncOutcome> {
        self.inner.sync(false).await
    }

    /// Like [`DurableDict::sync`], but asks the store even when the hints say nothing
    /// changed (a safety check; background refresh does this every poll interval).
    pub async fn resync(&self) -> Result<SyncOutcome> {
        self.inner.sync(true).await
    }

    /// The snapshot `sync()` would leave, when the dict knows without asking the store that
    /// nothing changed (hints healthy, none pending); `None` when a `sync()` has work to do.
    ///
    /// No await and no I/O: for code that cannot await, and for middleware that takes this
    /// fast path and falls back to `sync().await` otherwise.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use durable_core::{DurableDict, MemoryBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> durable_core::Result<()> {
    /// let flags = DurableDict::<bool>::builder(Arc::new(MemoryBackend::new("flags"))).build().await?;
    /// let snapshot = match flags.fresh_snapshot() {
    ///     Some(snapshot) => snapshot,
    ///     None => {
    ///         flags.sync().await?;
    ///         flags.snapshot()
    ///     }
    /// };
    /// # let _ = snapshot; Ok(()) }
    /// ```
    pub fn fresh_snapshot(&self) -> Option<Snapshot<V>> {
        self.inner.hints.quiet().then(|| self.snapshot())
    }

    /// The current snapshot: one atomic load. Every read on it sees one version.
    pub fn snapshot(&self) -> Snapshot<V> {
        Snapshot { data: self.inner.current.load_full() }
    }

    /// The snapshot's version.
    pub fn version(&self) -> Version {
        self.inner.current.load().version
    }

    /// Health: last successful trip, last error, hint listener state, staleness.
    pub fn status(&self) -> Status {
        self.inner.status()
    }

    /// The backend this dict reads and writes.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    // ---- reads (autosync-aware) ---------------------------------------------------------

    async fn read_view(&self) -> Snapshot<V> {
        if self.inner.autosync {
            // A failure is recorded in `status()` and logged once per outage; the read
            // is served from the last good snapshot (invariant 7).
            let _ = self.inner.sync(false).await;
        }
        self.snapshot()
    }

    /// The value at `key` (after a sync when autosync is on).
    pub async fn get(&self, key: &str) -> Option<Arc<V>> {
        self.read_view().await.get_arc(key)
    }

    /// Whether `key` has a value.
    pub async fn contains_key(&self, key: &str) -> bool {
        self.read_view().await.contains_key(key)
    }

    /// How many keys have a value.
    pub async fn len(&self) -> usize {
        self.read_view().await.len()
    }

    /// Whether the dict is empty.
    pub async fn is_empty(&self) -> bool {
        self.read_view().await.is_empty()
    }

    /// Every key, in no particular order.
    pub async fn keys(&self) -> Vec<Arc<str>> {
        let view = self.read_view().await;
        view.data.entries.keys().cloned().collect()
    }

    // ---- writes ---------------------------------------------------------------------------

    fn encode(&self, key: &str, value: &V) -> Result<Bytes> {
        self.inner.backend.validate_key(key)?;
        let bytes = self.inner.codec.encode(value).map_err(|source| Error::Encode { key: key.into(), source })?;
        if let Some(max) = self.inner.backend.max_value_size()
            && bytes.len() > max
        {
            return Err(Error::ValueTooLarge {
                key: key.into(),
                size: bytes.len(),
                max,
                backend: self.inner.backend.name(),
            });
        }
        Ok(bytes)
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<V> {
        self.inner.codec.decode(bytes).map_err(|source| Error::Decode { key: key.into(), source })
    }

    fn set_locally(&self, key: &str, bytes: &Bytes, value: V) -> Incoming<V> {
        Incoming { key: key.into(), entry: Some(self.inner.local_entry(bytes, value)) }
    }

    /// Stores `value` at `key`; returns the new version.
    pub async fn insert(&self, key: &str, value: V) -> Result<Version> {
        let bytes = self.encode(key, &value)?;
        let version = self.inner.backend.persist(key, bytes.clone()).await?;
        let local = self.set_locally(key, &bytes, value);
        self.inner.after_write(version, vec![local]).await;
        Ok(version)
    }

    /// Stores every entry as one mutation: one version, and no reader anywhere sees part of
    /// it. A key given twice keeps its last value. An empty batch writes nothing and returns
    /// the snapshot's version.
    pub async fn insert_many<K, I>(&self, entries: I) -> Result<Version>
    where
        K: Into<String>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut batch: Vec<(String, V)> = Vec::new();
        for (key, value) in entries {
            let key = key.into();
            match batch.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => batch.push((key, value)),
            }
        }
        if batch.is_empty() {
            return Ok(self.version());
        }
        let mut encoded = Vec::with_capacity(batch.len());
        for (key, value) in &batch {
            encoded.push((key.clone(), self.encode(key, value)?));
        }
        let version = self.inner.backend.persist_many(encoded.clone()).await?;
        let local = batch
            .into_iter()
            .zip(encoded)
            .map(|((key, value), (_, bytes))| self.set_locally(&key, &bytes, value))
            .collect();
        self.inner.after_write(version, local).await;
        Ok(version)
    }

    /// Removes `key`; returns the new version, or `None` when the key was absent (then
    /// nothing is written and the version does not move).
    pub async fn remove(&self, key: &str) -> Result<Option<Version>> {
        self.inner.backend.validate_key(key)?;
        let version = self.inner.backend.depersist(key).await?;
        if let Some(version) = version {
            let local = Incoming { key: key.into(), entry: None };
            self.inner.after_write(version, vec![local]).await;
        }
        Ok(version)
    }

    /// Removes `key` and returns the value it had, atomically in the store; `None` when it
    /// was absent (then nothing is written). The value comes as an `Arc`, as from
    /// [`DurableDict::get`] and [`DurableDict::setdefault`]. For durabledict's
    /// `pop(key, default)`, use `.unwrap_or(default)`.
    pub async fn pop(&self, key: &str) -> Result<Option<Arc<V>>> {
        Ok(self.pop_versioned(key).await?.map(|(value, _)| value))
    }

    /// [`DurableDict::pop`], also returning the version of the removal.
    pub async fn pop_versioned(&self, key: &str) -> Result<Option<(Arc<V>, Version)>> {
        self.inner.backend.validate_key(key)?;
        let Some((bytes, version)) = self.inner.backend.pop(key).await? else {
            return Ok(None);
        };
        let local = Incoming { key: key.into(), entry: None };
        self.inner.after_write(version, vec![local]).await;
        // The key is gone from the store either way; a value that cannot be decoded is
        // reported as such rather than lost silently.
        Ok(Some((Arc::new(self.decode(key, &bytes)?), version)))
    }

    /// Returns the value at `key`, first storing `default` there if the key is absent — one
    /// atomic step in the store. The version moves only when it inserted.
    pub async fn setdefault(&self, key: &str, default: V) -> Result<Arc<V>> {
        Ok(self.setdefault_versioned(key, default).await?.0)
    }

    /// [`DurableDict::setdefault`], also returning the version when it inserted (`None`
    /// when the key was already there).
    pub async fn setdefault_versioned(&self, key: &str, default: V) -> Result<(Arc<V>, Option<Version>)> {
        let bytes = self.encode(key, &default)?;
        let (found, inserted) = self.inner.backend.setdefault(key, bytes.clone()).await?;
        let Some(version) = inserted else {
            return Ok((Arc::new(self.decode(key, &found)?), None));
        };
        let entry = self.inner.local_entry(&bytes, default);
        let value = Arc::clone(&entry.value);
        let local = Incoming { key: key.into(), entry: Some(entry) };
        self.inner.after_write(version, vec![local]).await;
        Ok((value, Some(version)))
    }

    /// Sets `key` to `new` (removes it when `new` is `None`) only if its stored value equals
    /// `expected` (`None`: only if the key is absent), comparing encoded bytes in one atomic
    /// step in the store. Returns the new version, or [`Error::Conflict`] having written
    /// nothing. `Ok(None)`, as from [`DurableDict::remove`], when the comparison held but
    /// there was nothing to write: `expected` and `new` both `None` and the key absent.
    pub async fn compare_and_swap(&self, key: &str, expected: Option<&V>, new: Option<V>) -> Result<Option<Version>> {
        self.inner.backend.validate_key(key)?;
        let expected = expected.map(|value| self.encode(key, value)).transpose()?;
        let new_bytes = new.as_ref().map(|value| self.encode(key, value)).transpose()?;
        let Some(version) = self.inner.backend.compare_and_swap(key, expected, new_bytes.clone()).await? else {
            return Ok(None);
        };
        let local = match (new, new_bytes) {
            (Some(value), Some(bytes)) => self.set_locally(key, &bytes, value),
            _ => Incoming { key: key.into(), entry: None },
        };
        self.inner.after_write(version, vec![local]).await;
        Ok(Some(version))
    }

    // ---- change events ----------------------------------------------------------------

    /// Every change to this process's snapshot, whoever wrote it, as it is swapped in.
    pub fn subscribe(&self) -> Subscription<V> {
        Subscription::new(self.inner.events.subscribe(), None)
    }

    /// The changes to one key.
    pub fn watch_key(&self, key: &str) -> Subscription<V> {
        Subscription::new(self.inner.events.subscribe(), Some(key.into()))
    }
}

/// Builds a [`DurableDict`]: `DurableDict::<V>::builder(backend)...build().await`.
pub struct Builder<V, C> {
    backend: Arc<dyn Backend>,
    codec: C,
    autosync: bool,
    hints: bool,
    background_refresh: bool,
    poll_interval: Duration,
    event_capacity: usize,
    backup_file: Option<PathBuf>,
    value: PhantomData<fn() -> V>,
}

impl<V: Send + Sync + 'static, C: Codec<V>> Builder<V, C> {
    /// The codec values are stored with (default [`Json`]).
    pub fn codec<C2: Codec<V>>(self, codec: C2) -> Builder<V, C2> {
        Builder {
            backend: self.backend,
            codec,
            autosync: self.autosync,
            hints: self.hints,
            background_refresh: self.background_refresh,
            poll_interval: self.poll_interval,
            event_capacity: self.event_capacity,
            backup_file: self.backup_file,
            value: PhantomData,
        }
    }

    /// Sync before every read (default `true`, as in durabledict). Turn off to read the
    /// snapshot as it is and call `sync()` yourself, e.g. once per request.
    pub fn autosync(mut self, on: bool) -> Self {
        self.autosync = on;
        self
    }

    /// Listen to the backend's change hints (default `true`), which makes `sync()` free
    /// until something changes. Off: every `sync()` asks the store.
    pub fn hints(mut self, on: bool) -> Self {
        self.hints = on;
        self
    }

    /// Apply changes in a background task as soon as a hint arrives, and check the store
    /// every poll interval whatever the hints say (default `false`).
    pub fn background_refresh(mut self, on: bool) -> Self {
        self.background_refresh = on;
        self
    }

    /// How often background refresh checks the store even without hints (default 5 s). It
    /// is the only source of freshness for backends that push no hints.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many change events a subscriber may fall behind before it is told it lagged
    /// (default 1024).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Keeps the last snapshot in a local file (default: none), so the service can start
    /// when the store cannot be reached: see the [`BackupError`](crate::BackupError) module
    /// docs for the format.
    ///
    /// - After every change to the snapshot, a background task writes it to `path`
    ///   atomically and durably (a temporary file beside it, synced, renamed over `path`, then
    ///   the directory synced: a crash leaves the old whole file or the new one).
    /// - When the first load fails at [`Builder::build`], the dict starts from the file
    ///   instead, with [`Status::from_backup`](crate::Status::from_backup) set and the
    ///   failure in `status()`; it retries the store on its own (50 ms, doubling to 250 ms)
    ///   and replaces the whole snapshot with a full reload once the store answers.
    /// - A missing, truncated, corrupt or undecodable file is ignored with a warning, and
    ///   `build()` fails with the store's error as it would without a backup.
    ///
    /// Give each dict (each namespace) its own file.
    pub fn backup_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.backup_file = Some(path.into());
        self
    }

    /// Subscribes to hints (when on), loads the whole namespace, and starts the background
    /// task. Fails when the first load fails — unless a [backup file](Builder::backup_file)
    /// can stand in: a dict never starts out empty by accident.
    pub async fn build(self) -> Result<DurableDict<V, C>> {
        let inner = Arc::new(Inner::new(self.backend, self.codec, self.autosync, self.event_capacity));
        // Subscribe before the first load, so no change falls between the two.
        let (stream, supported) = if self.hints {
            match inner.backend.watch().await {
                Ok(Some(stream)) => (Some(stream), true),
                Ok(None) => (None, false),
                Err(err) => {
                    tracing::warn!(backend = inner.backend.name(), error = %err, "durable: cannot subscribe to change hints yet; polling until it can");
                    (None, true)
                }
            }
        } else {
            (None, false)
        };
        if stream.is_some() {
            inner.hints.set_health(HintHealth::Healthy);
        } else if supported {
            inner.hints.set_health(HintHealth::Down);
        }
        let restored = match inner.initial_load().await {
            Ok(_) => false,
            Err(err) => {
                // Only an unreachable store: a refused namespace or a broken schema is not
                // papered over with old data.
                let Some(path) = self.backup_file.as_ref().filter(|_| err.is_unavailable()) else { return Err(err) };
                let restoring = match crate::backup::read(path.clone()).await {
                    Ok(durables) => inner.restore(path, durables, err.clone()),
                    Err(bad) => Err(bad),
                };
                if let Err(bad) = restoring {
                    tracing::warn!(error = %bad, "durable: the store is unreachable and the backup file cannot be used");
                    return Err(err);
                }
                tracing::warn!(
                    backend = inner.backend.name(),
                    error = %err,
                    path = %path.display(),
                    version = inner.current.load().version,
                    "durable: the store is unreachable; serving the backup file until it answers"
                );
                true
            }
        };
        let mut tasks = Vec::new();
        if supported || self.background_refresh || restored {
            let listener = Listener {
                inner: Arc::downgrade(&inner),
                backend: Arc::clone(&inner.backend),
                refresh: self.background_refresh,
                poll_interval: self.poll_interval,
                supported,
            };
            tasks.push(tokio::spawn(listener.run(stream, restored)).abort_handle());
        }
        if let Some(path) = self.backup_file {
            // The file just read needs no rewrite; a fresh load does.
            let written = restored.then(|| inner.swaps.load(std::sync::atomic::Ordering::Acquire));
            let task = keep_backup(Arc::downgrade(&inner), Arc::clone(&inner.swapped), path, written);
            tasks.push(tokio::spawn(task).abort_handle());
        }
        if let Ok(mut registered) = inner.tasks.lock() {
            registered.extend(tasks);
        }
        Ok(DurableDict { inner })
    }
}

/// The background task: follows change hints (re-subscribing when the stream ends) and,
/// with background refresh, syncs on each hint and every poll interval. After a
/// reconnection it syncs whether or not background refresh is on, and a trip of its own that
/// failed is retried soon (50 ms, doubling to 250 ms), so a dict recovers from an outage on
/// its own within a fraction of a second of the store coming back. It holds the dict weakly
/// and is aborted when the last clone of the dict is dropped.
struct Listener<V, C> {
    inner: Weak<Inner<V, C>>,
    backend: Arc<dyn Backend>,
    refresh: bool,
    poll_interval: Duration,
    supported: bool,
}

/// The first delay before re-subscribing or retrying a failed trip; it doubles up to
/// [`RETRY_MAX`] while the store stays away.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// The longest delay between two attempts: recovery within about a quarter second of the
/// store coming back, at a cost of four connection attempts a second per dict while it is
/// away.
const RETRY_MAX: Duration = Duration::from_millis(250);

/// What a hint asks of the listener, in rising order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Wants {
    Nothing,
    /// A change this snapshot may lack: synced now with background refresh.
    Change,
    /// Hints flow again after a gap: always synced now.
    Catchup,
}

/// When to try again: exponential, capped, starting over after a success.
struct Retry {
    delay: Duration,
    at: Option<tokio::time::Instant>,
}

impl Retry {
    fn new() -> Self {
        Self { delay: RETRY_MIN, at: None }
    }

    fn failed(&mut self) {
        self.at = Some(tokio::time::Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(RETRY_MAX);
    }

    fn succeeded(&mut self) {
        *self = Self::new();
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Listener<V, C> {
    /// Runs until the dict is dropped; with `catch_up`, the store is retried from the start
    /// (the dict started from its backup file).
    async fn run(mut self, mut stream: Option<HintStream>, catch_up: bool) {
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
        let mut interrupted_poll = tokio::time::interval(RETRY_MAX);
        interrupted_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let interrupted = self.refresh
                && stream.is_some()
                && self.inner.upgrade().is_some_and(|inner| inner.hints.health() == HintHealth::Down);
            tokio::select! {
                _ = interrupted_poll.tick(), if interrupted => {
                    let Some(inner) = self.inner.upgrade() else { return };
                    Self::sync(&inner, &mut trip, true).await;
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
                            inner.hints.set_health(HintHealth::Down);
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
                    match self.backend.watch().await {
                        Ok(Some(new_stream)) => {
                            stream = Some(new_stream);
                            resubscribe.succeeded();
                            // Changes may have happened while nobody listened.
                            inner.hints.arrived_unversioned();
                            inner.hints.set_health(HintHealth::Healthy);
                            Self::sync(&inner, &mut trip, false).await;
                        }
                        Ok(None) => {
                            self.supported = false;
                            inner.hints.set_health(HintHealth::Unavailable);
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
    async fn sync(inner: &Inner<V, C>, trip: &mut Retry, force: bool) {
        match inner.sync(force).await {
            Ok(_) => trip.succeeded(),
            Err(_) => trip.failed(),
        }
    }

    /// Records a hint and says what it asks for.
    fn handle(&self, inner: &Inner<V, C>, hint: Hint) -> Wants {
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
                inner.hints.set_health(HintHealth::Down);
                Wants::Nothing
            }
            Hint::Resumed => {
                inner.hints.arrived_unversioned();
                inner.hints.set_health(HintHealth::Healthy);
                Wants::Catchup
            }
        }
    }
}

/// The backup writer: after every snapshot swap, writes the snapshot to `path` (swaps that
/// arrive during a write are folded into the next one). Holds the dict weakly.
async fn keep_backup<V: Send + Sync + 'static, C: Codec<V>>(
    inner: Weak<Inner<V, C>>,
    swapped: Arc<tokio::sync::Notify>,
    path: PathBuf,
    mut written: Option<u64>,
) {
    let mut failing = false;
    loop {
        let taken = {
            let Some(inner) = inner.upgrade() else { return };
            if written == Some(inner.swaps.load(std::sync::atomic::Ordering::Acquire)) {
                None
            } else {
                inner.backup_bytes()
            }
        };
        if let Some((swaps, bytes)) = taken {
            match crate::backup::write(path.clone(), bytes).await {
                Ok(()) => {
                    written = Some(swaps);
                    failing = false;
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(path = %path.display(), error = %err, "durable: cannot write the backup file; will retry on the next change");
                }
                Err(_) => {}
            }
        }
        swapped.notified().await;
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
