//! Invariants 4 and 5: what sync() costs when nothing changed, and after k changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use durable_core::conformance::wait_until;
use durable_core::testing::FaultyBackend;
use durable_core::{Backend, Call, CountingBackend, Delegate, DurableDict, Hint, HintHealth, SyncOutcome, Wrap};
use serde_json::{Value, json};

use crate::support::*;

// ---- invariant 4: sync() when nothing changed --------------------------------------------

#[tokio::test]
async fn nochange_sync_makes_no_round_trip_with_healthy_hints() {
    let counting = Arc::new(CountingBackend::new(Arc::new(memory("ns"))));
    let dict = manual::<Value>(counting.clone()).await;
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
    let dict = refreshing::<Value>(counting.clone(), Duration::from_secs(3600)).await;
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
    let (faulty, writer) = faulty_and_writer();
    // No background refresh, no poll, and nobody calls sync(): the listener alone recovers.
    let dict = manual::<Value>(faulty.clone()).await;
    faulty.set_failing(true);
    faulty.close_hint_streams();
    wait_until("the hints to go down", || dict.status().hints == HintHealth::Down).await;
    // A long outage: the retries have backed off as far as they go.
    tokio::time::sleep(Duration::from_secs(2)).await;
    writer.persist("k", Bytes::from_static(b"1")).await.unwrap();
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
    let (faulty, writer) = faulty_and_writer();
    let dict = refreshing::<Value>(faulty.clone(), Duration::from_secs(3600)).await;
    // The listener's connection dropped (its stream stays open, as a cluster's does while
    // the shard fails over): no hint will come, yet a change must not wait for the poll.
    faulty.set_dropping_hints(true);
    faulty.inject_hint(Hint::Interrupted);
    wait_until("the interruption", || dict.status().hints == HintHealth::Down).await;
    writer.persist("k", Bytes::from_static(b"1")).await.unwrap();
    let started = tokio::time::Instant::now();
    wait_until("the change", || dict.snapshot().get("k") == Some(&json!(1))).await;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

// ---- invariant 5: sync after k changes costs O(k) ---------------------------------------

#[tokio::test]
async fn sync_after_one_change_in_ten_thousand_keys_is_a_one_key_delta() {
    let (mine, theirs) = two_handles();
    let writer = DurableDict::<u64>::builder(Arc::new(mine)).autosync(false).hints(false).build().await.unwrap();
    writer.insert_many((0..10_000u64).map(|i| (format!("key{i}"), i))).await.unwrap();
    let counting = Arc::new(CountingBackend::new(Arc::new(theirs)));
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
