//! [`Batch`]: puts and deletes applied to a namespace as one mutation, optionally guarded by
//! the version the namespace must still be at.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::backend::Version;
use crate::lease::Token;

/// What a [`Batch`] does to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store this (encoded) value.
    Put(Bytes),
    /// Delete the key; a key that is absent is left alone.
    Delete,
}

/// Puts and deletes that a store applies as **one mutation**: one version, and no reader
/// anywhere sees part of it; with a [guard](Batch::guard), only if the namespace is still at
/// that version, else nothing is written and the write fails with
/// [`Error::VersionConflict`](crate::Error::VersionConflict) carrying the current version.
///
/// A key given twice keeps its last operation. A batch that changes nothing — empty, or
/// only deletes of absent keys — writes nothing and makes no version (its guard is still
/// checked). This is [`Backend::apply`](crate::Backend::apply)'s argument; a dict builds one
/// from typed values with [`DurableDict::batch`](crate::DurableDict::batch).
///
/// ```
/// use durable_core::{Batch, Bytes, Op};
/// let batch = Batch::new().put("a", Bytes::from_static(b"1")).delete("b").put("a", Bytes::from_static(b"2")).guard(7);
/// assert_eq!(batch.ops().collect::<Vec<_>>(), [("a", &Op::Put(Bytes::from_static(b"2"))), ("b", &Op::Delete)]);
/// assert_eq!(batch.guard_version(), Some(7));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: BTreeMap<String, Op>,
    guard: Option<Version>,
    reason: Option<String>,
    fences: BTreeMap<String, Token>,
}

impl Batch {
    /// An empty batch, unguarded.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch of puts (what `insert_many` writes).
    pub fn puts(entries: impl IntoIterator<Item = (String, Bytes)>) -> Self {
        Self { ops: entries.into_iter().map(|(key, value)| (key, Op::Put(value))).collect(), ..Self::default() }
    }

    /// Adds a put of `value` at `key` (replacing any earlier operation on `key`).
    pub fn put(mut self, key: impl Into<String>, value: Bytes) -> Self {
        self.ops.insert(key.into(), Op::Put(value));
        self
    }

    /// Adds a delete of `key` (replacing any earlier operation on `key`).
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.insert(key.into(), Op::Delete);
        self
    }

    /// Applies the batch only if the namespace is at `version` when the store applies it.
    pub fn guard(mut self, version: Version) -> Self {
        self.guard = Some(version);
        self
    }

    /// Carries the lease token `token` for `key`: the store applies the batch only if that
    /// token is the key's live lease ([`crate::lease`]); a key with a live lease and no token
    /// here fails the batch with [`Error::Leased`](crate::Error::Leased). A fenced key the
    /// batch does not write is still checked, so a batch can assert a lease it holds.
    pub fn fence(mut self, key: impl Into<String>, token: Token) -> Self {
        self.fences.insert(key.into(), token);
        self
    }

    /// The token the batch carries for `key`, if any.
    pub fn fence_for(&self, key: &str) -> Option<Token> {
        self.fences.get(key).copied()
    }

    /// The keys whose leases a store checks: every key written and every key fenced, once
    /// each, in key order, with the token carried for it.
    pub fn leased_keys(&self) -> Vec<(&str, Option<Token>)> {
        let mut keys: BTreeMap<&str, Option<Token>> = self.ops.keys().map(|key| (key.as_str(), None)).collect();
        keys.extend(self.fences.iter().map(|(key, token)| (key.as_str(), Some(*token))));
        keys.into_iter().collect()
    }

    /// Why the batch is made, for the record (the change journal keeps it).
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The operations, one per key, in key order.
    pub fn ops(&self) -> impl ExactSizeIterator<Item = (&str, &Op)> {
        self.ops.iter().map(|(key, op)| (key.as_str(), op))
    }

    /// The puts, in key order.
    pub fn puts_iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.ops().filter_map(|(key, op)| match op {
            Op::Put(value) => Some((key, value)),
            Op::Delete => None,
        })
    }

    /// The deleted keys, in key order.
    pub fn deletes(&self) -> impl Iterator<Item = &str> {
        self.ops().filter(|(_, op)| matches!(op, Op::Delete)).map(|(key, _)| key)
    }

    /// The version the namespace must be at, if guarded.
    pub fn guard_version(&self) -> Option<Version> {
        self.guard
    }

    /// The reason given, if any.
    pub fn reason_text(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// How many keys it touches.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether it has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The bytes of every key and put value: what a store with a request limit weighs.
    pub fn payload_size(&self) -> usize {
        self.ops().map(|(key, op)| key.len() + if let Op::Put(value) = op { value.len() } else { 0 }).sum()
    }
}
