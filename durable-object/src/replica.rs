//! The backend's copy of its namespace, brought up to date by replaying the commit log:
//! what writers decide against, and what deltas are answered from.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use durable_core::{KeyChange, Version};

use crate::format::{Commit, Val};

/// One key's stored form and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub val: Val,
    pub bytes: Bytes,
}

/// One replayed commit: its version, the keys it touched and when the store wrote it.
pub(crate) struct Logged {
    pub version: Version,
    pub keys: Vec<Arc<str>>,
    pub time: SystemTime,
}

pub(crate) struct Replica {
    /// Whether it was ever loaded (from a checkpoint or the log's start).
    pub loaded: bool,
    pub version: Version,
    /// The id of the commit that made `version`, when it was replayed (not loaded from a
    /// checkpoint): the periodic check compares it with the stored one.
    pub head_id: Option<u64>,
    pub entries: imbl::HashMap<String, Entry>,
    /// Replayed commits, oldest first; deltas after `log_floor` are answered from it.
    pub log: VecDeque<Logged>,
    pub log_floor: Version,
    log_len: usize,
    /// The journal's trim point as the log last said.
    pub trim_through: Version,
    /// When the store was last checked in full (checkpoints listed, head confirmed).
    pub verified_at: Option<Instant>,
}

impl Replica {
    pub fn new(log_len: usize) -> Self {
        Self {
            loaded: false,
            version: 0,
            head_id: None,
            entries: imbl::HashMap::new(),
            log: VecDeque::new(),
            log_floor: 0,
            log_len: log_len.max(1),
            trim_through: 0,
            verified_at: None,
        }
    }

    /// Starts over at `version` with `entries` (a checkpoint, or empty at 0).
    pub fn reset(&mut self, version: Version, entries: imbl::HashMap<String, Entry>, trim_through: Version) {
        self.loaded = true;
        self.version = version;
        self.head_id = None;
        self.entries = entries;
        self.log.clear();
        self.log_floor = version;
        self.trim_through = trim_through;
    }

    /// Replays `commit` (the next version), its large values taken from `blobs`. A commit
    /// that could not be read is replayed as `None`: the version passes, nothing changes.
    pub fn apply(
        &mut self,
        version: Version,
        commit: Option<&Commit>,
        blobs: &HashMap<String, Bytes>,
        time: SystemTime,
    ) {
        debug_assert_eq!(version, self.version + 1);
        let mut keys = Vec::new();
        if let Some(commit) = commit {
            for change in &commit.changes {
                match &change.new {
                    Some(val) => {
                        let Some(bytes) = resolve(val, blobs) else {
                            // The caller fetched every blob first; a missing one is a bug.
                            tracing::error!(key = %change.key, "a large value was not fetched before replay");
                            continue;
                        };
                        self.entries.insert(change.key.clone(), Entry { val: val.clone(), bytes });
                    }
                    None => {
                        self.entries.remove(&change.key);
                    }
                }
                keys.push(Arc::from(change.key.as_str()));
            }
            self.trim_through = self.trim_through.max(commit.trim_through);
        }
        self.version = version;
        self.head_id = commit.map(|commit| commit.id);
        self.log.push_back(Logged { version, keys, time });
        while self.log.len() > self.log_len {
            if let Some(old) = self.log.pop_front() {
                self.log_floor = old.version;
            }
        }
    }

    /// Every key changed after `since` (at least `log_floor`), once, with its value now.
    pub fn changes_since(&self, since: Version) -> Vec<KeyChange> {
        let mut seen: HashMap<&str, Version> = HashMap::new();
        for logged in self.log.iter().rev().take_while(|logged| logged.version > since) {
            for key in &logged.keys {
                seen.entry(&**key).or_insert(logged.version);
            }
        }
        seen.into_iter()
            .map(|(key, version)| KeyChange {
                key: key.to_owned(),
                value: self.entries.get(key).map(|entry| entry.bytes.clone()),
                version,
            })
            .collect()
    }

    /// The newest replayed version written before `cutoff`, if any.
    pub fn last_before(&self, cutoff: SystemTime) -> Option<Version> {
        self.log.iter().take_while(|logged| logged.time < cutoff).last().map(|logged| logged.version)
    }
}

/// A value's bytes: inline, or the fetched blob.
pub(crate) fn resolve(val: &Val, blobs: &HashMap<String, Bytes>) -> Option<Bytes> {
    match val {
        Val::Inline(bytes) => Some(bytes.clone()),
        Val::Blob { hash, .. } => blobs.get(hash).cloned(),
    }
}
