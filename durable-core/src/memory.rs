//! `MemoryBackend`: the in-process store, for tests, examples and single-process services.
//!
//! It implements every optional method the way a real store should — atomic multi-key
//! writes, `pop`, `setdefault` and compare-and-swap in one step, a bounded change log for
//! deltas (answering "too old" past its horizon) and pushed change hints — so the core's
//! behaviour can be tested without a server. It is never evidence that a real backend works.
//!
//! Handles made with [`MemoryBackend::new`] on the same namespace share one process-wide
//! store, as two connections to one server would; [`MemoryStore::new`] makes an isolated
//! store, and `memory://name` URLs name process-wide stores.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::backend::{Backend, Changes, Durables, Hint, HintStream, KeyChange, Opening, Version};
use crate::batch::{Batch, Op};
use crate::error::{Error, Result};
use crate::journal::{JournalConfig, JournalPage, JournalRecord, newest_first_for_key, whole_versions};
use crate::lease::{self, LeaseAnswer, LeaseChange, LeaseOp, StoredLease, Token};
use crate::store_url::StoreUrl;

/// How many mutations a namespace's change log keeps by default.
pub const DEFAULT_CHANGE_LOG: usize = 10_000;

const HINT_CAPACITY: usize = 256;

/// A set of namespaces held in this process's memory.
#[derive(Default)]
pub struct MemoryStore {
    namespaces: Mutex<HashMap<String, Namespace>>,
    /// How far this store's clock runs ahead of the process's, in ms (tests of clock skew).
    clock_offset_ms: std::sync::atomic::AtomicI64,
}

struct Namespace {
    entries: HashMap<String, Bytes>,
    version: Version,
    /// One record per mutation, oldest first: its version and the keys it touched.
    log: VecDeque<(Version, Vec<Arc<str>>)>,
    /// Every mutation after this version is in `log`.
    log_floor: Version,
    /// The change journal, oldest first.
    journal: VecDeque<Kept>,
    /// Retention removed every record at or below this version.
    journal_trimmed: Version,
    /// Leases, live or expired, by key.
    leases: HashMap<String, StoredLease>,
    /// The last token granted on each key that ever had a lease.
    lease_tokens: HashMap<String, Token>,
    hints: broadcast::Sender<Hint>,
}

/// A journal record as the memory store keeps it: the actor and reason shared between
/// records rather than copied into each.
#[derive(Clone)]
struct Kept {
    version: Version,
    key: Arc<str>,
    old: Option<Bytes>,
    new: Option<Bytes>,
    actor: Arc<str>,
    reason: Option<Arc<str>>,
    time: Option<std::time::SystemTime>,
}

impl Kept {
    fn record(&self) -> JournalRecord {
        JournalRecord {
            version: self.version,
            key: self.key.to_string(),
            old: self.old.clone(),
            new: self.new.clone(),
            actor: self.actor.to_string(),
            reason: self.reason.as_deref().map(str::to_owned),
            time: self.time,
        }
    }
}

/// One key's change in a mutation: the key, its old value, its new value.
type Touched = (Arc<str>, Option<Bytes>, Option<Bytes>);

/// What a handle writes besides the data: its change-log length and its journal.
struct Writer<'a> {
    log_len: usize,
    journal: &'a JournalConfig,
    reason: Option<&'a str>,
    /// The store's clock when the step began.
    now_ms: i64,
}

impl Namespace {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
            version: 0,
            log: VecDeque::new(),
            log_floor: 0,
            journal: VecDeque::new(),
            journal_trimmed: 0,
            leases: HashMap::new(),
            lease_tokens: HashMap::new(),
            hints: broadcast::channel(HINT_CAPACITY).0,
        }
    }

    /// Bumps the version, logs the touched keys, journals their changes, trims the log and
    /// the journal, and sends a hint — all under the store's lock, so one atomic step.
    fn commit(&mut self, touched: Vec<Touched>, writer: &Writer<'_>) -> Version {
        self.version += 1;
        let version = self.version;
        if writer.journal.is_on() {
            // Milliseconds by the store's clock, as every store keeps them.
            let millis = writer.now_ms;
            let time = crate::journal::time_from_millis(millis);
            let actor = writer.journal.actor_shared();
            let reason: Option<Arc<str>> = writer.reason.map(Arc::from);
            for (key, old, new) in &touched {
                self.journal.push_back(Kept {
                    version,
                    key: Arc::clone(key),
                    old: old.clone(),
                    new: new.clone(),
                    actor: Arc::clone(&actor),
                    reason: reason.clone(),
                    time,
                });
            }
            self.trim_journal(writer.journal);
        }
        self.log.push_back((version, touched.into_iter().map(|(key, _, _)| key).collect()));
        while self.log.len() > writer.log_len {
            if let Some((version, _)) = self.log.pop_front() {
                self.log_floor = version;
            }
        }
        // Nobody listening is fine.
        let _ = self.hints.send(Hint::Changed { version: Some(version) });
        version
    }

    /// The lease rule ([`lease::enforce`]) for every key a write touches, with the token it
    /// carries for each.
    fn enforce<'k>(&self, keys: impl IntoIterator<Item = (&'k str, Option<Token>)>, now_ms: i64) -> Result<()> {
        if self.leases.is_empty() {
            return Ok(());
        }
        keys.into_iter().try_for_each(|(key, fence)| lease::enforce(key, fence, self.leases.get(key), now_ms))
    }

    fn trim_journal(&mut self, journal: &JournalConfig) {
        let mut through = journal.trim_through(self.version).unwrap_or(0);
        if journal.trims_by_age_at(self.version)
            && let Some(age) = journal.kept_for()
            && let Some(cutoff) = std::time::SystemTime::now().checked_sub(age)
        {
            let old = self.journal.iter().take_while(|record| record.time.is_some_and(|time| time < cutoff));
            through = through.max(old.last().map_or(0, |record| record.version));
        }
        while self.journal.front().is_some_and(|record| record.version <= through) {
            self.journal.pop_front();
        }
        self.journal_trimmed = self.journal_trimmed.max(through);
    }
}

static NAMED: LazyLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = LazyLock::new(Default::default);

impl MemoryStore {
    /// Sets how far this store's clock runs ahead of the process's clock (negative: behind),
    /// for tests of clock skew: leases are judged by the store's clock only.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.clock_offset_ms.store(offset_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The store's clock, in ms since the Unix epoch.
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2));
        now + self.clock_offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new, empty, isolated store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The process-wide store called `name` (`""` is the one [`MemoryBackend::new`] uses).
    pub fn named(name: &str) -> Arc<Self> {
        let mut named = NAMED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(named.entry(name.to_owned()).or_default())
    }
}

/// One namespace of a [`MemoryStore`].
#[derive(Clone)]
pub struct MemoryBackend {
    store: Arc<MemoryStore>,
    namespace: String,
    log_len: usize,
    journal: JournalConfig,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").field("namespace", &self.namespace).finish()
    }
}

impl MemoryBackend {
    /// `namespace` in the process-wide default store.
    pub fn new(namespace: &str) -> Self {
        Self::in_store(MemoryStore::named(""), namespace)
    }

    /// `namespace` in `store`.
    pub fn in_store(store: Arc<MemoryStore>, namespace: &str) -> Self {
        Self { store, namespace: namespace.to_owned(), log_len: DEFAULT_CHANGE_LOG, journal: JournalConfig::default() }
    }

    /// Opens `namespace` in the process-wide store named by a `memory://[name]` URL: the
    /// facade's registry entry for `memory://`.
    pub fn open<'a>(url: &'a str, namespace: &'a str) -> Opening<'a> {
        let opened = StoreUrl::parse(url).map(|url| {
            let backend: Arc<dyn Backend> = Arc::new(Self::in_store(MemoryStore::named(url.location()), namespace));
            backend
        });
        Box::pin(std::future::ready(opened))
    }

    /// Keeps at most `mutations` in the change log (at least 1); older versions get
    /// [`Changes::TooOld`].
    pub fn with_change_log(mut self, mutations: usize) -> Self {
        self.log_len = mutations.max(1);
        self
    }

    /// How this handle keeps the journal (default: on, see [`JournalConfig`]). Handles on
    /// one namespace share its journal; one with the journal off writes no records, as a
    /// durabledict writer would not.
    pub fn with_journal(mut self, journal: JournalConfig) -> Self {
        self.journal = journal;
        self
    }

    /// Runs `f` on this namespace under the store's lock.
    fn with<T>(&self, f: impl FnOnce(&mut Namespace, &Writer<'_>) -> Result<T>) -> Result<T> {
        self.with_reason(None, f)
    }

    fn with_reason<T>(
        &self,
        reason: Option<&str>,
        f: impl FnOnce(&mut Namespace, &Writer<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut namespaces: MutexGuard<'_, _> =
            self.store.namespaces.lock().map_err(|_| Error::store("memory", "store lock poisoned"))?;
        let namespace = namespaces.entry(self.namespace.clone()).or_insert_with(Namespace::new);
        let now_ms = self.store.now_ms();
        f(namespace, &Writer { log_len: self.log_len, journal: &self.journal, reason, now_ms })
    }

    fn check(&self, key: &str) -> Result<()> {
        self.validate_key(key)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.check(key)?;
        self.with(|ns, writer| {
            ns.enforce([(key, None)], writer.now_ms)?;
            let old = ns.entries.insert(key.to_owned(), value.clone());
            Ok(ns.commit(vec![(Arc::from(key), old, Some(value))], writer))
        })
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.check(key)?;
        self.with(|ns, writer| {
            ns.enforce([(key, None)], writer.now_ms)?;
            Ok(ns.entries.remove(key).map(|old| ns.commit(vec![(Arc::from(key), Some(old), None)], writer)))
        })
    }

    async fn durables(&self) -> Result<Durables> {
        self.with(|ns, _| {
            let entries = ns.entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(Durables { entries, version: ns.version })
        })
    }

    async fn last_updated(&self) -> Result<Version> {
        self.with(|ns, _| Ok(ns.version))
    }

    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        for (key, _) in batch.ops() {
            self.check(key)?;
        }
        self.with_reason(batch.reason_text(), |ns, writer| {
            if let Some(expected) = batch.guard_version()
                && expected != ns.version
            {
                return Err(Error::VersionConflict { expected, current: ns.version });
            }
            ns.enforce(batch.leased_keys(), writer.now_ms)?;
            let mut touched = Vec::with_capacity(batch.len());
            for (key, op) in batch.ops() {
                match op {
                    Op::Put(value) => {
                        let old = ns.entries.insert(key.to_owned(), value.clone());
                        touched.push((Arc::from(key), old, Some(value.clone())));
                    }
                    Op::Delete => {
                        if let Some(old) = ns.entries.remove(key) {
                            touched.push((Arc::from(key), Some(old), None));
                        }
                    }
                }
            }
            Ok((!touched.is_empty()).then(|| ns.commit(touched, writer)))
        })
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.check(key)?;
        self.with(|ns, writer| {
            ns.enforce([(key, None)], writer.now_ms)?;
            Ok(ns.entries.remove(key).map(|value| {
                let version = ns.commit(vec![(Arc::from(key), Some(value.clone()), None)], writer);
                (value, version)
            }))
        })
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.check(key)?;
        self.with(|ns, writer| match ns.enforce([(key, None)], writer.now_ms).map(|()| ns.entries.get(key)) {
            Err(refused) => Err(refused),
            Ok(Some(found)) => Ok((found.clone(), None)),
            Ok(None) => {
                ns.entries.insert(key.to_owned(), value.clone());
                Ok((value.clone(), Some(ns.commit(vec![(Arc::from(key), None, Some(value))], writer))))
            }
        })
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.with(|ns, _| {
            if since < ns.log_floor || since > ns.version {
                return Ok(Changes::TooOld);
            }
            // Latest touch of each key after `since`, newest first.
            let mut seen: HashMap<&str, Version> = HashMap::new();
            for (version, keys) in ns.log.iter().rev().take_while(|(version, _)| *version > since) {
                for key in keys {
                    seen.entry(&**key).or_insert(*version);
                }
            }
            let changes = seen
                .into_iter()
                .map(|(key, version)| KeyChange { key: key.to_owned(), value: ns.entries.get(key).cloned(), version })
                .collect();
            Ok(Changes::Delta { changes, version: ns.version })
        })
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        let receiver = self.with(|ns, _| Ok(ns.hints.subscribe()))?;
        let hints = BroadcastStream::new(receiver).map(|item| match item {
            Ok(hint) => hint,
            // Missed hints: tell the dict to look for itself.
            Err(_) => Hint::Resumed,
        });
        Ok(Some(Box::pin(hints)))
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.check(key)?;
        self.with(|ns, writer| {
            ns.enforce([(key, None)], writer.now_ms)?;
            if ns.entries.get(key) != old.as_ref() {
                return Err(Error::Conflict { key: key.into() });
            }
            let before = match &new {
                Some(value) => ns.entries.insert(key.to_owned(), value.clone()),
                // Expected absent, asked to delete: nothing to do.
                None => match ns.entries.remove(key) {
                    Some(before) => Some(before),
                    None => return Ok(None),
                },
            };
            Ok(Some(ns.commit(vec![(Arc::from(key), before, new)], writer)))
        })
    }

    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        self.with(|ns, _| {
            let start = ns.journal.partition_point(|record| record.version <= after);
            let mut records: Vec<JournalRecord> =
                ns.journal.range(start..).take(limit.max(1)).map(Kept::record).collect();
            // A version cut by the limit is completed, when it is the only one.
            if let (Some(first), Some(last)) = (records.first(), records.last())
                && first.version == last.version
            {
                let version = first.version;
                let more = ns.journal.range(start + records.len()..).take_while(|record| record.version == version);
                records.extend(more.map(Kept::record));
            }
            let (records, more) = whole_versions(records, limit);
            Ok(JournalPage {
                records,
                version: ns.version,
                trimmed_through: ns.journal_trimmed,
                more,
                unchanged: Vec::new(),
            })
        })
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.with(|ns, _| {
            Ok(newest_first_for_key(ns.journal.iter().filter(|kept| &*kept.key == key).map(Kept::record), key, limit))
        })
    }

    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        self.check(key)?;
        self.with(|ns, writer| {
            let last = ns.lease_tokens.get(key).copied().unwrap_or(0);
            let holder = writer.journal.actor_name();
            let (answer, change) = lease::decide(key, op, ns.leases.get(key), last, writer.now_ms, holder)?;
            match change {
                LeaseChange::None => {}
                LeaseChange::Put(lease) => {
                    ns.lease_tokens.insert(key.to_owned(), lease.token);
                    ns.leases.insert(key.to_owned(), lease);
                }
                LeaseChange::Remove => {
                    ns.leases.remove(key);
                    let _ = ns.hints.send(Hint::LeaseReleased);
                }
            }
            Ok(answer)
        })
    }

    /// Empties the namespace back to a new one; its watchers stay subscribed and are told.
    async fn remove_namespace(&self) -> Result<()> {
        self.with(|ns, _| {
            let hints = ns.hints.clone();
            *ns = Namespace { hints, ..Namespace::new() };
            let _ = ns.hints.send(Hint::Changed { version: None });
            Ok(())
        })
    }
}
