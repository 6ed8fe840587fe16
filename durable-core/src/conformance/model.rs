//! The random-operation model check: histories, not end states (Jepsen's lesson).
//!
//! Several dicts on one namespace — each on a backend of its own, as separate processes
//! have them, and each kept fresh a different way — take writes from several tasks using
//! every write method, no-op forms included, over a few keys. Every acknowledged write is
//! recorded with the version it returned, and every snapshot any task saw, and every change
//! event any dict emitted, is recorded too. Afterwards the writes are replayed in version
//! order, and the check asserts that:
//!
//! - versions are unique and contiguous (every mutation moves the namespace by one);
//! - what each write was told agrees with the replay (a `pop` returned the value the key
//!   had just before it, a compare-and-swap wrote over the value it expected, ...);
//! - every snapshot ever seen equals the replayed state at its version — so no snapshot
//!   labels data with a version it does not hold, and no batch is ever seen in part;
//! - a dict's version never goes backwards for any one observer;
//! - each dict's change events come in version order, each one's `new` is the key's value
//!   at the event's version, each one's `old` is what the events before it left, and the
//!   events fold into the final snapshot;
//! - at the end every dict reaches the store's final state (the refreshing one without
//!   anybody calling `sync()`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::{BackendFactory, PATIENCE, unique_namespace};
use crate::backend::Version;
use crate::dict::DurableDict;
use crate::error::Error;
use crate::events::{Change, Event};

/// The sizes of one model-check run.
#[derive(Debug, Clone, Copy)]
pub struct ModelSize {
    /// Dicts on the namespace, each on its own backend; they cycle through background
    /// refresh, hinted manual sync and strict manual sync (`hints(false)`).
    pub dicts: usize,
    /// Writer tasks per dict.
    pub writers: usize,
    /// Operations per writer task.
    pub ops: usize,
    /// How many keys the writers share: few, so that they collide.
    pub keys: usize,
}

impl ModelSize {
    /// The size CI runs (3 dicts × 3 writers × 150 operations over 6 keys), or with
    /// `DURABLE_SOAK=full` the large one (4 × 4 × 1,000 over 10 keys).
    pub fn from_env() -> Self {
        match std::env::var("DURABLE_SOAK").as_deref() {
            Ok("full") => Self { dicts: 4, writers: 4, ops: 1000, keys: 10 },
            _ => Self { dicts: 3, writers: 3, ops: 150, keys: 6 },
        }
    }
}

type State = BTreeMap<String, Value>;

/// What the key held just before a write, as the write's answer implies.
#[derive(Debug, Clone)]
enum Before {
    Absent,
    Present,
    Equal(Value),
}

/// One acknowledged write: its version, what it implies of the state before it, and what it
/// set (`None`: removed).
#[derive(Debug, Clone)]
struct Acked {
    version: Version,
    what: &'static str,
    before: Vec<(String, Before)>,
    after: Vec<(String, Option<Value>)>,
}

/// The snapshots one observer (a task) saw, in the order it saw them.
#[derive(Default)]
struct Seen {
    snapshots: Vec<(Version, State)>,
}

impl Seen {
    fn record(&mut self, dict: &DurableDict<Value>) {
        let snapshot = dict.snapshot();
        let version = snapshot.version();
        if let Some((last, _)) = self.snapshots.last()
            && *last == version
            && self.snapshots.last().is_some_and(|(_, state)| same(state, &snapshot))
        {
            return;
        }
        let state = snapshot.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
        self.snapshots.push((version, state));
    }
}

fn same(state: &State, snapshot: &crate::Snapshot<Value>) -> bool {
    state.len() == snapshot.len() && state.iter().all(|(k, v)| snapshot.get(k) == Some(v))
}

/// The model check at the size of [`ModelSize::from_env`]; see the module docs.
pub async fn snapshots_match_the_store_history(f: &dyn BackendFactory) {
    model_check(f, ModelSize::from_env()).await;
}

/// The model check at a given size; see the module docs.
pub async fn model_check(f: &dyn BackendFactory, size: ModelSize) {
    let ns = unique_namespace("model");
    let mut dicts = Vec::new();
    for d in 0..size.dicts {
        let builder = DurableDict::<Value>::builder(f.backend(&ns).await).autosync(false).event_capacity(1 << 16);
        let builder = match d % 3 {
            0 => builder.background_refresh(true).poll_interval(Duration::from_millis(100)),
            1 => builder,
            _ => builder.hints(false),
        };
        dicts.push(builder.build().await.expect("build a dict"));
    }
    let mut collectors = Vec::new();
    for dict in &dicts {
        let start: State = dict.snapshot().iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
        let mut events = dict.subscribe();
        collectors.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(event) = events.next().await {
                match event {
                    Event::Changed(change) => got.push(change),
                    other => panic!("unexpected event in the model check: {other:?}"),
                }
            }
            (start, got)
        }));
    }
    let writing = Arc::new(AtomicBool::new(true));
    let mut readers = Vec::new();
    for dict in &dicts {
        let (dict, writing) = (dict.clone(), Arc::clone(&writing));
        readers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            while writing.load(Ordering::Acquire) {
                dict.sync().await.expect("a reader's sync");
                seen.record(&dict);
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
            seen
        }));
    }
    let mut writers = Vec::new();
    for (d, dict) in dicts.iter().enumerate() {
        for t in 0..size.writers {
            let dict = dict.clone();
            let seed = (d * 100 + t + 1) as u64;
            writers.push(tokio::spawn(writer(dict, seed, size)));
        }
    }
    let mut acked = Vec::new();
    let mut observers = Vec::new();
    for handle in writers {
        let (writes, seen) = handle.await.expect("a writer task");
        acked.extend(writes);
        observers.push(seen);
    }
    writing.store(false, Ordering::Release);
    for handle in readers {
        observers.push(handle.await.expect("a reader task"));
    }
    let history = replay(acked);
    let last = history.len() as Version - 1;
    let final_state = &history[last as usize];

    // The refreshing dict gets there on its own; the others on a sync.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for (i, dict) in dicts.iter().enumerate() {
        loop {
            if i % 3 != 0 {
                dict.sync().await.expect("a final sync");
            }
            if dict.version() == last && same(final_state, &dict.snapshot()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dict {i} did not reach the final version {last}: at {}",
                dict.version()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let stored = dicts[0].backend().last_updated().await.expect("last_updated");
    assert_eq!(stored, last, "the store's version is the last acknowledged write's");

    let mut snapshots = 0;
    for (o, seen) in observers.iter().enumerate() {
        let mut previous = 0;
        for (version, state) in &seen.snapshots {
            assert!(*version >= previous, "observer {o} saw version {version} after {previous}");
            previous = *version;
            let Some(truth) = history.get(*version as usize) else {
                panic!("observer {o} saw version {version}, past the last acknowledged {last}");
            };
            assert_eq!(state, truth, "observer {o}: a snapshot at version {version} that the store never had");
            snapshots += 1;
        }
    }

    let backend = dicts[0].backend().name();
    drop(dicts);
    let mut events = 0;
    for (d, collector) in collectors.into_iter().enumerate() {
        let (start, changes) = collector.await.expect("an event collector");
        events += changes.len();
        check_events(d, start, &changes, &history);
    }
    eprintln!(
        "model check on {backend}: {} dicts x {} writers x {} operations, {last} versions, {snapshots} snapshots and \
         {events} events checked",
        size.dicts, size.writers, size.ops
    );
}

/// Replays the acknowledged writes in version order: the state at every version.
fn replay(mut acked: Vec<Acked>) -> Vec<State> {
    acked.sort_by_key(|write| write.version);
    let mut history = vec![State::new()];
    for write in acked {
        let expected = history.len() as Version;
        assert_eq!(
            write.version, expected,
            "versions are unique and contiguous: {} acknowledged at {} where {expected} was next",
            write.what, write.version
        );
        let mut state = history[history.len() - 1].clone();
        for (key, before) in &write.before {
            let had = state.get(key);
            let fits = match before {
                Before::Absent => had.is_none(),
                Before::Present => had.is_some(),
                Before::Equal(value) => had == Some(value),
            };
            assert!(
                fits,
                "{} of {key} at version {}: before it the key held {had:?}, not {before:?}",
                write.what, write.version
            );
        }
        for (key, value) in write.after {
            match value {
                Some(value) => state.insert(key, value),
                None => state.remove(&key),
            };
        }
        history.push(state);
    }
    history
}

/// One dict's events: in version order, each true at its version, each `old` what the
/// events before it left, and all of them folding into the final state.
fn check_events(d: usize, start: State, changes: &[Change<Value>], history: &[State]) {
    let mut folded = start;
    let mut previous = 0;
    for change in changes {
        let key = &*change.key;
        assert!(change.version >= previous, "dict {d}: event at version {} after one at {previous}", change.version);
        previous = change.version;
        let truth = history.get(change.version as usize).unwrap_or_else(|| panic!("dict {d}: event past the end"));
        assert_eq!(
            change.new.as_deref(),
            truth.get(key),
            "dict {d}: event for {key} at version {} does not give the value the key had then",
            change.version
        );
        assert_eq!(change.old.as_deref(), folded.get(key), "dict {d}: event for {key}: `old` is not the value before");
        match &change.new {
            Some(value) => folded.insert(key.to_owned(), (**value).clone()),
            None => folded.remove(key),
        };
    }
    assert_eq!(&folded, history.last().expect("a history"), "dict {d}: the events do not fold into the final state");
}

/// One writer task: random writes of every kind over a few keys, each value unique.
async fn writer(dict: DurableDict<Value>, seed: u64, size: ModelSize) -> (Vec<Acked>, Seen) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut acked = Vec::new();
    let mut seen = Seen::default();
    let key = |rng: &mut fastrand::Rng| format!("k{}", rng.usize(..size.keys));
    for i in 0..size.ops {
        let k = key(&mut rng);
        let value = json!(seed * 1_000_000 + i as u64);
        let set = |k: &str, v: &Value| vec![(k.to_owned(), Some(v.clone()))];
        let op = rng.u8(..9);
        match op {
            0 => {
                let version = dict.insert(&k, value.clone()).await.expect("insert");
                acked.push(Acked { version, what: "insert", before: vec![], after: set(&k, &value) });
            }
            1 => {
                if let Some(version) = dict.remove(&k).await.expect("remove") {
                    let before = vec![(k.clone(), Before::Present)];
                    acked.push(Acked { version, what: "remove", before, after: vec![(k, None)] });
                }
            }
            2 => {
                if let Some((old, version)) = dict.pop_versioned(&k).await.expect("pop") {
                    let before = vec![(k.clone(), Before::Equal((*old).clone()))];
                    acked.push(Acked { version, what: "pop", before, after: vec![(k, None)] });
                }
            }
            3 => {
                let (_, inserted) = dict.setdefault_versioned(&k, value.clone()).await.expect("setdefault");
                if let Some(version) = inserted {
                    let before = vec![(k.clone(), Before::Absent)];
                    acked.push(Acked { version, what: "setdefault", before, after: set(&k, &value) });
                }
            }
            4 => {
                // Puts and removes in one batch, half of them guarded by the version of the
                // snapshot they were decided on.
                let mut ops: BTreeMap<String, Option<Value>> = BTreeMap::new();
                for n in 0..rng.usize(2..=3) {
                    let v = json!(seed * 1_000_000 + i as u64 + n as u64 * 1000);
                    ops.insert(key(&mut rng), rng.bool().then_some(v));
                }
                let seen_now = dict.snapshot();
                let guard = rng.bool().then(|| seen_now.version());
                let mut batch = dict.batch();
                for (k, v) in &ops {
                    batch = match v {
                        Some(v) => batch.insert(k.clone(), v.clone()),
                        None => batch.remove(k.clone()),
                    };
                }
                if let Some(guard) = guard {
                    batch = batch.guard(guard);
                }
                match batch.apply().await {
                    Ok(Some(version)) => {
                        // A guard that held: the store was exactly the snapshot it was decided on.
                        let before = match guard {
                            Some(guard) => {
                                assert_eq!(version, guard + 1, "a guarded batch is the next version");
                                let was = |k: &String| match seen_now.get(k) {
                                    Some(v) => Before::Equal(v.clone()),
                                    None => Before::Absent,
                                };
                                ops.keys().map(|k| (k.clone(), was(k))).collect()
                            }
                            None => vec![],
                        };
                        acked.push(Acked { version, what: "batch", before, after: ops.into_iter().collect() });
                    }
                    Ok(None) => assert!(ops.values().all(Option::is_none), "only a batch of removes changes nothing"),
                    Err(Error::VersionConflict { expected, current }) => {
                        assert_eq!(Some(expected), guard, "only a guarded batch conflicts");
                        assert!(current > expected, "a conflict names a later version");
                    }
                    Err(err) => panic!("batch: {err}"),
                }
            }
            5..=7 => {
                // Expect what this dict's snapshot holds: right or stale, as a service's
                // read-modify-write would be. 5 writes, 6 deletes, 7 is the no-op form.
                let expected = if op == 7 { None } else { dict.snapshot().get_arc(&k) };
                let new = (op == 5).then(|| value.clone());
                match dict.compare_and_swap(&k, expected.as_deref(), new.clone()).await {
                    Ok(Some(version)) => {
                        let before = match &expected {
                            Some(v) => Before::Equal((**v).clone()),
                            None => Before::Absent,
                        };
                        acked.push(Acked {
                            version,
                            what: "compare_and_swap",
                            before: vec![(k.clone(), before)],
                            after: vec![(k, new)],
                        });
                    }
                    Ok(None) => assert!(expected.is_none() && new.is_none(), "only the no-op form writes nothing"),
                    Err(Error::Conflict { .. }) => {}
                    Err(err) => panic!("compare_and_swap: {err}"),
                }
            }
            _ => {
                dict.sync().await.expect("a writer's sync");
            }
        }
        seen.record(&dict);
    }
    (acked, seen)
}
