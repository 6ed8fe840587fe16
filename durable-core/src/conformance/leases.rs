//! The suite, leases: mutual exclusion, fencing, expiry by the store's clock, renewal,
//! waiting, and the release that wakes a waiter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::support::{hinted, manual, store_contents};
use super::{BackendFactory, unique_namespace};
use crate::batch::Batch;
use crate::dict::DurableDict;
use crate::error::Error;
use crate::lease::LeaseOp;
use crate::lease_handle::LeaseState;

fn assert_leased<T: std::fmt::Debug>(what: &str, result: crate::Result<T>) {
    match result {
        Err(Error::Leased { .. }) => {}
        other => panic!("{what}: want Error::Leased, got {other:?}"),
    }
}

fn assert_lost<T: std::fmt::Debug>(what: &str, result: crate::Result<T>) {
    match result {
        Err(Error::LeaseLost { .. }) => {}
        other => panic!("{what}: want Error::LeaseLost, got {other:?}"),
    }
}

/// While a lease is live, nobody else acquires the key or writes it by any write method,
/// and the refusals change nothing; the holder writes under the lease; once released,
/// another holder gets a higher token, and a write under the old token is refused as lost.
pub async fn a_lease_excludes_other_writers_and_fences_its_holder(f: &dyn BackendFactory) {
    let ns = unique_namespace("lease");
    let holder = manual(f.backend(&ns).await).await;
    let other = manual(f.backend(&ns).await).await;
    other.insert("k", json!("before")).await.unwrap();
    other.insert("free", json!(0)).await.unwrap();
    let lease = holder.lease("k").ttl(Duration::from_secs(30)).no_wait().await.unwrap();
    assert!(lease.is_held() && lease.token() > 0, "{lease:?}");
    assert!(lease.remaining() <= Duration::from_secs(30) && lease.remaining() > Duration::from_secs(20));
    let before = store_contents(&*f.backend(&ns).await).await;

    match other.lease("k").no_wait().await {
        Err(Error::Leased { holder: name, token, remaining, .. }) => {
            assert_eq!((name.as_str(), token), (lease.holder(), lease.token()));
            assert!(remaining > Duration::from_secs(20) && remaining <= Duration::from_secs(30), "{remaining:?}");
        }
        other => panic!("a second acquire: want Error::Leased, got {other:?}"),
    }
    assert_leased("insert", other.insert("k", json!("theirs")).await);
    assert_leased("remove", other.remove("k").await);
    assert_leased("pop", other.pop("k").await);
    assert_leased("compare_and_swap", other.compare_and_swap("k", Some(&json!("before")), Some(json!(1))).await);
    assert_leased("batch", other.batch().insert("free", json!(1)).insert("k", json!(1)).apply().await);
    assert_lost(
        "a fence with a wrong token",
        other.batch().insert("k", json!(2)).fence("k", lease.token() + 1).apply().await,
    );
    assert_leased("insert_many", other.insert_many([("k", json!(3))]).await);
    assert_eq!(store_contents(&*f.backend(&ns).await).await, before, "refused writes changed nothing");
    // Every write method is refused on a leased key, even one that would change nothing.
    assert_leased("setdefault of a present key", other.setdefault("k", json!("default")).await);
    // Released before the holder's writes below: a release is a write on some stores (a
    // commit in an object store's log), so one left to a drop could land between them.
    let absent = holder.lease("absent").no_wait().await.unwrap();
    assert_leased("remove of an absent leased key", other.remove("absent").await);
    assert!(absent.release().await.unwrap());
    // Keys without a lease are written as usual.
    other.insert("free", json!(1)).await.unwrap();

    let written = lease.insert(json!("mine")).await.unwrap();
    assert_eq!(
        lease.batch().insert("free", json!(2)).insert("k", json!("both")).apply().await.unwrap(),
        Some(written + 1)
    );
    lease.compare_and_swap(Some(&json!("both")), Some(json!("swapped"))).await.unwrap();
    assert!(matches!(lease.compare_and_swap(Some(&json!("both")), None).await, Err(Error::Conflict { .. })));
    let (data, _) = store_contents(&*f.backend(&ns).await).await;
    assert_eq!((&data["k"], &data["free"]), (&json!("swapped"), &json!(2)));

    let old_token = lease.token();
    assert!(lease.release().await.unwrap(), "the release ended a live lease");
    assert!(!lease.release().await.unwrap(), "a second release has nothing to end");
    let next = other.lease("k").no_wait().await.unwrap();
    assert!(next.token() > old_token, "tokens increase: {} then {}", old_token, next.token());
    let before = store_contents(&*f.backend(&ns).await).await;
    assert_lost("a write under a released lease", lease.insert(json!("stale")).await);
    assert_lost("a batch under a released lease", lease.batch().insert("free", json!(9)).apply().await);
    assert_eq!(store_contents(&*f.backend(&ns).await).await, before, "stale writes changed nothing");
    next.remove().await.unwrap();
    drop(next);
}

/// A lease runs out by the store's clock: renewed, it outlives its first ttl; left alone,
/// another holder gets the key once it expired, and the first holder's renewal and writes
/// then fail as lost, with its state saying so.
pub async fn a_lease_expires_unless_renewed(f: &dyn BackendFactory) {
    let ns = unique_namespace("lease-ttl");
    let holder = manual(f.backend(&ns).await).await;
    let other = manual(f.backend(&ns).await).await;
    let ttl = Duration::from_millis(800);
    let lease = holder.lease("job").ttl(ttl).no_wait().await.unwrap();
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(ttl / 2).await;
        lease.renew().await.unwrap();
    }
    assert!(started.elapsed() > ttl, "the renewals outlived the first ttl");
    assert_leased("acquire after renewals", other.lease("job").no_wait().await);
    let mut state = lease.watch();
    let taken = other.lease("job").ttl(Duration::from_secs(30)).wait(Duration::from_secs(10)).await.unwrap();
    assert!(taken.token() > lease.token());
    // The holder's own view ran out no later than the store's.
    tokio::time::timeout(Duration::from_secs(5), state.wait_for(|s| *s == LeaseState::Lost)).await.unwrap().unwrap();
    assert!(!lease.is_held());
    assert_lost("renewal after expiry", lease.renew().await);
    assert_lost("write after expiry", lease.insert(json!(1)).await);
    taken.insert(json!("second holder")).await.unwrap();
    let (data, _) = store_contents(&*f.backend(&ns).await).await;
    assert_eq!(data.get("job"), Some(&json!("second holder")));
}

/// Fail-fast fails at once; a bounded wait fails after about its timeout; a waiter is woken
/// by the release long before the lease's ttl; a dropped lease is released in the
/// background; acquire, renew and release of invalid keys are refused before any I/O.
pub async fn waiting_for_a_lease(f: &dyn BackendFactory) {
    let ns = unique_namespace("lease-wait");
    let holder = hinted(f.backend(&ns).await).await;
    let waiter = hinted(f.backend(&ns).await).await;
    let lease = holder.lease("k").ttl(Duration::from_secs(60)).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_leased("no_wait", waiter.lease("k").no_wait().await);
    assert!(started.elapsed() < Duration::from_secs(2), "fail-fast waited {:?}", started.elapsed());
    let started = tokio::time::Instant::now();
    assert_leased("wait 300 ms", waiter.lease("k").wait(Duration::from_millis(300)).await);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "waited {waited:?}");

    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let lease = waiter.lease("k").ttl(Duration::from_secs(60)).await?;
            Ok::<_, Error>((tokio::time::Instant::now(), lease))
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the waiter waits while the lease is held");
    let released = tokio::time::Instant::now();
    let token = lease.token();
    drop(lease); // released in the background
    let (acquired, next) = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
    let handoff = acquired - released;
    assert!(handoff < Duration::from_secs(5), "woken {handoff:?} after the release, long before the 60 s ttl");
    assert!(next.token() > token);
    assert!(next.release().await.unwrap());

    for bad in ["", "nul\0key"] {
        assert!(matches!(holder.lease(bad).no_wait().await, Err(Error::InvalidKey { .. })), "{bad:?}");
    }
    let backend = f.backend(&ns).await;
    assert!(matches!(backend.lease("", LeaseOp::Release { token: 1 }).await, Err(Error::InvalidKey { .. })));
}

/// Mutual exclusion under contention: 8 dicts on separate clients each take the lease 12
/// times and increment a counter under it by read-modify-write. The count is exact, and in
/// the order the increments happened the tokens strictly increase.
pub async fn leases_exclude_under_contention(f: &dyn BackendFactory) {
    let ns = unique_namespace("lease-contend");
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let dict = manual(f.backend(&ns).await).await;
        let seen = Arc::clone(&seen);
        tasks.push(tokio::spawn(async move { increment_under_lease(&dict, 12, &seen).await }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (data, _) = store_contents(&*f.backend(&ns).await).await;
    assert_eq!(data.get("counter"), Some(&json!(96)), "every increment counted once");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let counts: Vec<u64> = seen.iter().map(|(count, _)| *count).collect();
    assert_eq!(counts, (1..=96).collect::<Vec<_>>(), "each count written once");
    assert!(seen.windows(2).all(|pair| pair[0].1 < pair[1].1), "tokens in increment order: {seen:?}");
}

/// One contender: `times` acquisitions, each reading the counter fresh from the store and
/// writing it plus one under the lease, recording `(count, token)`. Public for the
/// two-process and killed-holder tests of backend crates.
pub async fn increment_under_lease(dict: &DurableDict<Value>, times: usize, seen: &Mutex<Vec<(u64, u64)>>) {
    for _ in 0..times {
        // The wait bounds one contender's turn, not the holders' exclusion (what the callers
        // check): eight contenders on a slow store (Azurite under CI's load: each turn is
        // several commits) can keep one queued past a minute.
        let lease = dict.lease("counter").ttl(Duration::from_secs(30)).wait(Duration::from_secs(300)).await.unwrap();
        dict.resync().await.unwrap();
        let count = dict.snapshot().get("counter").and_then(Value::as_u64).unwrap_or(0) + 1;
        lease.insert(json!(count)).await.unwrap();
        seen.lock().unwrap().push((count, lease.token()));
        assert!(lease.release().await.unwrap(), "the lease was still held at release");
    }
}

/// The store decides expiry with its own clock, so the backend's answer carries how long
/// the lease has left as the store sees it, and a fence on a key nobody leased is lost.
pub async fn the_store_reports_lease_times(f: &dyn BackendFactory) {
    let ns = unique_namespace("lease-times");
    let backend = f.backend(&ns).await;
    let ttl = Duration::from_secs(5);
    let answer = backend.lease("k", LeaseOp::Acquire { ttl }).await.unwrap();
    let crate::lease::LeaseAnswer::Granted(info) = answer else { panic!("want a grant, got {answer:?}") };
    assert!(info.remaining <= ttl && info.remaining > ttl - Duration::from_secs(1), "{info:?}");
    let renewed = backend.lease("k", LeaseOp::Renew { token: info.token, ttl: ttl * 2 }).await.unwrap();
    let crate::lease::LeaseAnswer::Granted(renewed) = renewed else { panic!("want a renewal, got {renewed:?}") };
    assert_eq!(renewed.token, info.token, "a renewal keeps the token");
    assert!(renewed.expires_at > info.expires_at && renewed.remaining > ttl, "{renewed:?}");
    // (A store may keep leases in its log, so the version may have moved by now.)
    let version = backend.last_updated().await.unwrap();
    let fenced = backend.apply(Batch::new().put("other", "1".into()).fence("other", 1)).await;
    assert_lost("a fence on a key with no lease", fenced);
    assert_eq!(backend.last_updated().await.unwrap(), version, "nothing was written");
    assert!(!store_contents(&*backend).await.0.contains_key("other"), "nothing was written");
}
