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
use crate::store_url::StoreUrl;

/// How many mutations a namespace's change log keeps by default.
pub const DEFAULT_CHANGE_LOG: usize = 10_000;

const HINT_CAPACITY: usize = 256;

/// A set of namespaces held in this process's memory.
#[derive(Default)]
pub struct MemoryStore {
    namespaces: Mutex<HashMap<String, Namespace>>,
}

struct Namespace {
    entries: HashMap<String, Bytes>,
    version: Version,
    /// One record per mutation, oldest first: its version and the keys it touched.
    log: VecDeque<(Version, Vec<String>)>,
    /// Every mutation after this version is in `log`.
    log_floor: Version,
    hints: broadcast::Sender<Version>,
}

impl Namespace {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
            version: 0,
            log: VecDeque::new(),
            log_floor: 0,
            hints: broadcast::channel(HINT_CAPACITY).0,
        }
    }

    /// Bumps the version, logs the touched keys, trims the log and sends a hint.
    fn commit(&mut self, keys: Vec<String>, log_len: usize) -> Version {
        self.version += 1;
        self.log.push_back((self.version, keys));
        while self.log.len() > log_len {
            if let Some((version, _)) = self.log.pop_front() {
                self.log_floor = version;
            }
        }
        // Nobody listening is fine.
        let _ = self.hints.send(self.version);
        self.version
    }
}

static NAMED: LazyLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = LazyLock::new(Default::default);

impl MemoryStore {
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
        Self { store, namespace: namespace.to_owned(), log_len: DEFAULT_CHANGE_LOG }
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

    /// Runs `f` on this namespace under the store's lock.
    fn with<T>(&self, f: impl FnOnce(&mut Namespace, usize) -> Result<T>) -> Result<T> {
        let mut namespaces: MutexGuard<'_, _> =
            self.store.namespaces.lock().map_err(|_| Error::store("memory", "store lock poisoned"))?;
        let namespace = namespaces.entry(self.namespace.clone()).or_insert_with(Namespace::new);
        f(namespace, self.log_len)
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
        self.with(|ns, log_len| {
            ns.entries.insert(key.to_owned(), value);
            Ok(ns.commit(vec![key.to_owned()], log_len))
        })
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.check(key)?;
        self.with(|ns, log_len| Ok(ns.entries.remove(key).map(|_| ns.commit(vec![key.to_owned()], log_len))))
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
        self.with(|ns, log_len| {
            if let Some(expected) = batch.guard_version()
                && expected != ns.version
            {
                return Err(Error::VersionConflict { expected, current: ns.version });
            }
            let mut touched = Vec::with_capacity(batch.len());
            for (key, op) in batch.ops() {
                let changed = match op {
                    Op::Put(value) => {
                        ns.entries.insert(key.to_owned(), value.clone());
                        true
                    }
                    Op::Delete => ns.entries.remove(key).is_some(),
                };
                if changed {
                    touched.push(key.to_owned());
                }
            }
            Ok((!touched.is_empty()).then(|| ns.commit(touched, log_len)))
        })
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.check(key)?;
        self.with(|ns, log_len| {
            Ok(ns.entries.remove(key).map(|value| (value, ns.commit(vec![key.to_owned()], log_len))))
        })
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.check(key)?;
        self.with(|ns, log_len| match ns.entries.get(key) {
            Some(found) => Ok((found.clone(), None)),
            None => {
                ns.entries.insert(key.to_owned(), value.clone());
                Ok((value, Some(ns.commit(vec![key.to_owned()], log_len))))
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
                    seen.entry(key.as_str()).or_insert(*version);
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
            Ok(version) => Hint::Changed { version: Some(version) },
            // Missed hints: tell the dict to look for itself.
            Err(_) => Hint::Resumed,
        });
        Ok(Some(Box::pin(hints)))
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.check(key)?;
        self.with(|ns, log_len| {
            if ns.entries.get(key) != old.as_ref() {
                return Err(Error::Conflict { key: key.into() });
            }
            match new {
                Some(value) => {
                    ns.entries.insert(key.to_owned(), value);
                }
                None => {
                    if ns.entries.remove(key).is_none() {
                        // Expected absent, asked to delete: nothing to do.
                        return Ok(None);
                    }
                }
            }
            Ok(Some(ns.commit(vec![key.to_owned()], log_len)))
        })
    }
}
