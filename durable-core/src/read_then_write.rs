//! [`ReadThenWrite`]: a [`Backend`] made from durabledict's four primitives; see its docs.

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{Backend, Changes, Durables, HintStream, Version, default_key_rule};
use crate::batch::{Batch, Op};
use crate::error::{Error, Result};
use crate::journal::{JournalPage, JournalRecord};
use crate::lease::{LeaseAnswer, LeaseOp};

/// durabledict's four-method store interface: all a [`ReadThenWrite`] needs. Each method
/// has the contract of the [`Backend`] method of the same name.
#[async_trait]
pub trait SimpleStore: Send + Sync + 'static {
    /// See [`Backend::name`].
    fn name(&self) -> &'static str;
    /// See [`Backend::validate_key`]; the default is the same.
    fn validate_key(&self, key: &str) -> Result<()> {
        default_key_rule(key)
    }
    /// See [`Backend::max_value_size`]; the default is the same (no limit).
    fn max_value_size(&self) -> Option<usize> {
        None
    }
    /// See [`Backend::persist`].
    async fn persist(&self, key: &str, value: Bytes) -> Result<Version>;
    /// See [`Backend::depersist`].
    async fn depersist(&self, key: &str) -> Result<Option<Version>>;
    /// See [`Backend::durables`].
    async fn durables(&self) -> Result<Durables>;
    /// See [`Backend::last_updated`].
    async fn last_updated(&self) -> Result<Version>;
}

/// A [`Backend`] made from durabledict's four primitives ([`SimpleStore`]), for a
/// third-party store that has nothing more. Its `apply`, `pop`, `setdefault` and
/// `compare_and_swap` read and then write: correct for a single writer, *not* atomic
/// against other writers — which is what its name says: a batch is one write per key (a
/// version each) and its guard is checked by reading the version first. It has no deltas (every sync that
/// finds a change reloads everything) and no hints (the dict polls).
///
/// ```
/// use durable_core::{
///     DurableDict, Durables, ReadThenWrite, Result, SimpleStore, Version, async_trait, Bytes,
/// };
/// use std::collections::BTreeMap;
/// use std::sync::{Arc, Mutex};
///
/// /// A store with only the four primitives.
/// #[derive(Default)]
/// struct Plain(Mutex<(BTreeMap<String, Bytes>, Version)>);
///
/// #[async_trait]
/// impl SimpleStore for Plain {
///     fn name(&self) -> &'static str {
///         "plain"
///     }
///     async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
///         let mut state = self.0.lock().unwrap();
///         state.0.insert(key.to_owned(), value);
///         state.1 += 1;
///         Ok(state.1)
///     }
///     async fn depersist(&self, key: &str) -> Result<Option<Version>> {
///         let mut state = self.0.lock().unwrap();
///         if state.0.remove(key).is_none() {
///             return Ok(None);
///         }
///         state.1 += 1;
///         Ok(Some(state.1))
///     }
///     async fn durables(&self) -> Result<Durables> {
///         let state = self.0.lock().unwrap();
///         Ok(Durables { entries: state.0.clone().into_iter().collect(), version: state.1 })
///     }
///     async fn last_updated(&self) -> Result<Version> {
///         Ok(self.0.lock().unwrap().1)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let dict = DurableDict::<String>::builder(Arc::new(ReadThenWrite(Plain::default()))).build().await?;
/// dict.insert("greeting", "hello".into()).await?;
/// assert_eq!(dict.pop("greeting").await?.as_deref().map(String::as_str), Some("hello"));
/// assert_eq!(dict.backend().describe(), "read-then-write(plain)");
/// # Ok(()) }
/// ```
#[derive(Debug, Default, Clone)]
pub struct ReadThenWrite<S>(pub S);

impl<S: SimpleStore> ReadThenWrite<S> {
    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        let current = self.0.durables().await?;
        Ok(current.entries.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
    }
}

#[async_trait]
impl<S: SimpleStore> Backend for ReadThenWrite<S> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn describe(&self) -> String {
        format!("read-then-write({})", self.0.name())
    }
    fn validate_key(&self, key: &str) -> Result<()> {
        self.0.validate_key(key)
    }
    fn max_value_size(&self) -> Option<usize> {
        self.0.max_value_size()
    }
    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.0.persist(key, value).await
    }
    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.0.depersist(key).await
    }
    async fn durables(&self) -> Result<Durables> {
        self.0.durables().await
    }
    async fn last_updated(&self) -> Result<Version> {
        self.0.last_updated().await
    }

    /// One write per key: a reader may see part of it; the guard is checked by a read first.
    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        if let Some(expected) = batch.guard_version() {
            let current = self.0.last_updated().await?;
            if current != expected {
                return Err(Error::VersionConflict { expected, current });
            }
        }
        let mut version = None;
        for (key, op) in batch.ops() {
            let written = match op {
                Op::Put(value) => Some(self.0.persist(key, value.clone()).await?),
                Op::Delete => self.0.depersist(key).await?,
            };
            version = written.or(version);
        }
        Ok(version)
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        let Some(value) = self.read(key).await? else {
            return Ok(None);
        };
        Ok(self.0.depersist(key).await?.map(|version| (value, version)))
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        if let Some(found) = self.read(key).await? {
            return Ok((found, None));
        }
        let version = self.0.persist(key, value.clone()).await?;
        Ok((value, Some(version)))
    }

    async fn changes_since(&self, _since: Version) -> Result<Changes> {
        Ok(Changes::TooOld)
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        Ok(None)
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        if self.read(key).await? != old {
            return Err(Error::Conflict { key: key.into() });
        }
        match new {
            Some(value) => self.0.persist(key, value).await.map(Some),
            None => self.0.depersist(key).await,
        }
    }

    /// No journal: every version is a gap to a reader.
    async fn journal(&self, _after: Version, _limit: usize) -> Result<JournalPage> {
        Ok(JournalPage { version: self.0.last_updated().await?, ..JournalPage::default() })
    }

    async fn history(&self, _key: &str, _limit: usize) -> Result<Vec<JournalRecord>> {
        Ok(Vec::new())
    }

    /// Refused: a lease is only as good as the store's check on every write, and four
    /// primitives cannot check one atomically.
    async fn lease(&self, _key: &str, _op: LeaseOp) -> Result<LeaseAnswer> {
        Err(Error::Unsupported {
            backend: self.0.name(),
            what: "leases (they need a store that checks every write atomically)",
        })
    }

    /// Refused: four primitives can delete the keys but not the version beside them.
    async fn remove_namespace(&self) -> Result<()> {
        Err(Error::Unsupported {
            backend: self.0.name(),
            what: "removing a namespace (four primitives cannot remove its version)",
        })
    }
}
