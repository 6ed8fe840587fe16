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
    if server_available("PostgreSQL", "127.0.0.1:5432").await {
        two_instances_share_one_store("postgres://postgres@127.0.0.1:5432/test").await;
    }
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql() {
    if server_available("MySQL/MariaDB", "127.0.0.1:3306").await {
        two_instances_share_one_store("mysql://root@127.0.0.1:3306/test").await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    if server_available("Redis", "127.0.0.1:6379").await {
        two_instances_share_one_store("redis://127.0.0.1:6379").await;
    }
}

#[cfg(feature = "zookeeper")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper() {
    if server_available("ZooKeeper", "127.0.0.1:2181").await {
        two_instances_share_one_store("zk://127.0.0.1:2181/durable-service-test").await;
    }
}
