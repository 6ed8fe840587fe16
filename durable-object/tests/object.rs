//! What the object backend promises beyond the conformance suite, on moto's S3, Azurite and
//! a local directory: racing create-only writes of one object have one winner (the store's
//! promise everything rests on); racing writers in two processes never lose an acknowledged write nor
//! fork the log; damaged objects are reported and skipped, never misread; a reader left
//! behind past the log's clean-up reloads rather than staying stale; large values live in
//! objects of their own; credentials never show. The other process is this test binary
//! again, running the ignored test `child`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Store;
use durable_core::conformance::unique_namespace;
use durable_core::journal::read_all;
use durable_core::{Backend, DurableDict, Error, JournalConfig, JournalItem};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::{Value, json};
use tokio::process::Command;

const CHILD: &str = "DURABLE_OBJECT_CHILD";
const STORES: [Store; 3] = [Store::S3, Store::Azure, Store::LocalFs];

async fn dict(backend: Arc<dyn Backend>) -> DurableDict<Value> {
    DurableDict::builder(backend).autosync(false).build().await.expect("build a dict")
}

/// One writer: `n` keys of its own, and `n` increments of the shared counter by
/// compare-and-swap; prints `acked <key>` and `counted` for each acknowledged one.
async fn write_and_count(dict: &DurableDict<Value>, me: &str, n: usize) -> (Vec<String>, usize) {
    let (mut acked, mut counted) = (Vec::new(), 0);
    for i in 0..n {
        let key = format!("{me}-{i}");
        dict.insert(&key, json!(i)).await.expect("an insert");
        acked.push(key);
        loop {
            dict.sync().await.expect("a sync");
            let old = dict.snapshot().get("count").cloned();
            let new = json!(old.as_ref().and_then(Value::as_u64).unwrap_or(0) + 1);
            match dict.compare_and_swap("count", old.as_ref(), Some(new)).await {
                Ok(_) => break,
                Err(Error::Conflict { .. }) => continue,
                Err(other) => panic!("{me}: {other}"),
            }
        }
        counted += 1;
    }
    (acked, counted)
}

/// The other process of `racing_writers_in_two_processes_lose_nothing_and_never_fork`
/// (ignored when run on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the other process of this file's tests, started by them"]
async fn child() {
    let spec = std::env::var(CHILD).expect("run by racing_writers_in_two_processes_lose_nothing_and_never_fork");
    let [url, namespace, n]: [&str; 3] = spec.splitn(3, ' ').collect::<Vec<_>>().try_into().expect("a spec");
    let backend = durable_object::ObjectBackend::connect(url, namespace).await.expect("connect");
    let dict = dict(Arc::new(backend)).await;
    let (acked, counted) = write_and_count(&dict, "child", n.parse().unwrap()).await;
    println!("acked {} counted {counted}", acked.len());
}

/// Three dicts — two here, one in another process — each write keys of their own and
/// increment one counter by compare-and-swap, all at once. Every acknowledged key is there,
/// the count is exact, and the log is one line of versions 1..=head, each journaled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_in_two_processes_lose_nothing_and_never_fork() {
    const N: usize = 15;
    for store in STORES {
        if !store.available().await {
            continue;
        }
        let ns = unique_namespace("object-race");
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
        child.env(CHILD, format!("{} {ns} {N}", store.url())).kill_on_drop(true);
        let child = child.stdout(std::process::Stdio::piped()).output();
        let (a, b) = (dict(Arc::new(store.connect(&ns).await)).await, dict(Arc::new(store.connect(&ns).await)).await);
        let (output, (a_keys, a_count), (b_keys, b_count)) =
            tokio::join!(child, write_and_count(&a, "a", N), write_and_count(&b, "b", N));
        let output = output.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{store:?}: the child failed: {stdout}");
        assert!(stdout.contains(&format!("acked {N} counted {N}")), "{store:?}: {stdout}");

        let reader = store.connect(&ns).await;
        let durables = reader.durables().await.unwrap();
        let entries: BTreeMap<String, Bytes> = durables.entries.into_iter().collect();
        let child_keys = (0..N).map(|i| format!("child-{i}"));
        for key in a_keys.iter().chain(&b_keys).cloned().chain(child_keys) {
            assert!(entries.contains_key(&key), "{store:?}: acknowledged key {key} lost");
        }
        assert_eq!(entries["count"], Bytes::from((a_count + b_count + N).to_string()), "{store:?}: the count");
        // 3 writers × N × (one insert + one increment): one version each, no more, no fork.
        assert_eq!(durables.version, 6 * N as u64, "{store:?}: one version per acknowledged write");
        let items = read_all(&reader, 0).await.unwrap();
        let versions: Vec<u64> = items
            .iter()
            .map(|item| match item {
                JournalItem::Record(record) => record.version,
                JournalItem::Gap(gap) => panic!("{store:?}: a gap in a journaled log: {gap:?}"),
            })
            .collect();
        assert_eq!(versions, (1..=6 * N as u64).collect::<Vec<_>>(), "{store:?}: each version once, in order");
    }
}

/// The one promise of the store the backend is built on: of many racing create-only writes
/// of one object exactly one succeeds (S3's `If-None-Match: *`, Azure's, a directory's
/// hard link). moto's server breaks it unless started through `scripts/moto_s3.py`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_object_have_one_winner() {
    for store in STORES {
        if !store.available().await {
            continue;
        }
        let Some((raw, prefix)) = store.raw() else { continue };
        let ns = unique_namespace("object-create-race");
        for round in 0..100 {
            let path = Path::from(format!("{prefix}/{ns}/{round}").trim_start_matches('/'));
            let racers = (0..12).map(|racer| {
                let (raw, path) = (Arc::clone(&raw), path.clone());
                tokio::spawn(async move {
                    let options = PutOptions { mode: PutMode::Create, ..Default::default() };
                    match raw.put_opts(&path, PutPayload::from(vec![racer as u8; 4 << 10]), options).await {
                        Ok(_) => Some(racer as u8),
                        Err(object_store::Error::AlreadyExists { .. }) => None,
                        Err(err) => panic!("{store:?}: a create failed: {err}"),
                    }
                })
            });
            let winners: Vec<u8> = futures::future::join_all(racers)
                .await
                .into_iter()
                .filter_map(|joined| joined.expect("a racer"))
                .collect();
            assert_eq!(winners.len(), 1, "{store:?} round {round}: creates that all succeeded: {winners:?}");
            let stored = raw.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(stored[..], vec![winners[0]; 4 << 10][..], "{store:?}: the object holds the winner's bytes");
        }
    }
}

/// A log object that is garbage, or a commit cut short, is reported and skipped as a version
/// that changes nothing: readers agree on what follows, and writers go on after it. A
/// damaged checkpoint is passed over for the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_objects_are_skipped_never_misread() {
    for store in [Store::S3, Store::LocalFs] {
        if !store.available().await {
            continue;
        }
        let Some((raw, prefix)) = store.raw() else { continue };
        let ns = unique_namespace("object-damage");
        let writer = store.connect(&ns).await;
        let put = |version: u64, body: Vec<u8>| {
            let path = Path::from(format!("{prefix}/{ns}/log/{version:020}").trim_start_matches('/'));
            let raw = Arc::clone(&raw);
            async move { raw.put(&path, PutPayload::from(body)).await.unwrap() }
        };
        writer.persist("a", Bytes::from_static(b"1")).await.unwrap();
        writer.persist("b", Bytes::from_static(b"2")).await.unwrap();
        // Version 3: not a commit at all. Version 4: a real commit, cut short.
        put(3, b"{\"a\": \"not ours\"}".to_vec()).await;
        let other = store.connect(&ns).await;
        assert_eq!(other.persist("c", Bytes::from_static(b"3")).await.unwrap(), 4, "the writer goes on after it");
        let version4 = raw.get(&Path::from(other.log_object(4))).await.unwrap().bytes().await.unwrap();
        put(5, version4[..version4.len() - 3].to_vec()).await;
        assert_eq!(other.persist("d", Bytes::from_static(b"4")).await.unwrap(), 6);

        for reader in [writer, store.connect(&ns).await] {
            let durables = reader.durables().await.unwrap();
            let entries: BTreeMap<String, Bytes> = durables.entries.into_iter().collect();
            let want: BTreeMap<String, Bytes> =
                [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")].map(|(k, v)| (k.to_owned(), Bytes::from(v))).into();
            assert_eq!((entries, durables.version), (want, 6), "{store:?}");
        }

        // A damaged newest checkpoint: a new reader loads from the log instead.
        let path = Path::from(format!("{prefix}/{ns}/checkpoint/{:020}", 6).trim_start_matches('/'));
        raw.put(&path, PutPayload::from_static(b"DURK\x01garbage")).await.unwrap();
        let fresh = store.connect(&ns).await;
        assert_eq!(fresh.durables().await.unwrap().version, 6, "{store:?}");
        assert_eq!(fresh.durables().await.unwrap().entries.len(), 4, "{store:?}");
    }
}

/// A reader that stopped syncing while the log moved on by many checkpoints and its old
/// objects were removed: at its next sync it reloads from the newest checkpoint — it never
/// takes the missing log object for "nothing changed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_left_behind_by_the_clean_up_reloads() {
    for store in STORES {
        if !store.available().await {
            continue;
        }
        let ns = unique_namespace("object-behind");
        let builder = || {
            store
                .builder()
                .checkpoint_every(10)
                .verify_every(Duration::from_millis(100))
                .log_retention(Duration::from_millis(200))
                .journal(JournalConfig::default().keep_versions(5))
        };
        let writer = dict(Arc::new(builder().connect(&ns).await.unwrap())).await;
        writer.insert("k", json!(0)).await.unwrap();
        let reader = dict(Arc::new(builder().connect(&ns).await.unwrap())).await;
        reader.sync().await.unwrap();
        assert_eq!(reader.snapshot().get("k"), Some(&json!(0)));
        for i in 1..=45 {
            writer.insert("k", json!(i)).await.unwrap();
            writer.insert(&format!("other-{}", i % 3), json!(i)).await.unwrap();
        }
        // Let the clean-up's age limit pass, and have a checkpoint made and the rest removed.
        // Ages are judged by the store's clock, whose resolution is 1 s on S3 and Azure: an
        // object written in the same second as the checkpoint is never older than it, so
        // wait past a whole second plus the retention (400 ms failed now and then).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let backend = builder().connect(&ns).await.unwrap();
        backend.persist("last", Bytes::from_static(b"true")).await.unwrap();
        let head = backend.checkpoint().await.unwrap();
        if let Some((raw, _)) = store.raw() {
            let first = backend.log_object(2);
            assert!(raw.head(&Path::from(first.clone())).await.is_err(), "{store:?}: {first} was cleaned up");
        }
        reader.sync().await.unwrap();
        assert_eq!(reader.version(), head, "{store:?}");
        assert_eq!(reader.snapshot().get("k"), Some(&json!(45)), "{store:?}");
        assert_eq!(reader.snapshot().get("last"), Some(&json!(true)), "{store:?}");
    }
}

/// A handle still open on a removed namespace shows it empty after its next full check,
/// not its last state for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_handle_sees_its_namespace_removed_at_its_next_full_check() {
    for store in STORES {
        if !store.available().await {
            continue;
        }
        let ns = unique_namespace("object-removed");
        let builder = || store.builder().verify_every(Duration::from_millis(100));
        let writer = builder().connect(&ns).await.unwrap();
        writer.persist("a", Bytes::from_static(b"1")).await.unwrap();
        writer.persist("b", Bytes::from_static(b"2")).await.unwrap();
        let reader = dict(Arc::new(builder().connect(&ns).await.unwrap())).await;
        assert_eq!(reader.snapshot().len(), 2, "{store:?}");
        writer.remove_namespace().await.unwrap();
        if let Some((raw, prefix)) = store.raw() {
            let under = prefix.clone().join(ns.as_str());
            let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(raw.list(Some(&under))).await.unwrap();
            assert!(left.is_empty(), "{store:?}: objects left behind: {left:?}");
        }
        reader.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        reader.sync().await.unwrap();
        assert!(reader.snapshot().is_empty(), "{store:?}: still shows {:?}", reader.snapshot().len());
        assert_eq!(reader.version(), 0, "{store:?}");
    }
}

/// Values over the inline limit are objects of their own, read back whole by new readers,
/// by deltas and by the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_round_trip_as_objects_of_their_own() {
    for store in STORES {
        if !store.available().await {
            continue;
        }
        let ns = unique_namespace("object-large");
        let big: String = (0..400_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let writer = dict(Arc::new(store.connect(&ns).await)).await;
        let reader = dict(Arc::new(store.connect(&ns).await)).await;
        writer.insert("big", json!(big)).await.unwrap();
        writer.insert("big", json!(format!("{big}!"))).await.unwrap();
        reader.sync().await.unwrap();
        assert_eq!(reader.snapshot().get("big"), Some(&json!(format!("{big}!"))), "{store:?}: a delta");
        let fresh = dict(Arc::new(store.connect(&ns).await)).await;
        assert_eq!(fresh.snapshot().get("big"), Some(&json!(format!("{big}!"))), "{store:?}: a full load");
        let history = fresh.history("big", 10).await.unwrap();
        assert_eq!(history.len(), 2, "{store:?}");
        assert_eq!(history[0].old.as_deref(), Some(serde_json::to_vec(&json!(big)).unwrap().as_slice()));
        if let Some((raw, prefix)) = store.raw() {
            let blobs = Path::from(format!("{prefix}/{ns}/blobs").trim_start_matches('/'));
            let listed: Vec<_> = futures::TryStreamExt::try_collect(raw.list(Some(&blobs))).await.unwrap();
            assert_eq!(listed.len(), 2, "{store:?}: one object per large value");
        }
    }
}

/// Large values nothing refers to any more — overwritten, past the journal's retention and
/// the log's clean-up — are removed with the clean-up once older than the retention; what
/// the namespace and its journal still need stays and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_no_longer_referred_to_are_collected() {
    for store in STORES {
        let Some((raw, prefix)) = store.raw() else { continue };
        if !store.available().await {
            continue;
        }
        let ns = unique_namespace("object-collect");
        let backend = store
            .builder()
            .inline_limit(1024)
            .verify_every(Duration::from_millis(100))
            .log_retention(Duration::from_millis(200))
            .journal(JournalConfig::default().keep_versions(1))
            .connect(&ns)
            .await
            .unwrap();
        let value = |i: u8| Bytes::from(vec![b'a' + i; 2048]);
        for i in 0..12 {
            backend.persist("big", value(i)).await.unwrap();
        }
        let blobs = Path::from(format!("{prefix}/{ns}/blobs").trim_start_matches('/'));
        let count = || async {
            let listed: Vec<_> = futures::TryStreamExt::try_collect(raw.list(Some(&blobs))).await.unwrap();
            listed.len()
        };
        assert_eq!(count().await, 12, "{store:?}: one object per large value written");
        // Past the retention by the store's clock (S3 and Azure stamp whole seconds).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        backend.checkpoint().await.unwrap();
        let left = count().await;
        assert!((1..12).contains(&left), "{store:?}: {left} of 12 large values left");
        let fresh = store.connect(&ns).await;
        let durables = fresh.durables().await.unwrap();
        assert_eq!(durables.entries, vec![("big".to_owned(), value(11))], "{store:?}: the value now");
        for record in fresh.history("big", 20).await.unwrap() {
            assert!(record.new.is_some(), "{store:?}: v{} kept its value", record.version);
        }
    }
}

/// Credentials in the URL — S3 secret keys, Azure account keys, SAS tokens — never show in
/// an error, a `Debug` or a description, whether the server is missing or refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_show() {
    let port = durable_testkit::spare_port();
    let urls = [
        format!(
            "s3://b/p?endpoint=http://127.0.0.1:{port}&allow_http=true&region=x&access_key_id=AKIDX&secret_access_key=S3-SECRET-1234"
        ),
        format!(
            "az://c/p?endpoint=http://127.0.0.1:{port}&allow_http=true&account_name=acct&access_key=QVpVUkUtS0VZLTEyMzQ="
        ),
        format!(
            "az://c/p?endpoint=http://127.0.0.1:{port}&allow_http=true&account_name=acct&sas_token=sv%3D2024%26sig%3DSAS-SECRET-1234"
        ),
    ];
    for url in urls {
        let err = durable_object::ObjectBackend::builder(&url)
            .timeout(Duration::from_secs(2))
            .connect("flags")
            .await
            .expect_err("nothing listens");
        let shown = format!("{err} {err:?}");
        assert!(err.is_unavailable(), "{shown}");
        for secret in ["S3-SECRET-1234", "QVpVUkUtS0VZLTEyMzQ=", "SAS-SECRET-1234", "sig%3D"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
    }
    // Served, then refused: moto checks no signatures, so a good connection's description.
    if Store::S3.available().await {
        let url = Store::S3.url();
        let backend = durable_object::ObjectBackend::connect(&url, "flags").await.unwrap();
        let shown = format!("{} {backend:?}", backend.describe());
        assert!(!shown.contains("s3cr3tpw-testing"), "{shown}");
    }
}

/// Leases live in the log, so a handle that loads a checkpoint knows them: a lease taken
/// before the checkpoint still refuses others' writes and acquires afterwards, and tokens go
/// on increasing past a release recorded only in a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_checkpoints() {
    for store in STORES {
        if !store.available().await {
            continue;
        }
        let ns = unique_namespace("object-lease-ckpt");
        let holder = dict(Arc::new(store.builder().checkpoint_every(2).connect(&ns).await.unwrap())).await;
        let first = holder.lease("old").ttl(Duration::from_secs(60)).no_wait().await.unwrap();
        assert!(first.release().await.unwrap());
        let lease = holder.lease("job").ttl(Duration::from_secs(60)).no_wait().await.unwrap();
        assert!(lease.token() >= 1);
        lease.insert(json!("mine")).await.unwrap();
        let head = Arc::new(store.connect(&ns).await).checkpoint().await.unwrap();
        // Only the newest checkpoint and the log after it are read by a new handle.
        let late = dict(Arc::new(store.connect(&ns).await)).await;
        assert_eq!(late.version(), head, "{store:?}");
        match late.lease("job").no_wait().await {
            Err(Error::Leased { holder: name, token, .. }) => {
                assert_eq!((name.as_str(), token), (lease.holder(), lease.token()), "{store:?}");
            }
            other => panic!("{store:?}: want Error::Leased, got {other:?}"),
        }
        assert!(matches!(late.insert("job", json!("theirs")).await, Err(Error::Leased { .. })), "{store:?}");
        let next = late.lease("old").no_wait().await.unwrap();
        assert!(next.token() > first.token(), "{store:?}: the released key's last token counts");
        late.sync().await.unwrap();
        assert_eq!(late.snapshot().get("job"), Some(&json!("mine")), "{store:?}");
        lease.release().await.unwrap();
        next.release().await.unwrap();
    }
}

/// Writes without the token, tried every 50 ms while a lease runs out: each is refused and
/// changes nothing, until one succeeds once the lease expired by the store's clock. Near the
/// expiry the writer cannot tell from its reading of the store's clock, so it commits and
/// the commit's replay decides: a refused commit takes a version but changes no key, shows
/// in no delta, journal or history, and every reader replays it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_near_a_lease_expiry_are_decided_alike_by_every_reader() {
    for store in STORES {
        if !store.available().await {
            continue;
        }
        let ns = unique_namespace("object-lease-edge");
        let holder = dict(Arc::new(store.connect(&ns).await)).await;
        let writer = dict(Arc::new(store.connect(&ns).await)).await;
        let watcher = dict(Arc::new(store.connect(&ns).await)).await;
        let ttl = Duration::from_millis(1_500);
        // Counted from the request: the grant is stamped by the store at some moment after it.
        let requested = tokio::time::Instant::now();
        let lease = holder.lease("k").ttl(ttl).no_wait().await.unwrap();
        lease.insert(json!("held")).await.unwrap();
        watcher.sync().await.unwrap();
        let mut watched = vec![(watcher.version(), watcher.snapshot().get("k").cloned())];
        let mut refused = 0;
        let written = loop {
            match writer.insert("k", json!("after")).await {
                Ok(version) => break version,
                Err(Error::Leased { .. }) => refused += 1,
                Err(other) => panic!("{store:?}: {other}"),
            }
            watcher.sync().await.unwrap();
            watched.push((watcher.version(), watcher.snapshot().get("k").cloned()));
            assert!(requested.elapsed() < ttl * 4, "{store:?}: the lease never ran out");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // A store's stamps come from its clock, which may run a little behind this process's
        // monotonic one (a local disk stamps with the kernel's coarse clock, a tick behind):
        // the accepted write came no earlier than `ttl` less that slack after the request.
        let stamp_slack = Duration::from_millis(25);
        let elapsed = requested.elapsed();
        assert!(elapsed + stamp_slack >= ttl, "{store:?}: written {elapsed:?} after the lease was requested");
        assert!(refused > 0, "{store:?}: the first writes were refused");
        // Every state the watcher saw before the write holds the holder's value.
        assert!(watched.iter().all(|(_, value)| value == &Some(json!("held"))), "{store:?}: {watched:?}");
        watcher.sync().await.unwrap();
        assert_eq!((watcher.version(), watcher.snapshot().get("k")), (written, Some(&json!("after"))), "{store:?}");
        // The journal holds the holder's write and the accepted one, nothing refused.
        let reader = store.connect(&ns).await;
        let history = reader.history("k", 10).await.unwrap();
        let versions: Vec<u64> = history.iter().map(|record| record.version).collect();
        assert_eq!(versions.len(), 2, "{store:?}: {history:?}");
        assert_eq!(versions[0], written, "{store:?}");
        let records: Vec<_> = read_all(&reader, 0).await.unwrap();
        let keys_written = records.iter().filter(|item| matches!(item, JournalItem::Record(r) if r.key == "k")).count();
        assert_eq!(keys_written, 2, "{store:?}: {records:?}");
        // Lease operations and refused writes changed nothing: no gap either.
        assert!(records.iter().all(|item| matches!(item, JournalItem::Record(_))), "{store:?}: {records:?}");
        // A reader replaying from the start agrees.
        let fresh = dict(Arc::new(store.connect(&ns).await)).await;
        assert_eq!((fresh.version(), fresh.snapshot().get("k")), (written, Some(&json!("after"))), "{store:?}");
        // The object stores stamp whole seconds: near the expiry the writer could not tell,
        // so some refusals were committed, each a version that changed nothing.
        if !matches!(store, Store::LocalFs) {
            assert!(written > 3, "{store:?}: refused commits took versions ({written})");
        }
    }
}
