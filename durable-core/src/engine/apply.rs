//! Building the next snapshot: values decoded once, here (invariant 8), a delta applied in
//! O(k) or a full reload, built aside and swapped in whole (invariant 6), with the change
//! events of the update.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::backend::{Durables, KeyChange, Version};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::events::{Change, Event};
use crate::snapshot::{Entry, SnapshotData};

use super::{Engine, Incoming, SyncOutcome};

impl<V: Send + Sync + 'static, C: Codec<V>> Engine<V, C> {
    /// The raw-bytes hash an entry keeps, to skip decoding a value that did not change.
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// Decodes `bytes` for `key` unless they are the bytes `old` came from. `Ok(None)`: the
    /// value did not change.
    fn decode_changed(&self, key: &str, bytes: &[u8], old: Option<&Entry<V>>) -> Result<Option<Entry<V>>> {
        let raw_hash = self.hash(bytes);
        if old.is_some_and(|old| old.raw_hash == raw_hash) {
            return Ok(None);
        }
        match self.codec.decode(bytes) {
            Ok(value) => Ok(Some(Entry { value: Arc::new(value), raw_hash })),
            Err(source) => Err(Error::Decode { key: key.into(), source }),
        }
    }

    pub(super) fn apply_delta(
        &self,
        current: &Arc<SnapshotData<V>>,
        mut changes: Vec<KeyChange>,
        version: Version,
    ) -> SyncOutcome {
        let keys = changes.len();
        // Events within one update come in the order the store wrote the keys (stable: the
        // keys of one batch keep the store's order).
        changes.sort_by_key(|change| change.version);
        let mut undecodable = Vec::new();
        let mut incoming = Vec::with_capacity(changes.len());
        for KeyChange { key, value, .. } in changes {
            let key: Arc<str> = key.into();
            let entry = match value {
                None => None,
                Some(bytes) => match self.decode_changed(&key, &bytes, current.entries.get(&key)) {
                    Ok(None) => continue,
                    Ok(Some(entry)) => Some(entry),
                    Err(err) => {
                        undecodable.push((key, err));
                        continue;
                    }
                },
            };
            incoming.push(Incoming { key, entry });
        }
        self.apply(current, incoming, undecodable, version);
        SyncOutcome::Delta { keys, version }
    }

    pub(super) fn apply_full(&self, current: &Arc<SnapshotData<V>>, durables: Durables) -> SyncOutcome {
        let Durables { entries, version } = durables;
        let keys = entries.len();
        let mut next = std::collections::HashMap::with_capacity(keys);
        let mut undecodable = imbl::HashMap::new();
        let mut changes = Vec::new();
        let notify = self.events.listened();
        for (key, bytes) in entries {
            let key: Arc<str> = key.into();
            let old = current.entries.get(&key);
            match self.decode_changed(&key, &bytes, old) {
                Ok(None) => {
                    if let Some(old) = old {
                        next.insert(key, old.clone());
                    }
                }
                Ok(Some(entry)) => {
                    if notify {
                        changes.push(change(&key, old, Some(&entry), version));
                    }
                    next.insert(key, entry);
                }
                Err(err) => {
                    self.report_undecodable(&key, &err);
                    if let Some(old) = old {
                        next.insert(key.clone(), old.clone());
                    }
                    undecodable.insert(key, err);
                }
            }
        }
        if notify {
            for (key, old) in current.entries.iter() {
                if !next.contains_key(key) {
                    changes.push(change(key, Some(old), None, version));
                }
            }
        }
        let entries = next.into();
        self.folder.reset();
        self.swap_in(SnapshotData { entries, undecodable, version });
        self.emit(changes);
        SyncOutcome::Full { keys, version }
    }

    /// Builds the next snapshot from `current` and `incoming` (O(k)), swaps it in at
    /// `version` and tells subscribers; every event carries `version`, the version of the
    /// first snapshot that shows it. The caller holds the ledger lock, so snapshots only
    /// move forward, and events come in version order.
    pub(crate) fn apply(
        &self,
        current: &Arc<SnapshotData<V>>,
        incoming: Vec<Incoming<V>>,
        bad: Vec<(Arc<str>, Error)>,
        version: Version,
    ) {
        let mut entries = current.entries.clone();
        let mut undecodable = current.undecodable.clone();
        let notify = self.events.listened();
        let mut changes = Vec::new();
        let mut touched = Vec::with_capacity(incoming.len());
        for Incoming { key, entry } in incoming {
            touched.push(Arc::clone(&key));
            undecodable.remove(&key);
            let old = match entry {
                Some(entry) => {
                    if notify {
                        changes.push(change(&key, entries.get(&key), Some(&entry), version));
                    }
                    entries.insert(key, entry)
                }
                None => {
                    let old = entries.remove(&key);
                    if notify && let Some(old) = &old {
                        changes.push(change(&key, Some(old), None, version));
                    }
                    old
                }
            };
            drop(old);
        }
        for (key, err) in bad {
            self.report_undecodable(&key, &err);
            undecodable.insert(key, err);
        }
        self.folder.after_update(&mut entries, touched);
        self.swap_in(SnapshotData { entries, undecodable, version });
        self.emit(changes);
    }

    fn swap_in(&self, data: SnapshotData<V>) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.swapped(data.version, data.entries.len());
        }
        self.current.store(Arc::new(data));
        self.swaps.fetch_add(1, Ordering::AcqRel);
        self.swapped.notify_one();
    }

    fn report_undecodable(&self, key: &Arc<str>, err: &Error) {
        tracing::warn!(backend = self.backend.name(), key = %&**key, error = %err, "durable: skipping a value that cannot be decoded");
        self.events.send(Event::Undecodable { key: Arc::clone(key), error: err.clone() });
    }

    fn emit(&self, changes: Vec<Change<V>>) {
        for change in changes {
            self.events.send(Event::Changed(change));
        }
    }
}

fn change<V>(key: &Arc<str>, old: Option<&Entry<V>>, new: Option<&Entry<V>>, version: Version) -> Change<V> {
    Change {
        key: Arc::clone(key),
        old: old.map(|entry| Arc::clone(&entry.value)),
        new: new.map(|entry| Arc::clone(&entry.value)),
        version,
    }
}
