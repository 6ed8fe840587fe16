//! What only the Redis backend has to prove, against the real Redis: interop with Python's
//! durabledict, lost hints, round trips per sync, foreign writers, bad data and failures.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{redis_available, redis_url};
use durable_core::conformance::unique_namespace;
use durable_core::{Backend, Changes, CountingBackend, DurableDict, Error, HintHealth, SyncOutcome};
use durable_redis::RedisBackend;
use redis::AsyncCommands;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url().as_str()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn backend(ns: &str) -> RedisBackend {
    RedisBackend::connect(&redis_url(), ns).await.unwrap()
}

async fn strict(ns: &str) -> DurableDict<Value> {
    DurableDict::builder(Arc::new(backend(ns).await)).autosync(false).hints(false).build().await.unwrap()
}

// ---- durabledict interop ---------------------------------------------------------------

/// durabledict's side of the interop test: `helper.py <url> <namespace> <command> [args]`.
const PYTHON_HELPER: &str = r#"
import json, random, sys
import redis
from durabledict.redis import RedisDict
from durabledict.encoding import JSONEncoding

url, namespace, command, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
d = RedisDict(namespace, redis.Redis.from_url(url, decode_responses=True), encoding=JSONEncoding)
if command == "set":
    d[args[0]] = json.loads(args[1])
elif command == "delete":
    del d[args[0]]
elif command == "dump":
    print(json.dumps(dict(d.items()), sort_keys=True))
elif command == "random":
    rng = random.Random(int(args[0]))
    for i in range(int(args[1])):
        key = "k%d" % rng.randrange(10)
        op = rng.randrange(3)
        if op == 0:
            d[key] = {"py": i, "text": "ünï"}
        elif op == 1:
            try:
                del d[key]
            except KeyError:
                pass
        else:
            d.setdefault(key, {"py-default": i})
else:
    sys.exit("unknown command " + command)
"#;

/// A virtual environment under `target/` with durabledict 0.9.4 and redis-py, made once.
async fn python() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durabledict-venv");
    durable_core::conformance::python_venv(&dir, &["durabledict==0.9.4", "redis"], PYTHON_HELPER).await?;
    Some(dir)
}

async fn py(venv: &std::path::Path, ns: &str, args: &[&str]) -> String {
    let url = redis_url();
    let all: Vec<&str> = [url.as_str(), ns].into_iter().chain(args.iter().copied()).collect();
    durable_core::conformance::run_python_helper(venv, &all).await
}

async fn python_view(venv: &std::path::Path, ns: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(&py(venv, ns, &["dump"]).await).unwrap() {
        Value::Object(map) => map,
        other => panic!("python printed {other}"),
    }
}

fn rust_view(dict: &DurableDict<Value>) -> serde_json::Map<String, Value> {
    dict.snapshot().iter().map(|(k, v)| (k.to_owned(), v.clone())).collect()
}

/// The hash itself, decoded: what both sides must agree with.
async fn hash_view(ns: &str) -> serde_json::Map<String, Value> {
    let entries: Vec<(String, String)> = raw().await.hgetall(ns).await.unwrap();
    entries.into_iter().map(|(k, v)| (k, serde_json::from_str(&v).unwrap())).collect()
}

/// durabledict's writers keep no journal but move the counter: the journal reader reports
/// their versions as a gap with its bounds, and the next record shows the value they left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durabledict_writer_shows_as_a_gap_in_the_journal() {
    if !redis_available().await {
        return;
    }
    let Some(venv) = python().await else { return };
    let ns = unique_namespace("journal-python");
    let rust = strict(&ns).await;
    rust.insert("a", json!(1)).await.unwrap();
    rust.insert("b", json!(1)).await.unwrap();
    py(&venv, &ns, &["set", "a", r#""from python""#]).await;
    py(&venv, &ns, &["delete", "b"]).await;
    rust.sync().await.unwrap();
    // durabledict moves the counter at least once per write (0.9.4: twice).
    let last = rust.insert("a", json!(2)).await.unwrap();
    assert!(last >= 5, "{last}");
    let items = rust.journal(0).await.unwrap();
    let shown = durable_testkit::journal_outline(&items);
    let gap = format!("changes not journaled between v2 and v{last}");
    assert_eq!(shown, ["v1 a".to_owned(), "v2 b".to_owned(), gap, format!("v{last} a")]);
    let durable_core::JournalItem::Record(last) = &items[3] else { unreachable!() };
    assert_eq!(last.old.as_deref(), Some(&b"\"from python\""[..]), "the value durabledict left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durabledict_and_durable_share_one_dict() {
    if !redis_available().await {
        return;
    }
    let Some(venv) = python().await else { return };
    let ns = unique_namespace("interop");
    let rust = strict(&ns).await;

    // Python writes → Rust sees after sync().
    py(&venv, &ns, &["set", "from-python", r#"{"enabled": true, "name": "Zoë"}"#]).await;
    rust.sync().await.unwrap();
    assert_eq!(rust.snapshot().get("from-python"), Some(&json!({"enabled": true, "name": "Zoë"})));

    // Rust writes → Python sees; the bytes are exactly what durabledict writes itself.
    rust.insert("from-rust", json!({"list": [1, 2.5, null], "text": "ünï ☃"})).await.unwrap();
    let py_view = python_view(&venv, &ns).await;
    assert_eq!(py_view.get("from-rust"), Some(&json!({"list": [1, 2.5, null], "text": "ünï ☃"})));
    let stored: String = raw().await.hget(&ns, "from-rust").await.unwrap();
    assert_eq!(stored, r#"{"list": [1, 2.5, null], "text": "\u00fcn\u00ef \u2603"}"#);

    // A value whose bytes used to differ (small floats, U+007F): Rust's compare-and-swap
    // matches what durabledict wrote, byte for byte.
    py(&venv, &ns, &["set", "tricky", r#"{"tiny": 1e-05, "smaller": 1.5e-07, "del": "\u007f", "big": 1e+22}"#]).await;
    rust.sync().await.unwrap();
    let tricky = json!({"tiny": 1e-5, "smaller": 1.5e-7, "del": "\u{7f}", "big": 1e22});
    assert_eq!(rust.snapshot().get("tricky"), Some(&tricky));
    let swapped = rust.compare_and_swap("tricky", Some(&tricky), Some(json!("swapped"))).await;
    assert!(matches!(swapped, Ok(Some(_))), "a compare-and-swap over Python's bytes: {swapped:?}");

    // Python deletes → Rust sees.
    py(&venv, &ns, &["delete", "from-python"]).await;
    rust.sync().await.unwrap();
    assert_eq!(rust.snapshot().get("from-python"), None);

    // Interleaved writers on both sides end with both sides equal to the hash.
    let python_writes = {
        let (venv, ns) = (venv.clone(), ns.clone());
        tokio::spawn(async move { py(&venv, &ns, &["random", "7", "300"]).await })
    };
    let mut rng_state = 11u64;
    for i in 0..300u64 {
        rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let key = format!("k{}", (rng_state >> 33) % 10);
        match (rng_state >> 20) % 3 {
            0 => drop(rust.insert(&key, json!({"rust": i})).await.unwrap()),
            1 => drop(rust.remove(&key).await.unwrap()),
            _ => drop(rust.setdefault(&key, json!({"rust-default": i})).await.unwrap()),
        }
    }
    python_writes.await.unwrap();
    rust.sync().await.unwrap();
    let hash = hash_view(&ns).await;
    assert_eq!(rust_view(&rust), hash, "Rust's snapshot equals the hash");
    assert_eq!(python_view(&venv, &ns).await, hash, "Python's dict equals the hash");
    assert!(!hash.is_empty());

    // With keyspace events on, even a hinted dict (sync() free until a hint) hears Python.
    let mut config = raw().await;
    let before: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("notify-keyspace-events").query_async(&mut config).await.unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg("K$").query_async(&mut config).await.unwrap();
    let hinted = DurableDict::<Value>::builder(Arc::new(backend(&ns).await)).autosync(false).build().await.unwrap();
    py(&venv, &ns, &["set", "late", "42"]).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while hinted.snapshot().get("late") != Some(&json!(42)) {
        assert!(tokio::time::Instant::now() < deadline, "the keyspace hint never arrived");
        hinted.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restore = before.get(1).cloned().unwrap_or_default();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(restore)
        .query_async(&mut config)
        .await
        .unwrap();
}

// ---- deltas and foreign writers --------------------------------------------------------

#[tokio::test]
async fn a_writer_that_keeps_no_log_costs_a_full_reload_never_a_missed_change() {
    if !redis_available().await {
        return;
    }
    let ns = unique_namespace("foreign");
    let rust = strict(&ns).await;
    rust.insert("a", json!(1)).await.unwrap();
    let reader = strict(&ns).await;
    // A durabledict-style write: MULTI INCR + HSET, no log, no hint.
    let mut con = raw().await;
    let _: () = redis::pipe()
        .atomic()
        .incr(format!("{ns}last_updated"), 1)
        .hset(&ns, "b", "2")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(backend(&ns).await.changes_since(1).await.unwrap(), Changes::TooOld);
    assert!(matches!(reader.sync().await.unwrap(), SyncOutcome::Full { keys: 2, version: 2 }));
    assert_eq!(reader.snapshot().get("b"), Some(&json!(2)));
    // Once one of ours has written again, deltas resume from there.
    rust.insert("c", json!(3)).await.unwrap();
    assert_eq!(reader.sync().await.unwrap(), SyncOutcome::Delta { keys: 1, version: 3 });
}

#[tokio::test]
async fn a_namespace_wiped_under_a_dict_is_reloaded_in_full() {
    if !redis_available().await {
        return;
    }
    let ns = unique_namespace("wiped");
    let writer = strict(&ns).await;
    writer.insert_many([("a", json!(1)), ("b", json!(2))]).await.unwrap();
    writer.insert("c", json!(3)).await.unwrap();
    let reader = strict(&ns).await;
    let mut con = raw().await;
    let keys = [
        ns.clone(),
        format!("{ns}last_updated"),
        format!("{ns}:log"),
        format!("{ns}:log:head"),
        format!("{ns}:log:floor"),
    ];
    let _: () = con.del(&keys).await.unwrap();
    assert_eq!(reader.sync().await.unwrap(), SyncOutcome::Full { keys: 0, version: 0 });
    assert!(reader.snapshot().is_empty());
}

#[tokio::test]
async fn a_counter_that_is_not_a_number_is_a_typed_error() {
    if !redis_available().await {
        return;
    }
    let ns = unique_namespace("badcounter");
    let _: () = raw().await.set(format!("{ns}last_updated"), "not-a-number").await.unwrap();
    let err = backend(&ns).await.last_updated().await.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");
    assert!(err.to_string().contains("not-a-number"), "{err}");
    let source = err.source_as::<durable_redis::RedisError>();
    assert!(
        matches!(source, Some(durable_redis::RedisError::Unexpected(_))),
        "the source is the crate's error: {source:?}"
    );
}

/// A server-side error keeps its kind and code as the core error's source.
#[tokio::test]
async fn a_server_error_keeps_its_kind_and_code_in_the_source() {
    if !redis_available().await {
        return;
    }
    let ns = unique_namespace("wrongtype");
    // The namespace's hash is a string: HSET answers WRONGTYPE.
    let _: () = raw().await.set(&ns, "a string, not a hash").await.unwrap();
    let err = backend(&ns).await.persist("k", "1".into()).await.unwrap_err();
    let source = err.source_as::<durable_redis::RedisError>();
    match source {
        Some(durable_redis::RedisError::Client { code, .. }) => assert_eq!(code.as_deref(), Some("WRONGTYPE"), "{err}"),
        other => panic!("want the crate's error as the source, got {other:?} for {err}"),
    }
}

// ---- hints -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_subscription_is_cut_are_picked_up() {
    if !redis_available().await {
        return;
    }
    let ns = unique_namespace("cut");
    let dict = DurableDict::<Value>::builder(Arc::new(backend(&ns).await)).autosync(false).build().await.unwrap();
    assert_eq!(dict.status().hints, HintHealth::Healthy);
    let writer = strict(&ns).await;
    let mut con = raw().await;
    // Cut every pub/sub connection (ours among them), then write while it is down.
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut con).await.unwrap();
    assert!(killed >= 1, "our subscription was cut");
    writer.insert("during-the-cut", json!(true)).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        dict.sync().await.unwrap();
        if dict.snapshot().get("during-the-cut") == Some(&json!(true)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the change made during the cut was never found");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dict.status().hints != HintHealth::Healthy {
        assert!(tokio::time::Instant::now() < deadline, "the subscription never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nochange_sync_makes_zero_round_trips_when_subscribed_and_one_without() {
    if !redis_available().await {
        return;
    }
    let ns = unique_namespace("trips");
    let counting = Arc::new(CountingBackend::new(Arc::new(backend(&ns).await)));
    let hinted = DurableDict::<Value>::builder(counting.clone()).autosync(false).build().await.unwrap();
    hinted.insert("k", json!(1)).await.unwrap();
    // Let our own write's hint land, then nothing changes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    hinted.sync().await.unwrap();
    let before = counting.counts().total();
    for _ in 0..200 {
        assert_eq!(hinted.sync().await.unwrap(), SyncOutcome::Unchanged);
    }
    assert_eq!(counting.counts().total(), before, "subscribed: no round trip at all");

    let polled_counts = Arc::new(CountingBackend::new(Arc::new(backend(&ns).await)));
    let polled =
        DurableDict::<Value>::builder(polled_counts.clone()).autosync(false).hints(false).build().await.unwrap();
    let before = polled_counts.counts();
    for _ in 0..200 {
        assert_eq!(polled.sync().await.unwrap(), SyncOutcome::Unchanged);
    }
    let after = polled_counts.counts();
    assert_eq!(after.total() - before.total(), 200, "without a subscription: exactly one each");
    assert_eq!(after.last_updated - before.last_updated, 200, "and that one is the GET");
}

// ---- failures --------------------------------------------------------------------------

#[tokio::test]
async fn debug_output_shows_no_password() {
    if !redis_available().await {
        return;
    }
    // The builder (never connected) and a connected backend both redact.
    let builder = RedisBackend::builder("redis://default:s3cr3tpw@127.0.0.1:6379/");
    let shown = format!("{builder:?}");
    assert!(shown.contains(":***@") && !shown.contains("s3cr3tpw"), "{shown}");
    let connected = backend("ns-debug").await;
    assert!(!format!("{connected:?}").contains("s3cr3tpw"));
}

/// Subscribers Redis counts on `channel`, from any process.
async fn subscribers(channel: &str) -> i64 {
    let (_, count): (String, i64) =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut raw().await).await.unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_dicts_of_a_process_share_one_subscription_and_all_hear_a_change() {
    if !redis_available().await {
        return;
    }
    // Scaled down here; `DURABLE_SOAK=full` runs the issue's thousand.
    let n = if std::env::var("DURABLE_SOAK").as_deref() == Ok("full") { 1000 } else { 200 };
    let ns = unique_namespace("many");
    let channel = format!("{ns}:changes");
    let mut dicts = Vec::new();
    for _ in 0..n {
        // Each with a backend (and connection) of its own, as separate durable::connect calls.
        let backend = RedisBackend::connect(&redis_url(), &ns).await.unwrap();
        dicts.push(
            DurableDict::<Value>::builder(Arc::new(backend))
                .autosync(false)
                .background_refresh(true)
                .build()
                .await
                .unwrap(),
        );
    }
    assert_eq!(subscribers(&channel).await, 1, "one subscription for {n} dicts");
    let mut events: Vec<_> = dicts.iter().map(|dict| dict.watch_key("flag")).collect();
    let writer = backend(&ns).await;
    writer.persist("flag", bytes::Bytes::from_static(b"true")).await.unwrap();
    for (i, events) in events.iter_mut().enumerate() {
        let event = tokio::time::timeout(PATIENCE, futures::StreamExt::next(events)).await;
        assert!(matches!(event, Ok(Some(durable_core::Event::Changed(_)))), "dict {i}: {event:?}");
    }
    drop(events);
    drop(dicts);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while subscribers(&channel).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the shared subscription outlived its dicts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

durable_testkit::connection_suite!(common::RedisTarget);
