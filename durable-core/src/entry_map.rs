//! `EntryMap`: a snapshot's keys and values — a compact hash map (the base) shared by every
//! snapshot built from it, and a small persistent map of the keys changed since (the
//! overlay).
//!
//! - A lookup reads the overlay (skipped while it is empty, and for keys a Bloom filter of
//!   the overlay's keys says are not in it) and then the base: a plain hash lookup, no tree
//!   to walk.
//! - The next snapshot after k changes copies the overlay's root and inserts k keys:
//!   O(k log k), sharing the base and the rest of the overlay (invariant 5).
//! - When the overlay grows past a sixteenth of the base, a [`Folder`] folds it into a new
//!   base on a thread of its own (O(n), once per n/16 changes), and the first update after
//!   it finished takes that base with the keys changed meanwhile as the new overlay — so no
//!   update, and no `sync()`, ever pays O(n) (invariant 5). Small maps (up to
//!   `FOLD_INLINE` keys) fold in the update itself, a bounded cost, and so does an update
//!   that changed a sixteenth of the map or more (a bulk load, a first fill): O(n) is then
//!   O(k). Snapshots already taken keep the old base; the folder holds the bases it
//!   replaced and frees each on a thread of its own once no snapshot reads it, so no reader
//!   dropping the last snapshot on one pays for freeing it.
//!
//! A persistent HAMT alone (imbl's, 32-way) cost about 196 bytes of nodes per entry at 100k
//! entries; the base costs what a `HashMap` does (about 43 bytes at that size).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::snapshot::Entry;

/// The overlay may hold up to base / `FOLD_RATIO` keys (and `FOLD_MIN` at least) before an
/// update folds it into the base.
const FOLD_RATIO: usize = 16;
const FOLD_MIN: usize = 64;
/// Maps of up to this many keys fold inline.
const FOLD_INLINE: usize = 4096;

type Base<V> = Arc<HashMap<Arc<str>, Entry<V>>>;

/// The overlay: a persistent map hashed with foldhash (seeded per map), which hashes a short
/// key in a few nanoseconds where std's SipHash takes about fifteen.
type Overlay<V> =
    imbl::GenericHashMap<Arc<str>, Option<Entry<V>>, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

pub(crate) struct EntryMap<V> {
    base: Base<V>,
    /// Keys changed since the base was built: `Some` the value now, `None` removed.
    overlay: Overlay<V>,
    /// At least every overlay key's bits (`None` while the overlay is empty): a lookup of a
    /// key whose bits are not all set skips the overlay. Shared by every map built on the
    /// same base since its overlay began, and only ever set: a later map's keys in an
    /// earlier map's filter cost that map a false positive, never a wrong answer.
    filter: Option<Arc<Filter>>,
    len: usize,
}

impl<V> Clone for EntryMap<V> {
    fn clone(&self) -> Self {
        Self { base: Arc::clone(&self.base), overlay: self.overlay.clone(), filter: self.filter.clone(), len: self.len }
    }
}

/// A Bloom filter of the overlay's keys: two bits per key of 8,192, set from one fast hash
/// (foldhash; the base keeps std's SipHash). With the overlay at its largest before a fold
/// (a sixteenth of a 10k-key map, 625 keys) about 2 % of the lookups of other keys still
/// read the overlay; none is ever wrongly skipped, since bits are only ever set. The words
/// are atomic so that an update sets its keys' bits in the filter the current snapshot
/// reads (published with the next snapshot's store) instead of copying a kilobyte per
/// update into a new one — whose lines every reader would then fetch anew.
pub(crate) struct Filter([AtomicU64; FILTER_WORDS]);

const FILTER_WORDS: usize = 128;
const FILTER_SEED: u64 = 0x5EED_F11E_D0C5_u64;

impl Filter {
    fn bits(key: &str) -> [usize; 2] {
        use std::hash::BuildHasher;
        let hash = foldhash::fast::FixedState::with_seed(FILTER_SEED).hash_one(key);
        let mask = FILTER_WORDS * 64 - 1;
        [hash as usize & mask, (hash >> 32) as usize & mask]
    }

    fn empty() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn insert(&self, key: &str) {
        for bit in Self::bits(key) {
            let (word, mask) = (&self.0[bit / 64], 1 << (bit % 64));
            // A plain load first: a key noted again (the common case) writes nothing.
            if word.load(Relaxed) & mask == 0 {
                word.fetch_or(mask, Relaxed);
            }
        }
    }

    fn may_contain(&self, key: &str) -> bool {
        Self::bits(key).iter().all(|bit| self.0[bit / 64].load(Relaxed) & (1 << (bit % 64)) != 0)
    }
}

impl<V> Default for EntryMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> EntryMap<V> {
    pub(crate) fn new() -> Self {
        Self { base: Arc::new(HashMap::new()), overlay: Overlay::default(), filter: None, len: 0 }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry<V>> {
        if let Some(filter) = &self.filter
            && filter.may_contain(key)
        {
            if let Some(slot) = self.overlay.get(key) {
                return slot.as_ref();
            }
        }
        self.base.get(key)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets `key`; returns the value it replaced.
    pub(crate) fn insert(&mut self, key: Arc<str>, entry: Entry<V>) -> Option<Entry<V>> {
        let old = self.get(&key).cloned();
        if old.is_none() {
            self.len += 1;
        }
        self.note(&key);
        self.overlay.insert(key, Some(entry));
        old
    }

    /// Sets `key`'s bits in the filter (shared with the earlier maps on this base).
    fn note(&mut self, key: &str) {
        self.filter.get_or_insert_with(|| Arc::new(Filter::empty())).insert(key);
    }

    /// Removes `key`; returns its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Entry<V>> {
        let old = self.get(key).cloned()?;
        self.len -= 1;
        match self.base.get_key_value(key) {
            Some((base_key, _)) => {
                let base_key = Arc::clone(base_key);
                self.note(&base_key);
                self.overlay.insert(base_key, None);
            }
            None => {
                self.overlay.remove(key);
            }
        }
        Some(old)
    }

    /// Every key and entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Entry<V>)> + '_ {
        let changed = self.overlay.iter().filter_map(|(key, slot)| slot.as_ref().map(|entry| (key, entry)));
        let kept = self.base.iter().filter(|(key, _)| self.overlay.is_empty() || !self.overlay.contains_key(&***key));
        changed.chain(kept)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// Whether the overlay has grown past its share of the base.
    fn wants_fold(&self) -> bool {
        self.overlay.len() > FOLD_MIN.max(self.base.len() / FOLD_RATIO)
    }

    /// The map as one base: O(n).
    fn build_base(&self) -> Base<V> {
        let mut base = HashMap::with_capacity(self.len);
        for (key, entry) in self.iter() {
            base.insert(Arc::clone(key), entry.clone());
        }
        Arc::new(base)
    }

    /// Takes `base` — this map as it was when a fold started — with `changed`, the keys
    /// changed since, as the overlay: O(changed). Returns the base it replaced.
    fn rebase(&mut self, base: Base<V>, changed: &[Arc<str>]) -> Base<V> {
        let mut overlay = Overlay::default();
        let filter = Filter::empty();
        for key in changed {
            match self.get(key) {
                Some(entry) => {
                    filter.insert(key);
                    overlay.insert(Arc::clone(key), Some(entry.clone()));
                }
                None if base.contains_key(&**key) => {
                    filter.insert(key);
                    overlay.insert(Arc::clone(key), None);
                }
                None => {}
            }
        }
        self.filter = (!overlay.is_empty()).then(|| Arc::new(filter));
        self.overlay = overlay;
        std::mem::replace(&mut self.base, base)
    }

    /// Folds the overlay into a new base here and now when it has grown past its share
    /// (maps built outside `sync()`: layered views, tests); a no-op otherwise.
    pub(crate) fn settle(&mut self) {
        drop(self.fold_if_due());
    }

    /// Folds here when the overlay has outgrown its share; returns the base it replaced.
    fn fold_if_due(&mut self) -> Option<Base<V>> {
        if !self.wants_fold() {
            return None;
        }
        let base = self.build_base();
        self.overlay = Overlay::default();
        self.filter = None;
        Some(std::mem::replace(&mut self.base, base))
    }
}

/// Folds a dict's overlay into a new base off the update path (see the module docs).
pub(crate) struct Folder<V> {
    state: Arc<Mutex<FoldState<V>>>,
}

struct FoldState<V> {
    /// Bumped when a full reload replaces the map: a fold of the old one is of no use.
    generation: u64,
    running: bool,
    /// Keys changed since the running fold's map was taken.
    changed: Vec<Arc<str>>,
    done: Option<(u64, Base<V>)>,
    /// Bases a fold replaced. Snapshots taken before may still read one; the last of them to
    /// go would free it (O(n)) on whatever thread dropped it — a reader's, in the middle of
    /// a request. Held here instead, and freed on a thread of their own once nothing else
    /// holds them.
    retired: Vec<Base<V>>,
}

impl<V> Default for Folder<V> {
    fn default() -> Self {
        let state = FoldState { generation: 0, running: false, changed: Vec::new(), done: None, retired: Vec::new() };
        Self { state: Arc::new(Mutex::new(state)) }
    }
}

impl<V: Send + Sync + 'static> Folder<V> {
    /// Called with every map an update built and the keys it changed (updates are
    /// serialized): takes a finished fold, or notes the keys for a running one, or starts
    /// one when the overlay has outgrown its share.
    pub(crate) fn after_update(&self, map: &mut EntryMap<V>, changed: Vec<Arc<str>>) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.fold(&mut state, map, changed);
        state.sweep();
    }

    fn fold(&self, state: &mut FoldState<V>, map: &mut EntryMap<V>, changed: Vec<Arc<str>>) {
        if changed.len().saturating_mul(FOLD_RATIO) >= map.len() && map.wants_fold() {
            // An update of a sixteenth of the map or more (a bulk load, a first fill) pays
            // for a fold of its own: O(n) here is O(k). Any running fold is of no use now.
            state.abandon();
            state.retired.extend(map.fold_if_due());
            return;
        }
        if state.running {
            state.changed.extend(changed);
            if let Some((generation, base)) = state.done.take() {
                if generation == state.generation {
                    let changed = std::mem::take(&mut state.changed);
                    let old = map.rebase(base, &changed);
                    state.retired.push(old);
                }
                state.running = false;
                state.changed.clear();
            }
            return;
        }
        if !map.wants_fold() {
            return;
        }
        if map.len() <= FOLD_INLINE {
            state.retired.extend(map.fold_if_due());
            return;
        }
        let frozen = map.clone();
        let (shared, generation) = (Arc::clone(&self.state), state.generation);
        let spawned = std::thread::Builder::new().name("durable-fold".into()).spawn(move || {
            let base = frozen.build_base();
            drop(frozen);
            let mut state = shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if state.generation == generation && state.running {
                state.done = Some((generation, base));
            }
        });
        match spawned {
            Ok(_) => {
                state.running = true;
                state.changed.clear();
            }
            // No thread to be had: fold here rather than let the overlay grow.
            Err(_) => state.retired.extend(map.fold_if_due()),
        }
    }

    /// A full reload (or a restore) replaced the map: drops any fold of the old one.
    pub(crate) fn reset(&self) {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).abandon();
    }
}

impl<V: Send + Sync + 'static> FoldState<V> {
    /// Frees, on a thread of its own, the retired bases nothing else holds any more (no
    /// snapshot can take one up again: new maps are built on the current base).
    fn sweep(&mut self) {
        if self.retired.iter().all(|base| Arc::strong_count(base) > 1) {
            return;
        }
        let (free, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.retired).into_iter().partition(|base| Arc::strong_count(base) == 1);
        self.retired = kept;
        // Without a thread to be had, the closure and the bases in it are dropped here.
        let _ = std::thread::Builder::new().name("durable-free".into()).spawn(move || drop(free));
    }

    fn abandon(&mut self) {
        self.generation += 1;
        self.running = false;
        self.changed.clear();
        self.done = None;
    }
}

impl<V> From<HashMap<Arc<str>, Entry<V>>> for EntryMap<V> {
    /// A map of `base` alone (a full reload builds one).
    fn from(base: HashMap<Arc<str>, Entry<V>>) -> Self {
        let len = base.len();
        Self { base: Arc::new(base), overlay: Overlay::default(), filter: None, len }
    }
}

impl<V> FromIterator<(Arc<str>, Entry<V>)> for EntryMap<V> {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Entry<V>)>>(entries: I) -> Self {
        Self::from(entries.into_iter().collect::<HashMap<_, _>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Updates through a `Folder` on a map large enough to fold off-thread: every map equals
    /// the model, the fold is taken (the overlay shrinks back) and changes made while it ran
    /// are kept.
    #[test]
    fn a_fold_off_the_update_path_keeps_the_changes_made_meanwhile() {
        let n = 10_000u64;
        let mut map: EntryMap<u64> = (0..n).map(|i| (Arc::from(format!("k{i}")), entry(i))).collect();
        let mut model: HashMap<String, u64> = (0..n).map(|i| (format!("k{i}"), i)).collect();
        let folder = Folder::default();
        let mut folds = 0;
        for step in 0..4_000u64 {
            let key = format!("k{}", (step * 7_919) % (n + 500));
            let changed: Arc<str> = Arc::from(key.as_str());
            if step % 5 == 0 {
                assert_eq!(map.remove(&key).map(|e| *e.value), model.remove(&key));
            } else {
                assert_eq!(
                    map.insert(Arc::clone(&changed), entry(step + n)).map(|e| *e.value),
                    model.insert(key, step + n)
                );
            }
            let before = map.overlay.len();
            folder.after_update(&mut map, vec![changed]);
            if map.overlay.len() < before {
                folds += 1;
            }
            assert_eq!(map.len(), model.len());
            if step % 97 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        assert!(folds > 0, "a fold was taken");
        let listed: HashMap<String, u64> = map.iter().map(|(k, e)| (k.to_string(), *e.value)).collect();
        assert_eq!(listed, model);
        for i in 0..n + 500 {
            let key = format!("k{i}");
            assert_eq!(map.get(&key).map(|e| *e.value), model.get(&key).copied(), "{key}");
        }
    }

    /// A bulk update (a sixteenth of the map or more) leaves its snapshot all in the base,
    /// where lookups are plain hash lookups.
    #[test]
    fn a_bulk_update_folds_in_place() {
        let folder = Folder::default();
        let mut map: EntryMap<u64> = EntryMap::new();
        let keys: Vec<Arc<str>> = (0..10_000u64).map(|i| Arc::from(format!("k{i}"))).collect();
        for (i, key) in keys.iter().enumerate() {
            map.insert(Arc::clone(key), entry(i as u64));
        }
        folder.after_update(&mut map, keys.clone());
        assert!(map.overlay.is_empty());
        assert_eq!((map.base.len(), map.len()), (10_000, 10_000));
        // A small update leaves its key in the overlay.
        map.insert(Arc::from("k1"), entry(7));
        folder.after_update(&mut map, vec![Arc::from("k1")]);
        assert_eq!(map.overlay.len(), 1);
        assert_eq!(map.get("k1").map(|e| *e.value), Some(7));
        assert_eq!(map.get("k2").map(|e| *e.value), Some(2));
    }

    /// A base a fold replaced is held by the folder while older maps read it, and freed by
    /// the folder (not by whoever drops the last of those maps) once they are gone.
    #[test]
    fn replaced_bases_are_freed_by_the_folder() {
        let n = 10_000u64;
        let mut map: EntryMap<u64> = (0..n).map(|i| (Arc::from(format!("k{i}")), entry(i))).collect();
        let folder = Folder::default();
        let held = map.clone();
        let mut step = 0u64;
        while Arc::ptr_eq(&map.base, &held.base) {
            let key: Arc<str> = Arc::from(format!("k{}", step % n));
            map.insert(Arc::clone(&key), entry(step));
            folder.after_update(&mut map, vec![key]);
            step += 1;
            if step % 64 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(step < 1_000_000, "no fold was taken");
        }
        let retired = |folder: &Folder<u64>| folder.state.lock().unwrap().retired.len();
        assert_eq!(retired(&folder), 1);
        assert_eq!(Arc::strong_count(&held.base), 2, "the held map and the folder");
        drop(held);
        let key: Arc<str> = Arc::from("k1");
        map.insert(Arc::clone(&key), entry(1));
        folder.after_update(&mut map, vec![key]);
        assert_eq!(retired(&folder), 0, "handed to a thread to free");
    }

    /// The filter never skips a key the overlay holds, and at the overlay's largest before a
    /// fold (625 keys) sends few other keys to it.
    #[test]
    fn the_filter_keeps_every_overlay_key_and_few_others() {
        let filter = Filter::empty();
        let held: Vec<String> = (0..625).map(|i| format!("flag-{i:06}")).collect();
        for key in &held {
            filter.insert(key);
        }
        assert!(held.iter().all(|key| filter.may_contain(key)));
        let others = (1_000..11_000).filter(|i| filter.may_contain(&format!("flag-{i:06}"))).count();
        assert!(others < 500, "{others} of 10,000 other keys pass the filter");
    }

    fn entry(n: u64) -> Entry<u64> {
        Entry { value: Arc::new(n), raw_hash: n }
    }

    /// Against a `HashMap` model: inserts, removes and re-inserts of keys in and out of the
    /// base, across folds; every earlier map unchanged by later updates.
    #[test]
    fn behaves_as_a_map_and_earlier_maps_do_not_move() {
        let mut map: EntryMap<u64> = (0..200u64).map(|n| (Arc::from(format!("k{n}")), entry(n))).collect();
        let mut model: HashMap<String, u64> = (0..200u64).map(|n| (format!("k{n}"), n)).collect();
        let mut kept = Vec::new();
        let mut state = 7u64;
        for step in 0..5_000u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = format!("k{}", (state >> 33) % 300);
            if (state >> 20) % 3 == 0 {
                assert_eq!(map.remove(&key).map(|e| *e.value), model.remove(&key));
            } else {
                assert_eq!(map.insert(Arc::from(key.as_str()), entry(step)).map(|e| *e.value), model.insert(key, step));
            }
            map.settle();
            assert_eq!(map.len(), model.len());
            if step % 500 == 0 {
                kept.push((map.clone(), model.clone()));
            }
        }
        kept.push((map, model));
        for (map, model) in kept {
            let listed: HashMap<String, u64> = map.iter().map(|(k, e)| (k.to_string(), *e.value)).collect();
            assert_eq!(listed, model);
            assert_eq!(map.len(), model.len());
            for n in 0..300 {
                let key = format!("k{n}");
                assert_eq!(map.get(&key).map(|e| *e.value), model.get(&key).copied(), "{key}");
            }
        }
    }
}
