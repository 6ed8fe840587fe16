//! End to end, for each backend: two instances of `examples/flags_service.rs` on ephemeral
//! ports share one store; a PUT through one is seen by the other, a DELETE likewise, and the
//! demo route flips with the flag.

mod common;

#[path = "../examples/flags_service.rs"]
#[allow(dead_code)]
mod flags_service;

use std::time::Duration;

use common::{HttpClient, call, http_client, server_available, sqlite_url};
use durable_core::conformance::unique_namespace;

/// How long a change may take to show on the other instance: hinted backends deliver in
/// milliseconds, polled ones at the next request's sync.
const PROPAGATION: Duration = Duration::from_secs(5);

async fn start(url: &str, namespace: &str) -> String {
    let dict = flags_service::open(url, namespace).await.expect("open the dict");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, flags_service::router(dict)).await.unwrap() });
    base
}

/// Asks `url` until it answers `expected` (or the propagation bound passes).
async fn eventually(client: &HttpClient, url: &str, expected: (u16, &str)) {
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    loop {
        let (status, body) = call(client, "GET", url, None).await;
        if (status, body.as_str()) == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{url}: still {status} {body}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn two_instances_share_one_store(url: &str) {
    let ns = unique_namespace("service");
    let (a, b) = (start(url, &ns).await, start(url, &ns).await);
    let client = http_client();

    assert_eq!(call(&client, "GET", &format!("{b}/hello"), None).await, (200, "Hello, world.".into()));
    assert_eq!(call(&client, "GET", &format!("{b}/flags/shout"), None).await.0, 404);

    let (status, body) = call(&client, "PUT", &format!("{a}/flags/shout"), Some("true")).await;
    assert_eq!(status, 200, "{body}");
    eventually(&client, &format!("{b}/flags/shout"), (200, "true")).await;
    eventually(&client, &format!("{b}/hello"), (200, "HELLO, WORLD!")).await;
    let (_, listed) = call(&client, "GET", &format!("{b}/flags"), None).await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["flags"], serde_json::json!({"shout": true}));

    let (status, _) = call(&client, "DELETE", &format!("{a}/flags/shout"), None).await;
    assert_eq!(status, 200);
    eventually(&client, &format!("{b}/hello"), (200, "Hello, world.")).await;
    assert_eq!(call(&client, "GET", &format!("{b}/flags/shout"), None).await.0, 404);
    assert_eq!(call(&client, "DELETE", &format!("{b}/flags/shout"), None).await.0, 404, "already gone");

    // Bad input is a clear 400, and changes nothing.
    let (status, body) = call(&client, "PUT", &format!("{a}/flags/{}", "k".repeat(2000)), Some("1")).await;
    assert_eq!(status, 400, "{body}");
    let (status, health) = call(&client, "GET", &format!("{a}/health"), None).await;
    assert_eq!(status, 200, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    two_instances_share_one_store(&sqlite_url("service")).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let url = durable_testkit::env::postgres_url();
    if server_available("PostgreSQL", &url, 5432).await {
        two_instances_share_one_store(&url).await;
    }
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql() {
    let url = durable_testkit::env::mysql_url();
    if server_available("MySQL/MariaDB", &url, 3306).await {
        two_instances_share_one_store(&url).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let url = durable_testkit::env::redis_url();
    if server_available("Redis", &url, 6379).await {
        two_instances_share_one_store(&url).await;
    }
}

#[cfg(feature = "zookeeper")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper() {
    let url = durable_testkit::env::zk_url();
    if server_available("ZooKeeper", &url, 2181).await {
        two_instances_share_one_store(&url).await;
    }
}
