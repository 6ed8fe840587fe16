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
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{Backend, Version};
use crate::batch::Batch;
use crate::builder::Builder;
use crate::codec::{Codec, Json};
use crate::engine::{Engine, Incoming, Status, SyncOutcome};
use crate::error::{Error, Result};
use crate::events::Subscription;
use crate::journal::{self, JournalItem, JournalRecord};
use crate::lease_handle::LeaseRequest;
use crate::snapshot::Snapshot;
use crate::write_batch::WriteBatch;

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
    pub(crate) engine: Arc<Engine<V, C>>,
}

impl<V, C> Clone for DurableDict<V, C> {
    fn clone(&self) -> Self {
        Self { engine: Arc::clone(&self.engine) }
    }
}

impl<V, C> fmt::Debug for DurableDict<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableDict")
            .field("backend", &self.engine.backend().describe())
            .field("version", &self.engine.version())
            .field("entries", &self.engine.len())
            .field("autosync", &self.engine.autosync())
            .finish()
    }
}

impl<V> DurableDict<V, Json> {
    /// Starts building a dict on `backend` with the [`Json`] codec; change it with
    /// [`Builder::codec`].
    pub fn builder(backend: Arc<dyn Backend>) -> Builder<V, Json> {
        Builder::new(backend)
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> DurableDict<V, C> {
    // ---- freshness -------------------------------------------------------------------

    /// Brings the snapshot up to date and says what it did. Costs nothing when the hint
    /// listener is healthy and nothing arrived; one cheap round trip otherwise; concurrent
    /// calls share one trip. On error the snapshot stays as it was and keeps being served.
    pub async fn sync(&self) -> Result<SyncOutcome> {
        self.engine.sync(false).await
    }

    /// Like [`DurableDict::sync`], but asks the store even when the hints say nothing
    /// changed (a safety check; background refresh does this every poll interval).
    pub async fn resync(&self) -> Result<SyncOutcome> {
        self.engine.sync(true).await
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
        self.engine.quiet().then(|| self.snapshot())
    }

    /// The current snapshot: one atomic load, and no write to memory other threads share.
    /// Every read on it sees one version.
    pub fn snapshot(&self) -> Snapshot<V> {
        Snapshot::borrowed(self.engine.load())
    }

    /// The snapshot's version.
    pub fn version(&self) -> Version {
        self.engine.version()
    }

    /// Health: last successful trip, last error, hint listener state, staleness.
    pub fn status(&self) -> Status {
        self.engine.status()
    }

    /// The backend this dict reads and writes.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        self.engine.backend()
    }

    // ---- reads (autosync-aware) ---------------------------------------------------------

    async fn read_view(&self) -> Snapshot<V> {
        if self.engine.autosync() {
            // A failure is recorded in `status()` and logged once per outage; the read
            // is served from the last good snapshot (invariant 7).
            let _ = self.engine.sync(false).await;
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

    pub(crate) fn validate_key(&self, key: &str) -> Result<()> {
        self.engine.store().validate_key(key)
    }

    pub(crate) async fn store_apply(&self, batch: Batch) -> Result<Option<Version>> {
        self.engine.store().apply(batch).await
    }

    pub(crate) async fn after_write(&self, version: Version, local: Vec<Incoming<V>>) {
        self.engine.after_write(version, local).await;
    }

    pub(crate) fn encode(&self, key: &str, value: &V) -> Result<Bytes> {
        self.engine.store().validate_key(key)?;
        let bytes = self.engine.codec().encode(value).map_err(|source| Error::Encode { key: key.into(), source })?;
        if let Some(max) = self.engine.store().max_value_size()
            && bytes.len() > max
        {
            return Err(Error::ValueTooLarge {
                key: key.into(),
                size: bytes.len(),
                max,
                backend: self.engine.backend().name(),
            });
        }
        Ok(bytes)
    }

    pub(crate) fn set_locally(&self, key: &str, bytes: &Bytes, value: V) -> Incoming<V> {
        Incoming { key: key.into(), entry: Some(self.engine.local_entry(bytes, value)) }
    }

    /// Stores `value` at `key`; returns the new version.
    pub async fn insert(&self, key: &str, value: V) -> Result<Version> {
        let bytes = self.encode(key, &value)?;
        let version = self.engine.store().persist(key, bytes.clone()).await?;
        let local = self.set_locally(key, &bytes, value);
        self.engine.after_write(version, vec![local]).await;
        Ok(version)
    }

    /// Stores every entry as one mutation: one version, and no reader anywhere sees part of
    /// it. A key given twice keeps its last value. An empty batch writes nothing and returns
    /// the snapshot's version. (A [`DurableDict::batch`] of inserts.)
    pub async fn insert_many<K, I>(&self, entries: I) -> Result<Version>
    where
        K: Into<String>,
        I: IntoIterator<Item = (K, V)>,
    {
        Ok(self.batch().insert_all(entries).apply().await?.unwrap_or_else(|| self.version()))
    }

    /// Asks the store for a lease on `key`: exclusive write access for a time, with a
    /// fencing token, enforced by the store (see [`Lease`](crate::Lease)). Await the request
    /// (or call [`LeaseRequest::acquire`]); by default it lasts
    /// [`DEFAULT_LEASE_TTL`](crate::lease::DEFAULT_LEASE_TTL) and waits as long as another
    /// holder has the key.
    pub fn lease(&self, key: &str) -> LeaseRequest<'_, V, C> {
        LeaseRequest::new(self, key)
    }

    /// Starts a batch of inserts and removes applied as one mutation, optionally guarded by
    /// the version the namespace must still be at; see [`WriteBatch`].
    pub fn batch(&self) -> WriteBatch<'_, V, C> {
        WriteBatch::new(self)
    }

    /// Removes `key`; returns the new version, or `None` when the key was absent (then
    /// nothing is written and the version does not move).
    pub async fn remove(&self, key: &str) -> Result<Option<Version>> {
        self.engine.store().validate_key(key)?;
        let version = self.engine.store().depersist(key).await?;
        if let Some(version) = version {
            let local = Incoming { key: key.into(), entry: None };
            self.engine.after_write(version, vec![local]).await;
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
        self.engine.store().validate_key(key)?;
        let Some((bytes, version)) = self.engine.store().pop(key).await? else {
            return Ok(None);
        };
        let local = Incoming { key: key.into(), entry: None };
        self.engine.after_write(version, vec![local]).await;
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
        let (found, inserted) = self.engine.store().setdefault(key, bytes.clone()).await?;
        let Some(version) = inserted else {
            return Ok((Arc::new(self.decode(key, &found)?), None));
        };
        let entry = self.engine.local_entry(&bytes, default);
        let value = Arc::clone(&entry.value);
        let local = Incoming { key: key.into(), entry: Some(entry) };
        self.engine.after_write(version, vec![local]).await;
        Ok((value, Some(version)))
    }

    /// Sets `key` to `new` (removes it when `new` is `None`) only if its stored value equals
    /// `expected` (`None`: only if the key is absent), comparing encoded bytes in one atomic
    /// step in the store. Returns the new version, or [`Error::Conflict`] having written
    /// nothing. `Ok(None)`, as from [`DurableDict::remove`], when the comparison held but
    /// there was nothing to write: `expected` and `new` both `None` and the key absent.
    pub async fn compare_and_swap(&self, key: &str, expected: Option<&V>, new: Option<V>) -> Result<Option<Version>> {
        self.engine.store().validate_key(key)?;
        let expected = expected.map(|value| self.encode(key, value)).transpose()?;
        let new_bytes = new.as_ref().map(|value| self.encode(key, value)).transpose()?;
        let Some(version) = self.engine.store().compare_and_swap(key, expected, new_bytes.clone()).await? else {
            return Ok(None);
        };
        let local = match (new, new_bytes) {
            (Some(value), Some(bytes)) => self.set_locally(key, &bytes, value),
            _ => Incoming { key: key.into(), entry: None },
        };
        self.engine.after_write(version, vec![local]).await;
        Ok(Some(version))
    }

    // ---- change events ----------------------------------------------------------------

    /// Every change to this process's snapshot, whoever wrote it, as it is swapped in.
    pub fn subscribe(&self) -> Subscription<V> {
        Subscription::new(self.engine.events(), None)
    }

    /// The changes to one key.
    pub fn watch_key(&self, key: &str) -> Subscription<V> {
        Subscription::new(self.engine.events(), Some(key.into()))
    }

    // ---- the change journal -------------------------------------------------------------

    /// The journal records of `key`, newest first, at most `limit`: who changed it, when,
    /// from which value to which (encoded; [`DurableDict::decode`] reads them). Empty when
    /// the store keeps no journal.
    pub async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.engine.store().history(key, limit).await
    }

    /// The journal after version `after` up to the store's version now: every record in
    /// version order, and a [`Gap`](crate::Gap) wherever versions have none (trimmed by
    /// retention, or written by a writer that keeps no journal).
    pub async fn journal(&self, after: Version) -> Result<Vec<JournalItem>> {
        journal::read_all(self.engine.store(), after).await
    }

    /// The journal after `after` as a stream that follows new writes as they are made
    /// (woken by the store's change hints, and polling every `poll`): what
    /// [`DurableDict::journal`] returns, then every later change, gaps included. Resume from
    /// the version of the last item handled.
    pub fn follow_journal(
        &self,
        after: Version,
        poll: std::time::Duration,
    ) -> impl futures::Stream<Item = Result<JournalItem>> + Send + 'static {
        journal::follow(Arc::clone(self.engine.backend()), after, poll)
    }

    /// Decodes an encoded value of `key` with this dict's codec (a journal record's `old`
    /// and `new`).
    pub fn decode(&self, key: &str, bytes: &[u8]) -> Result<V> {
        self.engine.codec().decode(bytes).map_err(|source| Error::Decode { key: key.into(), source })
    }
}
