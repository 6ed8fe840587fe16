//! The suite, batches: puts and deletes applied as one version, guards that hold or change
//! nothing, and readers that never see part of a batch.

use serde_json::{Value, json};

use super::support::{manual, snapshot_contents, store_contents};
use super::{BackendFactory, unique_namespace};
use crate::error::Error;

/// A batch of puts and deletes is one mutation: one version, and the store, the writer's
/// snapshot and another dict's snapshot all show exactly the batch's result. A key given
/// twice keeps its last operation; deleting an absent key is no change to it.
pub async fn a_batch_applies_puts_and_deletes_as_one_version(f: &dyn BackendFactory) {
    let ns = unique_namespace("batch");
    let writer = manual(f.backend(&ns).await).await;
    let reader = manual(f.backend(&ns).await).await;
    writer.insert_many([("a", json!(1)), ("b", json!(1)), ("gone", json!(0))]).await.unwrap();
    let before = writer.version();
    let version = writer
        .batch()
        .insert("b", json!("first"))
        .insert("c", json!({"nested": [1, 2]}))
        .remove("gone")
        .remove("never-there")
        .insert("b", json!(2))
        .reason("conformance")
        .apply()
        .await
        .unwrap();
    assert_eq!(version, Some(before + 1), "a batch is one version");
    let expected: std::collections::BTreeMap<String, Value> =
        [("a", json!(1)), ("b", json!(2)), ("c", json!({"nested": [1, 2]}))]
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect();
    assert_eq!(store_contents(&*f.backend(&ns).await).await, (expected.clone(), before + 1), "the store");
    assert_eq!((snapshot_contents(&writer), writer.version()), (expected.clone(), before + 1), "the writer");
    reader.sync().await.unwrap();
    assert_eq!((snapshot_contents(&reader), reader.version()), (expected, before + 1), "another dict");
    // A batch of removes only.
    let version = writer.batch().remove("a").remove("c").apply().await.unwrap();
    assert_eq!(version, Some(before + 2));
    reader.sync().await.unwrap();
    assert_eq!(reader.snapshot().keys().map(|k| k.to_string()).collect::<Vec<_>>(), ["b"]);
}

/// A batch that changes nothing — empty, or only removes of absent keys — makes no
/// version, and the writer's snapshot stays as it was.
pub async fn a_batch_that_changes_nothing_makes_no_version(f: &dyn BackendFactory) {
    let ns = unique_namespace("batch-noop");
    let dict = manual(f.backend(&ns).await).await;
    let version = dict.insert("kept", json!(true)).await.unwrap();
    assert_eq!(dict.batch().apply().await.unwrap(), None, "an empty batch");
    assert_eq!(dict.batch().remove("absent").remove("also-absent").apply().await.unwrap(), None, "absent removes");
    assert_eq!(dict.batch().guard(version).apply().await.unwrap(), None, "a guard that holds, nothing to write");
    assert_eq!(store_contents(&*f.backend(&ns).await).await.1, version, "no version was made");
    assert_eq!(dict.version(), version);
    assert_eq!(dict.insert_many(Vec::<(String, Value)>::new()).await.unwrap(), version);
}

/// A batch guarded by a version the namespace has moved past writes nothing and says so
/// with the current version; guarded by the current version, it is applied.
pub async fn a_guarded_batch_changes_nothing_once_the_namespace_moved(f: &dyn BackendFactory) {
    let ns = unique_namespace("batch-guard");
    let mine = manual(f.backend(&ns).await).await;
    let theirs = manual(f.backend(&ns).await).await;
    let seen = mine.insert("k", json!(1)).await.unwrap();
    let moved = theirs.insert("other", json!("theirs")).await.unwrap();
    let stored = store_contents(&*f.backend(&ns).await).await;
    for guarded in [mine.batch().insert("k", json!(2)).remove("other"), mine.batch()] {
        match guarded.guard(seen).apply().await {
            Err(Error::VersionConflict { expected, current }) => assert_eq!((expected, current), (seen, moved)),
            other => panic!("a guard the namespace moved past: {other:?}"),
        }
    }
    assert_eq!(store_contents(&*f.backend(&ns).await).await, stored, "a failed guard wrote nothing");
    assert_eq!(mine.snapshot().get("k"), Some(&json!(1)));
    let applied = mine.batch().insert("k", json!(2)).remove("other").guard(moved).apply().await.unwrap();
    assert_eq!(applied, Some(moved + 1));
    theirs.sync().await.unwrap();
    assert_eq!(snapshot_contents(&theirs), [("k".to_string(), json!(2))].into_iter().collect());
}

/// Guarded read-modify-write from three dicts at once loses no update: each increments a
/// counter by a batch guarded by the version it read, and on a conflict syncs and tries
/// again.
pub async fn guarded_batches_lose_no_update(f: &dyn BackendFactory) {
    const WRITERS: usize = 3;
    const EACH: u64 = 10;
    let ns = unique_namespace("batch-rmw");
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let dict = manual(f.backend(&ns).await).await;
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    dict.sync().await.unwrap();
                    let seen = dict.snapshot();
                    let count = seen.get("counter").and_then(Value::as_u64).unwrap_or(0);
                    match dict.batch().insert("counter", json!(count + 1)).guard(seen.version()).apply().await {
                        Ok(_) => break,
                        Err(Error::VersionConflict { .. }) => conflicts += 1,
                        Err(err) => panic!("a guarded increment: {err}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (contents, version) = store_contents(&*f.backend(&ns).await).await;
    assert_eq!(contents.get("counter"), Some(&json!(WRITERS as u64 * EACH)), "no increment was lost");
    assert_eq!(version, WRITERS as u64 * EACH, "one version per applied batch, none for a refused one");
}

/// No snapshot and no store read ever shows part of a batch of puts and deletes: the writer
/// swaps between two states — the `a` keys set and the `b` keys gone, and the reverse.
pub async fn no_reader_sees_part_of_a_batch(f: &dyn BackendFactory) {
    let ns = unique_namespace("batch-swap");
    let writer = manual(f.backend(&ns).await).await;
    let reader = manual(f.backend(&ns).await).await;
    let raw = f.backend(&ns).await;
    let names = |side: &str| (0..5).map(|i| format!("{side}{i}")).collect::<Vec<_>>();
    let (a, b) = (names("a"), names("b"));
    let writes = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            for n in 0..40u64 {
                let (set, clear) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
                let mut batch = writer.batch();
                for key in set {
                    batch = batch.insert(key.clone(), json!(n));
                }
                for key in clear {
                    batch = batch.remove(key.clone());
                }
                batch.apply().await.unwrap();
            }
        }
    });
    let whole = |state: &std::collections::BTreeMap<String, Value>, what: &str| {
        let side = |keys: &[String]| keys.iter().map(|k| state.get(k).cloned()).collect::<Vec<_>>();
        let (on_a, on_b) = (side(&a), side(&b));
        let one_value = |values: &[Option<Value>]| values[0].is_some() && values.iter().all(|v| *v == values[0]);
        let none = |values: &[Option<Value>]| values.iter().all(Option::is_none);
        let ok = (none(&on_a) && none(&on_b)) || (one_value(&on_a) && none(&on_b)) || (none(&on_a) && one_value(&on_b));
        assert!(ok, "{what} saw part of a batch: a = {on_a:?}, b = {on_b:?}");
    };
    let mut rounds = 0;
    while !writes.is_finished() || rounds == 0 {
        reader.sync().await.unwrap();
        whole(&snapshot_contents(&reader), "a snapshot");
        whole(&store_contents(&*raw).await.0, "durables()");
        rounds += 1;
    }
    writes.await.unwrap();
    reader.sync().await.unwrap();
    let last = snapshot_contents(&reader);
    assert!(b.iter().all(|k| last.get(k) == Some(&json!(39))) && a.iter().all(|k| !last.contains_key(k)), "{last:?}");
}
