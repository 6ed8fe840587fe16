//! `ObjectBackend`: the commit protocol over an `ObjectStore` (see the crate docs).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::journal::{newest_first_for_key, whole_versions};
use durable_core::lease::{self, LeaseInfo, StoredLease, Token};
use durable_core::{
    Backend, Batch, Changes, Durables, Error, HintStream, JournalConfig, JournalPage, JournalRecord, LeaseAnswer,
    LeaseOp, Op, Result, Version,
};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::{Mutex, MutexGuard};

use crate::format::{
    Change, Checkpoint, Commit, LeaseData, LeaseStep, LeaseTable, Val, content_hash, parse_version, version_name,
};
use crate::replica::{ClockReading, Entry, Outcome, Replica, resolve};
use crate::store::{self, Secrets};

/// The operation timeout unless the builder says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Values larger than this are stored as objects of their own.
pub const DEFAULT_INLINE_LIMIT: usize = 256 * 1024;
/// The largest value a write accepts unless the builder says otherwise.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 * 1024 * 1024;
/// A checkpoint is written after every this many versions.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 256;
/// Log objects below the older kept checkpoint are removed once they are this old.
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(3600);
/// The store is checked in full (checkpoints listed, head confirmed) at least this often.
pub const DEFAULT_VERIFY_EVERY: Duration = Duration::from_secs(300);
/// How many versions a backend keeps in memory to answer deltas from.
pub const DEFAULT_CHANGE_LOG: usize = 10_000;
/// Log objects a catch-up reads one by one before it lists the rest.
const SEQUENTIAL_READS: usize = 3;
/// A reading of the store's clock older than this is taken anew before a lease decision.
const CLOCK_READING_AGE: Duration = Duration::from_secs(60);
/// Requests in flight at once when reading many objects.
const FETCH_CONCURRENCY: usize = 16;

/// How an [`ObjectBackend`] behaves; see [`ObjectBackendBuilder`].
#[derive(Debug, Clone)]
struct Config {
    timeout: Duration,
    inline_limit: usize,
    max_value_size: usize,
    checkpoint_every: u64,
    log_retention: Duration,
    verify_every: Duration,
    change_log: usize,
    journal: JournalConfig,
}

/// Builds an [`ObjectBackend`]: `ObjectBackend::builder(url)...connect(namespace)`.
#[derive(Debug, Clone)]
pub struct ObjectBackendBuilder {
    url: String,
    config: Config,
}

impl ObjectBackendBuilder {
    /// How long one operation (all its requests and retries) may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// How this handle keeps the change journal (default: on; see [`JournalConfig`]).
    pub fn journal(mut self, journal: JournalConfig) -> Self {
        self.config.journal = journal;
        self
    }

    /// Values larger than `bytes` are written as objects of their own (default 256 KiB).
    pub fn inline_limit(mut self, bytes: usize) -> Self {
        self.config.inline_limit = bytes;
        self
    }

    /// The largest value a write accepts (default 64 MiB); larger ones get
    /// [`Error::ValueTooLarge`] before any I/O.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.config.max_value_size = bytes;
        self
    }

    /// Writes a checkpoint of the whole namespace after every `versions` versions (default
    /// 256, at least 1).
    pub fn checkpoint_every(mut self, versions: u64) -> Self {
        self.config.checkpoint_every = versions.max(1);
        self
    }

    /// How old a log object below the older kept checkpoint must be before it is removed
    /// (default 1 h; at least twice the check interval, which it raises if needed). No
    /// write may take longer than this (each is bounded by the timeout).
    pub fn log_retention(mut self, age: Duration) -> Self {
        self.config.log_retention = age;
        self
    }

    /// How often the store is checked in full, so that a log trimmed past this reader or a
    /// namespace deleted and made anew is noticed (default 5 min).
    pub fn verify_every(mut self, every: Duration) -> Self {
        self.config.verify_every = every;
        self
    }

    /// How many versions this handle remembers to answer deltas from (default 10,000);
    /// older versions get [`Changes::TooOld`] and a full reload (from memory).
    pub fn change_log(mut self, versions: usize) -> Self {
        self.config.change_log = versions.max(1);
        self
    }

    /// Opens the store and loads `namespace` (its newest checkpoint and the log after it).
    pub async fn connect(self, namespace: &str) -> Result<ObjectBackend> {
        validate_namespace(namespace)?;
        let mut config = self.config;
        config.log_retention = config.log_retention.max(config.verify_every * 2);
        let location = store::open(&self.url, config.timeout)?;
        let root = location.prefix.clone().join(namespace);
        let inner = Inner {
            store: location.store,
            root: root.clone(),
            log_dir: root.clone().join("log"),
            checkpoint_dir: root.clone().join("checkpoint"),
            clock_path: root.clone().join("clock"),
            blob_dir: root.join("blobs"),
            kind: location.kind,
            resolution_ms: if location.kind == "localfs" { 1 } else { 1000 },
            secrets: location.secrets,
            probe: location.probe,
            shown: format!("{} namespace {namespace}", store::redact(&self.url)),
            replica: Mutex::new(Replica::new(config.change_log)),
            blobs_collected: std::sync::Mutex::new(None),
            config,
        };
        let backend = ObjectBackend { inner: Arc::new(inner) };
        backend.bounded("connect", async { backend.inner.replica().await.map(drop) }).await?;
        Ok(backend)
    }
}

/// Namespaces are one path segment: the core's rule, and no `/`.
fn validate_namespace(namespace: &str) -> Result<()> {
    durable_core::validate_namespace(namespace, 255)?;
    if namespace.contains('/') || namespace == "." || namespace == ".." {
        return Err(Error::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason: "namespaces are one path segment: no `/`, `.` or `..`".into(),
        });
    }
    Ok(())
}

/// A namespace kept in an object store (S3, Azure Blob, a local directory) as a log of
/// create-only commit objects with periodic checkpoints. See the crate docs for the layout
/// and the protocol.
#[derive(Clone)]
pub struct ObjectBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/<namespace>`: everything of the namespace is under it.
    root: Path,
    log_dir: Path,
    checkpoint_dir: Path,
    blob_dir: Path,
    /// An object overwritten to read the store's clock (for leases).
    clock_path: Path,
    kind: &'static str,
    /// The resolution of the store's object times (S3 and Azure give whole seconds), to
    /// which every reader floors them.
    resolution_ms: i64,
    secrets: Secrets,
    probe: durable_core::RefusalProbe,
    shown: String,
    config: Config,
    replica: Mutex<Replica>,
    /// When this handle last collected unreferenced large values (at most every half
    /// retention).
    blobs_collected: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend").field("at", &self.inner.shown).finish()
    }
}

impl ObjectBackend {
    /// A builder for the store at `url`: `s3://bucket/prefix`, `az://container/prefix`
    /// (or `azure://`), `file:///dir`; see the crate docs for the options a URL takes.
    pub fn builder(url: &str) -> ObjectBackendBuilder {
        ObjectBackendBuilder {
            url: url.to_owned(),
            config: Config {
                timeout: DEFAULT_TIMEOUT,
                inline_limit: DEFAULT_INLINE_LIMIT,
                max_value_size: DEFAULT_MAX_VALUE_SIZE,
                checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
                log_retention: DEFAULT_LOG_RETENTION,
                verify_every: DEFAULT_VERIFY_EVERY,
                change_log: DEFAULT_CHANGE_LOG,
                journal: JournalConfig::default(),
            },
        }
    }

    /// Opens `namespace` at `url` with the defaults.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::builder(url).connect(namespace).await
    }

    /// The log object of `version` (for tests and tools that inspect the layout).
    pub fn log_object(&self, version: Version) -> String {
        self.inner.log_path(version).to_string()
    }

    /// Writes a checkpoint of the namespace as this handle sees it now, and removes what it
    /// makes unneeded (as writes do every `checkpoint_every` versions).
    pub async fn checkpoint(&self) -> Result<Version> {
        let inner = &self.inner;
        self.bounded("checkpoint", async {
            let replica = inner.replica().await?;
            let (version, trim, entries) = (replica.version, replica.trim_through, replica.entries.clone());
            let table = replica.lease_table();
            drop(replica);
            inner.write_checkpoint(version, trim, &entries, table).await?;
            inner.prune().await?;
            Ok(version)
        })
        .await
    }

    async fn bounded<T>(&self, operation: &'static str, work: impl Future<Output = Result<T>>) -> Result<T> {
        // Within the timeout, and given up as soon as the server refuses connections.
        self.inner.probe.bound(operation, self.inner.config.timeout, work).await
    }

    fn check_size(&self, key: &str, value: &Bytes) -> Result<()> {
        let max = self.inner.config.max_value_size;
        if value.len() > max {
            return Err(Error::ValueTooLarge { key: key.into(), size: value.len(), max, backend: self.inner.kind });
        }
        Ok(())
    }

    /// Commits what `plan` decides against the namespace as it is now; retries when
    /// another writer took the version first (deciding again against what it wrote). `done`
    /// turns the committed version and what its replay decided into the answer.
    async fn commit<A: Send>(
        &self,
        operation: &'static str,
        reason: Option<&str>,
        leased: &[&str],
        mut plan: impl FnMut(&Replica) -> Result<Step<A>> + Send,
        done: impl FnOnce(Version, Outcome) -> Result<A> + Send,
    ) -> Result<A> {
        let inner = &self.inner;
        self.bounded(operation, async {
            // Optimistic: decide against the replica as it is and create the next log object;
            // the create fails if the replica was behind, and then it catches up and decides
            // again. An answer that writes nothing (a refusal, a no-op) is only given against
            // a replica just brought up to date. (The full check still runs when due.)
            let mut replica = inner.replica.lock().await;
            let mut fresh = false;
            if !replica.loaded || inner.verify_due(&replica) {
                inner.catch_up(&mut replica).await?;
                fresh = true;
            }
            loop {
                // Where a lease bears on the answer, a recent reading of the store's clock
                // lets a certain refusal be given without writing.
                if leased.iter().any(|key| replica.leases.contains_key(*key))
                    && replica.clock.is_none_or(|clock| clock.answered.elapsed() > CLOCK_READING_AGE)
                {
                    inner.read_clock(&mut replica).await?;
                }
                let (edits, lease) = match plan(&replica) {
                    Ok(Step::Write { edits, lease }) => (edits, lease),
                    Ok(Step::Answer(answer)) if fresh => return Ok(answer),
                    Err(err) if fresh => return Err(err),
                    _ => {
                        inner.catch_up(&mut replica).await?;
                        fresh = true;
                        continue;
                    }
                };
                if let Some((version, outcome)) = inner.try_commit(&mut replica, reason, edits, lease).await? {
                    let checkpoint = version % inner.config.checkpoint_every == 0;
                    let state =
                        checkpoint.then(|| (replica.trim_through, replica.entries.clone(), replica.lease_table()));
                    drop(replica);
                    if let Some((trim, entries, table)) = state {
                        let inner = Arc::clone(&self.inner);
                        tokio::spawn(async move {
                            let done = match inner.write_checkpoint(version, trim, &entries, table).await {
                                Ok(()) => inner.prune().await,
                                Err(err) => Err(err),
                            };
                            if let Err(err) = done {
                                tracing::warn!(at = %inner.shown, version, %err, "checkpoint or clean-up failed; the next one retries");
                            }
                        });
                    }
                    return done(version, outcome);
                }
                inner.catch_up(&mut replica).await?;
                fresh = true;
            }
        })
        .await
    }

    /// A write of what `plan` decides, touching `touched` (each key with the token the
    /// write presents for it, if any). The leases are checked first: a write a live lease
    /// certainly refuses is refused without writing; one whose lease may have run out is
    /// committed and decided by its replay, at the store's time of the commit.
    async fn write(
        &self,
        operation: &'static str,
        reason: Option<&str>,
        touched: &[(String, Option<Token>)],
        mut plan: impl FnMut(&Replica) -> Result<Vec<(String, Option<Bytes>)>> + Send,
    ) -> Result<Option<Version>> {
        let resolution = self.inner.resolution_ms;
        let keys: Vec<&str> = touched.iter().map(|(key, _)| key.as_str()).collect();
        self.commit(
            operation,
            reason,
            &keys,
            |replica| write_step(replica, touched, &mut plan),
            |version, outcome| match outcome {
                Outcome::Applied => Ok(Some(version)),
                Outcome::Refused(err) => Err(soften(err, resolution)),
                Outcome::Lease(_) => Err(self.inner.store_error("a write was replayed as a lease operation")),
            },
        )
        .await
    }
}

/// What a writer decided against the replica.
enum Step<A> {
    /// Commit these edits and lease data.
    Write { edits: Vec<(String, Option<Bytes>)>, lease: Option<LeaseData> },
    /// Answer without writing.
    Answer(A),
}

/// The lease check and plan of one write (see [`ObjectBackend::write`]).
fn write_step(
    replica: &Replica,
    touched: &[(String, Option<Token>)],
    plan: &mut impl FnMut(&Replica) -> Result<Vec<(String, Option<Bytes>)>>,
) -> Result<Step<Option<Version>>> {
    let bounds = replica.clock.map(|clock| clock.bounds());
    // Keys whose lease may be live and whose token the write does not carry.
    let mut unfenced = Vec::new();
    for (key, fence) in touched {
        let Some(stored) = replica.leases.get(key) else {
            match fence {
                Some(token) => return Err(Error::LeaseLost { key: key.as_str().into(), token: *token }),
                None => continue,
            }
        };
        let live = bounds.is_some_and(|(_, hi)| hi < stored.expires_ms);
        let over = bounds.is_some_and(|(lo, _)| lo >= stored.expires_ms);
        match fence {
            Some(token) if *token != stored.token || over => {
                return Err(Error::LeaseLost { key: key.as_str().into(), token: *token });
            }
            None if live => return Err(held_now(key, stored, bounds)),
            None if !over => unfenced.push((key, stored)),
            _ => {}
        }
    }
    let edits: Vec<(String, Option<Bytes>)> = plan(replica)?
        .into_iter()
        // A delete of an absent key changes nothing (unless a lease must judge it).
        .filter(|(key, new)| new.is_some() || replica.entries.contains_key(key) || replica.leases.contains_key(key))
        .collect();
    if edits.is_empty() {
        // Nothing to write, so nothing for the store to judge: a lease that may be live
        // refuses it all the same, as on every other store.
        if let Some((key, stored)) = unfenced.first() {
            return Err(held_now(key, stored, bounds));
        }
        return Ok(Step::Answer(None));
    }
    let fences: Vec<(String, Token)> =
        touched.iter().filter_map(|(key, fence)| fence.map(|t| (key.clone(), t))).collect();
    Ok(Step::Write { edits, lease: (!fences.is_empty()).then_some(LeaseData::Fences(fences)) })
}

/// [`Error::Leased`] for a lease as it stands now by the estimate of the store's clock.
/// (Without a reading of the store's clock, this machine's clock stands in.)
fn held_now(key: &str, stored: &StoredLease, bounds: Option<(i64, i64)>) -> Error {
    let now = bounds.map_or_else(|| epoch_ms(SystemTime::now()), |(_, hi)| hi);
    lease::leased(key, &stored.info(now))
}

/// Milliseconds since the Unix epoch.
fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

/// A lease as a client should count on it: the store's time of a decision is known only to
/// its resolution, so what a lease has left is reported that much shorter.
fn shortened(mut info: LeaseInfo, resolution_ms: i64) -> LeaseInfo {
    info.remaining = info.remaining.saturating_sub(Duration::from_millis(resolution_ms.unsigned_abs()));
    info
}

/// [`shortened`] for the lease an error names.
fn soften(err: Error, resolution_ms: i64) -> Error {
    match err {
        Error::Leased { key, holder, token, expires_at, remaining } => Error::Leased {
            key,
            holder,
            token,
            expires_at,
            remaining: remaining.saturating_sub(Duration::from_millis(resolution_ms.unsigned_abs())),
        },
        other => other,
    }
}

impl Inner {
    fn log_path(&self, version: Version) -> Path {
        self.log_dir.clone().join(version_name(version))
    }

    fn checkpoint_path(&self, version: Version) -> Path {
        self.checkpoint_dir.clone().join(version_name(version))
    }

    fn blob_path(&self, name: &str) -> Path {
        self.blob_dir.clone().join(name)
    }

    fn map(&self, err: object_store::Error) -> Error {
        store::map(self.kind, &self.secrets, err)
    }

    fn store_error(&self, message: impl Into<String>) -> Error {
        Error::store(self.kind, message)
    }

    /// The replica, locked and brought up to date with the store.
    async fn replica(&self) -> Result<MutexGuard<'_, Replica>> {
        let mut replica = self.replica.lock().await;
        self.catch_up(&mut replica).await?;
        Ok(replica)
    }

    async fn get(&self, path: &Path) -> Result<Option<(Bytes, ObjectMeta)>> {
        match self.store.get(path).await {
            Ok(got) => {
                let meta = got.meta.clone();
                let bytes = got.bytes().await.map_err(|err| self.map(err))?;
                Ok(Some((bytes, meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(self.map(err)),
        }
    }

    /// Creates `path` unless it exists: `true` when this call created it.
    async fn create(&self, path: &Path, bytes: Vec<u8>) -> Result<bool> {
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(path, PutPayload::from(bytes), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(err) => Err(self.map(err)),
        }
    }

    /// The versions of the objects under `dir` after `after` (all when `None`), in order.
    async fn list(&self, dir: &Path, after: Option<Version>) -> Result<Vec<(Version, ObjectMeta)>> {
        let listing = match after {
            Some(after) => self.store.list_with_offset(Some(dir), &dir.clone().join(version_name(after))),
            None => self.store.list(Some(dir)),
        };
        let metas: Vec<ObjectMeta> = listing.try_collect().await.map_err(|err| self.map(err))?;
        let mut versions: Vec<(Version, ObjectMeta)> = metas
            .into_iter()
            .filter_map(|meta| meta.location.filename().and_then(parse_version).map(|version| (version, meta)))
            .filter(|(version, _)| after.is_none_or(|after| *version > after))
            .collect();
        versions.sort_by_key(|(version, _)| *version);
        Ok(versions)
    }

    /// Reads commits `versions` (in order); a missing one ends the list there. Unreadable
    /// commits are reported and come back as `None`.
    async fn read_commits(&self, versions: Vec<Version>) -> Result<Vec<(Version, Option<Commit>, SystemTime)>> {
        let fetched: Vec<(Version, Option<(Bytes, ObjectMeta)>)> = futures::stream::iter(versions)
            .map(|version| self.get_version(version))
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut commits = Vec::with_capacity(fetched.len());
        for (version, got) in fetched {
            let Some((bytes, meta)) = got else { break };
            commits.push((version, self.decode_commit(version, &bytes), meta.last_modified.into()));
        }
        Ok(commits)
    }

    async fn get_version(&self, version: Version) -> Result<(Version, Option<(Bytes, ObjectMeta)>)> {
        Ok((version, self.get(&self.log_path(version)).await?))
    }

    fn decode_commit(&self, version: Version, bytes: &[u8]) -> Option<Commit> {
        match Commit::decode(bytes, version) {
            Ok(commit) => Some(commit),
            Err(refused) => {
                tracing::error!(at = %self.shown, version, %refused, "log object unreadable: skipped, its version changes nothing");
                None
            }
        }
    }

    /// Fetches the large values `vals` refer to, checking each against its hash; by object
    /// name.
    async fn fetch_blobs<'v>(&self, vals: impl IntoIterator<Item = &'v Val>) -> Result<HashMap<String, Bytes>> {
        let objects: HashMap<String, String> =
            vals.into_iter().filter_map(|val| val.object().map(|(name, hash)| (name, hash.to_owned()))).collect();
        futures::stream::iter(objects)
            .map(|(name, hash)| self.fetch_blob(name, hash))
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn fetch_blob(&self, name: String, hash: String) -> Result<(String, Bytes)> {
        let Some((bytes, _)) = self.get(&self.blob_path(&name)).await? else {
            return Err(self.store_error(format!("large value {name} is missing from the store")));
        };
        if content_hash(&bytes) != hash {
            return Err(self.store_error(format!("large value {name} is damaged (its hash does not match)")));
        }
        Ok((name, bytes))
    }

    /// Brings the replica up to the head of the log: one GET of the next log object when
    /// nothing changed; otherwise the next ones by GET until one is missing, or past three,
    /// one listing of the rest and their GETs.
    async fn catch_up(&self, replica: &mut Replica) -> Result<()> {
        if !replica.loaded || self.verify_due(replica) {
            self.verify(replica).await?;
        }
        // The next few one by one (most syncs find none, or one or two); past that, one
        // listing of the rest and their GETs in parallel.
        let mut commits = Vec::new();
        let mut next = replica.version + 1;
        while commits.len() < SEQUENTIAL_READS {
            let Some((bytes, meta)) = self.get(&self.log_path(next)).await? else { break };
            commits.push((next, self.decode_commit(next, &bytes), SystemTime::from(meta.last_modified)));
            next += 1;
        }
        if commits.is_empty() {
            return Ok(());
        }
        if commits.len() == SEQUENTIAL_READS {
            let rest: Vec<Version> = self
                .list(&self.log_dir, Some(next - 1))
                .await?
                .into_iter()
                .map(|(version, _)| version)
                .enumerate()
                .take_while(|(i, version)| *version == next + *i as u64)
                .map(|(_, version)| version)
                .collect();
            commits.extend(self.read_commits(rest).await?);
        }
        // Replay needs the new values only (the old ones are the journal's).
        let new_vals: Vec<&Val> = commits
            .iter()
            .filter_map(|(_, commit, _)| commit.as_ref())
            .flat_map(|commit| commit.changes.iter().filter_map(|change| change.new.as_ref()))
            .collect();
        let blobs = self.fetch_blobs(new_vals).await?;
        for (version, commit, time) in commits {
            replica.apply(version, commit.as_ref(), &blobs, time, Some(self.store_ms(time)));
        }
        Ok(())
    }

    fn verify_due(&self, replica: &Replica) -> bool {
        replica.verified_at.is_none_or(|at| at.elapsed() >= self.config.verify_every)
    }

    /// The full check: lists the checkpoints and confirms the replica's head is still in the
    /// log; loads the newest checkpoint when the replica is new, was trimmed past, or the
    /// namespace was made anew.
    async fn verify(&self, replica: &mut Replica) -> Result<()> {
        let checkpoints = self.list(&self.checkpoint_dir, None).await?;
        let newest = checkpoints.last().map(|(version, _)| *version);
        let reload = if !replica.loaded {
            true
        } else if replica.version == 0 {
            // Nothing read yet: a checkpoint means the log's start may be gone.
            newest.is_some() && self.get(&self.log_path(1)).await?.is_none()
        } else {
            match self.get(&self.log_path(replica.version)).await? {
                // The head commit is another than the one replayed: the namespace was made anew.
                Some((bytes, _)) => {
                    replica.head_id.is_some()
                        && Commit::decode(&bytes, replica.version).ok().map(|c| c.id) != replica.head_id
                }
                // Trimmed (then a checkpoint at or past it exists) or deleted.
                None => match newest {
                    Some(newest) if newest > replica.version => {
                        self.get(&self.log_path(replica.version + 1)).await?.is_none()
                    }
                    Some(newest) => newest < replica.version,
                    None => true,
                },
            }
        };
        if reload {
            self.load_checkpoint(replica, checkpoints.iter().rev().map(|(version, _)| *version)).await?;
        }
        replica.verified_at = Some(Instant::now());
        Ok(())
    }

    /// Resets the replica to the newest readable checkpoint of `newest_first`, or to the
    /// empty namespace at version 0 when there is none.
    async fn load_checkpoint(&self, replica: &mut Replica, newest_first: impl Iterator<Item = Version>) -> Result<()> {
        let mut skipped = false;
        for version in newest_first {
            let Some((bytes, _)) = self.get(&self.checkpoint_path(version)).await? else { continue };
            match Checkpoint::decode(&bytes, version) {
                Ok(checkpoint) => {
                    let blobs = self.fetch_blobs(checkpoint.entries.iter().map(|(_, val)| val)).await?;
                    let entries = checkpoint
                        .entries
                        .into_iter()
                        .filter_map(|(key, val)| resolve(&val, &blobs).map(|bytes| (key, Entry { val, bytes })))
                        .collect();
                    replica.reset(version, entries, checkpoint.trim_through, checkpoint.leases);
                    return Ok(());
                }
                Err(refused) => {
                    tracing::error!(at = %self.shown, version, %refused, "checkpoint unreadable: trying an older one");
                    skipped = true;
                }
            }
        }
        if skipped && self.get(&self.log_path(1)).await?.is_none() {
            return Err(self.store_error("no checkpoint is readable and the log before them was removed"));
        }
        replica.reset(0, imbl::HashMap::new(), 0, None);
        Ok(())
    }

    /// Reads the store's clock: overwrites the namespace's `clock` object and reads its time.
    async fn read_clock(&self, replica: &mut Replica) -> Result<()> {
        let sent = Instant::now();
        self.store.put(&self.clock_path, PutPayload::new()).await.map_err(|err| self.map(err))?;
        let answered = Instant::now();
        let meta = self.store.head(&self.clock_path).await.map_err(|err| self.map(err))?;
        let store_ms = self.store_ms(meta.last_modified.into());
        replica.clock = Some(ClockReading { store_ms, resolution_ms: self.resolution_ms, sent, answered });
        Ok(())
    }

    /// An object time as every reader of the store takes it: milliseconds since the Unix
    /// epoch, floored to the store's resolution.
    fn store_ms(&self, time: SystemTime) -> i64 {
        epoch_ms(time).div_euclid(self.resolution_ms) * self.resolution_ms
    }

    /// Tries to commit `edits` and `lease` data as the next version, and replays it: `None`
    /// when another writer took the version first (the caller catches up and decides
    /// again). A commit whose replay needs the store's time of it is read back for it.
    async fn try_commit(
        &self,
        replica: &mut Replica,
        reason: Option<&str>,
        edits: Vec<(String, Option<Bytes>)>,
        lease: Option<LeaseData>,
    ) -> Result<Option<(Version, Outcome)>> {
        let version = replica.version + 1;
        let journal = &self.config.journal;
        let mut blobs = HashMap::new();
        let mut changes = Vec::with_capacity(edits.len());
        // Large values are objects of this commit's own, written before it.
        let id = fastrand::u64(..);
        for (key, new) in edits {
            let new = match new {
                Some(bytes) if bytes.len() > self.config.inline_limit => {
                    let val = Val::Large { hash: content_hash(&bytes), len: bytes.len() as u64, id };
                    let (name, _) = val.object().expect("a large value is an object");
                    self.create(&self.blob_path(&name), bytes.to_vec()).await?;
                    blobs.insert(name, bytes);
                    Some(val)
                }
                Some(bytes) => Some(Val::Inline(bytes)),
                None => None,
            };
            let old = journal.is_on().then(|| replica.entries.get(&key).map(|entry| entry.val.clone())).flatten();
            changes.push(Change { key, new, old });
        }
        changes.sort_by(|a, b| a.key.cmp(&b.key));
        let mut trim_through = replica.trim_through;
        if journal.is_on() {
            trim_through = trim_through.max(journal.trim_through(version).unwrap_or(0));
            if journal.trims_by_age_at(version)
                && let Some(cutoff) = journal.kept_for().and_then(|age| SystemTime::now().checked_sub(age))
            {
                trim_through = trim_through.max(replica.last_before(cutoff).unwrap_or(0));
            }
        }
        let commit = Commit {
            version,
            id,
            journaled: journal.is_on(),
            actor: journal.is_on().then(|| journal.actor_name().to_owned()),
            reason: journal.is_on().then(|| reason.map(str::to_owned)).flatten(),
            trim_through,
            changes,
            lease,
        };
        let sent = Instant::now();
        let created = self.create(&self.log_path(version), commit.encode()).await?;
        // A create retried after a lost answer meets itself: the commit is ours all the same.
        let ours = created
            || self
                .get(&self.log_path(version))
                .await?
                .is_some_and(|(bytes, _)| Commit::decode(&bytes, version).is_ok_and(|stored| stored.id == commit.id));
        if !ours {
            return Ok(None);
        }
        let answered = Instant::now();
        let mut now_ms = None;
        if replica.needs_time(&commit) {
            let meta = self.store.head(&self.log_path(version)).await.map_err(|err| self.map(err))?;
            let store_ms = self.store_ms(meta.last_modified.into());
            // The store stamped it between the create's sending and its answer.
            replica.clock = Some(ClockReading { store_ms, resolution_ms: self.resolution_ms, sent, answered });
            now_ms = Some(store_ms);
        }
        let outcome = replica.apply(version, Some(&commit), &blobs, SystemTime::now(), now_ms);
        Ok(Some((version, outcome)))
    }

    async fn write_checkpoint(
        &self,
        version: Version,
        trim_through: Version,
        entries: &imbl::HashMap<String, Entry>,
        leases: Option<LeaseTable>,
    ) -> Result<()> {
        let mut entries: Vec<(String, Val)> =
            entries.iter().map(|(key, entry)| (key.clone(), entry.val.clone())).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let checkpoint = Checkpoint { version, trim_through, entries, leases };
        // Two writers of one version write the same state; the second finds it there.
        self.create(&self.checkpoint_path(version), checkpoint.encode()).await.map(drop)
    }

    /// Removes checkpoints older than the two newest, and log objects at or below the older
    /// kept checkpoint and the journal's trim point once they are older than the retention
    /// by the store's clock (the newest checkpoint's time).
    async fn prune(&self) -> Result<()> {
        let checkpoints = self.list(&self.checkpoint_dir, None).await?;
        let Some((_, newest)) = checkpoints.last() else { return Ok(()) };
        let now: SystemTime = newest.last_modified.into();
        let kept_from = checkpoints.len().saturating_sub(2);
        let floor = checkpoints[kept_from].0;
        let trim = self.replica.lock().await.trim_through;
        let cutoff = now.checked_sub(self.config.log_retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut doomed: Vec<Path> = checkpoints[..kept_from].iter().map(|(_, meta)| meta.location.clone()).collect();
        // Needed for the state above the older kept checkpoint, and for the journal above
        // its trim point (a handle that keeps none needs the log only for the state).
        let removable = |version: Version| version <= floor && (version <= trim || !self.config.journal.is_on());
        let log = self.list(&self.log_dir, None).await?;
        doomed.extend(
            log.into_iter()
                .filter(|(version, meta)| removable(*version) && SystemTime::from(meta.last_modified) < cutoff)
                .map(|(_, meta)| meta.location),
        );
        self.delete(doomed).await?;
        let due = {
            let mut collected = self.blobs_collected.lock().expect("the collection time");
            let due = collected.is_none_or(|at| at.elapsed() >= self.config.log_retention / 2);
            if due {
                *collected = Some(Instant::now());
            }
            due
        };
        if due { self.collect_blobs(cutoff).await } else { Ok(()) }
    }

    async fn delete(&self, paths: Vec<Path>) -> Result<()> {
        let paths = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        self.store.delete_stream(paths).try_for_each(|_| async { Ok(()) }).await.or_else(|err| {
            if matches!(err, object_store::Error::NotFound { .. }) { Ok(()) } else { Err(self.map(err)) }
        })
    }

    /// Removes the objects of large values that no checkpoint and no log object refers to
    /// once they are older than `cutoff` (the retention, by the store's clock). Each such
    /// object is written by one commit attempt, less than the operation timeout before it,
    /// and never reused: one that old that nothing refers to will never be referred to (its
    /// value was overwritten or deleted and the log trimmed past it, or its attempt lost
    /// the version and was made anew). Gives up for this round, removing nothing, when an
    /// object it listed is gone or unreadable (another writer is cleaning up meanwhile).
    /// Objects of format 1 (named by their hash alone, shared between commits) are left.
    async fn collect_blobs(&self, cutoff: SystemTime) -> Result<()> {
        let listed: Vec<ObjectMeta> =
            self.store.list(Some(&self.blob_dir)).try_collect().await.map_err(|err| self.map(err))?;
        let old: Vec<ObjectMeta> = listed
            .into_iter()
            .filter(|meta| SystemTime::from(meta.last_modified) < cutoff)
            .filter(|meta| meta.location.filename().is_some_and(|name| name.contains('-')))
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let mut referenced: HashSet<String> = HashSet::new();
        for (version, _) in self.list(&self.checkpoint_dir, None).await? {
            let Some((bytes, _)) = self.get(&self.checkpoint_path(version)).await? else { return Ok(()) };
            let Ok(checkpoint) = Checkpoint::decode(&bytes, version) else { return Ok(()) };
            referenced.extend(checkpoint.entries.iter().filter_map(|(_, val)| val.object().map(|(name, _)| name)));
        }
        let log: Vec<Version> = self.list(&self.log_dir, None).await?.into_iter().map(|(version, _)| version).collect();
        let mut commits =
            futures::stream::iter(log).map(|version| self.get_version(version)).buffered(FETCH_CONCURRENCY);
        while let Some((version, got)) = commits.try_next().await? {
            let Some(commit) = got.and_then(|(bytes, _)| Commit::decode(&bytes, version).ok()) else { return Ok(()) };
            referenced.extend(commit_vals(Some(&commit)).filter_map(|val| val.object().map(|(name, _)| name)));
        }
        let unreferenced: Vec<Path> = old
            .into_iter()
            .filter(|meta| meta.location.filename().is_some_and(|name| !referenced.contains(name)))
            .map(|meta| meta.location)
            .collect();
        if !unreferenced.is_empty() {
            tracing::debug!(at = %self.shown, removed = unreferenced.len(), "large values no longer referred to removed");
        }
        self.delete(unreferenced).await
    }
}

/// The values a commit refers to, new and old.
fn commit_vals(commit: Option<&Commit>) -> impl Iterator<Item = &Val> {
    commit.into_iter().flat_map(|commit| commit.changes.iter().flat_map(|change| change.new.iter().chain(&change.old)))
}

#[async_trait]
impl Backend for ObjectBackend {
    fn name(&self) -> &'static str {
        self.inner.kind
    }

    fn describe(&self) -> String {
        self.inner.shown.clone()
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.inner.config.max_value_size)
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.validate_key(key)?;
        self.check_size(key, &value)?;
        let touched = [(key.to_owned(), None)];
        let committed =
            self.write("persist", None, &touched, |_| Ok(vec![(key.to_owned(), Some(value.clone()))])).await?;
        committed.ok_or_else(|| self.inner.store_error("a put committed nothing"))
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.validate_key(key)?;
        self.write("depersist", None, &[(key.to_owned(), None)], |_| Ok(vec![(key.to_owned(), None)])).await
    }

    async fn durables(&self) -> Result<Durables> {
        self.bounded("durables", async {
            let replica = self.inner.replica().await?;
            let entries = replica.entries.iter().map(|(key, entry)| (key.clone(), entry.bytes.clone())).collect();
            Ok(Durables { entries, version: replica.version })
        })
        .await
    }

    async fn last_updated(&self) -> Result<Version> {
        self.bounded("last_updated", async { Ok(self.inner.replica().await?.version) }).await
    }

    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        for (key, op) in batch.ops() {
            self.validate_key(key)?;
            if let Op::Put(value) = op {
                self.check_size(key, value)?;
            }
        }
        let touched: Vec<(String, Option<Token>)> =
            batch.leased_keys().into_iter().map(|(key, token)| (key.to_owned(), token)).collect();
        let guard = batch.guard_version();
        let edits: Vec<(String, Option<Bytes>)> = batch
            .ops()
            .map(|(key, op)| match op {
                Op::Put(value) => (key.to_owned(), Some(value.clone())),
                Op::Delete => (key.to_owned(), None),
            })
            .collect();
        self.write("apply", batch.reason_text(), &touched, |replica| {
            if let Some(expected) = guard
                && expected != replica.version
            {
                return Err(Error::VersionConflict { expected, current: replica.version });
            }
            Ok(edits.clone())
        })
        .await
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.validate_key(key)?;
        let mut popped = None;
        let committed = self
            .write("pop", None, &[(key.to_owned(), None)], |replica| {
                popped = replica.entries.get(key).map(|entry| entry.bytes.clone());
                Ok(vec![(key.to_owned(), None)])
            })
            .await?;
        Ok(committed.and_then(|version| popped.map(|value| (value, version))))
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.validate_key(key)?;
        self.check_size(key, &value)?;
        let mut found = None;
        let committed = self
            .write("setdefault", None, &[(key.to_owned(), None)], |replica| {
                found = replica.entries.get(key).map(|entry| entry.bytes.clone());
                Ok(if found.is_some() { Vec::new() } else { vec![(key.to_owned(), Some(value.clone()))] })
            })
            .await?;
        Ok((found.unwrap_or(value), committed))
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.bounded("changes_since", async {
            // A replica already past `since` (the version check just brought it there)
            // answers as it is: a state the log had, and the next sync looks further.
            let mut replica = self.inner.replica.lock().await;
            if !replica.loaded || replica.version <= since || self.inner.verify_due(&replica) {
                self.inner.catch_up(&mut replica).await?;
            }
            if since > replica.version || since < replica.log_floor {
                return Ok(Changes::TooOld);
            }
            Ok(Changes::Delta { changes: replica.changes_since(since), version: replica.version })
        })
        .await
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        // Object stores push nothing: dicts poll.
        Ok(None)
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.validate_key(key)?;
        if let Some(value) = &new {
            self.check_size(key, value)?;
        }
        self.write("compare_and_swap", None, &[(key.to_owned(), None)], |replica| {
            if replica.entries.get(key).map(|entry| &entry.bytes) != old.as_ref() {
                return Err(Error::Conflict { key: key.into() });
            }
            Ok(vec![(key.to_owned(), new.clone())])
        })
        .await
    }

    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        let inner = &self.inner;
        self.bounded("journal", async {
            let (head, trim, void) = {
                let replica = inner.replica().await?;
                (replica.version, replica.trim_through, replica.void.clone())
            };
            let from = after.max(trim);
            let listed = inner.list(&inner.log_dir, Some(from)).await?;
            // Log objects removed past the trim point were trimmed too.
            let trimmed_through = match listed.first() {
                Some((first, _)) if *first > from + 1 => trim.max(first - 1),
                None if head > from => head,
                _ => trim,
            };
            let limit = limit.max(1);
            let (mut records, mut unchanged) = (Vec::new(), Vec::new());
            let mut versions =
                listed.into_iter().map(|(version, _)| version).filter(|version| *version <= head).peekable();
            while versions.peek().is_some() && records.len() < limit {
                let chunk: Vec<Version> = versions.by_ref().take(FETCH_CONCURRENCY).collect();
                let commits = inner.read_commits(chunk).await?;
                // Lease operations and writes a lease refused changed nothing: no gap.
                unchanged.extend(
                    commits
                        .iter()
                        .filter(|(version, commit, _)| {
                            void.contains(version) || commit.as_ref().is_some_and(|c| c.changes.is_empty())
                        })
                        .map(|(version, _, _)| *version),
                );
                records.extend(inner.records(commits, &void).await?);
            }
            let more_left = versions.peek().is_some();
            let (records, cut) = whole_versions(records, limit);
            let more = cut || more_left;
            if more {
                let last = records.last().map_or(0, |record| record.version);
                unchanged.retain(|version| *version <= last);
            }
            Ok(JournalPage { records, version: head, trimmed_through, more, unchanged })
        })
        .await
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        let inner = &self.inner;
        self.bounded("history", async {
            let (head, trim, void) = {
                let replica = inner.replica().await?;
                (replica.version, replica.trim_through, replica.void.clone())
            };
            let versions: Vec<Version> = inner
                .list(&inner.log_dir, Some(trim))
                .await?
                .into_iter()
                .map(|(version, _)| version)
                .filter(|version| *version <= head)
                .collect();
            let records = inner.records(inner.read_commits(versions).await?, &void).await?;
            Ok(newest_first_for_key(records.into_iter().filter(|record| record.key == key), key, limit))
        })
        .await
    }

    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        self.validate_key(key)?;
        let resolution = self.inner.resolution_ms;
        // The store's time of the commit is known to its resolution only: a lease is
        // granted that much longer, so its holder has at least `ttl` from its request.
        let step = match op {
            LeaseOp::Acquire { ttl } => LeaseStep::Acquire { ttl_ms: lease::ms(ttl) + resolution },
            LeaseOp::Renew { token, ttl } => LeaseStep::Renew { token, ttl_ms: lease::ms(ttl) + resolution },
            LeaseOp::Release { token } => LeaseStep::Release { token },
            _ => return Err(Error::Unsupported { backend: self.inner.kind, what: "this lease operation" }),
        };
        let holder = self.inner.config.journal.actor_name().to_owned();
        let data = LeaseData::Op { key: key.to_owned(), holder, op: step };
        self.commit(
            "lease",
            None,
            &[key],
            |replica| {
                // Answered without writing where the store's clock certainly agrees.
                let stored = replica.leases.get(key);
                let bounds = replica.clock.map(|clock| clock.bounds());
                let live = stored.filter(|l| bounds.is_some_and(|(_, hi)| hi < l.expires_ms));
                let current = |token: Token| {
                    stored.is_some_and(|l| l.token == token && bounds.is_none_or(|(lo, _)| lo < l.expires_ms))
                };
                match op {
                    LeaseOp::Acquire { .. } => {
                        if let (Some(held), Some((_, hi))) = (live, bounds) {
                            return Ok(Step::Answer(LeaseAnswer::Held(held.info(hi))));
                        }
                    }
                    LeaseOp::Renew { token, .. } if !current(token) => {
                        return Err(Error::LeaseLost { key: key.into(), token });
                    }
                    LeaseOp::Release { token } if !current(token) => {
                        return Ok(Step::Answer(LeaseAnswer::Released { held: false }));
                    }
                    _ => {}
                }
                Ok(Step::Write { edits: Vec::new(), lease: Some(data.clone()) })
            },
            |_, outcome| match outcome {
                // A grant has `ttl` left from the request (it was stamped after it was sent).
                Outcome::Lease(answer) => answer.map(|answer| match answer {
                    LeaseAnswer::Granted(info) => LeaseAnswer::Granted(shortened(info, resolution)),
                    LeaseAnswer::Held(info) => LeaseAnswer::Held(shortened(info, resolution)),
                    released => released,
                }),
                _ => Err(self.inner.store_error("a lease operation was replayed as a write")),
            },
        )
        .await
    }

    /// Deletes every object under the namespace: its log, checkpoints, large values and
    /// clock. A handle still following it finds its head commit gone at its next full check
    /// (`verify_every`) and shows the namespace empty from then on; this handle at once.
    async fn remove_namespace(&self) -> Result<()> {
        let inner = &self.inner;
        self.bounded("remove_namespace", async {
            let mut replica = inner.replica.lock().await;
            let listed: Vec<Path> = inner
                .store
                .list(Some(&inner.root))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
                .map_err(|err| inner.map(err))?;
            inner.delete(listed).await?;
            inner.load_checkpoint(&mut replica, std::iter::empty()).await?;
            replica.verified_at = Some(Instant::now());
            Ok(())
        })
        .await
    }
}

impl Inner {
    /// The journal records of `commits`: every change of a journaled commit, old and new
    /// values resolved, stamped with the time the store wrote the log object. Writes a lease
    /// refused (`void`) made no change and are no records.
    async fn records(
        &self,
        commits: Vec<(Version, Option<Commit>, SystemTime)>,
        void: &BTreeSet<Version>,
    ) -> Result<Vec<JournalRecord>> {
        let journaled: Vec<_> = commits
            .into_iter()
            .filter(|(version, commit, _)| commit.as_ref().is_some_and(|c| c.journaled) && !void.contains(version))
            .collect();
        let blobs = self.fetch_blobs(journaled.iter().flat_map(|(_, commit, _)| commit_vals(commit.as_ref()))).await?;
        let mut records = Vec::new();
        for (version, commit, time) in journaled {
            let Some(commit) = commit else { continue };
            for change in commit.changes {
                records.push(JournalRecord {
                    version,
                    key: change.key,
                    old: change.old.as_ref().and_then(|val| resolve(val, &blobs)),
                    new: change.new.as_ref().and_then(|val| resolve(val, &blobs)),
                    actor: commit.actor.clone().unwrap_or_default(),
                    reason: commit.reason.clone(),
                    time: Some(time),
                });
            }
        }
        Ok(records)
    }
}
