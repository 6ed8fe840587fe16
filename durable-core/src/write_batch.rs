//! [`WriteBatch`]: typed puts and removes that a dict applies as one guarded mutation.

use std::collections::BTreeMap;

use crate::backend::Version;
use crate::batch::Batch;
use crate::codec::Codec;
use crate::dict::DurableDict;
use crate::engine::Incoming;
use crate::error::Result;

/// Writes gathered by [`DurableDict::batch`] and applied as **one mutation** by
/// [`WriteBatch::apply`]: one version, and no reader anywhere sees part of it.
///
/// A key given twice keeps its last operation. With [`WriteBatch::guard`], the batch is
/// applied only if the namespace is still at that version — an optimistic read-modify-write
/// over several keys: read a snapshot, decide, write guarded by the snapshot's version, and
/// on [`Error::VersionConflict`](crate::Error::VersionConflict) sync and decide again.
///
/// ```
/// # async fn demo(dict: durable_core::DurableDict<serde_json::Value>) -> durable_core::Result<()> {
/// use serde_json::json;
/// let seen = dict.snapshot();
/// let applied = dict
///     .batch()
///     .insert("checkout.v2", json!(true))
///     .remove("checkout.v1")
///     .guard(seen.version())
///     .reason("roll out checkout v2")
///     .apply()
///     .await?;
/// # let _ = applied; Ok(()) }
/// ```
#[must_use = "a batch writes nothing until it is applied"]
pub struct WriteBatch<'a, V, C> {
    dict: &'a DurableDict<V, C>,
    ops: BTreeMap<String, Option<V>>,
    /// The guard and the reason; the operations join it, encoded, when applied.
    batch: Batch,
}

impl<'a, V: Send + Sync + 'static, C: Codec<V>> WriteBatch<'a, V, C> {
    pub(crate) fn new(dict: &'a DurableDict<V, C>) -> Self {
        Self { dict, ops: BTreeMap::new(), batch: Batch::new() }
    }

    /// Stores `value` at `key`.
    pub fn insert(mut self, key: impl Into<String>, value: V) -> Self {
        self.ops.insert(key.into(), Some(value));
        self
    }

    /// Stores every entry.
    pub fn insert_all<K: Into<String>>(mut self, entries: impl IntoIterator<Item = (K, V)>) -> Self {
        self.ops.extend(entries.into_iter().map(|(key, value)| (key.into(), Some(value))));
        self
    }

    /// Removes `key` (nothing, for a key that is absent when the batch is applied).
    pub fn remove(mut self, key: impl Into<String>) -> Self {
        self.ops.insert(key.into(), None);
        self
    }

    /// Applies the batch only if the namespace is at `version` then (typically the version
    /// of the snapshot the batch was decided on).
    pub fn guard(mut self, version: Version) -> Self {
        self.batch = self.batch.guard(version);
        self
    }

    /// Carries the lease token `token` for `key` (see [`Batch::fence`]); a
    /// [`Lease::batch`](crate::Lease::batch) carries its own.
    pub fn fence(mut self, key: impl Into<String>, token: crate::lease::Token) -> Self {
        self.batch = self.batch.fence(key, token);
        self
    }

    /// Why the batch is made, for the record.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.batch = self.batch.reason(reason);
        self
    }

    /// Applies every write as one mutation and returns its version; `None` when it changed
    /// nothing (no write, or only removes of absent keys: then no version is made). Keys,
    /// values and sizes are checked before any I/O; a guard that no longer holds fails with
    /// [`Error::VersionConflict`](crate::Error::VersionConflict), having written nothing.
    pub async fn apply(self) -> Result<Option<Version>> {
        let dict = self.dict;
        let mut batch = self.batch;
        let mut local = Vec::with_capacity(self.ops.len());
        for (key, value) in self.ops {
            match value {
                Some(value) => {
                    let bytes = dict.encode(&key, &value)?;
                    local.push(dict.set_locally(&key, &bytes, value));
                    batch = batch.put(key, bytes);
                }
                None => {
                    dict.validate_key(&key)?;
                    local.push(Incoming { key: key.as_str().into(), entry: None });
                    batch = batch.delete(key);
                }
            }
        }
        let applied = dict.store_apply(batch).await?;
        if let Some(version) = applied {
            dict.after_write(version, local).await;
        }
        Ok(applied)
    }
}
