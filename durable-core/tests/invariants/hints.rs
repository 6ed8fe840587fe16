//! Invariant 3: hints are only hints — a lost, interrupted or ended hint stream never leaves a dict stale.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use durable_core::conformance::wait_until;
use durable_core::{Backend, CountingBackend, Hint, HintHealth, SyncOutcome};
use serde_json::{Value, json};

use crate::support::*;

// ---- invariant 3: hints are only hints --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_hints_are_caught_by_the_safety_poll_and_by_resync() {
    let (faulty, writer) = faulty_and_writer();
    let polled = refreshing::<Value>(faulty.clone(), Duration::from_millis(50)).await;
    faulty.set_dropping_hints(true);
    writer.persist("k", Bytes::from_static(b"1")).await.unwrap();
    wait_until("the safety poll to find the change", || polled.snapshot().get("k") == Some(&json!(1))).await;

    // Without a poll, a lost hint leaves sync() trusting the hints; resync() asks anyway.
    let manual = manual::<Value>(faulty.clone()).await;
    writer.persist("k", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(manual.sync().await.unwrap(), SyncOutcome::Unchanged, "the hint was lost");
    assert!(matches!(manual.resync().await.unwrap(), SyncOutcome::Delta { keys: 1, .. }));
    assert_eq!(manual.snapshot().get("k"), Some(&json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_listener_makes_sync_ask_the_store_until_it_resumes() {
    let (faulty, writer) = faulty_and_writer();
    let counting = Arc::new(CountingBackend::new(faulty.clone()));
    let dict = manual::<Value>(counting.clone()).await;

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
    let (faulty, writer) = faulty_and_writer();
    let counting = Arc::new(CountingBackend::new(faulty.clone()));
    let dict = refreshing::<Value>(counting.clone(), Duration::from_secs(3600)).await;
    assert_eq!(counting.counts().watch, 1);
    // The store is down while the stream ends: re-subscribing fails for a while.
    faulty.set_failing(true);
    faulty.close_hint_streams();
    wait_until("the listener to notice", || dict.status().hints == HintHealth::Down).await;
    writer.persist("k", Bytes::from_static(b"\"while away\"")).await.unwrap();
    faulty.set_failing(false);
    wait_until("a new subscription and a resync", || dict.snapshot().get("k") == Some(&json!("while away"))).await;
    assert!(counting.counts().watch >= 2, "subscribed again");
    assert_eq!(dict.status().hints, HintHealth::Healthy);
}
