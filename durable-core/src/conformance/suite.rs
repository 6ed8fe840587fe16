//! The suite's test functions: each takes a [`BackendFactory`] and checks one part of the
//! contract on fresh namespaces of the backend it hands out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{BackendFactory, PATIENCE, unique_namespace};
use crate::backend::{Backend, Changes, Version};
use crate::dict::DurableDict;
use crate::error::Error;
use crate::events::Event;
use crate::instrument::CountingBackend;

/// A manual-sync dict without hints: every `sync()` asks the store, so a write acknowledged
/// anywhere is seen by the next `sync()` (the strict behaviour most tests check).
async fn manual(backend: Arc<dyn Backend>) -> DurableDict<Value> {
    DurableDict::builder(backend).autosync(false).hints(false).build().await.expect("build a manual-sync dict")
}

/// durabledict's autosync: every read asks the store first.
async fn autosync(backend: Arc<dyn Backend>) -> DurableDict<Value> {
    DurableDict::builder(backend).hints(false).build().await.expect("build an autosync dict")
}

/// A manual-sync dict that listens to hints (the default): `sync()` is free until a hint
/// arrives, so another writer's change shows once its hint has landed.
async fn hinted(backend: Arc<dyn Backend>) -> DurableDict<Value> {
    DurableDict::builder(backend).autosync(false).build().await.expect("build a hinted dict")
}

/// The store's contents, decoded, read straight from the backend.
async fn store_contents(backend: &dyn Backend) -> (BTreeMap<String, Value>, Version) {
    let durables = backend.durables().await.expect("durables");
    let entries = durables
        .entries
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_slice(&v).unwrap_or_else(|e| panic!("stored value of {k} is not JSON: {e}"));
            (k, value)
        })
        .collect();
    (entries, durables.version)
}

fn snapshot_contents(dict: &DurableDict<Value>) -> BTreeMap<String, Value> {
    dict.snapshot().iter().map(|(k, v)| (k.to_owned(), v.clone())).collect()
}

/// durabledict: set a key, read it back, overwrite it, read the new value — in the writer
/// (read-your-writes) and in a second dict after `sync()`.
pub async fn set_overwrite_and_read_back(f: &dyn BackendFactory) {
    let ns = unique_namespace("set");
    let a = manual(f.backend(&ns).await).await;
    let b = manual(f.backend(&ns).await).await;
    a.insert("foo", json!("bar")).await.unwrap();
    assert_eq!(a.get("foo").await.as_deref(), Some(&json!("bar")), "the writer sees its write at once");
    a.insert("foo", json!("buzz")).await.unwrap();
    assert_eq!(a.snapshot().get("foo"), Some(&json!("buzz")));
    b.sync().await.unwrap();
    assert_eq!(b.get("foo").await.as_deref(), Some(&json!("buzz")));
    assert_eq!(b.len().await, 1);
}

/// durabledict: a missing key reads as absent, everywhere.
pub async fn missing_key_is_absent(f: &dyn BackendFactory) {
    let ns = unique_namespace("missing");
    let dict = autosync(f.backend(&ns).await).await;
    assert_eq!(dict.get("nope").await, None);
    assert!(!dict.contains_key("nope").await);
    assert!(dict.is_empty().await);
    assert_eq!(dict.snapshot().get("nope"), None);
    assert_eq!(dict.version(), 0, "a fresh namespace starts at version 0");
}

/// durabledict: `get` with a default, and `contains`.
pub async fn get_with_default_and_contains(f: &dyn BackendFactory) {
    let ns = unique_namespace("contains");
    let dict = autosync(f.backend(&ns).await).await;
    dict.insert("present", json!(0)).await.unwrap();
    assert!(dict.contains_key("present").await, "a falsy value is still present");
    assert!(!dict.contains_key("absent").await);
    let default = Arc::new(json!("default"));
    assert_eq!(dict.get("absent").await.unwrap_or_else(|| default.clone()), default);
    assert_eq!(*dict.get("present").await.unwrap_or(default), json!(0));
}

/// durabledict: pop with and without a default, falsy defaults, and a stored null.
pub async fn pop_returns_the_value_and_removes_it(f: &dyn BackendFactory) {
    let ns = unique_namespace("pop");
    let a = manual(f.backend(&ns).await).await;
    let b = manual(f.backend(&ns).await).await;
    a.insert("k", json!({"n": 1})).await.unwrap();
    a.insert("null", Value::Null).await.unwrap();
    let before = a.version();
    assert_eq!(a.pop("k").await.unwrap().as_deref(), Some(&json!({"n": 1})));
    assert!(a.version() > before, "pop bumps the version");
    assert_eq!(a.snapshot().get("k"), None, "pop removed the key from the writer's snapshot");
    assert_eq!(a.pop("k").await.unwrap(), None, "a second pop finds nothing");
    // Falsy defaults come back as given (durabledict raised KeyError for those; we don't).
    for falsy in [json!(0), json!(""), json!(false), json!([]), Value::Null] {
        assert_eq!(*a.pop("k").await.unwrap().unwrap_or_else(|| Arc::new(falsy.clone())), falsy);
    }
    // A stored null is a value, not an absence.
    assert_eq!(a.pop("null").await.unwrap().as_deref(), Some(&Value::Null));
    assert_eq!(a.pop("null").await.unwrap(), None);
    b.sync().await.unwrap();
    assert!(b.snapshot().is_empty(), "the other dict sees both keys gone");
    let (contents, _) = store_contents(&*f.backend(&ns).await).await;
    assert!(contents.is_empty(), "the store holds nothing: {contents:?}");
}

/// durabledict: setdefault inserts only when absent, returns the stored value either way,
/// and bumps the version only when it inserted.
pub async fn setdefault_inserts_only_when_absent(f: &dyn BackendFactory) {
    let ns = unique_namespace("setdefault");
    let dict = manual(f.backend(&ns).await).await;
    assert_eq!(*dict.setdefault("k", json!("first")).await.unwrap(), json!("first"));
    let version = dict.version();
    assert_eq!(version, 1);
    assert_eq!(*dict.setdefault("k", json!("second")).await.unwrap(), json!("first"));
    assert_eq!(dict.backend().last_updated().await.unwrap(), version, "a found key bumps nothing");
    assert_eq!(dict.snapshot().get("k"), Some(&json!("first")));
    let (value, inserted) = dict.setdefault_versioned("k", json!("third")).await.unwrap();
    assert_eq!((*value).clone(), json!("first"));
    assert_eq!(inserted, None);
    // A stored falsy value is found, not replaced.
    dict.insert("zero", json!(0)).await.unwrap();
    assert_eq!(*dict.setdefault("zero", json!(5)).await.unwrap(), json!(0));
}

/// durabledict: nested values with non-ASCII text (emoji included) round-trip through the
/// store, under a non-ASCII key (within the Basic Multilingual Plane, which every store —
/// ZooKeeper included — can name).
pub async fn nested_non_ascii_values_round_trip(f: &dyn BackendFactory) {
    let ns = unique_namespace("nested");
    let a = manual(f.backend(&ns).await).await;
    let value = json!({
        "name": "Zoë ☃ 東京 😀",
        "list": [1, 2.5, -3, null, true, "ünïcödé"],
        "nested": {"deeper": {"deepest": [{"k": "v"}, []]}},
        "empty": {},
        "big": 9007199254740993u64,
    });
    a.insert("ключ ü 東京", value.clone()).await.unwrap();
    let b = manual(f.backend(&ns).await).await;
    assert_eq!(b.snapshot().get("ключ ü 東京"), Some(&value));
}

/// Every mutation bumps the version strictly; a remove of an absent key and a setdefault
/// that found its key bump nothing.
pub async fn version_strictly_increases(f: &dyn BackendFactory) {
    let ns = unique_namespace("version");
    let dict = manual(f.backend(&ns).await).await;
    let mut last = dict.version();
    let mut bumped = |version: Version, what: &str| {
        assert!(version > last, "{what}: version {version} is not above {last}");
        last = version;
    };
    bumped(dict.insert("a", json!(1)).await.unwrap(), "insert");
    bumped(dict.insert("a", json!(2)).await.unwrap(), "overwrite");
    bumped(dict.insert_many([("b", json!(1)), ("c", json!(2))]).await.unwrap(), "insert_many");
    bumped(dict.remove("b").await.unwrap().expect("b was there"), "remove");
    bumped(dict.pop_versioned("c").await.unwrap().expect("c was there").1, "pop");
    bumped(dict.setdefault_versioned("d", json!(1)).await.unwrap().1.expect("inserted"), "setdefault");
    bumped(dict.compare_and_swap("d", Some(&json!(1)), Some(json!(2))).await.unwrap().expect("swapped"), "cas");
    assert_eq!(dict.remove("absent").await.unwrap(), None);
    assert_eq!(dict.pop("absent").await.unwrap(), None);
    assert_eq!(dict.compare_and_swap("absent", None, None).await.unwrap(), None, "nothing to delete: no version");
    assert_eq!(dict.setdefault_versioned("d", json!(9)).await.unwrap().1, None);
    assert_eq!(dict.backend().last_updated().await.unwrap(), last, "no-ops bumped nothing");
    assert_eq!(dict.version(), last);
}

/// A write that changes nothing never moves the writer's snapshot to another writer's
/// version: the dict that missed a change still sees it on its next sync (the model
/// check's first finding: a no-op compare-and-swap used to answer the store's current
/// version, which the dict took as its own, and it then stayed stale for good).
pub async fn a_write_that_changes_nothing_leaves_the_snapshot_alone(f: &dyn BackendFactory) {
    let ns = unique_namespace("noop");
    let a = manual(f.backend(&ns).await).await;
    let b = manual(f.backend(&ns).await).await;
    a.insert("x", json!(1)).await.unwrap();
    b.sync().await.unwrap();
    let seen = b.version();
    a.insert("y", json!(2)).await.unwrap();
    assert_eq!(b.compare_and_swap("absent", None, None).await.unwrap(), None);
    assert_eq!(b.remove("absent").await.unwrap(), None);
    assert_eq!(b.pop("absent").await.unwrap(), None);
    assert_eq!(b.setdefault_versioned("x", json!(9)).await.unwrap().1, None);
    assert_eq!(b.version(), seen, "no write of b's made a version, so b's snapshot stays where it was");
    assert_eq!(b.snapshot().get("y"), None);
    b.sync().await.unwrap();
    assert_eq!(b.snapshot().get("y"), Some(&json!(2)), "the next sync brings a's write");
    assert_eq!(b.version(), a.version());
}

/// A remove of an absent key says so and writes nothing.
pub async fn remove_of_absent_key_is_none(f: &dyn BackendFactory) {
    let ns = unique_namespace("remove");
    let dict = manual(f.backend(&ns).await).await;
    assert_eq!(dict.remove("ghost").await.unwrap(), None);
    dict.insert("real", json!(1)).await.unwrap();
    assert!(dict.remove("real").await.unwrap().is_some());
    assert!(dict.snapshot().is_empty());
}

/// Compare-and-swap writes only over the expected value (or absence), and a conflict
/// writes nothing.
pub async fn compare_and_swap_checks_the_stored_value(f: &dyn BackendFactory) {
    let ns = unique_namespace("cas");
    let dict = manual(f.backend(&ns).await).await;
    dict.compare_and_swap("k", None, Some(json!(1))).await.expect("absent as expected");
    let err = dict.compare_and_swap("k", None, Some(json!(2))).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let err = dict.compare_and_swap("k", Some(&json!(5)), Some(json!(2))).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(dict.snapshot().get("k"), Some(&json!(1)));
    dict.compare_and_swap("k", Some(&json!(1)), Some(json!(2))).await.expect("expected value");
    assert_eq!(dict.snapshot().get("k"), Some(&json!(2)));
    dict.compare_and_swap("k", Some(&json!(2)), None).await.expect("delete on match");
    assert_eq!(dict.snapshot().get("k"), None);
    let (contents, _) = store_contents(&**dict.backend()).await;
    assert!(contents.is_empty());
}

/// Invariant 1: a write and its version bump are one step — a reader that sees version v
/// sees exactly the data of v.
pub async fn version_and_data_move_together(f: &dyn BackendFactory) {
    let ns = unique_namespace("atomic");
    let writer = manual(f.backend(&ns).await).await;
    let reader = f.backend(&ns).await;
    let base = writer.insert("counter", json!(0)).await.unwrap();
    let writes = tokio::spawn(async move {
        for n in 1..=150u64 {
            let version = writer.insert("counter", json!(n)).await.unwrap();
            assert_eq!(version, base + n, "this test is the namespace's only writer");
        }
    });
    let mut checked = 0;
    while !writes.is_finished() || checked == 0 {
        let (contents, version) = store_contents(&*reader).await;
        let counter = contents["counter"].as_u64().expect("counter is a number");
        assert_eq!(counter, version - base, "version {version} read with counter {counter}");
        checked += 1;
    }
    writes.await.unwrap();
}

/// insert_many is all-or-nothing for every reader: no snapshot and no store read ever
/// shows part of a batch.
pub async fn insert_many_is_all_or_nothing(f: &dyn BackendFactory) {
    let ns = unique_namespace("many");
    let writer = manual(f.backend(&ns).await).await;
    let reader = manual(f.backend(&ns).await).await;
    let raw = f.backend(&ns).await;
    let keys: Vec<String> = (0..10).map(|i| format!("key{i}")).collect();
    let batch_keys = keys.clone();
    let writes = tokio::spawn(async move {
        for n in 0..60 {
            writer.insert_many(batch_keys.iter().map(|k| (k.clone(), json!(n)))).await.unwrap();
        }
    });
    let consistent = |values: Vec<Option<Value>>, what: &str| {
        if values.iter().all(Option::is_none) {
            return;
        }
        let first = values[0].clone();
        assert!(first.is_some() && values.iter().all(|v| *v == first), "{what} saw part of a batch: {values:?}");
    };
    let mut rounds = 0;
    while !writes.is_finished() || rounds == 0 {
        reader.sync().await.unwrap();
        let snap = reader.snapshot();
        consistent(keys.iter().map(|k| snap.get(k).cloned()).collect(), "a snapshot");
        let (contents, _) = store_contents(&*raw).await;
        consistent(keys.iter().map(|k| contents.get(k).cloned()).collect(), "durables()");
        rounds += 1;
    }
    writes.await.unwrap();
    reader.sync().await.unwrap();
    assert!(keys.iter().all(|k| reader.snapshot().get(k) == Some(&json!(59))));
}

/// Two dicts on one namespace converge: manual dicts after `sync()`, autosync dicts on
/// their next read.
pub async fn dicts_converge_manual_and_autosync(f: &dyn BackendFactory) {
    let ns = unique_namespace("converge");
    let a = manual(f.backend(&ns).await).await;
    let b = manual(f.backend(&ns).await).await;
    let c = autosync(f.backend(&ns).await).await;
    a.insert("x", json!(1)).await.unwrap();
    b.insert("y", json!(2)).await.unwrap();
    c.insert("z", json!(3)).await.unwrap();
    a.remove("x").await.unwrap();
    // The autosync dict sees everything on its next read, without a sync() call.
    assert_eq!(c.get("y").await.as_deref(), Some(&json!(2)));
    assert_eq!(c.get("x").await, None);
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    let expected: BTreeMap<String, Value> = [("y".to_owned(), json!(2)), ("z".to_owned(), json!(3))].into();
    for dict in [&a, &b, &c] {
        assert_eq!(snapshot_contents(dict), expected);
        assert_eq!(dict.version(), 4);
    }
}

/// With hints on (the default), dicts converge through plain `sync()` calls as soon as the
/// hints land (or, for a backend without hints, at once: every sync asks the store).
pub async fn hinted_dicts_converge_through_sync(f: &dyn BackendFactory) {
    let ns = unique_namespace("hinted");
    let a = hinted(f.backend(&ns).await).await;
    let b = hinted(f.backend(&ns).await).await;
    a.insert("x", json!(1)).await.unwrap();
    b.insert("y", json!(2)).await.unwrap();
    a.remove("x").await.unwrap();
    let expected: BTreeMap<String, Value> = [("y".to_owned(), json!(2))].into();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for dict in [&a, &b] {
        loop {
            dict.sync().await.unwrap();
            if snapshot_contents(dict) == expected && dict.version() == 3 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no convergence: {:?}", snapshot_contents(dict));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Settled, and nothing pending: sync() changes nothing.
    assert_eq!(a.sync().await.unwrap(), crate::SyncOutcome::Unchanged);
}

/// Namespaces are isolated: writes to one never show in another.
pub async fn namespaces_are_isolated(f: &dyn BackendFactory) {
    let one = manual(f.backend(&unique_namespace("iso-a")).await).await;
    let two = manual(f.backend(&unique_namespace("iso-b")).await).await;
    one.insert("shared-key", json!("one")).await.unwrap();
    two.insert("shared-key", json!("two")).await.unwrap();
    two.insert("only-two", json!(2)).await.unwrap();
    one.resync().await.unwrap();
    two.resync().await.unwrap();
    assert_eq!(one.snapshot().get("shared-key"), Some(&json!("one")));
    assert_eq!(one.snapshot().len(), 1);
    assert_eq!(one.version(), 1);
    assert_eq!(two.snapshot().get("shared-key"), Some(&json!("two")));
    assert_eq!(two.version(), 2);
}

/// `changes_since` returns exactly the keys changed after a version, once each with its
/// latest state, deletions as tombstones; a sync after k changes is a delta of k keys; and
/// past the change log's horizon the answer is "too old" and the sync a full reload.
pub async fn changes_since_returns_exactly_the_changes(f: &dyn BackendFactory) {
    let ns = unique_namespace("delta");
    let Some(backend) = f.with_change_log(&ns, 5).await else {
        // No configurable log: `changes_since` must still never lie.
        let backend = f.backend(&ns).await;
        let dict = manual(Arc::clone(&backend)).await;
        dict.insert("a", json!(1)).await.unwrap();
        match backend.changes_since(0).await.unwrap() {
            Changes::TooOld => {}
            Changes::Delta { changes, version } => {
                assert_eq!(version, 1);
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].key, "a");
            }
        }
        return;
    };
    let writer = manual(Arc::clone(&backend)).await;
    let reader = manual(f.with_change_log(&ns, 5).await.expect("second client")).await;
    for i in 0..20 {
        writer.insert(&format!("bulk{i}"), json!(i)).await.unwrap();
    }
    reader.sync().await.unwrap();
    let since = writer.version();
    writer.insert("a", json!(1)).await.unwrap();
    writer.insert("a", json!(2)).await.unwrap();
    writer.insert("b", json!(1)).await.unwrap();
    writer.remove("bulk3").await.unwrap();
    let now = writer.version();
    match backend.changes_since(since).await.unwrap() {
        Changes::TooOld => panic!("4 changes fit in a 5-mutation log"),
        Changes::Delta { mut changes, version } => {
            assert_eq!(version, now);
            changes.sort_by(|x, y| x.key.cmp(&y.key));
            let got: Vec<(&str, Option<&[u8]>)> =
                changes.iter().map(|c| (c.key.as_str(), c.value.as_deref())).collect();
            assert_eq!(got, vec![("a", Some(&b"2"[..])), ("b", Some(&b"1"[..])), ("bulk3", None)]);
            assert!(changes.iter().all(|c| c.version > since && c.version <= now));
        }
    }
    match backend.changes_since(now).await.unwrap() {
        Changes::Delta { changes, version } => {
            assert!(changes.is_empty());
            assert_eq!(version, now);
        }
        Changes::TooOld => panic!("nothing changed since the current version"),
    }
    let outcome = reader.sync().await.unwrap();
    assert_eq!(outcome, crate::SyncOutcome::Delta { keys: 3, version: now }, "a sync after 4 changes to 3 keys");
    assert_eq!(reader.snapshot().get("a"), Some(&json!(2)));
    assert_eq!(reader.snapshot().get("bulk3"), None);
    // Past the horizon.
    assert_eq!(backend.changes_since(since - 10).await.unwrap(), Changes::TooOld);
    for i in 0..10 {
        writer.insert(&format!("more{i}"), json!(i)).await.unwrap();
    }
    let outcome = reader.sync().await.unwrap();
    assert!(matches!(outcome, crate::SyncOutcome::Full { .. }), "past the horizon: {outcome:?}");
    assert_eq!(snapshot_contents(&reader), snapshot_contents(&writer));
}

/// Where the backend pushes change hints, a change reaches a dict with background refresh
/// through them — no poll could have brought it (the poll interval is an hour).
pub async fn change_hints_arrive(f: &dyn BackendFactory) {
    let ns = unique_namespace("hints");
    let backend = f.backend(&ns).await;
    if backend.watch().await.expect("watch").is_none() {
        return; // The backend pushes nothing: the dict polls, covered elsewhere.
    }
    let listener = DurableDict::<Value>::builder(backend)
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let mut events = listener.watch_key("flag");
    let writer = manual(f.backend(&ns).await).await;
    let version = writer.insert("flag", json!("on")).await.unwrap();
    let event = tokio::time::timeout(PATIENCE, events.recv()).await.expect("a change event within the patience");
    match event {
        Some(Event::Changed(change)) => {
            assert_eq!(&*change.key, "flag");
            assert_eq!(change.new.as_deref(), Some(&json!("on")));
            assert_eq!(change.old, None);
            assert_eq!(change.version, version);
        }
        other => panic!("expected a change, got {other:?}"),
    }
    assert_eq!(listener.snapshot().get("flag"), Some(&json!("on")));
    // With hints healthy and nothing new, sync() is free.
    assert_eq!(listener.sync().await.unwrap(), crate::SyncOutcome::Unchanged);
}

/// Change events name the key, the old and the new value, and the version, for writes made
/// anywhere; a subscriber for one key hears only that key.
pub async fn change_events_report_old_and_new(f: &dyn BackendFactory) {
    let ns = unique_namespace("events");
    let writer = manual(f.backend(&ns).await).await;
    let reader = manual(f.backend(&ns).await).await;
    let mut all = reader.subscribe();
    let mut only_b = reader.watch_key("b");
    writer.insert("a", json!(1)).await.unwrap();
    writer.insert("b", json!(1)).await.unwrap();
    reader.sync().await.unwrap();
    writer.insert("a", json!(2)).await.unwrap();
    writer.remove("b").await.unwrap();
    writer.insert("a", json!(2)).await.unwrap(); // Same value: not a change.
    let last = writer.version();
    reader.sync().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match tokio::time::timeout(PATIENCE, all.recv()).await.expect("events") {
            Some(Event::Changed(c)) => {
                seen.push((c.key.to_string(), c.old.as_deref().cloned(), c.new.as_deref().cloned()))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| format!("{x:?}").cmp(&format!("{y:?}"))));
    assert_eq!(
        seen,
        vec![
            ("a".into(), None, Some(json!(1))),
            ("a".into(), Some(json!(1)), Some(json!(2))),
            ("b".into(), None, Some(json!(1))),
            ("b".into(), Some(json!(1)), None),
        ]
    );
    assert_eq!(reader.version(), last);
    for expected in [(None, Some(json!(1))), (Some(json!(1)), None)] {
        match only_b.recv().await {
            Some(Event::Changed(c)) => {
                assert_eq!(&*c.key, "b");
                assert_eq!((c.old.as_deref().cloned(), c.new.as_deref().cloned()), expected);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Invariant 8: a garbage value written straight into the store skips that key only,
/// reported with its name; every other key keeps working, and nothing panics.
pub async fn garbage_value_skips_only_that_key(f: &dyn BackendFactory) {
    let ns = unique_namespace("garbage");
    let backend = f.backend(&ns).await;
    let writer = manual(f.backend(&ns).await).await;
    writer.insert("good", json!({"ok": true})).await.unwrap();
    backend.persist("bad", Bytes::from_static(b"\xff\xfe not json {")).await.unwrap();
    writer.insert("after", json!(2)).await.unwrap();
    // A fresh dict (full load) and the writer (sync) both skip "bad" and keep the rest.
    let fresh = manual(f.backend(&ns).await).await;
    writer.sync().await.unwrap();
    for dict in [&fresh, &writer] {
        let snap = dict.snapshot();
        assert_eq!(snap.get("good"), Some(&json!({"ok": true})));
        assert_eq!(snap.get("after"), Some(&json!(2)));
        assert_eq!(snap.get("bad"), None);
        let bad: Vec<_> = snap.undecodable().map(|(k, e)| (k.to_owned(), e.to_string())).collect();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, "bad");
        assert!(bad[0].1.contains("\"bad\""), "the error names the key: {}", bad[0].1);
    }
    // A subscriber is told, and a good value for the key heals it.
    let mut events = fresh.subscribe();
    backend.persist("bad", Bytes::from_static(b"[1, 2")).await.unwrap();
    fresh.sync().await.unwrap();
    match tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event") {
        Some(Event::Undecodable { key, error }) => {
            assert_eq!(&*key, "bad");
            assert!(matches!(error, Error::Decode { .. }));
        }
        other => panic!("expected Undecodable, got {other:?}"),
    }
    writer.insert("bad", json!("fixed")).await.unwrap();
    fresh.sync().await.unwrap();
    assert_eq!(fresh.snapshot().get("bad"), Some(&json!("fixed")));
    assert_eq!(fresh.snapshot().undecodable().count(), 0);
}

/// Invariant 9: keys the store cannot hold, and values over its size limit, are refused
/// with a clear error before any I/O.
pub async fn invalid_keys_are_refused_before_io(f: &dyn BackendFactory) {
    let ns = unique_namespace("invalid");
    let counting = Arc::new(CountingBackend::new(f.backend(&ns).await));
    let dict = manual(counting.clone()).await;
    let before = counting.counts();
    let long = "k".repeat(100_000);
    for key in ["", "nul\0inside", long.as_str()] {
        let err = dict.insert(key, json!(1)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{key:.20}: {err}");
        assert!(matches!(dict.remove(key).await.unwrap_err(), Error::InvalidKey { .. }));
        assert!(matches!(dict.pop(key).await.unwrap_err(), Error::InvalidKey { .. }));
        assert!(matches!(dict.setdefault(key, json!(1)).await.unwrap_err(), Error::InvalidKey { .. }));
        assert!(matches!(
            dict.insert_many([(key, json!(1)), ("fine", json!(2))]).await.unwrap_err(),
            Error::InvalidKey { .. }
        ));
        assert!(matches!(
            dict.compare_and_swap(key, None, Some(json!(1))).await.unwrap_err(),
            Error::InvalidKey { .. }
        ));
    }
    if let Some(max) = counting.max_value_size() {
        let err = dict.insert("big", json!("x".repeat(max + 1))).await.unwrap_err();
        assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
    }
    assert_eq!(counting.counts(), before, "nothing reached the store");
    assert_eq!(dict.snapshot().get("fine"), None, "the batch with a bad key wrote nothing");
}
