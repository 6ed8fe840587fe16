//! DESIGN.md's invariants that the core can check on its own, each named after what it
//! proves. Store-side invariants (1, 9) run on every backend in the conformance suite; these
//! check the dict's side, on `MemoryBackend` wrapped in counting and fault-injecting layers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use durable_core::conformance::wait_until;
use durable_core::testing::FaultyBackend;
use durable_core::{
    Backend, Call, Codec, CountingBackend, Delegate, DurableDict, Error, Event, Hint, HintHealth, Json, Lz4,
    MemoryBackend, MemoryStore, MsgPack, ReadThenWrite, SimpleStore, Source, SyncOutcome, Wrap,
};
use serde_json::{Value, json};

fn memory(ns: &str) -> MemoryBackend {
    MemoryBackend::in_store(MemoryStore::new(), ns)
}

// ---- invariant 2: a snapshot never records a version newer than its data ----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_version_is_never_newer_than_its_data() {
    let store = MemoryStore::new();
    let writer = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "ns")))
        .autosync(false)
        .build()
        .await
        .unwrap();
    let reader = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(store, "ns")))
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    let base = writer.insert("counter", 0).await.unwrap();
    let writes = tokio::spawn(async move {
        for n in 1..=500u64 {
            writer.insert("counter", n).await.unwrap();
        }
    });
    let mut observed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Watch the reader while the writes go on and until it has caught up with the last.
    loop {
        let done = writes.is_finished() && reader.version() >= base + 500;
        let snap = reader.snapshot();
        if let Some(counter) = snap.get("counter") {
            // The counter written at version base + n is n: data at least as new as version.
            assert!(base + counter >= snap.version(), "version {} with counter {counter}", snap.version());
            observed += 1;
        }
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the reader never caught up");
        tokio::task::yield_now().await;
    }
    writes.await.unwrap();
    assert!(observed > 0);
    assert_eq!(reader.snapshot().get("counter"), Some(&500));
}

// ---- invariant 3: hints are only hints --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_hints_are_caught_by_the_safety_poll_and_by_resync() {
    let store = MemoryStore::new();
    let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::in_store(store.clone(), "ns"))));
    let polled = DurableDict::<Value>::builder(faulty.clone())
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let writer = MemoryBackend::in_store(store, "ns");
    faulty.set_dropping_hints(true);
    writer.persist("k", Bytes::from_static(b"1")).await.unwrap();
    wait_until("the safety poll to find the change", || polled.snapshot().get("k") == Some(&json!(1))).await;

    // Without a poll, a lost hint leaves sync() trusting the hints; resync() asks anyway.
    let manual = DurableDict::<Value>::builder(faulty.clone()).autosync(false).build().await.unwrap();
    writer.persist("k", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(manual.sync().await.unwrap(), SyncOutcome::Unchanged, "the hint was lost");
    assert!(matches!(manual.resync().await.unwrap(), SyncOutcome::Delta { keys: 1, .. }));
    assert_eq!(manual.snapshot().get("k"), Some(&json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_listener_makes_sync_ask_the_store_until_it_resumes() {
    let store = MemoryStore::new();
    let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::in_store(store.clone(), "ns"))));
    let counting = Arc::new(CountingBackend::new(faulty.clone()));
    let dict = DurableDict::<Value>::builder(counting.clone()).autosync(false).build().await.unwrap();
    let writer = MemoryBackend::in_store(store, "ns");

    faulty.inject_hint(Hint::Interrupted);
    wait_until("the listener to notice", || dict.status().hints == HintHealth::Down).await;
    // While interrupted, hints are lost (the connection is down) but sync() still finds changes.
    faulty.set_dropping_hints(true);
    writer.persist("k", Bytes::from_static(b"1")).await.unwrap();
    let before = counting.counts().last_updated;
    dict.sync().await.unwrap();
    assert_eq!(dict.snapshot().get("k"), Some(&json!(1)));
    dict.sync().await.unwrap();
    assert_eq!(counting.counts().last_updated, before + 2, "every sync asked the store");

    // Changes made while the listener was away are found once it resumes.
    writer.persist("k", Bytes::from_static(b"2")).await.unwrap();
    faulty.set_dropping_hints(false);
    faulty.inject_hint(Hint::Resumed);
    wait_until("the listener to resume", || dict.status().hints == HintHealth::Healthy).await;
    dict.sync().await.unwrap();
    assert_eq!(dict.snapshot().get("k"), Some(&json!(2)));
    let settled = counting.counts().total();
    for _ in 0..100 {
        assert_eq!(dict.sync().await.unwrap(), SyncOutcome::Unchanged);
    }
    assert_eq!(counting.counts().total(), settled, "healthy again: syncs are free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_hint_stream_is_resubscribed_and_forces_a_check() {
    let store = MemoryStore::new();
    let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::in_store(store.clone(), "ns"))));
    let counting = Arc::new(CountingBackend::new(faulty.clone()));
    let dict = DurableDict::<Value>::builder(counting.clone())
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    assert_eq!(counting.counts().watch, 1);
    // The store is down while the stream ends: re-subscribing fails for a while.
    faulty.set_failing(true);
    faulty.close_hint_streams();
    wait_until("the listener to notice", || dict.status().hints == HintHealth::Down).await;
    let writer = MemoryBackend::in_store(store, "ns");
    writer.persist("k", Bytes::from_static(b"\"while away\"")).await.unwrap();
    faulty.set_failing(false);
    wait_until("a new subscription and a resync", || dict.snapshot().get("k") == Some(&json!("while away"))).await;
    assert!(counting.counts().watch >= 2, "subscribed again");
    assert_eq!(dict.status().hints, HintHealth::Healthy);
}

// ---- invariant 4: sync() when nothing changed --------------------------------------------

#[tokio::test]
async fn nochange_sync_makes_no_round_trip_with_healthy_hints() {
    let counting = Arc::new(CountingBackend::new(Arc::new(memory("ns"))));
    let dict = DurableDict::<Value>::builder(counting.clone()).autosync(false).build().await.unwrap();
    dict.insert("k", json!(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // let our own write's hint land
    let before = counting.counts();
    for _ in 0..1000 {
        assert_eq!(dict.sync().await.unwrap(), SyncOutcome::Unchanged);
    }
    // Autosync reads are free too.
    let autosync = DurableDict::<Value>::builder(counting.clone()).build().await.unwrap();
    let after_build = counting.counts();
    for _ in 0..1000 {
        assert_eq!(autosync.get("k").await.as_deref(), Some(&json!(1)));
    }
    assert_eq!(counting.counts().total() - after_build.total(), 0);
    assert_eq!(after_build.total() - before.total(), 2, "building the second dict: watch + durables");
}

#[tokio::test]
async fn nochange_sync_makes_exactly_one_cheap_round_trip_without_hints() {
    let counting = Arc::new(CountingBackend::new(Arc::new(memory("ns"))));
    let dict = DurableDict::<Value>::builder(counting.clone()).autosync(false).hints(false).build().await.unwrap();
    dict.insert("k", json!(1)).await.unwrap();
    let before = counting.counts();
    for _ in 0..100 {
        assert_eq!(dict.sync().await.unwrap(), SyncOutcome::Unchanged);
    }
    let after = counting.counts();
    assert_eq!(after.last_updated - before.last_updated, 100);
    assert_eq!(after.total() - before.total(), 100, "only last_updated, once per sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_syncs_coalesce_into_one_trip() {
    let faulty = Arc::new(FaultyBackend::new(Arc::new(memory("ns"))));
    let counting = Arc::new(CountingBackend::new(faulty.clone()));
    let dict = DurableDict::<Value>::builder(counting.clone()).autosync(false).hints(false).build().await.unwrap();
    faulty.set_delay(Duration::from_millis(100));
    let before = counting.counts().last_updated;
    let calls: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn({
                let dict = dict.clone();
                async move { dict.sync().await.unwrap() }
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), SyncOutcome::Unchanged);
    }
    let trips = counting.counts().last_updated - before;
    // The first caller's trip, plus at most one more covering everyone who asked during it.
    assert!((1..=2).contains(&trips), "{trips} trips for 50 concurrent syncs");
}

#[tokio::test]
async fn callers_that_arrive_during_a_failing_trip_share_its_failure() {
    let faulty = Arc::new(FaultyBackend::new(Arc::new(memory("ns"))));
    let counting = Arc::new(CountingBackend::new(faulty.clone()));
    let dict = DurableDict::<Value>::builder(counting.clone()).autosync(false).hints(false).build().await.unwrap();
    faulty.set_failing(true);
    faulty.set_delay(Duration::from_millis(200));
    let before = counting.counts().last_updated;
    let first = tokio::spawn({
        let dict = dict.clone();
        async move { dict.sync().await }
    });
    wait_until("the first trip to start", || counting.counts().last_updated > before).await;
    let started = tokio::time::Instant::now();
    let err = dict.sync().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // The second caller waited for the trip under way and took its failure: one trip, and
    // no second wait of the store's timeout.
    assert!(started.elapsed() < Duration::from_millis(350), "waited {:?}", started.elapsed());
    assert!(first.await.unwrap().is_err());
    assert_eq!(counting.counts().last_updated - before, 1);
    // A caller that arrives with no trip under way asks the store itself.
    assert!(dict.sync().await.is_err());
    assert_eq!(counting.counts().last_updated - before, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_hints_during_an_outage_costs_one_trip_not_one_per_hint() {
    let faulty = Arc::new(FaultyBackend::new(Arc::new(memory("ns"))));
    let counting = Arc::new(CountingBackend::new(faulty.clone()));
    let dict = DurableDict::<Value>::builder(counting.clone())
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    faulty.set_failing(true);
    faulty.set_delay(Duration::from_millis(100));
    let before = counting.counts().last_updated;
    for _ in 0..20 {
        faulty.inject_hint(Hint::Changed { version: None });
    }
    faulty.inject_hint(Hint::Interrupted);
    // The listener reaches the Interrupted hint after at most a couple of failed trips, not
    // after twenty of them.
    let started = tokio::time::Instant::now();
    wait_until("the interruption to be seen", || dict.status().hints == HintHealth::Down).await;
    assert!(started.elapsed() < Duration::from_millis(450), "took {:?}", started.elapsed());
    assert!(counting.counts().last_updated - before <= 2, "{} trips", counting.counts().last_updated - before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dict_recovers_on_its_own_soon_after_the_store_returns() {
    let store = MemoryStore::new();
    let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::in_store(store.clone(), "ns"))));
    // No background refresh, no poll, and nobody calls sync(): the listener alone recovers.
    let dict = DurableDict::<Value>::builder(faulty.clone()).autosync(false).build().await.unwrap();
    faulty.set_failing(true);
    faulty.close_hint_streams();
    wait_until("the hints to go down", || dict.status().hints == HintHealth::Down).await;
    // A long outage: the retries have backed off as far as they go.
    tokio::time::sleep(Duration::from_secs(2)).await;
    MemoryBackend::in_store(store, "ns").persist("k", Bytes::from_static(b"1")).await.unwrap();
    faulty.set_failing(false);
    let back = tokio::time::Instant::now();
    wait_until("recovery", || {
        let status = dict.status();
        status.hints == HintHealth::Healthy && status.last_success.is_some_and(|at| at > back.into_std())
    })
    .await;
    assert!(back.elapsed() < Duration::from_millis(600), "recovered after {:?}", back.elapsed());
    assert_eq!(dict.snapshot().get("k"), Some(&json!(1)), "the resync brought the change in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshing_dict_checks_the_store_while_its_listener_is_interrupted() {
    let store = MemoryStore::new();
    let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::in_store(store.clone(), "ns"))));
    let dict = DurableDict::<Value>::builder(faulty.clone())
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    // The listener's connection dropped (its stream stays open, as a cluster's does while
    // the shard fails over): no hint will come, yet a change must not wait for the poll.
    faulty.set_dropping_hints(true);
    faulty.inject_hint(Hint::Interrupted);
    wait_until("the interruption", || dict.status().hints == HintHealth::Down).await;
    MemoryBackend::in_store(store, "ns").persist("k", Bytes::from_static(b"1")).await.unwrap();
    let started = tokio::time::Instant::now();
    wait_until("the change", || dict.snapshot().get("k") == Some(&json!(1))).await;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

// ---- invariant 5: sync after k changes costs O(k) ---------------------------------------

#[tokio::test]
async fn sync_after_one_change_in_ten_thousand_keys_is_a_one_key_delta() {
    let store = MemoryStore::new();
    let writer = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "ns")))
        .autosync(false)
        .hints(false)
        .build()
        .await
        .unwrap();
    writer.insert_many((0..10_000u64).map(|i| (format!("key{i}"), i))).await.unwrap();
    let counting = Arc::new(CountingBackend::new(Arc::new(MemoryBackend::in_store(store, "ns"))));
    let reader = DurableDict::<u64>::builder(counting.clone()).autosync(false).hints(false).build().await.unwrap();
    assert_eq!(reader.snapshot().len(), 10_000);
    writer.insert("key42", 4242).await.unwrap();
    let before = counting.counts();
    let outcome = reader.sync().await.unwrap();
    assert_eq!(outcome, SyncOutcome::Delta { keys: 1, version: 2 });
    let after = counting.counts();
    assert_eq!(after.durables, before.durables, "no full reload");
    assert_eq!(after.changes_since - before.changes_since, 1);
    assert_eq!(reader.snapshot().get("key42"), Some(&4242));
    assert_eq!(reader.snapshot().len(), 10_000);
}

/// A backend whose store can be swapped under it, as when a server is flushed or restored.
/// Switches its calls to another backend on command (a store flushed behind the dict's back).
/// A `Wrap`, so every method — deltas, hints, atomic writes — is the current backend's.
struct Switchable(std::sync::Mutex<Arc<dyn Backend>>);

impl Switchable {
    fn current(&self) -> Arc<dyn Backend> {
        self.0.lock().unwrap().clone()
    }
}

#[durable_core::async_trait]
impl Wrap for Switchable {
    fn label(&self) -> &'static str {
        "switchable"
    }
    fn wrapped(&self) -> Option<Delegate<'_>> {
        Some(Delegate::from(self.current()))
    }
    async fn enter(&self, _call: Call<'_>) -> durable_core::Result<Delegate<'_>> {
        Ok(Delegate::from(self.current()))
    }
}

#[tokio::test]
async fn a_store_that_went_backwards_is_reloaded_in_full() {
    let switchable = Arc::new(Switchable(std::sync::Mutex::new(Arc::new(memory("ns")))));
    // Polled: the hint listener would stay on the store switched away from.
    let dict = DurableDict::<Value>::builder(switchable.clone()).autosync(false).hints(false).build().await.unwrap();
    dict.insert("a", json!(1)).await.unwrap();
    dict.insert("b", json!(2)).await.unwrap();
    dict.insert("c", json!(3)).await.unwrap();
    // The server is flushed and someone writes one key: version 1, behind the snapshot's 3.
    let flushed = memory("ns");
    flushed.persist("z", Bytes::from_static(b"26")).await.unwrap();
    *switchable.0.lock().unwrap() = Arc::new(flushed);
    let outcome = dict.sync().await.unwrap();
    assert_eq!(outcome, SyncOutcome::Full { keys: 1, version: 1 });
    let keys: Vec<String> = dict.snapshot().keys().map(str::to_owned).collect();
    assert_eq!(keys, vec!["z"]);
}

// ---- invariant 6: readers never block and never see a half-applied sync ----------------

#[test]
fn readers_on_other_threads_never_see_a_half_applied_batch() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let store = MemoryStore::new();
    let (writer, reader) = runtime.block_on(async {
        let writer = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "ns")))
            .autosync(false)
            .build()
            .await
            .unwrap();
        let reader = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(store, "ns")))
            .autosync(false)
            .background_refresh(true)
            .build()
            .await
            .unwrap();
        (writer, reader)
    });
    let keys: Vec<String> = (0..32).map(|i| format!("k{i}")).collect();
    let done = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (reader, keys, done, checked) = (reader.clone(), keys.clone(), done.clone(), checked.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let snap = reader.snapshot();
                    let values: Vec<Option<&u64>> = keys.iter().map(|k| snap.get(k)).collect();
                    let first = values[0];
                    assert!(values.iter().all(|v| *v == first), "half-applied batch: {values:?}");
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    runtime.block_on(async {
        for n in 0..300u64 {
            writer.insert_many(keys.iter().map(|k| (k.clone(), n))).await.unwrap();
        }
        wait_until("the reader to catch up", || reader.snapshot().get("k0") == Some(&299)).await;
    });
    done.store(true, Ordering::Release);
    for thread in threads {
        thread.join().expect("a reader thread saw a half-applied batch");
    }
    assert!(checked.load(Ordering::Relaxed) > 0);
}

// ---- invariant 7: a store error never empties or corrupts the snapshot -------------------

#[tokio::test]
async fn a_failing_store_leaves_the_last_good_snapshot_serving() {
    let faulty = Arc::new(FaultyBackend::new(Arc::new(memory("ns"))));
    let dict = DurableDict::<Value>::builder(faulty.clone()).hints(false).build().await.unwrap();
    dict.insert("flag", json!(true)).await.unwrap();
    let version = dict.version();
    assert!(dict.status().last_success.is_some());

    faulty.set_failing(true);
    let err = dict.sync().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // Autosync reads still answer from the last good snapshot.
    assert_eq!(dict.get("flag").await.as_deref(), Some(&json!(true)));
    assert_eq!(dict.len().await, 1);
    assert_eq!(dict.version(), version);
    // Writes fail loudly and change nothing locally.
    assert!(dict.insert("flag", json!(false)).await.unwrap_err().is_unavailable());
    assert!(dict.remove("flag").await.unwrap_err().is_unavailable());
    assert_eq!(dict.snapshot().get("flag"), Some(&json!(true)));
    let status = dict.status();
    assert!(status.last_error.as_ref().is_some_and(Error::is_unavailable));
    assert!(status.failing_since.is_some());
    assert!(status.staleness() > Duration::ZERO);

    faulty.set_failing(false);
    dict.sync().await.unwrap();
    let status = dict.status();
    assert!(status.last_error.is_none() && status.failing_since.is_none());
    assert_eq!(dict.snapshot().get("flag"), Some(&json!(true)));
}

#[tokio::test]
async fn build_fails_rather_than_starting_empty() {
    let faulty = Arc::new(FaultyBackend::new(Arc::new(memory("ns"))));
    faulty.set_failing(true);
    let err = DurableDict::<Value>::builder(faulty).build().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

// ---- invariant 8: values are decoded once, at sync ------------------------------------

/// JSON, counting its decodes.
#[derive(Clone, Default)]
struct CountingJson(Arc<AtomicUsize>);

impl Codec<Value> for CountingJson {
    fn encode(&self, value: &Value) -> Result<Bytes, Source> {
        Json.encode(value)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Value, Source> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Json.decode(bytes)
    }
}

#[tokio::test]
async fn values_are_decoded_once_at_sync_never_on_read() {
    let store = MemoryStore::new();
    let writer = MemoryBackend::in_store(store.clone(), "ns");
    for i in 0..10 {
        writer.persist(&format!("k{i}"), Bytes::from(format!("{{\"n\": {i}}}"))).await.unwrap();
    }
    let decodes = CountingJson::default();
    let dict = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store, "ns")))
        .codec(decodes.clone())
        .hints(false)
        .build()
        .await
        .unwrap();
    assert_eq!(decodes.0.load(Ordering::SeqCst), 10, "the first load decodes each value once");
    for _ in 0..100 {
        assert_eq!(dict.get("k3").await.as_deref(), Some(&json!({"n": 3})));
    }
    assert_eq!(decodes.0.load(Ordering::SeqCst), 10, "reads decode nothing");
    writer.persist("k3", Bytes::from_static(b"{\"n\": 33}")).await.unwrap();
    dict.sync().await.unwrap();
    assert_eq!(decodes.0.load(Ordering::SeqCst), 11, "a one-key delta decodes one value");
    // A local write needs no decode at all.
    dict.insert("k4", json!({"n": 44})).await.unwrap();
    assert_eq!(decodes.0.load(Ordering::SeqCst), 11);
}

#[tokio::test]
async fn a_full_reload_does_not_decode_unchanged_values_again() {
    let store = MemoryStore::new();
    let writer = MemoryBackend::in_store(store.clone(), "ns").with_change_log(1);
    for i in 0..10 {
        writer.persist(&format!("k{i}"), Bytes::from(i.to_string())).await.unwrap();
    }
    let decodes = CountingJson::default();
    let dict = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store, "ns").with_change_log(1)))
        .codec(decodes.clone())
        .hints(false)
        .build()
        .await
        .unwrap();
    writer.persist("k1", Bytes::from_static(b"100")).await.unwrap();
    writer.persist("k2", Bytes::from_static(b"200")).await.unwrap();
    let outcome = dict.sync().await.unwrap();
    assert!(matches!(outcome, SyncOutcome::Full { keys: 10, .. }), "the 1-entry log forces a full reload");
    assert_eq!(decodes.0.load(Ordering::SeqCst), 12, "only the two changed values were decoded again");
}

#[tokio::test]
async fn an_undecodable_value_keeps_the_keys_last_good_value() {
    let store = MemoryStore::new();
    let writer = MemoryBackend::in_store(store.clone(), "ns");
    writer.persist("flag", Bytes::from_static(b"true")).await.unwrap();
    let dict = DurableDict::<bool>::builder(Arc::new(MemoryBackend::in_store(store, "ns")))
        .hints(false)
        .build()
        .await
        .unwrap();
    let mut events = dict.subscribe();
    writer.persist("flag", Bytes::from_static(b"\"not a bool\"")).await.unwrap();
    dict.sync().await.unwrap();
    assert_eq!(dict.snapshot().get("flag"), Some(&true), "the last good value stays");
    assert_eq!(dict.snapshot().undecodable().map(|(k, _)| k).collect::<Vec<_>>(), vec!["flag"]);
    assert!(matches!(events.recv().await, Some(Event::Undecodable { key, .. }) if &*key == "flag"));
}

// ---- writes ---------------------------------------------------------------------------

#[tokio::test]
async fn a_write_after_someone_elses_write_brings_both_in() {
    let store = MemoryStore::new();
    let mine = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "ns")))
        .autosync(false)
        .hints(false)
        .build()
        .await
        .unwrap();
    let theirs = MemoryBackend::in_store(store, "ns");
    theirs.persist("theirs", Bytes::from_static(b"1")).await.unwrap();
    let version = mine.insert("mine", json!(2)).await.unwrap();
    let snap = mine.snapshot();
    assert_eq!(snap.version(), version);
    assert_eq!(snap.get("mine"), Some(&json!(2)));
    assert_eq!(snap.get("theirs"), Some(&json!(1)), "one consistent version: theirs came in too");
}

/// A store with only durabledict's four primitives (and optionally a value size limit),
/// adapted by `ReadThenWrite`.
struct OnlyRequired {
    inner: MemoryBackend,
    max_value_size: Option<usize>,
}

#[durable_core::async_trait]
impl SimpleStore for OnlyRequired {
    fn name(&self) -> &'static str {
        "only-required"
    }
    fn max_value_size(&self) -> Option<usize> {
        self.max_value_size
    }
    async fn persist(&self, key: &str, value: Bytes) -> durable_core::Result<u64> {
        self.inner.persist(key, value).await
    }
    async fn depersist(&self, key: &str) -> durable_core::Result<Option<u64>> {
        self.inner.depersist(key).await
    }
    async fn durables(&self) -> durable_core::Result<durable_core::Durables> {
        self.inner.durables().await
    }
    async fn last_updated(&self) -> durable_core::Result<u64> {
        self.inner.last_updated().await
    }
}

#[tokio::test]
async fn oversized_values_are_refused_before_io() {
    let limited = OnlyRequired { inner: memory("ns"), max_value_size: Some(16) };
    let counting = Arc::new(CountingBackend::new(Arc::new(ReadThenWrite(limited))));
    let dict = DurableDict::<String>::builder(counting.clone()).hints(false).build().await.unwrap();
    let before = counting.counts();
    let err = dict.insert("k", "x".repeat(100)).await.unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { size: 102, max: 16, .. }), "{err}");
    assert_eq!(counting.counts(), before);
    dict.insert("k", "small".into()).await.unwrap();
}

/// A store with only the four primitives works through `ReadThenWrite`.
#[tokio::test]
async fn a_store_with_only_the_four_primitives_works_read_then_write() {
    let store = MemoryStore::new();
    let minimal = OnlyRequired { inner: MemoryBackend::in_store(store.clone(), "ns"), max_value_size: None };
    let dict = DurableDict::<Value>::builder(Arc::new(ReadThenWrite(minimal))).autosync(false).build().await.unwrap();
    assert_eq!(dict.backend().describe(), "read-then-write(only-required)");
    assert_eq!(dict.status().hints, HintHealth::Unavailable);
    dict.insert_many([("a", json!(1)), ("b", json!(2))]).await.unwrap();
    assert_eq!(dict.pop("a").await.unwrap().as_deref(), Some(&json!(1)));
    assert_eq!(*dict.setdefault("b", json!(9)).await.unwrap(), json!(2));
    assert_eq!(*dict.setdefault("c", json!(3)).await.unwrap(), json!(3));
    assert!(matches!(dict.compare_and_swap("b", Some(&json!(7)), None).await, Err(Error::Conflict { .. })));
    dict.compare_and_swap("b", Some(&json!(2)), Some(json!(20))).await.unwrap();
    let other = MemoryBackend::in_store(store, "ns");
    other.persist("d", Bytes::from_static(b"4")).await.unwrap();
    assert!(matches!(dict.sync().await.unwrap(), SyncOutcome::Full { keys: 3, .. }), "no delta: full reloads");
    let mut all: Vec<(String, Value)> = dict.snapshot().iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(all, vec![("b".into(), json!(20)), ("c".into(), json!(3)), ("d".into(), json!(4))]);
}

// ---- events, codecs, lifetime --------------------------------------------------------

#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged_and_never_blocks_sync() {
    let dict =
        DurableDict::<u64>::builder(Arc::new(memory("ns"))).event_capacity(4).hints(false).build().await.unwrap();
    let mut slow = dict.subscribe();
    for i in 0..20 {
        dict.insert(&format!("k{i}"), i).await.unwrap();
    }
    assert!(matches!(slow.recv().await, Some(Event::Lagged { missed }) if missed >= 16));
    assert_eq!(dict.snapshot().len(), 20, "every write went through");
}

#[tokio::test]
async fn msgpack_and_lz4_codecs_work_through_the_dict() {
    let store = MemoryStore::new();
    let packed = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "mp")))
        .codec(MsgPack)
        .build()
        .await
        .unwrap();
    packed.insert("k", json!({"a": [1, 2, 3]})).await.unwrap();
    let compressed = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store.clone(), "lz")))
        .codec(Lz4::new(Json))
        .build()
        .await
        .unwrap();
    compressed.insert("k", json!("text ".repeat(500))).await.unwrap();
    let raw = MemoryBackend::in_store(store.clone(), "lz").durables().await.unwrap();
    assert!(raw.entries[0].1.len() < 100, "stored compressed: {} bytes", raw.entries[0].1.len());
    let reread = DurableDict::<Value>::builder(Arc::new(MemoryBackend::in_store(store, "lz")))
        .codec(Lz4::new(Json))
        .build()
        .await
        .unwrap();
    assert_eq!(reread.get("k").await.as_deref(), Some(&json!("text ".repeat(500))));
}

#[tokio::test]
async fn dropping_the_dict_stops_its_background_task() {
    let backend: Arc<dyn Backend> = Arc::new(memory("ns"));
    let dict = DurableDict::<Value>::builder(backend.clone())
        .background_refresh(true)
        .poll_interval(Duration::from_millis(5))
        .build()
        .await
        .unwrap();
    assert!(Arc::strong_count(&backend) > 1);
    drop(dict);
    wait_until("the background task to release the backend", || Arc::strong_count(&backend) == 1).await;
}

/// A store whose writers may change data without moving the version (as durabledict's
/// ZooKeeper writers do): it answers every `changes_since` with all its entries.
struct VersionlessWriters(std::sync::Mutex<Vec<(String, Bytes)>>);

impl VersionlessWriters {
    fn unused<T>(method: &str) -> durable_core::Result<T> {
        Err(durable_core::Error::store("versionless", format!("{method} is not part of this test")))
    }
}

#[durable_core::async_trait]
impl Backend for VersionlessWriters {
    fn name(&self) -> &'static str {
        "versionless"
    }
    async fn persist_many(&self, _entries: Vec<(String, Bytes)>) -> durable_core::Result<u64> {
        Self::unused("persist_many")
    }
    async fn pop(&self, _key: &str) -> durable_core::Result<Option<(Bytes, u64)>> {
        Self::unused("pop")
    }
    async fn setdefault(&self, _key: &str, _value: Bytes) -> durable_core::Result<(Bytes, Option<u64>)> {
        Self::unused("setdefault")
    }
    async fn compare_and_swap(
        &self,
        _key: &str,
        _old: Option<Bytes>,
        _new: Option<Bytes>,
    ) -> durable_core::Result<Option<u64>> {
        Self::unused("compare_and_swap")
    }
    async fn persist(&self, key: &str, value: Bytes) -> durable_core::Result<u64> {
        self.0.lock().unwrap().push((key.to_owned(), value));
        Ok(1)
    }
    async fn depersist(&self, _key: &str) -> durable_core::Result<Option<u64>> {
        Ok(None)
    }
    async fn durables(&self) -> durable_core::Result<durable_core::Durables> {
        Ok(durable_core::Durables { entries: self.0.lock().unwrap().clone(), version: 1 })
    }
    async fn last_updated(&self) -> durable_core::Result<u64> {
        Ok(1)
    }
    async fn changes_since(&self, _since: u64) -> durable_core::Result<durable_core::Changes> {
        let changes = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(key, value)| durable_core::KeyChange { key: key.clone(), value: Some(value.clone()), version: 1 })
            .collect();
        Ok(durable_core::Changes::Delta { changes, version: 1 })
    }
    async fn watch(&self) -> durable_core::Result<Option<durable_core::HintStream>> {
        Ok(Some(Box::pin(futures::stream::pending())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_without_a_version_makes_sync_ask_for_changes_at_the_same_version() {
    let store = Arc::new(VersionlessWriters(std::sync::Mutex::new(vec![("a".into(), Bytes::from_static(b"1"))])));
    let faulty = Arc::new(FaultyBackend::new(store.clone()));
    let dict = DurableDict::<Value>::builder(faulty.clone()).autosync(false).build().await.unwrap();
    store.0.lock().unwrap().push(("b".into(), Bytes::from_static(b"2")));
    assert_eq!(dict.resync().await.unwrap(), SyncOutcome::Unchanged, "the version alone shows nothing");
    faulty.inject_hint(Hint::Changed { version: None });
    wait_until("the hint to land and a sync to find b", || {
        futures::executor::block_on(dict.sync()).is_ok() && dict.snapshot().get("b") == Some(&json!(2))
    })
    .await;
    assert_eq!(dict.version(), 1);
    // And a listener that resumed after a gap asks the same way.
    store.0.lock().unwrap().push(("c".into(), Bytes::from_static(b"3")));
    faulty.inject_hint(Hint::Resumed);
    wait_until("the resume to make a sync find c", || {
        futures::executor::block_on(dict.sync()).is_ok() && dict.snapshot().get("c") == Some(&json!(3))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_announced_by_a_hint_costs_one_round_trip() {
    let store = MemoryStore::new();
    let counting = Arc::new(CountingBackend::new(Arc::new(MemoryBackend::in_store(store.clone(), "ns"))));
    let dict = DurableDict::<Value>::builder(counting.clone()).autosync(false).build().await.unwrap();
    let writer = MemoryBackend::in_store(store, "ns");
    writer.persist("k", Bytes::from_static(b"1")).await.unwrap();
    // The hint (carrying version 1) reaches the listener.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = counting.counts();
    assert_eq!(dict.sync().await.unwrap(), SyncOutcome::Delta { keys: 1, version: 1 });
    let after = counting.counts();
    assert_eq!(after.last_updated, before.last_updated, "the hint's version stands in for the version check");
    assert_eq!(after.total() - before.total(), 1, "one round trip: the delta");
}
