//! The suite, several clients of one namespace: convergence, isolation, deltas, hints,
//! change events, and what a store holds that a dict must survive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::support::{autosync, hinted, manual, snapshot_contents};
use super::{BackendFactory, PATIENCE, unique_namespace};
use crate::backend::{Backend, Changes};
use crate::dict::DurableDict;
use crate::error::Error;
use crate::events::Event;
use crate::instrument::CountingBackend;

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

/// The dicts of one process on one store and namespace share their delta fetches when the
/// backend names a [`Backend::fetch_scope`]: twenty dicts syncing at once after each change
/// cost the store fewer than half a fetch each. Either way every dict shows every change at
/// the writer's version.
pub async fn dicts_of_one_process_share_delta_fetches(f: &dyn BackendFactory) {
    const DICTS: u64 = 20;
    const CHANGES: u64 = 6;
    let ns = unique_namespace("shared-fetch");
    let writer = manual(f.backend(&ns).await).await;
    let mut handles = Vec::new();
    let mut dicts = Vec::new();
    for _ in 0..DICTS {
        let counting = Arc::new(CountingBackend::new(f.backend(&ns).await));
        dicts.push(manual(counting.clone()).await);
        handles.push(counting);
    }
    let fetches = || handles.iter().map(|handle| handle.counts().changes_since).sum::<u64>();
    let before = fetches();
    for i in 0..CHANGES {
        writer.insert(&format!("k{i}"), json!(i)).await.unwrap();
        let outcomes = futures::future::join_all(dicts.iter().map(|dict| dict.sync())).await;
        for (dict, outcome) in dicts.iter().zip(outcomes) {
            outcome.unwrap();
            assert_eq!(dict.version(), writer.version());
            assert_eq!(snapshot_contents(dict), snapshot_contents(&writer));
        }
    }
    if handles[0].fetch_scope().is_some() {
        let made = fetches() - before;
        assert!(made < DICTS * CHANGES / 2, "{made} delta fetches for {DICTS} dicts and {CHANGES} changes: not shared");
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
