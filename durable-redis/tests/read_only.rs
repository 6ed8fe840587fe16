//! A Redis ACL user limited to read commands on the namespace's keys and its hint channel:
//! a dict on it loads, follows changes through hints, and gets a typed error — quickly,
//! not a hang — when asked to write; Redis is what refuses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_core::conformance::unique_namespace;
use durable_core::{Error, StoreUrl};
use durable_redis::{RedisBackend, RedisError};
use durable_testkit::LiveDicts;
use durable_testkit::env::redis_url;
use serde_json::json;

const PASSWORD: &str = "read0nly-pw";

async fn admin(args: &[&str]) -> redis::Value {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(&mut connection).await.unwrap_or_else(|err| panic!("{args:?}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_limited_to_reads_follows_changes_and_cannot_write() {
    if !durable_testkit::env::require("Redis", &redis_url(), 6379).await {
        return;
    }
    let ns = unique_namespace("read-only");
    let user = format!("ro-{ns}");
    // Reads, the connection's own commands, transactions (the full read is MULTI/EXEC),
    // scripts (the delta is a read-only script; a script's own commands are checked one
    // by one), and subscribing — on this namespace's keys and channel only.
    let (keys, channel) = (format!("~{ns}*"), format!("&{ns}:changes"));
    admin(&[
        "ACL",
        "SETUSER",
        &user,
        "on",
        &format!(">{PASSWORD}"),
        "resetkeys",
        &keys,
        "resetchannels",
        &channel,
        "-@all",
        "+@read",
        "+@connection",
        "+@transaction",
        "+evalsha",
        "+eval",
        "+script|load",
        "+subscribe",
        "+unsubscribe",
    ])
    .await;
    let url = StoreUrl::parse(&redis_url()).unwrap();
    let reader_url = format!("redis://{user}:{PASSWORD}@{}/", url.hosts()[0].addr(6379));

    let writer = RedisBackend::connect(&redis_url(), &ns).await.unwrap();
    let reader = RedisBackend::connect(&reader_url, &ns).await.expect("a read-only user connects");
    // A minute between polls: what the reader learns after loading comes through hints.
    let live = LiveDicts::seeded(Arc::new(reader), Arc::new(writer), Some(Duration::from_secs(60)), 10).await;
    let (reader, writer) = (&live.reader, &live.writer);
    let version = writer.insert("flag", json!(false)).await.unwrap();
    live.reader_has("flag", &json!(false), version).await;
    reader.sync().await.expect("a sync on the read-only user");

    // A write is refused by Redis: a typed error with Redis's word, fast, nothing written.
    for attempt in [
        reader.insert("flag", json!("mine")).await.map(drop),
        reader.remove("flag").await.map(drop),
        reader.batch().insert("other", json!(1)).apply().await.map(drop),
    ] {
        let err = attempt.expect_err("a write by a read-only user");
        assert!(matches!(err, Error::Store { .. }) && err.source_as::<RedisError>().is_some(), "{err:?}");
        // Redis's refusal, as a script's command meets it.
        let said = err.to_string();
        assert!(said.contains("NOPERM") || said.contains("can't run this command"), "{err}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");
    }
    let started = Instant::now();
    let _ = reader.insert("flag", json!("again")).await;
    assert!(started.elapsed() < Duration::from_secs(1), "a refused write took {:?}", started.elapsed());
    writer.sync().await.unwrap();
    assert_eq!(writer.snapshot().get("flag"), Some(&json!(false)), "nothing was written");
    assert_eq!(writer.version(), version, "no version was made");

    drop(live);
    admin(&["ACL", "DELUSER", &user]).await;
}
