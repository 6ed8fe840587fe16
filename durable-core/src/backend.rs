//! The `Backend` trait: durabledict's four-method store interface on bytes, plus the atomic
//! multi-key and conditional writes, deltas and pushed change hints the dict relies on.
//!
//! Every method that touches the store is required. A store with only the four primitives
//! implements [`SimpleStore`](crate::SimpleStore) instead and is adapted by
//! [`ReadThenWrite`](crate::ReadThenWrite), which is correct for a single writer but not
//! atomic against others; a wrapper implements [`Wrap`](crate::Wrap).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::journal::{JournalPage, JournalRecord};
use crate::lease::{LeaseAnswer, LeaseOp};

/// The version of a namespace: 0 before the first write, and strictly increasing with every
/// successful mutation. Each mutation (an `insert_many` included) moves it by exactly one in
/// every backend of this workspace; the dict relies only on "strictly increasing".
pub type Version = u64;

/// A whole namespace as read by [`Backend::durables`]: its entries and the version they
/// belong to. The version is never newer than the entries (invariant 2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durables {
    /// Every key with its encoded value.
    pub entries: Vec<(String, Bytes)>,
    /// The namespace version the entries belong to.
    pub version: Version,
}

/// One key's state after a change: its new encoded value, or `None` when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The key.
    pub key: String,
    /// The value after the change, `None` for a deletion (a tombstone).
    pub value: Option<Bytes>,
    /// The version of the change that last touched this key where the store records it
    /// (SQL, Redis, memory); ZooKeeper, which does not, gives the delta's version. Either
    /// way it is above the asked-for version and at most the delta's. The dict uses it only
    /// to order the events of one update.
    pub version: Version,
}

/// The answer of [`Backend::changes_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Every key changed after the asked-for version, once each with its latest state, and
    /// the version this delta brings a reader to (never newer than the data in it).
    Delta {
        /// The changed keys.
        changes: Vec<KeyChange>,
        /// The version a reader is at after applying `changes`.
        version: Version,
    },
    /// The store cannot say what changed since then (no change log, the log was trimmed,
    /// the version went backwards): reload everything with [`Backend::durables`].
    TooOld,
}

/// A change hint from [`Backend::watch`]. Hints only say *when* to look; what changed is
/// always read from the store by version (invariant 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hint {
    /// The namespace changed; `version` is the new version when the backend knows it.
    /// `None` also means the change may not show in the version (a writer that keeps no
    /// version): the dict then asks `changes_since` even if the version did not move.
    Changed {
        /// The version after the change, if known.
        version: Option<Version>,
    },
    /// The listener lost its connection: until [`Hint::Resumed`], silence means nothing.
    Interrupted,
    /// The listener is connected (again). Anything may have changed while it was not, so
    /// the dict asks the store for changes once, even if the version did not move.
    Resumed,
    /// A lease in the namespace was released: whoever waits for one may try now. Says
    /// nothing about the data (a dict ignores it).
    LeaseReleased,
}

/// The stream [`Backend::watch`] returns. It ends when the listener gives up for good; the
/// dict then treats hints as unhealthy and calls `watch()` again later.
pub type HintStream = Pin<Box<dyn Stream<Item = Hint> + Send + 'static>>;

/// How a backend crate opens a namespace from a URL, for the facade's scheme registry
/// (`durable::connect` looks the URL's scheme up and calls the backend's `open`).
pub type Open = for<'a> fn(&'a str, &'a str) -> Opening<'a>;

/// The connection under way that an [`Open`] function returns.
pub type Opening<'a> = Pin<Box<dyn Future<Output = Result<Arc<dyn Backend>>> + Send + 'a>>;

/// Longest key, in bytes, that the default [`Backend::validate_key`] accepts.
pub const DEFAULT_MAX_KEY_LEN: usize = 1024;

/// The default [`Backend::validate_key`]: not empty, at most [`DEFAULT_MAX_KEY_LEN`] bytes,
/// no NUL. A backend with further rules calls it first.
pub fn default_key_rule(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_key(key, "keys cannot be empty"));
    }
    if key.len() > DEFAULT_MAX_KEY_LEN {
        return Err(Error::invalid_key(
            key,
            format!("keys are at most {DEFAULT_MAX_KEY_LEN} bytes, this one is {}", key.len()),
        ));
    }
    // PostgreSQL's text and ZooKeeper's paths cannot hold NUL: refusing it everywhere keeps
    // keys portable between backends.
    if key.contains('\0') {
        return Err(Error::invalid_key(key, "keys cannot contain NUL"));
    }
    Ok(())
}

/// The namespace rule every backend applies before any I/O: 1 to `max_len` bytes, and no
/// character that would need quoting somewhere a namespace travels — in SQL text, a shell
/// command, a log line or an admin tool: no whitespace, no control character, no quote
/// (`'`, `"`, `` ` ``), no `;` and no `\\`. Backends add their own rules (ZooKeeper: no `/`).
///
/// ```
/// use durable_core::validate_namespace;
/// assert!(validate_namespace("feature-flags:v2", 255).is_ok());
/// assert!(validate_namespace("flags'; drop table x; --", 255).is_err());
/// assert!(validate_namespace("my flags", 255).is_err());
/// ```
pub fn validate_namespace(namespace: &str, max_len: usize) -> Result<()> {
    let shown = || namespace.chars().take(64).collect::<String>();
    if namespace.is_empty() {
        return Err(Error::InvalidNamespace { namespace: String::new(), reason: "namespaces cannot be empty".into() });
    }
    if namespace.len() > max_len {
        return Err(Error::InvalidNamespace {
            namespace: shown(),
            reason: format!("namespaces are at most {max_len} bytes, this one is {}", namespace.len()),
        });
    }
    if let Some(bad) = namespace.chars().find(|c| c.is_whitespace() || c.is_control() || "'\"`;\\".contains(*c)) {
        return Err(Error::InvalidNamespace {
            namespace: shown(),
            reason: format!(
                "namespaces cannot contain {bad:?} (no whitespace, control characters, quotes, `;` or `\\`)"
            ),
        });
    }
    Ok(())
}

/// A durable store holding one namespace of a dictionary, on bytes. Object safe: the dict
/// holds an `Arc<dyn Backend>`.
///
/// Every method that reads or writes the store is required, so that nothing falls back to a
/// weaker default by accident: a store with only durabledict's four primitives implements
/// [`SimpleStore`](crate::SimpleStore) and is adapted with
/// [`ReadThenWrite`](crate::ReadThenWrite), whose name says what it gives up; a wrapper
/// implements [`Wrap`](crate::Wrap) and inherits everything of what it wraps.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for messages and metrics (`memory`, `redis`, `postgres`, ...).
    fn name(&self) -> &'static str;

    /// What this backend is, wrappers included (`counting(lazy(redis))`), for `Debug` and
    /// logs. The default is [`Backend::name`].
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// Refuses keys this store cannot hold, without I/O. The dict calls it before every
    /// write. The default is [`default_key_rule`]: no empty keys, none over
    /// [`DEFAULT_MAX_KEY_LEN`] bytes, none containing NUL.
    fn validate_key(&self, key: &str) -> Result<()> {
        default_key_rule(key)
    }

    /// The largest encoded value this store accepts, if it has a limit. The dict refuses
    /// bigger values with [`Error::ValueTooLarge`] before any I/O.
    fn max_value_size(&self) -> Option<usize> {
        None
    }

    /// What this handle reads, as a string naming the store and the namespace (server,
    /// database, tables, key prefix), for handles that read the same data to share their
    /// reads: the dicts of one process whose handles give the same scope share one delta
    /// fetch per change instead of one each. `None`, the default, shares nothing — right
    /// for wrappers, which may change what a read returns, and for stores a string cannot
    /// name (an in-process memory store).
    fn fetch_scope(&self) -> Option<String> {
        None
    }

    /// Stores `value` at `key`; returns the new version.
    async fn persist(&self, key: &str, value: Bytes) -> Result<Version>;

    /// Deletes `key`; returns the new version, or `None` (and no version bump) when the key
    /// was absent.
    async fn depersist(&self, key: &str) -> Result<Option<Version>>;

    /// Every entry and the version they belong to, read consistently.
    async fn durables(&self) -> Result<Durables>;

    /// The current version: the cheap check `sync()` makes.
    async fn last_updated(&self) -> Result<Version>;

    /// Applies every put and delete of `batch` as one mutation (one version bump); no reader
    /// sees part of it. With a [guard](Batch::guard), only if the namespace is still at that
    /// version when the store applies it — else nothing is written and the call fails with
    /// [`Error::VersionConflict`] carrying the current version. Returns the new version, or
    /// `None` when the batch changed nothing (empty, or only deletes of absent keys): then
    /// nothing is written and no version is made.
    async fn apply(&self, batch: Batch) -> Result<Option<Version>>;

    /// Removes `key` and returns its value with the new version, or `None` when absent —
    /// one atomic step in the store.
    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>>;

    /// Returns the value at `key`, first storing `value` there if the key was absent — one
    /// atomic step in the store. The version comes back only when it inserted (a found key
    /// bumps nothing).
    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)>;

    /// Every key changed after `since`, or [`Changes::TooOld`] when the store cannot say
    /// (a store without a change log always answers `TooOld`: every sync that finds a change
    /// is then a full reload).
    async fn changes_since(&self, since: Version) -> Result<Changes>;

    /// Subscribes to change hints. Returns once the subscription is in place, so that every
    /// change after the call produces a hint; `None` when the store pushes nothing (the dict
    /// then polls).
    async fn watch(&self) -> Result<Option<HintStream>>;

    /// Sets `key` to `new` (deletes it when `new` is `None`) only if its current encoded
    /// value equals `old` (`None`: only if absent) — one atomic step in the store.
    /// Returns the new version, or [`Error::Conflict`] without writing anything. When the
    /// comparison holds but there is nothing to write — `old` and `new` both `None`,
    /// the key absent — it writes nothing and returns `Ok(None)`: never the store's current
    /// version, which belongs to whatever write made it and would let a dict label its
    /// snapshot with data it does not hold.
    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>>;

    /// The journal after version `after`: records in version order, whole versions, at
    /// least `limit` records when there are that many (a version is never split), with the
    /// namespace version and how far retention trimmed (see [`JournalPage`]). The version is
    /// read before the records, so every journaled version up to it is in this page or a
    /// later one. A store that keeps no journal returns no records: every version is then a
    /// gap to the reader.
    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage>;

    /// The journal records of `key`, newest first, at most `limit`.
    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>>;

    /// Acquires, renews or releases the lease on `key` as [`crate::lease`] lays down: in one
    /// atomic step that also orders it with every write to the key, judged by the store's
    /// clock, the holder being the backend's actor name. Every write method checks leases:
    /// a key with a live lease is written only by an [`apply`](Backend::apply) whose batch
    /// carries its token ([`Batch::fence`]); anything else fails with [`Error::Leased`] or
    /// [`Error::LeaseLost`] and writes nothing. A release hints [`Hint::LeaseReleased`] to
    /// watchers where the store pushes hints.
    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer>;

    /// Removes the namespace from its store entirely: every key, and everything kept beside
    /// them — the version, the change log, the journal, the leases. Dicts still following
    /// it see it empty at their next sync (the store's version goes back to 0, which makes
    /// them reload); a handle opened afterwards finds a namespace that never existed, at
    /// version 0, and writing to it starts it again.
    ///
    /// Versions start again from 0 afterwards, so a process that kept a handle across the
    /// removal and did not sync meanwhile could take the new namespace's version N for the
    /// old one's: stop the processes using a namespace before removing it and creating it
    /// again. Leases end with it (their tokens start again too). It is for decommissioning
    /// (`durable drop`), not for emptying a live namespace — a batch deleting every key
    /// does that, as one version.
    async fn remove_namespace(&self) -> Result<()>;
}
