//! What only the ZooKeeper backend has to prove, against the real ZooKeeper: interop with
//! durabledict's ZookeeperDict (through kazoo), hints without polling for writers that bump
//! no version, a forced session expiry, and bounded failures.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{zk_available, zk_url};
use durable_core::JournalConfig;
use durable_core::conformance::unique_namespace;
use durable_core::{Backend, Batch, DurableDict, Error, HintHealth};
use durable_zk::ZkBackend;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

fn hosts() -> String {
    zk_url().trim_start_matches("zk://").split('/').next().unwrap_or("127.0.0.1:2181").to_owned()
}

/// durabledict's side: `helper.py <hosts> <keyspace> <command> [args]`. On Python 3,
/// durabledict's JSONEncoding hands kazoo a `str`, which kazoo refuses; the same JSON as
/// UTF-8 bytes is what a Python 3 user of ZookeeperDict has to pass.
const PYTHON_HELPER: &str = r#"
import json, sys
from kazoo.client import KazooClient
from durabledict.zookeeper import ZookeeperDict
from durabledict.encoding import JSONEncoding

class Utf8JSON(JSONEncoding):
    encoder = staticmethod(lambda value: json.dumps(value).encode("utf-8"))
    decoder = staticmethod(lambda data: json.loads(data.decode("utf-8") if isinstance(data, bytes) else data))

hosts, keyspace, command, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
kz = KazooClient(hosts=hosts)
kz.start(timeout=15)
d = ZookeeperDict(keyspace, kz, encoding=Utf8JSON)
if command == "set":
    d[args[0]] = json.loads(args[1])
elif command == "delete":
    del d[args[0]]
elif command == "dump":
    d.sync()
    print(json.dumps(dict(d.items()), sort_keys=True))
else:
    sys.exit("unknown command " + command)
kz.stop()
"#;

async fn python() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durabledict-zk-venv");
    durable_core::conformance::python_venv(&dir, &["durabledict==0.9.4", "kazoo"], PYTHON_HELPER).await?;
    Some(dir)
}

async fn py(venv: &Path, keyspace: &str, args: &[&str]) -> String {
    let url = hosts();
    let all: Vec<&str> = [url.as_str(), keyspace].into_iter().chain(args.iter().copied()).collect();
    durable_core::conformance::run_python_helper(venv, &all).await
}

/// Writes `entries`, `per_write` of them in each `insert_many`.
async fn fill(backend: &ZkBackend, entries: &[(String, durable_core::Bytes)], per_write: usize) {
    for part in entries.chunks(per_write) {
        backend.apply(Batch::puts(part.to_vec())).await.unwrap();
    }
}

async fn wait_for(dict: &DurableDict<Value>, what: &str, done: impl Fn(&DurableDict<Value>) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // While a session is rebuilt a sync may find the store unavailable: that is an
        // outage the dict rides out, not a wrong answer. Any other error fails the test.
        match dict.sync().await {
            Ok(_) if done(dict) => return,
            Ok(_) => {}
            Err(err) if err.is_unavailable() => eprintln!("{what}: a sync during the outage: {err}"),
            Err(err) => panic!("{what}: {err}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// durabledict's ZooKeeper writers change a key's node without moving the namespace
/// version, so no version is missing: the journal reader sees the change when the key's
/// next record starts from a value its last record did not leave, and reports it as a gap
/// on that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durabledict_writer_shows_as_a_key_gap_in_the_journal() {
    if !zk_available().await {
        return;
    }
    let Some(venv) = python().await else { return };
    let ns = unique_namespace("journal-python");
    let backend = ZkBackend::connect(&zk_url(), &ns).await.unwrap();
    let keyspace = backend.path().to_owned();
    let rust = DurableDict::<Value>::builder(Arc::new(backend)).autosync(false).hints(false).build().await.unwrap();
    rust.insert("a", json!(1)).await.unwrap();
    py(&venv, &keyspace, &["set", "a", "7"]).await;
    rust.insert("a", json!(2)).await.unwrap();
    let items = rust.journal(0).await.unwrap();
    let shown = durable_testkit::journal_outline(&items);
    assert_eq!(shown, ["v1 a", "key \"a\" changed without a journal record between v1 and v2", "v2 a"]);
    let durable_core::JournalItem::Record(last) = &items[2] else { unreachable!() };
    assert_eq!(last.old.as_deref(), Some(&b"7"[..]), "the value durabledict left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durabledict_zookeeperdict_and_durable_share_one_dict() {
    if !zk_available().await {
        return;
    }
    let Some(venv) = python().await else { return };
    let ns = unique_namespace("interop");
    let backend = ZkBackend::connect(&zk_url(), &ns).await.unwrap();
    let keyspace = backend.path().to_owned();
    // A hinted dict without background refresh or any poll: only the watch can tell it.
    let rust = DurableDict::<Value>::builder(Arc::new(backend)).autosync(false).build().await.unwrap();

    // Python writes (no version bump) → Rust sees through the watch.
    py(&venv, &keyspace, &["set", "from-python", r#"{"enabled": true, "name": "Zoë"}"#]).await;
    wait_for(&rust, "Python's write", |d| {
        d.snapshot().get("from-python") == Some(&json!({"enabled": true, "name": "Zoë"}))
    })
    .await;
    assert_eq!(rust.version(), 0, "durabledict's writers do not bump our version");

    // Rust writes → Python sees.
    rust.insert("from-rust", json!({"list": [1, 2.5, null], "text": "ünï ☃"})).await.unwrap();
    let view: Value = serde_json::from_str(&py(&venv, &keyspace, &["dump"]).await).unwrap();
    assert_eq!(view["from-rust"], json!({"list": [1, 2.5, null], "text": "ünï ☃"}));
    assert_eq!(view["from-python"], json!({"enabled": true, "name": "Zoë"}));

    // Python overwrites and deletes → Rust sees.
    py(&venv, &keyspace, &["set", "from-rust", "7"]).await;
    py(&venv, &keyspace, &["delete", "from-python"]).await;
    wait_for(&rust, "Python's overwrite and delete", |d| {
        d.snapshot().get("from-python").is_none() && d.snapshot().get("from-rust") == Some(&json!(7))
    })
    .await;
    let view: Value = serde_json::from_str(&py(&venv, &keyspace, &["dump"]).await).unwrap();
    let rust_view: serde_json::Map<String, Value> =
        rust.snapshot().iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    assert_eq!(view, Value::Object(rust_view), "both sides hold the same dict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_session_expiry_ends_in_a_correct_resynced_dict() {
    if !zk_available().await {
        return;
    }
    let ns = unique_namespace("expiry");
    let backend = ZkBackend::builder(&zk_url()).session_timeout(Duration::from_secs(4)).connect(&ns).await.unwrap();
    let backend = Arc::new(backend);
    let session = backend.session();
    let dict = DurableDict::<Value>::builder(backend.clone()).autosync(false).build().await.unwrap();
    let writer = ZkBackend::connect(&zk_url(), &ns).await.unwrap();
    let writer_dict =
        DurableDict::<Value>::builder(Arc::new(writer)).autosync(false).hints(false).build().await.unwrap();
    writer_dict.insert("before", json!(1)).await.unwrap();
    wait_for(&dict, "the first write", |d| d.snapshot().get("before").is_some()).await;

    // Expire the dict's session from the server side, on a busy machine: another client
    // joins it and closes it.
    let hog = durable_testkit::CpuHog::start();
    // The original client reconnects at once and may win the session back before the
    // thief's close reaches the server: join the session and close it until joining it
    // says it has expired, so that the wait below starts from a session known to be gone.
    let original = format!("{:?}", session.id());
    let mut attempts = 0;
    loop {
        let connector = zookeeper_client::Client::connector().with_session(session.clone());
        match tokio::time::timeout(Duration::from_secs(3), connector.connect(&hosts())).await {
            Ok(Ok(thief)) => drop(thief), // Closes the session.
            Ok(Err(zookeeper_client::Error::SessionExpired)) => break,
            _ if format!("{:?}", backend.session().id()) != original => break,
            _ => {}
        }
        attempts += 1;
        assert!(attempts < 20, "could not expire the session");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while format!("{:?}", backend.session().id()) == original {
        assert!(tokio::time::Instant::now() < deadline, "no new session was built after the expiry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(hog);
    // Changes while the session is being rebuilt.
    writer_dict.insert("during", json!(2)).await.unwrap();
    writer_dict.remove("before").await.unwrap();
    wait_for(&dict, "the resync after the new session", |d| {
        d.snapshot().get("during") == Some(&json!(2)) && d.snapshot().get("before").is_none()
    })
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dict.status().hints != HintHealth::Healthy {
        assert!(tokio::time::Instant::now() < deadline, "hints never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And the new session carries hints and writes.
    writer_dict.insert("after", json!(3)).await.unwrap();
    wait_for(&dict, "a change after the expiry", |d| d.snapshot().get("after") == Some(&json!(3))).await;
    dict.insert("from-the-expired-one", json!(4)).await.unwrap();
    assert_eq!(dict.version(), writer_dict.backend().last_updated().await.unwrap());
}

#[tokio::test]
async fn keys_zookeeper_cannot_name_are_refused_before_io() {
    if !zk_available().await {
        return;
    }
    let backend = ZkBackend::connect(&zk_url(), &unique_namespace("keys")).await.unwrap();
    for bad in [".", "..", "a/b", "emoji🔑", "nul\0"] {
        let err = backend.persist(bad, durable_core::Bytes::from_static(b"1")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{bad:?}: {err}");
    }
    let err = backend
        .apply(Batch::puts([("a".into(), vec![0u8; 600_000].into()), ("b".into(), vec![0u8; 600_000].into())]))
        .await;
    assert!(matches!(err, Err(Error::ValueTooLarge { .. })), "{err:?}");
    assert!(ZkBackend::connect(&zk_url(), "a/b").await.is_err(), "namespaces are node names too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_authenticate_the_session_and_are_never_shown() {
    if !zk_available().await {
        return;
    }
    let url = zk_url().replacen("://", "://durable:s3cret-pw@", 1);
    let backend = ZkBackend::connect(&url, &unique_namespace("auth")).await.expect("connect with digest auth");
    let dict = DurableDict::<Value>::builder(Arc::new(backend.clone())).autosync(false).build().await.unwrap();
    dict.insert("k", json!(1)).await.unwrap();
    assert!(!format!("{backend:?} {dict:?}").contains("s3cret-pw"));
}

/// A full or delta read of many keys is many multi-reads. The operation timeout bounds each
/// of them, not the whole read, so a namespace big enough that reading it outlasts
/// the timeout still loads — while a store that stops answering still fails within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_outlasts_the_timeout_still_loads_while_the_store_answers() {
    if !zk_available().await {
        return;
    }
    const KEYS: usize = 30_000;
    let ns = unique_namespace("big");
    let writer = ZkBackend::connect(&zk_url(), &ns).await.unwrap();
    let entries = |round: u8| (0..KEYS).map(move |i| (format!("k{i:05}"), durable_core::Bytes::from(vec![round; 8])));
    let all: Vec<_> = entries(1).collect();
    fill(&writer, &all, 1_000).await;
    // The timeout is a third of what a full read takes here (the faster of two), whatever
    // this machine's speed.
    let mut fastest = Duration::MAX;
    for _ in 0..2 {
        let started = std::time::Instant::now();
        assert_eq!(writer.durables().await.unwrap().entries.len(), KEYS);
        fastest = fastest.min(started.elapsed());
    }
    let timeout = fastest / 3;

    let reader = ZkBackend::builder(&zk_url()).timeout(timeout).connect(&ns).await.unwrap();
    let started = std::time::Instant::now();
    let loaded = reader.durables().await.unwrap();
    assert!(started.elapsed() > timeout, "the read took {:?}, not over {timeout:?}", started.elapsed());
    assert_eq!(loaded.entries.len(), KEYS);
    assert!(loaded.entries.iter().all(|(_, value)| value[..] == [1; 8]));

    let changed: Vec<_> = entries(2).collect();
    fill(&writer, &changed, 1_000).await;
    let started = std::time::Instant::now();
    match reader.changes_since(loaded.version).await.unwrap() {
        durable_core::Changes::Delta { changes, .. } => {
            assert_eq!(changes.len(), KEYS);
            assert!(changes.iter().all(|change| change.value.as_deref() == Some(&[2u8; 8][..])));
        }
        other => panic!("expected every key in one delta, got {other:?}"),
    }
    assert!(started.elapsed() > timeout, "the delta took {:?}, not over {timeout:?}", started.elapsed());
}

/// Writers that never pause, each writing a pair of keys in one `insert_many`, cannot
/// starve a read nor tear it: every full read and every delta succeeds, and no read shows
/// half a pair — on a namespace too big for one multi-read, with writers that rewrite the
/// same keys and writers that keep adding new ones. (Before, a read was retried whole
/// whenever a write landed during it, and gave up after 64 tries.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_writers_cannot_starve_or_tear_a_read() {
    if !zk_available().await {
        return;
    }
    use durable_core::{Bytes, Changes};
    use std::collections::HashMap;
    const KEYS: usize = 5_000;
    let ns = unique_namespace("starve");
    let reader = ZkBackend::connect(&zk_url(), &ns).await.unwrap();
    let filler: Vec<_> = (0..KEYS).map(|i| (format!("k{i:05}"), Bytes::from(vec![7; 32]))).collect();
    fill(&reader, &filler, 1_000).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (backend, stop) = (ZkBackend::connect(&zk_url(), &ns).await.unwrap(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Writer 0 keeps adding new pairs; the others rewrite theirs.
                let pair = if w == 0 { format!("new{n:06}") } else { format!("w{w}") };
                let value = Bytes::from(n.to_string().into_bytes());
                backend
                    .apply(Batch::puts([(format!("{pair}.a"), value.clone()), (format!("{pair}.b"), value)]))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let whole = |entries: &HashMap<String, Bytes>, what: &str| {
        for (key, value) in entries {
            if let Some(pair) = key.strip_suffix(".a") {
                assert_eq!(entries.get(&format!("{pair}.b")), Some(value), "{what}: half of pair {pair}");
            }
            if let Some(pair) = key.strip_suffix(".b") {
                assert!(entries.contains_key(&format!("{pair}.a")), "{what}: half of pair {pair}");
            }
        }
        assert_eq!(entries.keys().filter(|key| key.starts_with('k')).count(), KEYS, "{what}: the filler");
    };
    let first = reader.durables().await.expect("a full read under steady writes");
    let mut followed: HashMap<String, Bytes> = first.entries.into_iter().collect();
    let mut version = first.version;
    whole(&followed, "first full read");
    let mut deltas = 0;
    for round in 0..40 {
        let read = reader.durables().await.expect("a full read under steady writes");
        assert!(read.version >= version, "versions never go back");
        whole(&read.entries.into_iter().collect(), &format!("full read {round}"));
        match reader.changes_since(version).await.expect("a delta under steady writes") {
            Changes::Delta { changes, version: now } => {
                for change in changes {
                    match change.value {
                        Some(value) => followed.insert(change.key, value),
                        None => followed.remove(&change.key),
                    };
                }
                version = now;
                deltas += 1;
            }
            Changes::TooOld => panic!("the last read's version is remembered"),
        }
        whole(&followed, &format!("delta {round}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.push(writer.await.unwrap());
    }
    assert!(written.iter().all(|n| *n > 20), "every writer kept writing meanwhile: {written:?}");
    assert_eq!(deltas, 40);
    // Caught up once the writers stop, the followed dict is the store's.
    let last = reader.durables().await.unwrap();
    if let Changes::Delta { changes, .. } = reader.changes_since(version).await.unwrap() {
        for change in changes {
            match change.value {
                Some(value) => followed.insert(change.key, value),
                None => followed.remove(&change.key),
            };
        }
    }
    assert_eq!(followed, last.entries.into_iter().collect::<HashMap<_, _>>());
}

/// A namespace far bigger than ZooKeeper's 1 MB request limit loads, whether its size is in
/// many small values or in a few values near the size limit: a read of many keys is split
/// into multi-reads by the size of the request and, as values show up, of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_bigger_than_one_answer_loads() {
    if !zk_available().await {
        return;
    }
    let ns = unique_namespace("wide");
    // Values near the limit fit one request only without the journal (which would carry
    // each value a second time): see `a_journaled_write_must_fit_one_request_with_its_record`.
    let writer = ZkBackend::builder(&zk_url()).journal(JournalConfig::off()).connect(&ns).await.unwrap();
    let mut entries: Vec<_> =
        (0..300).map(|i| (format!("k{i:03}"), durable_core::Bytes::from(vec![i as u8; 4_096]))).collect();
    fill(&writer, &entries, 50).await;
    for i in 0..12u8 {
        let big = (format!("z{i:02}"), durable_core::Bytes::from(vec![i; 900_000]));
        writer.persist(&big.0, big.1.clone()).await.unwrap();
        entries.push(big);
    }
    let reader = ZkBackend::connect(&zk_url(), &ns).await.unwrap();
    let mut loaded = reader.durables().await.unwrap().entries;
    loaded.sort();
    assert_eq!(loaded, entries);
}

/// With the journal on, a write and its journal record (which holds the new value and the
/// one it replaces) go in one multi, so together they must fit the request limit: a bigger
/// one is refused with `ValueTooLarge` and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_write_must_fit_one_request_with_its_record() {
    if !zk_available().await {
        return;
    }
    let ns = unique_namespace("journal-size");
    let writer = ZkBackend::connect(&zk_url(), &ns).await.unwrap();
    let fits = durable_core::Bytes::from(vec![1u8; 400_000]);
    let version = writer.persist("k", fits.clone()).await.unwrap();
    let refused = writer.persist("k", durable_core::Bytes::from(vec![2u8; 400_000])).await;
    match refused {
        Err(durable_core::Error::ValueTooLarge { key, size, max, .. }) => {
            assert_eq!(key.to_string(), "\"k\"");
            assert!(size > 1_200_000 && max == durable_zk::DEFAULT_MAX_VALUE_SIZE, "{size} {max}");
        }
        other => panic!("want ValueTooLarge, got {other:?}"),
    }
    assert_eq!(writer.last_updated().await.unwrap(), version, "nothing was written");
    let durables = writer.durables().await.unwrap();
    assert_eq!(durables.entries, [("k".to_owned(), fits)]);
}

durable_testkit::connection_suite!(common::ZkTarget);
