//! What every backend must survive, written once and run by each backend crate on a store
//! of its own ([`OwnServer`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_core::conformance::{PATIENCE, unique_namespace};
use durable_core::{Backend, DurableDict, Event, HintHealth, LazyBackend, Result, read_backup};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::servers::OwnServer;

/// What [`outage_and_recovery`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// From the store answering again to the dict having re-subscribed and synced.
    pub recovered_after: Duration,
    /// The slowest failing `sync()`, write or connect while the store was down.
    pub slowest_refusal: Duration,
    /// From the kill to the hints being reported down.
    pub hints_down: Duration,
}

/// How long a call may take to fail while the store refuses connections: the refusal is
/// answered at once, and the backend probes after 15 ms of silence; the rest is slack for
/// a busy machine. Far below any operation timeout the outage tests use.
pub const REFUSAL_BOUND: Duration = Duration::from_millis(250);

/// Kills the store under two dicts and starts it again:
/// - once it is down, the hints are reported down within [`REFUSAL_BOUND`];
/// - while it is down, reads serve the last snapshot; `sync()`, writes and connecting fail
///   as unavailable within [`REFUSAL_BOUND`] — not the backend's `timeout` — saying why, not
///   that time ran out; failed writes are not found in the store afterwards; `status()`
///   reports the error and the hints down;
/// - once it answers again, both dicts recover on their own (one with background refresh,
///   one without, neither is called meanwhile): hints healthy, a successful trip — within
///   1 s; no acknowledged write is lost; a change made by another instance afterwards
///   reaches the refreshing dict through a hint (its poll interval is a minute) where the
///   backend pushes hints, and at the next `sync()` where it is polled.
///
/// `connect(url, namespace)` makes the backend under test with `timeout`.
pub async fn outage_and_recovery<F, Fut>(server: &mut OwnServer, timeout: Duration, connect: F) -> Recovery
where
    F: Fn(String, String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Backend>>>,
{
    let ns = unique_namespace("outage");
    let url = server.url();
    let refreshing = DurableDict::<Value>::builder(connect(url.clone(), ns.clone()).await.expect("connect"))
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(60))
        .build()
        .await
        .expect("build the refreshing dict");
    let idle = DurableDict::<Value>::builder(connect(url.clone(), ns.clone()).await.expect("connect"))
        .autosync(false)
        .build()
        .await
        .expect("build the idle dict");

    // A polled backend (MySQL) has no hints to lose or regain: its dicts count as recovered
    // when a trip succeeds, and hear a change at their next sync.
    let hinted = refreshing.status().hints == HintHealth::Healthy;
    let mut acknowledged = BTreeMap::new();
    for i in 0..20 {
        let key = format!("k{i}");
        refreshing.insert(&key, json!(i)).await.expect("write before the outage");
        acknowledged.insert(key, json!(i));
    }
    idle.sync().await.expect("sync before the outage");
    assert_eq!(view(&idle), acknowledged);

    server.kill().await;
    let killed = Instant::now();
    // The hints say at once that they are down (a hinted dict's `sync()` would otherwise
    // answer "unchanged" without asking, from a store that is gone).
    durable_core::conformance::wait_until("the hints to be reported down", || {
        refreshing.status().hints != HintHealth::Healthy
    })
    .await;
    let hints_down = killed.elapsed();
    assert!(hints_down <= REFUSAL_BOUND, "the hints were reported down {hints_down:?} after the kill");

    // Reads keep serving; syncs, writes and connecting fail fast, typed and saying why —
    // round after round, not only the first call (a client reconnecting in the background
    // must not make every other call wait out its retries).
    let mut slowest_refusal = Duration::ZERO;
    let mut refused = |what: &str, took: Duration, err: durable_core::Error| {
        slowest_refusal = slowest_refusal.max(took);
        assert!(err.is_unavailable(), "{what} while down: want unavailable, got {err}");
        assert!(took <= REFUSAL_BOUND, "{what} while down took {took:?} (timeout {timeout:?}): {err}");
        assert!(!err.to_string().contains("timed out"), "{what} while down hides its cause: {err}");
    };
    for round in 0..5 {
        for dict in [&refreshing, &idle] {
            let started = Instant::now();
            let err = dict.resync().await.expect_err("sync with the store down");
            refused("sync", started.elapsed(), err);
            assert_eq!(view(dict), acknowledged, "the last snapshot keeps serving");
            assert_eq!(dict.get("k3").await.as_deref(), Some(&json!(3)));
        }
        let started = Instant::now();
        let write = refreshing.insert("during", json!("lost?")).await.expect_err("a write with the store down");
        refused("a write", started.elapsed(), write);
        let started = Instant::now();
        let removal = idle.remove(&format!("k{round}")).await.expect_err("a removal with the store down");
        refused("a removal", started.elapsed(), removal);
        let started = Instant::now();
        let connecting = connect(url.clone(), ns.clone()).await.map(|_| ()).expect_err("connect with the store down");
        refused("connecting", started.elapsed(), connecting);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = refreshing.status();
    assert!(status.last_error.is_some() && status.failing_since.is_some(), "{status:?}");
    assert!(refreshing.status().hints != HintHealth::Healthy);
    assert!(refreshing.status().staleness() > Duration::ZERO);

    // A dict may recover while `start` still waits for the server to answer it: a success
    // counts from the restart on.
    let restarting = Instant::now();
    server.start().await;
    let ready = Instant::now();
    for (name, dict) in [("the refreshing dict", &refreshing), ("the idle dict", &idle)] {
        let recovered = || {
            let status = dict.status();
            (status.hints == HintHealth::Healthy || !hinted)
                && status.failing_since.is_none()
                && status.last_success.is_some_and(|at| at > restarting)
        };
        let deadline = Instant::now() + PATIENCE;
        while !recovered() {
            assert!(Instant::now() < deadline, "{name} did not recover: {:?}", dict.status());
            if !hinted && name == "the idle dict" {
                // Polled and not refreshing: it recovers at the next sync a request makes.
                let _ = dict.sync().await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let recovered_after = ready.elapsed();
    assert!(recovered_after < Duration::from_secs(1), "recovered {recovered_after:?} after the store came back");

    // Nothing acknowledged was lost, nothing refused was written.
    let fresh = DurableDict::<Value>::builder(connect(url.clone(), ns.clone()).await.expect("reconnect"))
        .autosync(false)
        .hints(false)
        .build()
        .await
        .expect("a fresh dict after the restart");
    assert_eq!(view(&fresh), acknowledged, "the store after the restart");
    assert_eq!(view(&refreshing), acknowledged);
    idle.sync().await.expect("sync after the restart");
    assert_eq!(view(&idle), acknowledged);

    // Hints flow again: another instance's change arrives without anyone syncing (a polled
    // dict: at its next sync).
    let mut events = refreshing.watch_key("after");
    fresh.insert("after", json!("restart")).await.expect("a write after the restart");
    if !hinted {
        refreshing.sync().await.expect("a sync after the restart");
    }
    let event = tokio::time::timeout(PATIENCE, events.next()).await.expect("the change event");
    assert!(matches!(event, Some(Event::Changed(_))), "{event:?}");
    assert_eq!(refreshing.snapshot().get("after"), Some(&json!("restart")));

    Recovery { recovered_after, slowest_refusal, hints_down }
}

/// Connecting to a port where nothing listens fails within [`REFUSAL_BOUND`], whatever the
/// timeout (the backends' default 5 s when `connect` sets none), as unavailable and naming
/// the refusal — not as a timeout.
pub async fn connecting_where_nothing_listens_fails_at_once<F, Fut>(connect: F)
where
    F: FnOnce(u16) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Backend>>>,
{
    let started = Instant::now();
    let err = connect(crate::spare_port()).await.map(|_| ()).expect_err("nothing listens there");
    let took = started.elapsed();
    assert!(err.is_unavailable(), "want unavailable, got {err}");
    assert!(err.to_string().contains("refused"), "the error names the refusal: {err}");
    assert!(took <= REFUSAL_BOUND, "a refused connect took {took:?}: {err}");
}

fn view(dict: &DurableDict<Value>) -> BTreeMap<String, Value> {
    dict.snapshot().iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
}

/// A service that starts while its store is down starts from its backup file, reports
/// itself stale, and catches up on its own once the store answers (within 1 s), with the
/// file following.
pub async fn backup_stands_in_for_an_unreachable_store<F, Fut>(server: &mut OwnServer, connect: F) -> Duration
where
    F: Fn(String, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Arc<dyn Backend>>> + Send + 'static,
{
    let ns = unique_namespace("backup");
    let url = server.url();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("flags.backup");
    let writer = DurableDict::<Value>::builder(connect(url.clone(), ns.clone()).await.expect("connect"))
        .autosync(false)
        .backup_file(&path)
        .build()
        .await
        .expect("build the writer");
    writer.insert_many([("beta", json!(true)), ("limit", json!(10))]).await.expect("write");
    let version = writer.insert("greeting", json!("hello")).await.expect("write");
    durable_core::conformance::wait_until("the backup file", || {
        read_backup(&path).is_ok_and(|backup| backup.version == version)
    })
    .await;
    let expected = view(&writer);
    drop(writer);

    server.kill().await;
    let connect = Arc::new(connect);
    let lazy = LazyBackend::new("store", {
        let (connect, url, ns) = (Arc::clone(&connect), url.clone(), ns.clone());
        move || connect(url.clone(), ns.clone())
    });
    let started = DurableDict::<Value>::builder(Arc::new(lazy))
        .autosync(false)
        .backup_file(&path)
        .build()
        .await
        .expect("a start from the backup file while the store is down");
    assert_eq!(view(&started), expected);
    let status = started.status();
    assert!(status.from_backup && status.last_error.is_some(), "{status:?}");
    assert_eq!(status.staleness(), Duration::MAX);
    // Its calls fail as fast as the refusal comes (the connect is retried lazily on each).
    for _ in 0..3 {
        let started_at = Instant::now();
        let err = started.resync().await.expect_err("a sync with the store down");
        let took = started_at.elapsed();
        assert!(err.is_unavailable() && took <= REFUSAL_BOUND, "a sync while down: {err} after {took:?}");
        let started_at = Instant::now();
        let err = started.insert("during", json!(0)).await.expect_err("a write with the store down");
        let took = started_at.elapsed();
        assert!(err.is_unavailable() && took <= REFUSAL_BOUND, "a write while down: {err} after {took:?}");
    }

    server.start().await;
    let ready = Instant::now();
    durable_core::conformance::wait_until("the catch-up", || {
        let status = started.status();
        !status.from_backup && status.failing_since.is_none() && status.hints != HintHealth::Down
    })
    .await;
    let caught_up = ready.elapsed();
    assert!(caught_up < Duration::from_secs(1), "caught up {caught_up:?} after the store came back");
    assert_eq!(view(&started), expected);
    // The file follows the store again.
    let version = started.insert("after", json!(1)).await.expect("a write after the catch-up");
    durable_core::conformance::wait_until("the backup to follow", || {
        read_backup(&path).is_ok_and(|backup| backup.version == version)
    })
    .await;
    caught_up
}
