//! `Snapshot<V>`: an immutable view of a dict at one version — the per-request view.
//!
//! A snapshot is built aside by a sync and swapped in whole (invariant 6); reading one is a
//! hash lookup in memory, with no lock, no allocation and no await. The map is an
//! [`EntryMap`](crate::entry_map): a compact hash map shared between snapshots plus a small
//! persistent overlay of recent changes, so a sync that changes k keys builds the next
//! snapshot in O(k) while sharing everything else with the previous one (invariant 5).

use std::fmt;
use std::sync::Arc;

use arc_swap::Guard;

use crate::backend::Version;
use crate::entry_map::EntryMap;
use crate::error::Error;

/// One decoded value and a hash of the bytes it was decoded from, so that a later sync can
/// tell an unchanged value without decoding it again (invariant 8).
pub(crate) struct Entry<V> {
    pub(crate) value: Arc<V>,
    pub(crate) raw_hash: u64,
}

impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Self { value: Arc::clone(&self.value), raw_hash: self.raw_hash }
    }
}

/// What a [`Snapshot`] points at.
pub(crate) struct SnapshotData<V> {
    pub(crate) entries: EntryMap<V>,
    /// Keys whose stored value could not be decoded, with the error. Such a key keeps its
    /// last good value if it had one, and is absent otherwise.
    pub(crate) undecodable: imbl::HashMap<Arc<str>, Error>,
    pub(crate) version: Version,
}

impl<V> SnapshotData<V> {
    pub(crate) fn empty() -> Self {
        Self { entries: EntryMap::new(), undecodable: imbl::HashMap::new(), version: 0 }
    }
}

/// An immutable view of the dict at one version. Cheap to clone (one `Arc`); hold one for
/// the length of a request so that every read in it sees the same version.
///
/// Taking one ([`DurableDict::snapshot`](crate::DurableDict::snapshot)) writes nothing
/// that other threads share: it borrows the current version through one of arc-swap's
/// per-thread slots instead of counting a reference on it, so readers on many cores do not
/// bounce one cache line between them. A swap meanwhile turns the borrow into a counted
/// reference; a clone is a counted reference.
pub struct Snapshot<V> {
    pub(crate) data: Guard<Arc<SnapshotData<V>>>,
}

impl<V> Snapshot<V> {
    pub(crate) fn new(data: Arc<SnapshotData<V>>) -> Self {
        Self { data: Guard::from_inner(data) }
    }

    pub(crate) fn borrowed(data: Guard<Arc<SnapshotData<V>>>) -> Self {
        Self { data }
    }
}

impl<V> Clone for Snapshot<V> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.data))
    }
}

impl<V> Snapshot<V> {
    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.data.entries.get(key).map(|entry| &*entry.value)
    }

    /// The value at `key` as a shared pointer that outlives the snapshot.
    pub fn get_arc(&self, key: &str) -> Option<Arc<V>> {
        self.data.entries.get(key).map(|entry| Arc::clone(&entry.value))
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.data.entries.contains_key(key)
    }

    /// Every key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> + '_ {
        self.data.entries.iter().map(|(key, entry)| (&**key, &*entry.value))
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.data.entries.keys().map(|key| &**key)
    }

    /// How many keys have a value.
    pub fn len(&self) -> usize {
        self.data.entries.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.data.entries.is_empty()
    }

    /// The store version this snapshot holds: it never records a version newer than its
    /// data (invariant 2).
    pub fn version(&self) -> Version {
        self.data.version
    }

    /// Keys whose stored value could not be decoded, with the reason. They keep their last
    /// good value if they had one; otherwise they are absent from the snapshot.
    pub fn undecodable(&self) -> impl Iterator<Item = (&str, &Error)> + '_ {
        self.data.undecodable.iter().map(|(key, err)| (&**key, err))
    }
}

impl<V: fmt::Debug> fmt::Debug for Snapshot<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.data.version)
            .field("entries", &self.data.entries.len())
            .field("undecodable", &self.data.undecodable.len())
            .finish()
    }
}
