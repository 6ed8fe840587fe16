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

/// OFREP on the service: Python's OpenFeature SDK with its OFREP provider (PyPI) evaluates
/// a plain flag and a flagd definition served by one instance, sees a change made through
/// the other, and an invalid definition is refused at the door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ofrep_provider_from_python_reads_the_service() {
    use durable_testkit::ofrep::{evaluate, python_client, query};
    use serde_json::json;

    let Some(venv) = python_client().await else { return };
    let (url, ns) = (sqlite_url("service-ofrep"), unique_namespace("service-ofrep"));
    let (a, b) = (start(&url, &ns).await, start(&url, &ns).await);
    let client = http_client();
    assert_eq!(call(&client, "PUT", &format!("{a}/flags/shout"), Some("true")).await.0, 200);
    let rollout = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", {"fractional": [["on", 50], ["off", 50]]}]}});
    assert_eq!(call(&client, "PUT", &format!("{a}/flags/rollout"), Some(&rollout.to_string())).await.0, 200);
    let bad = json!({"state": "ENABLED", "variants": {"on": true, "off": 0}, "defaultVariant": "off"});
    let (status, body) = call(&client, "PUT", &format!("{a}/flags/bad"), Some(&bad.to_string())).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("share one type"), "{body}");

    let users: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let mut queries = vec![
        query("boolean", "shout", None, json!({}), json!(false)),
        query("boolean", "rollout", Some("ada"), json!({"plan": "pro"}), json!(false)),
        query("boolean", "bad", None, json!({}), json!(true)),
    ];
    queries.extend(
        users.iter().map(|user| query("boolean", "rollout", Some(user), json!({"plan": "free"}), json!(false))),
    );
    let seen = evaluate(&venv, &a, &queries).await;
    assert_eq!((&seen[0]["value"], seen[0]["reason"].as_str()), (&json!(true), Some("STATIC")));
    assert_eq!(
        (&seen[1]["value"], seen[1]["reason"].as_str(), seen[1]["variant"].as_str()),
        (&json!(true), Some("TARGETING_MATCH"), Some("on"))
    );
    assert_eq!(
        (&seen[2]["value"], seen[2]["error"].as_str()),
        (&json!(true), Some("FLAG_NOT_FOUND")),
        "the refused flag was not written"
    );
    let on = seen[3..].iter().filter(|answer| answer["value"] == json!(true)).count();
    assert!(0 < on && on < users.len(), "a 50/50 split over 20 users: {on} on");
    // A change through the other instance is seen through this one at the next request.
    assert_eq!(call(&client, "PUT", &format!("{b}/flags/shout"), Some("false")).await.0, 200);
    let after = evaluate(&venv, &a, &[query("boolean", "shout", None, json!({}), json!(true))]).await;
    assert_eq!(after[0]["value"], json!(false));
}
