//! `ObjectBackend`: the commit protocol over an `ObjectStore` (see the crate docs).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::journal::{newest_first_for_key, whole_versions};
use durable_core::{
    Backend, Batch, Changes, Durables, Error, HintStream, JournalConfig, JournalPage, JournalRecord, LeaseAnswer,
    LeaseOp, Op, Result, Version,
};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::{Mutex, MutexGuard};

use crate::format::{Change, Checkpoint, Commit, Val, content_hash, parse_version, version_name};
use crate::replica::{Entry, Replica, resolve};
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
            log_dir: root.clone().join("log"),
            checkpoint_dir: root.clone().join("checkpoint"),
            blob_dir: root.join("blobs"),
            kind: location.kind,
            secrets: location.secrets,
            probe: location.probe,
            shown: format!("{} namespace {namespace}", store::redact(&self.url)),
            replica: Mutex::new(Replica::new(config.change_log)),
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
    log_dir: Path,
    checkpoint_dir: Path,
    blob_dir: Path,
    kind: &'static str,
    secrets: Secrets,
    probe: durable_core::RefusalProbe,
    shown: String,
    config: Config,
    replica: Mutex<Replica>,
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
            drop(replica);
            inner.write_checkpoint(version, trim, &entries).await?;
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
    /// another writer took the version first (deciding again against what it wrote).
    async fn commit(
        &self,
        operation: &'static str,
        reason: Option<&str>,
        mut plan: impl FnMut(&Replica) -> Result<Vec<(String, Option<Bytes>)>> + Send,
    ) -> Result<Option<Version>> {
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
                let planned = plan(&replica).map(|edits| {
                    // A delete of an absent key changes nothing.
                    edits.into_iter().filter(|(key, new)| new.is_some() || replica.entries.contains_key(key)).collect::<Vec<_>>()
                });
                let edits = match planned {
                    Ok(edits) if !edits.is_empty() => edits,
                    answer if fresh => return answer.map(|_| None),
                    _ => {
                        inner.catch_up(&mut replica).await?;
                        fresh = true;
                        continue;
                    }
                };
                if let Some(version) = inner.try_commit(&mut replica, reason, edits).await? {
                    let checkpoint = version % inner.config.checkpoint_every == 0;
                    let state = checkpoint.then(|| (replica.trim_through, replica.entries.clone()));
                    drop(replica);
                    if let Some((trim, entries)) = state {
                        let inner = Arc::clone(&self.inner);
                        tokio::spawn(async move {
                            let done = match inner.write_checkpoint(version, trim, &entries).await {
                                Ok(()) => inner.prune().await,
                                Err(err) => Err(err),
                            };
                            if let Err(err) = done {
                                tracing::warn!(at = %inner.shown, version, %err, "checkpoint or clean-up failed; the next one retries");
                            }
                        });
                    }
                    return Ok(Some(version));
                }
                inner.catch_up(&mut replica).await?;
                fresh = true;
            }
        })
        .await
    }
}

impl Inner {
    fn log_path(&self, version: Version) -> Path {
        self.log_dir.clone().join(version_name(version))
    }

    fn checkpoint_path(&self, version: Version) -> Path {
        self.checkpoint_dir.clone().join(version_name(version))
    }

    fn blob_path(&self, hash: &str) -> Path {
        self.blob_dir.clone().join(hash)
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

    /// Fetches the large values `vals` refer to, checking each against its hash.
    async fn fetch_blobs<'v>(&self, vals: impl IntoIterator<Item = &'v Val>) -> Result<HashMap<String, Bytes>> {
        let hashes: HashSet<String> = vals
            .into_iter()
            .filter_map(|val| match val {
                Val::Blob { hash, .. } => Some(hash.clone()),
                Val::Inline(_) => None,
            })
            .collect();
        futures::stream::iter(hashes)
            .map(|hash| self.fetch_blob(hash))
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn fetch_blob(&self, hash: String) -> Result<(String, Bytes)> {
        let Some((bytes, _)) = self.get(&self.blob_path(&hash)).await? else {
            return Err(self.store_error(format!("large value {hash} is missing from the store")));
        };
        if content_hash(&bytes) != hash {
            return Err(self.store_error(format!("large value {hash} is damaged (its hash does not match)")));
        }
        Ok((hash, bytes))
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
            replica.apply(version, commit.as_ref(), &blobs, time);
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
                    replica.reset(version, entries, checkpoint.trim_through);
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
        replica.reset(0, imbl::HashMap::new(), 0);
        Ok(())
    }

    /// Tries to commit `edits` as the next version: `None` when another writer took it
    /// first (the caller catches up and decides again).
    async fn try_commit(
        &self,
        replica: &mut Replica,
        reason: Option<&str>,
        edits: Vec<(String, Option<Bytes>)>,
    ) -> Result<Option<Version>> {
        let version = replica.version + 1;
        let journal = &self.config.journal;
        let mut blobs = HashMap::new();
        let mut changes = Vec::with_capacity(edits.len());
        for (key, new) in edits {
            let new = match new {
                Some(bytes) if bytes.len() > self.config.inline_limit => {
                    let hash = content_hash(&bytes);
                    self.create(&self.blob_path(&hash), bytes.to_vec()).await?;
                    let len = bytes.len() as u64;
                    blobs.insert(hash.clone(), bytes);
                    Some(Val::Blob { hash, len })
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
            id: fastrand::u64(..),
            journaled: journal.is_on(),
            actor: journal.is_on().then(|| journal.actor_name().to_owned()),
            reason: journal.is_on().then(|| reason.map(str::to_owned)).flatten(),
            trim_through,
            changes,
        };
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
        replica.apply(version, Some(&commit), &blobs, SystemTime::now());
        Ok(Some(version))
    }

    async fn write_checkpoint(
        &self,
        version: Version,
        trim_through: Version,
        entries: &imbl::HashMap<String, Entry>,
    ) -> Result<()> {
        let mut entries: Vec<(String, Val)> =
            entries.iter().map(|(key, entry)| (key.clone(), entry.val.clone())).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let checkpoint = Checkpoint { version, trim_through, entries };
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
        let doomed = futures::stream::iter(doomed.into_iter().map(Ok)).boxed();
        self.store.delete_stream(doomed).try_for_each(|_| async { Ok(()) }).await.or_else(|err| {
            if matches!(err, object_store::Error::NotFound { .. }) { Ok(()) } else { Err(self.map(err)) }
        })
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
        let committed = self.commit("persist", None, |_| Ok(vec![(key.to_owned(), Some(value.clone()))])).await?;
        committed.ok_or_else(|| self.inner.store_error("a put committed nothing"))
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.validate_key(key)?;
        self.commit("depersist", None, |_| Ok(vec![(key.to_owned(), None)])).await
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
        // No lease is ever granted here, so a write carrying a token holds none.
        if let Some((key, token)) = batch.leased_keys().into_iter().find_map(|(key, token)| token.map(|t| (key, t))) {
            return Err(Error::LeaseLost { key: key.into(), token });
        }
        let guard = batch.guard_version();
        let edits: Vec<(String, Option<Bytes>)> = batch
            .ops()
            .map(|(key, op)| match op {
                Op::Put(value) => (key.to_owned(), Some(value.clone())),
                Op::Delete => (key.to_owned(), None),
            })
            .collect();
        self.commit("apply", batch.reason_text(), |replica| {
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
            .commit("pop", None, |replica| {
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
            .commit("setdefault", None, |replica| {
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
        self.commit("compare_and_swap", None, |replica| {
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
            let (head, trim) = {
                let replica = inner.replica().await?;
                (replica.version, replica.trim_through)
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
            let mut records = Vec::new();
            let mut versions =
                listed.into_iter().map(|(version, _)| version).filter(|version| *version <= head).peekable();
            while versions.peek().is_some() && records.len() < limit {
                let chunk: Vec<Version> = versions.by_ref().take(FETCH_CONCURRENCY).collect();
                records.extend(inner.records(inner.read_commits(chunk).await?).await?);
            }
            let more_left = versions.peek().is_some();
            let (records, cut) = whole_versions(records, limit);
            Ok(JournalPage { records, version: head, trimmed_through, more: cut || more_left })
        })
        .await
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        let inner = &self.inner;
        self.bounded("history", async {
            let (head, trim) = {
                let replica = inner.replica().await?;
                (replica.version, replica.trim_through)
            };
            let versions: Vec<Version> = inner
                .list(&inner.log_dir, Some(trim))
                .await?
                .into_iter()
                .map(|(version, _)| version)
                .filter(|version| *version <= head)
                .collect();
            let records = inner.records(inner.read_commits(versions).await?).await?;
            Ok(newest_first_for_key(records.into_iter().filter(|record| record.key == key), key, limit))
        })
        .await
    }

    async fn lease(&self, _key: &str, _op: LeaseOp) -> Result<LeaseAnswer> {
        Err(Error::Unsupported { backend: self.inner.kind, what: "leases (not yet on object storage)" })
    }
}

impl Inner {
    /// The journal records of `commits`: every change of a journaled commit, old and new
    /// values resolved, stamped with the time the store wrote the log object.
    async fn records(&self, commits: Vec<(Version, Option<Commit>, SystemTime)>) -> Result<Vec<JournalRecord>> {
        let journaled: Vec<_> =
            commits.into_iter().filter(|(_, commit, _)| commit.as_ref().is_some_and(|c| c.journaled)).collect();
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
