//! A namespace whose nodes only their writer may change (`protect_writes`): a session
//! without those credentials, connected `read_only`, loads the dict and follows it through
//! its watch, and a write it attempts — or one with other credentials — is refused by
//! ZooKeeper with a typed error, quickly, changing nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_core::conformance::unique_namespace;
use durable_core::{DurableDict, Error};
use durable_testkit::LiveDicts;
use durable_testkit::env::zk_url;
use durable_zk::{ZkBackend, ZkError};
use serde_json::{Value, json};

fn with_credentials(credentials: &str) -> String {
    zk_url().replacen("://", &format!("://{credentials}@"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_session_follows_a_protected_namespace_and_cannot_write_it() {
    if !durable_testkit::env::require("ZooKeeper", &zk_url(), 2181).await {
        return;
    }
    let ns = unique_namespace("read-only");
    let unprotected = ZkBackend::builder(&zk_url()).protect_writes(true).connect(&ns).await;
    assert!(matches!(unprotected, Err(Error::InvalidUrl { .. })), "protect_writes needs credentials");

    let writer = ZkBackend::builder(&with_credentials("writer:wr1ter-pw")).protect_writes(true).connect(&ns).await;
    let reader = ZkBackend::builder(&zk_url()).read_only(true).connect(&ns).await.expect("a read-only session");
    // New keys (nodes created under the protected namespace) reach the reader through its
    // watch, a minute before its poll.
    let live = LiveDicts::seeded(Arc::new(reader), Arc::new(writer.unwrap()), Some(Duration::from_secs(60)), 10).await;
    let (reader, writer) = (&live.reader, &live.writer);
    let version = writer.insert_many([("flag", json!(false)), ("added", json!(1))]).await.unwrap();
    live.reader_has("added", &json!(1), version).await;

    // Writes without the writer's credentials are refused by ZooKeeper.
    let intruder = ZkBackend::connect(&with_credentials("intruder:other-pw"), &ns).await.unwrap();
    let intruder = DurableDict::<Value>::builder(Arc::new(intruder)).autosync(false).build().await.unwrap();
    for (who, attempt) in [
        ("reader insert", reader.insert("flag", json!("mine")).await.map(drop)),
        ("reader remove", reader.remove("added").await.map(drop)),
        ("intruder insert", intruder.insert("new-key", json!(1)).await.map(drop)),
        ("intruder batch", intruder.batch().insert("flag", json!(0)).remove("added").apply().await.map(drop)),
    ] {
        let err = attempt.expect_err(who);
        assert!(matches!(err, Error::Store { .. }) && err.source_as::<ZkError>().is_some(), "{who}: {err:?}");
        assert!(!err.to_string().contains("other-pw"), "{err}");
    }
    let started = Instant::now();
    let _ = reader.insert("flag", json!("again")).await;
    assert!(started.elapsed() < Duration::from_secs(1), "a refused write took {:?}", started.elapsed());
    writer.sync().await.unwrap();
    assert_eq!(writer.version(), version, "nothing was written");
    assert_eq!(writer.snapshot().get("flag"), Some(&json!(false)));
    // The writer still writes.
    writer.remove("added").await.unwrap().expect("the writer removes its key");

    // Read-only on a namespace nobody made: it says so.
    let missing = ZkBackend::builder(&zk_url()).read_only(true).connect(&unique_namespace("nobody")).await;
    let err = missing.expect_err("a namespace that is not there");
    assert!(err.to_string().contains("not there"), "{err}");
}
