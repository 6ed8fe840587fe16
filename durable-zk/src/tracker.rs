//! The tracker: which keys changed after which snapshot versions, so that a delta knows
//! what to read.

use std::collections::{BTreeMap, HashMap};

use durable_core::Version;

use crate::watch::State;

/// Anchors kept (see [`Tracker`]): one per recent snapshot version.
pub(crate) const MAX_ANCHORS: usize = 64;

/// What the watch has told this backend. Events are numbered in the order they arrive
/// (ZooKeeper 3.8 sends no zxid with them; the order is the order of the changes). Every
/// change whose event comes after an anchor's or a read's starting number is recorded in
/// `changed` (per key, the number of its latest event) for as long as the `epoch` lasts; a
/// disconnect ends the epoch and forgets everything, since events may have been lost.
#[derive(Default)]
pub(crate) struct Tracker {
    pub(crate) epoch: u64,
    /// Number of the last event processed.
    pub(crate) seq: u64,
    pub(crate) changed: HashMap<String, u64>,
    /// Snapshot version → the event number up to which a read at that version covered
    /// every change.
    pub(crate) anchors: BTreeMap<Version, u64>,
    /// The starting event numbers of the reads under way (see [`Pinned`]): what changed
    /// after them is kept for them.
    pub(crate) pins: Vec<u64>,
}

impl Tracker {
    pub(crate) fn forget(&mut self) {
        self.epoch += 1;
        self.anchors.clear();
        self.changed.clear();
    }

    pub(crate) fn anchor(&mut self, epoch: u64, version: Version, seq: u64) {
        if epoch != self.epoch {
            return;
        }
        self.anchors.insert(version, seq);
        while self.anchors.len() > MAX_ANCHORS {
            self.anchors.pop_first();
        }
        self.prune();
    }

    /// Forgets the changes at or before every anchor and every read under way: no one needs
    /// them.
    pub(crate) fn prune(&mut self) {
        if let Some(oldest) = self.anchors.values().chain(&self.pins).min().copied() {
            self.changed.retain(|_, seq| *seq > oldest);
        }
    }

    /// The keys changed after event `from`.
    pub(crate) fn changed_after(&self, from: u64) -> Vec<String> {
        self.changed.iter().filter(|(_, seq)| **seq > from).map(|(key, _)| key.clone()).collect()
    }
}

/// Keeps the changes after event `from` recorded while a read that started there is under
/// way, whatever other reads anchor meanwhile.
pub(crate) struct Pinned<'s> {
    pub(crate) state: &'s State,
    pub(crate) from: u64,
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let mut tracker = self.state.tracker();
        if let Some(at) = tracker.pins.iter().position(|pin| *pin == self.from) {
            tracker.pins.swap_remove(at);
        }
        tracker.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read under way keeps the changes after its start, whatever newer reads anchor;
    /// once it ends, they are forgotten.
    #[test]
    fn a_read_under_way_keeps_the_changes_it_needs() {
        let mut tracker = Tracker::default();
        tracker.anchor(0, 1, 0);
        tracker.pins.push(2);
        for (seq, key) in [(1, "a"), (3, "b"), (5, "c")] {
            tracker.changed.insert(key.to_owned(), seq);
        }
        tracker.seq = 5;
        tracker.anchor(0, 2, 5);
        tracker.anchors.remove(&1);
        tracker.prune();
        let mut kept = tracker.changed_after(2);
        kept.sort();
        assert_eq!(kept, ["b", "c"], "the pinned read at 2 still sees what changed after it");
        assert!(!tracker.changed.contains_key("a"), "changes before every anchor and pin go");
        tracker.pins.clear();
        tracker.prune();
        assert!(tracker.changed.is_empty(), "with the read done, the anchor at 5 covers all");
        // An anchor from an ended epoch is not taken.
        tracker.forget();
        tracker.anchor(0, 3, 6);
        assert!(tracker.anchors.is_empty());
    }
}
