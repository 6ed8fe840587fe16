//! The suite, the change journal (invariant 11): every change recorded with its old and new
//! value in the same step, journal order equal to version order, failed writes leaving no
//! record, gaps reported, retention trimming only what it should.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::support::manual;
use super::{BackendFactory, PATIENCE, unique_namespace};
use crate::backend::{Backend, Version};
use crate::error::Error;
use crate::journal::{Gap, GapCause, JournalConfig, JournalItem, JournalRecord, read_all};

fn encoded(value: Value) -> Bytes {
    crate::codec::Codec::<Value>::encode(&crate::Json, &value).expect("encode")
}

/// What a test compares of a record: version, key, old, new, reason.
type Seen = (Version, String, Option<Bytes>, Option<Bytes>, Option<String>);

fn seen(record: &JournalRecord) -> Seen {
    (record.version, record.key.clone(), record.old.clone(), record.new.clone(), record.reason.clone())
}

fn records(items: &[JournalItem]) -> Vec<&JournalRecord> {
    items.iter().filter_map(|item| if let JournalItem::Record(record) = item { Some(record) } else { None }).collect()
}

fn gaps(items: &[JournalItem]) -> Vec<&Gap> {
    items.iter().filter_map(|item| if let JournalItem::Gap(gap) = item { Some(gap) } else { None }).collect()
}

/// Every kind of write is journaled — insert, overwrite, a batch with a reason, setdefault,
/// compare-and-swap, pop, remove — with the value it replaced, the actor, the reason and
/// the store's time; writes that change nothing or fail (a conflict, a moved guard) record
/// nothing; `history` lists a key's records newest first.
pub async fn every_write_is_journaled_with_its_old_and_new_value(f: &dyn BackendFactory) {
    let ns = unique_namespace("journal-ops");
    let actor = "conformance-actor";
    let dict = manual(f.with_journal(&ns, JournalConfig::default().actor(actor)).await).await;
    let started = SystemTime::now() - Duration::from_secs(300);
    let v1 = dict.insert("a", json!(1)).await.unwrap();
    let v2 = dict.insert("a", json!(2)).await.unwrap();
    let v3 = dict.batch().insert("b", json!("x")).remove("a").remove("absent").reason("cleanup").apply().await.unwrap();
    let v3 = v3.expect("the batch changed something");
    let (_, v4) = dict.setdefault_versioned("c", json!(3)).await.unwrap();
    assert_eq!(dict.setdefault_versioned("c", json!(9)).await.unwrap().1, None);
    let v5 = dict.compare_and_swap("c", Some(&json!(3)), Some(json!(4))).await.unwrap();
    assert!(matches!(dict.compare_and_swap("c", Some(&json!(3)), Some(json!(5))).await, Err(Error::Conflict { .. })));
    let guarded = dict.batch().insert("d", json!(1)).guard(v1).apply().await;
    assert!(matches!(guarded, Err(Error::VersionConflict { .. })), "{guarded:?}");
    let (_, v6) = dict.pop_versioned("b").await.unwrap().expect("b was there");
    assert_eq!(dict.remove("absent").await.unwrap(), None);
    let v7 = dict.remove("c").await.unwrap().expect("c was there");
    let (v4, v5) = (v4.expect("setdefault inserted"), v5.expect("the swap wrote"));

    let want: Vec<Seen> = vec![
        (v1, "a".into(), None, Some(encoded(json!(1))), None),
        (v2, "a".into(), Some(encoded(json!(1))), Some(encoded(json!(2))), None),
        (v3, "a".into(), Some(encoded(json!(2))), None, Some("cleanup".into())),
        (v3, "b".into(), None, Some(encoded(json!("x"))), Some("cleanup".into())),
        (v4, "c".into(), None, Some(encoded(json!(3))), None),
        (v5, "c".into(), Some(encoded(json!(3))), Some(encoded(json!(4))), None),
        (v6, "b".into(), Some(encoded(json!("x"))), None, None),
        (v7, "c".into(), Some(encoded(json!(4))), None, None),
    ];
    assert_eq!((v1, v2, v3, v4, v5, v6, v7), (1, 2, 3, 4, 5, 6, 7), "one version per change, none for failures");
    let items = dict.journal(0).await.unwrap();
    assert!(gaps(&items).is_empty(), "no gap: {:?}", gaps(&items));
    let got: Vec<Seen> = records(&items).into_iter().map(seen).collect();
    assert_eq!(got, want);
    for record in records(&items) {
        assert_eq!(record.actor, actor);
        let time = record.time.expect("the store's clock");
        assert!(time > started && time < SystemTime::now() + Duration::from_secs(300), "{time:?}");
    }
    // Resumed after a version: only what came after it.
    let later: Vec<Seen> = records(&dict.journal(v5).await.unwrap()).into_iter().map(seen).collect();
    assert_eq!(later, want[6..]);
    // A key's history, newest first.
    let history: Vec<Seen> = dict.history("a", 10).await.unwrap().iter().map(seen).collect();
    assert_eq!(history, [want[2].clone(), want[1].clone(), want[0].clone()]);
    assert_eq!(dict.history("a", 1).await.unwrap().len(), 1);
    assert!(dict.history("never-written", 10).await.unwrap().is_empty());
    assert_eq!(dict.decode("a", want[1].3.as_ref().unwrap()).unwrap(), json!(2));
}

/// Three dicts on separate clients, each with three writers making random writes (puts,
/// removes, batches, guarded batches, compare-and-swaps, pops), while a sampler reads the
/// store's whole contents now and then. Afterwards the journal is read from the start: it
/// has no gap, its versions are exactly the versions the successful writes returned (so a
/// failed or conflicting write left no record), in order, each record's old value is the
/// value the replay holds, and replaying it from empty gives the store's contents at every
/// version sampled and at the end.
pub async fn the_journal_replays_every_version_of_a_busy_namespace(f: &dyn BackendFactory) {
    let ns = unique_namespace("journal-replay");
    let mut dicts = Vec::new();
    for _ in 0..3 {
        dicts.push(manual(f.with_journal(&ns, JournalConfig::default()).await).await);
    }
    let sampler_backend = f.backend(&ns).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut samples = BTreeMap::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let durables = sampler_backend.durables().await.expect("sample");
                let entries: BTreeMap<String, Bytes> = durables.entries.into_iter().collect();
                samples.insert(durables.version, entries);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            samples
        })
    };
    let mut writers = Vec::new();
    for (d, dict) in dicts.iter().enumerate() {
        for w in 0..3u64 {
            let dict = dict.clone();
            writers.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(d as u64 * 10 + w);
                let mut made = Vec::new();
                for i in 0..25 {
                    let key = format!("k{}", rng.u8(0..6));
                    let value = json!(format!("d{d}w{w}i{i}"));
                    let written = match rng.u8(0..6) {
                        0 => dict.insert(&key, value).await.map(Some),
                        1 => dict.remove(&key).await,
                        2 => {
                            let other = format!("k{}", rng.u8(0..6));
                            dict.batch().insert(&key, value).remove(other).reason("random").apply().await
                        }
                        3 => {
                            dict.sync().await.ok();
                            let at = dict.version();
                            dict.batch().insert(&key, value).guard(at).apply().await
                        }
                        4 => {
                            dict.sync().await.ok();
                            let current = dict.snapshot().get(&key).cloned();
                            dict.compare_and_swap(&key, current.as_ref(), Some(value)).await
                        }
                        _ => dict.pop_versioned(&key).await.map(|popped| popped.map(|(_, version)| version)),
                    };
                    match written {
                        Ok(Some(version)) => made.push(version),
                        Ok(None) | Err(Error::Conflict { .. } | Error::VersionConflict { .. }) => {}
                        Err(err) => panic!("write failed: {err}"),
                    }
                }
                made
            }));
        }
    }
    let mut made = Vec::new();
    for writer in writers {
        made.extend(writer.await.expect("writer"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    let store = f.backend(&ns).await;
    let end = store.durables().await.unwrap();
    let made: BTreeSet<Version> = made.into_iter().collect();
    assert_eq!(made, (1..=end.version).collect::<BTreeSet<_>>(), "every version is one successful write");

    let items = read_all(&*store, 0).await.unwrap();
    assert!(gaps(&items).is_empty(), "no gap: {:?}", gaps(&items));
    let records = records(&items);
    let versions: BTreeSet<Version> = records.iter().map(|record| record.version).collect();
    assert_eq!(versions, made, "every version has records, and only those");
    assert!(records.windows(2).all(|pair| pair[0].version <= pair[1].version), "journal order is version order");
    let mut state: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut compared = 0;
    for (i, record) in records.iter().enumerate() {
        assert_eq!(state.get(&record.key), record.old.as_ref(), "the old value of {record:?}");
        match &record.new {
            Some(value) => state.insert(record.key.clone(), value.clone()),
            None => state.remove(&record.key),
        };
        let last_of_version = records.get(i + 1).is_none_or(|next| next.version != record.version);
        if last_of_version && let Some(sample) = samples.get(&record.version) {
            assert_eq!(&state, sample, "the replay at version {}", record.version);
            compared += 1;
        }
    }
    assert!(compared > 0 || samples.keys().all(|v| *v == 0), "the sampler saw some version");
    let end: BTreeMap<String, Bytes> = end.entries.into_iter().collect();
    assert_eq!(state, end, "the replay at the end");

    // Restored at up to 5 versions the sampler saw, into another namespace of the store
    // and into another store: each equals what the store held at that version.
    let sampled: Vec<Version> = samples.keys().copied().filter(|v| *v > 0).collect();
    let step = (sampled.len() / 5).max(1);
    for (i, version) in sampled.iter().step_by(step).take(5).enumerate() {
        let target = if i % 2 == 0 {
            f.backend(&unique_namespace("journal-restored")).await
        } else {
            Arc::new(crate::memory::MemoryBackend::in_store(crate::memory::MemoryStore::new(), "restored"))
        };
        crate::archive::restore(None, &*store, *version, &*target).await.unwrap();
        let got: BTreeMap<String, Bytes> = target.durables().await.unwrap().entries.into_iter().collect();
        assert_eq!(&got, &samples[version], "restored at version {version} into {}", target.describe());
    }
}

/// A writer that keeps no journal (durabledict's writers, a dict with the journal off)
/// leaves a gap the reader reports with its bounds — never skipped silently.
pub async fn a_writer_without_a_journal_shows_as_a_gap(f: &dyn BackendFactory) {
    let ns = unique_namespace("journal-gap");
    let journaled = manual(f.with_journal(&ns, JournalConfig::default()).await).await;
    let silent = manual(f.with_journal(&ns, JournalConfig::off()).await).await;
    journaled.insert("a", json!(1)).await.unwrap();
    journaled.insert("b", json!(1)).await.unwrap();
    silent.insert("a", json!("silent")).await.unwrap();
    silent.insert("c", json!("silent")).await.unwrap();
    journaled.insert("a", json!(3)).await.unwrap();
    let items = journaled.journal(0).await.unwrap();
    let versions: Vec<Version> = records(&items).iter().map(|record| record.version).collect();
    assert_eq!(versions, [1, 2, 5]);
    let gap = Gap { after: 2, before: 5, cause: GapCause::NotJournaled, key: None };
    assert_eq!(gaps(&items), [&gap]);
    assert_eq!(gap.to_string(), "changes not journaled between v2 and v5");
    // At the end, too.
    silent.insert("d", json!("silent")).await.unwrap();
    let tail = journaled.journal(5).await.unwrap();
    assert_eq!(tail, [JournalItem::Gap(Gap { after: 5, before: 7, cause: GapCause::NotJournaled, key: None })]);
}

/// Retention by count keeps the last versions and trims the rest, saying how far it
/// trimmed; by age it trims what is older than the limit by the store's clock. Nothing
/// else changes: every key keeps its value and deltas still work.
pub async fn retention_trims_old_records_and_nothing_else(f: &dyn BackendFactory) {
    let ns = unique_namespace("journal-keep");
    let backend = f.with_journal(&ns, JournalConfig::default().keep_versions(20)).await;
    let dict = manual(Arc::clone(&backend)).await;
    for i in 0..100 {
        dict.insert(&format!("k{}", i % 7), json!(i)).await.unwrap();
    }
    let page = backend.journal(0, 1_000).await.unwrap();
    assert_eq!(page.trimmed_through, 80, "trimmed through version 100 - 20");
    let versions: BTreeSet<Version> = page.records.iter().map(|record| record.version).collect();
    assert_eq!(versions, (81..=100).collect::<BTreeSet<_>>());
    let items = read_all(&*backend, 0).await.unwrap();
    assert_eq!(gaps(&items), [&Gap { after: 0, before: 81, cause: GapCause::Trimmed, key: None }]);
    let durables = backend.durables().await.unwrap();
    assert_eq!(durables.version, 100);
    let entries: BTreeMap<String, Bytes> = durables.entries.into_iter().collect();
    let want: BTreeMap<String, Bytes> = (93..100).map(|i| (format!("k{}", i % 7), encoded(json!(i)))).collect();
    assert_eq!(entries, want, "the data is untouched");
    // Deltas still work (from a version the store's reader has seen: ZooKeeper's deltas
    // start from its last read).
    dict.insert("after", json!(true)).await.unwrap();
    match backend.changes_since(100).await.unwrap() {
        crate::backend::Changes::Delta { changes, version } => {
            assert_eq!(version, 101);
            assert_eq!(changes.iter().map(|change| change.key.as_str()).collect::<Vec<_>>(), ["after"]);
        }
        crate::backend::Changes::TooOld => panic!("a delta after trimming the journal"),
    }

    // By age: records older than the limit go at the next trimming point (every 100
    // versions without a count limit).
    let ns = unique_namespace("journal-age");
    let keep_for = Duration::from_millis(1_500);
    let backend = f.with_journal(&ns, JournalConfig::default().keep_all_versions().keep_for(keep_for)).await;
    let dict = manual(Arc::clone(&backend)).await;
    for i in 0..50 {
        dict.insert("k", json!(i)).await.unwrap();
    }
    tokio::time::sleep(keep_for + Duration::from_millis(500)).await;
    // When each write of the second 50 started: on a slow store (an object store on a busy
    // machine) the first of them may be older than the limit by the time version 100 is
    // written, and may go too — but none that started within the limit of version 100.
    let mut started = Vec::new();
    for i in 50..100 {
        started.push(std::time::Instant::now());
        dict.insert("k", json!(i)).await.unwrap();
    }
    let cutoff = std::time::Instant::now() - keep_for + Duration::from_millis(50);
    let most = 50 + started.iter().filter(|at| **at < cutoff).count() as Version;
    let page = backend.journal(0, 1_000).await.unwrap();
    assert!(
        (50..=most).contains(&page.trimmed_through),
        "the first 50 were older than the limit at version 100, and no more than {most} were: trimmed through {}",
        page.trimmed_through
    );
    assert_eq!(page.records.first().map(|record| record.version), Some(page.trimmed_through + 1));
    assert_eq!(page.records.len() as Version, 100 - page.trimmed_through);
}

/// `follow_journal` yields what is there, then each new change as it is made.
pub async fn the_journal_follows_new_writes(f: &dyn BackendFactory) {
    let ns = unique_namespace("journal-follow");
    let dict = manual(f.with_journal(&ns, JournalConfig::default()).await).await;
    dict.insert("before", json!(0)).await.unwrap();
    let mut stream = Box::pin(dict.follow_journal(0, Duration::from_millis(100)));
    let first = tokio::time::timeout(PATIENCE, stream.next()).await.expect("the first record").unwrap().unwrap();
    assert!(matches!(&first, JournalItem::Record(record) if record.key == "before"), "{first:?}");
    for i in 1..=3 {
        dict.insert(&format!("after{i}"), json!(i)).await.unwrap();
        let next = tokio::time::timeout(PATIENCE, stream.next()).await.expect("a new record").unwrap().unwrap();
        match next {
            JournalItem::Record(record) => assert_eq!((record.version, record.key), (i + 1, format!("after{i}"))),
            gap => panic!("want a record, got {gap:?}"),
        }
    }
}
