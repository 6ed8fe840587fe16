//! The suite, one dict's operations: each test takes a [`BackendFactory`] and checks one
//! operation of the contract on fresh namespaces of the backend it hands out.

use std::sync::Arc;

use serde_json::{Value, json};

use super::support::{autosync, manual, store_contents};
use super::{BackendFactory, unique_namespace};
use crate::backend::{Backend, Version};
use crate::error::Error;

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
