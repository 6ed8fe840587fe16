//! The local backup file: written after every change, used when the store is unreachable
//! at start, never trusted when damaged. (Real stores: each backend crate's outage tests.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use durable_core::conformance::wait_until;
use durable_core::testing::FaultyBackend;
use durable_core::{Backend, DurableDict, HintHealth, MemoryBackend, MemoryStore, MsgPack};
use serde_json::{Value, json};

struct Fixture {
    store: Arc<MemoryStore>,
    faulty: Arc<FaultyBackend>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let store = MemoryStore::new();
    let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::in_store(store.clone(), "flags"))));
    let dir = tempfile::tempdir().unwrap();
    Fixture { store, faulty, path: dir.path().join("flags.backup"), _dir: dir }
}

async fn dict(f: &Fixture) -> durable_core::Result<DurableDict<Value>> {
    DurableDict::<Value>::builder(f.faulty.clone()).autosync(false).backup_file(&f.path).build().await
}

/// Waits until the file on disk holds `version`, by starting a dict from it.
async fn wait_for_file_version(f: &Fixture, version: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        f.faulty.set_failing(true);
        let restored = dict(f).await;
        f.faulty.set_failing(false);
        if let Ok(restored) = restored
            && restored.version() == version
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the backup never reached version {version}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn leftovers(path: &Path) -> Vec<String> {
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dict_starts_from_its_backup_when_the_store_is_down_and_catches_up_when_it_returns() {
    let f = fixture();
    let writer = dict(&f).await.unwrap();
    writer.insert("beta", json!(true)).await.unwrap();
    writer.insert("limit", json!(10)).await.unwrap();
    wait_for_file_version(&f, 2).await;
    assert!(leftovers(&f.path).is_empty(), "no temporary file left behind");

    // The store is down when the next process starts.
    f.faulty.set_failing(true);
    let started = dict(&f).await.expect("starts from the backup");
    assert_eq!(started.snapshot().get("beta"), Some(&json!(true)));
    assert_eq!(started.snapshot().get("limit"), Some(&json!(10)));
    assert_eq!(started.version(), 2);
    let status = started.status();
    assert!(status.from_backup, "{status:?}");
    assert!(status.last_error.as_ref().is_some_and(|e| e.is_unavailable()), "{status:?}");
    assert_eq!(status.staleness(), Duration::MAX, "never synced: stale by any amount");
    // A write while the store is down fails, and the backup snapshot keeps serving.
    assert!(started.insert("x", json!(1)).await.is_err());

    // Meanwhile the store moved on (another instance wrote while this one was away).
    MemoryBackend::in_store(f.store.clone(), "flags").persist("limit", Bytes::from_static(b"20")).await.unwrap();
    MemoryBackend::in_store(f.store.clone(), "flags").depersist("beta").await.unwrap();
    f.faulty.set_failing(false);
    // Nobody calls sync(): the dict catches up on its own, with a full reload.
    wait_until("the catch-up", || !started.status().from_backup).await;
    assert_eq!(started.snapshot().get("limit"), Some(&json!(20)));
    assert_eq!(started.snapshot().get("beta"), None);
    assert_eq!(started.version(), 4);
    assert_eq!(started.status().hints, HintHealth::Healthy);
    assert!(started.status().failing_since.is_none());
    // And the file follows.
    wait_for_file_version(&f, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catch_up_after_a_backup_start_is_a_full_reload_never_a_delta() {
    // The backup may come from another history of the store (one restored or rebuilt to the
    // same version with other data): a delta from its version would find nothing to do.
    let f = fixture();
    let elsewhere = DurableDict::<Value>::builder(Arc::new(MemoryBackend::new("flags")))
        .autosync(false)
        .backup_file(&f.path)
        .build()
        .await
        .unwrap();
    elsewhere.insert("ghost", json!(1)).await.unwrap();
    wait_for_file_version(&f, 1).await;
    MemoryBackend::in_store(f.store.clone(), "flags").persist("real", Bytes::from_static(b"2")).await.unwrap();

    f.faulty.set_failing(true);
    let started = dict(&f).await.unwrap();
    assert_eq!((started.version(), started.snapshot().get("ghost")), (1, Some(&json!(1))));
    f.faulty.set_failing(false);
    wait_until("the catch-up", || !started.status().from_backup).await;
    assert_eq!(started.snapshot().get("ghost"), None, "the store's history replaced the file's");
    assert_eq!(started.snapshot().get("real"), Some(&json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_restored_dict_brings_in_the_whole_store() {
    let f = fixture();
    let writer = dict(&f).await.unwrap();
    writer.insert("a", json!(1)).await.unwrap();
    wait_for_file_version(&f, 1).await;
    MemoryBackend::in_store(f.store.clone(), "flags").persist("b", Bytes::from_static(b"2")).await.unwrap();
    f.faulty.set_failing(true);
    let started = DurableDict::<Value>::builder(f.faulty.clone())
        .autosync(false)
        .hints(false)
        .backup_file(&f.path)
        .build()
        .await
        .unwrap();
    f.faulty.set_failing(false);
    // The write's version is the backup's + 2; even were it + 1, the write must not be laid
    // on top of a snapshot from the file.
    started.insert("c", json!(3)).await.unwrap();
    let view = started.snapshot();
    assert_eq!((view.get("a"), view.get("b"), view.get("c")), (Some(&json!(1)), Some(&json!(2)), Some(&json!(3))));
    assert!(!started.status().from_backup);
}

async fn refused_with(f: &Fixture, contents: &[u8]) {
    std::fs::write(&f.path, contents).unwrap();
    f.faulty.set_failing(true);
    let err = dict(f).await.expect_err("a damaged backup must not be used");
    assert!(err.is_unavailable(), "the store's own error is returned: {err}");
    f.faulty.set_failing(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_truncated_corrupt_or_foreign_file_is_ignored_never_trusted() {
    let f = fixture();
    // Missing.
    f.faulty.set_failing(true);
    assert!(dict(&f).await.unwrap_err().is_unavailable());
    f.faulty.set_failing(false);

    let writer = dict(&f).await.unwrap();
    writer.insert_many([("a", json!("x".repeat(100))), ("b", json!([1, 2, 3]))]).await.unwrap();
    wait_for_file_version(&f, 1).await;
    drop(writer);
    let good = std::fs::read(&f.path).unwrap();

    refused_with(&f, &good[..good.len() / 2]).await;
    refused_with(&f, &good[..good.len() - 1]).await;
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    refused_with(&f, &flipped).await;
    refused_with(&f, b"").await;
    refused_with(&f, b"{\"not\": \"a backup\"}").await;
    refused_with(&f, &[0xff; 4096]).await;

    // A whole, valid file written with another codec: its values do not decode as JSON.
    let msgpack = tempfile::tempdir().unwrap();
    let other = msgpack.path().join("msgpack.backup");
    let packed = DurableDict::<Value>::builder(f.faulty.clone())
        .codec(MsgPack)
        .autosync(false)
        .backup_file(&other)
        .build()
        .await
        .unwrap();
    packed.insert("n", json!({"deep": [1, 2]})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read(&other).map(|b| b.len()).unwrap_or(0) < 40 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    refused_with(&f, &std::fs::read(&other).unwrap()).await;

    // The good file still works.
    std::fs::write(&f.path, &good).unwrap();
    f.faulty.set_failing(true);
    assert_eq!(dict(&f).await.unwrap().snapshot().get("b"), Some(&json!([1, 2, 3])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_backup_path_never_breaks_the_dict() {
    let f = fixture();
    let dict = DurableDict::<Value>::builder(f.faulty.clone() as Arc<dyn Backend>)
        .autosync(false)
        .backup_file(f.path.join("no-such-dir").join("flags.backup"))
        .build()
        .await
        .unwrap();
    dict.insert("a", json!(1)).await.unwrap();
    assert_eq!(dict.sync().await.unwrap(), durable_core::SyncOutcome::Unchanged);
    assert_eq!(dict.snapshot().get("a"), Some(&json!(1)));
}
