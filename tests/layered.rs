//! A layered view served by `SyncLayer::layered` on real stores: every request syncs every
//! layer and reads one merged snapshot through `Flags` — an overrides file over the store
//! over the code's defaults, and a second store under the first.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{server_available, sqlite_url};
use durable::{DurableDict, Flags, Layered, SyncLayer};
use serde_json::{Value, json};
use tower::ServiceExt;

const KEYS: [&str; 4] = ["a", "b", "c", "d"];

async fn values(flags: Flags<u64>) -> axum::Json<Value> {
    axum::Json(json!(KEYS.map(|key| flags.get(key).copied())))
}

async fn get_values(app: &Router) -> Value {
    let request = http::Request::builder().uri("/").body(axum::body::Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Requests until one answers `want` (a polled store's first request does; a hinted one's
/// once the write's hint has arrived), failing after the suite's patience.
async fn expect(app: &Router, want: Value, what: &str) {
    let deadline = tokio::time::Instant::now() + durable_core::conformance::PATIENCE;
    loop {
        let got = get_values(app).await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: want {want}, got {got}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn dict(url: &str, ns: &str) -> DurableDict<u64> {
    DurableDict::builder(durable::connect(url, ns).await.unwrap()).autosync(false).build().await.unwrap()
}

/// The view on `url`: file > store > second store > defaults, each step checked through
/// requests, with writes made by other dicts of the stores.
async fn layers_follow_their_sources(url: &str) {
    let (ns, ns2) = (
        durable_core::conformance::unique_namespace("layered"),
        durable_core::conformance::unique_namespace("layered2"),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.json");
    let view = Layered::builder()
        .file(&file)
        .dict("store", dict(url, &ns).await)
        .dict("shared", dict(url, &ns2).await)
        .defaults([("a", 1), ("b", 1), ("c", 1)])
        .build()
        .unwrap();
    let app = Router::new().route("/", get(values)).layer(SyncLayer::layered(view.clone()));
    let (writer, writer2) = (dict(url, &ns).await, dict(url, &ns2).await);
    expect(&app, json!([1, 1, 1, null]), "the defaults").await;

    writer2.insert_many([("b", 3), ("d", 3)]).await.unwrap();
    writer.insert("a", 2).await.unwrap();
    expect(&app, json!([2, 3, 1, 3]), "each store's writes").await;

    std::fs::write(&file, r#"{"a": 9, "c": 9}"#).unwrap();
    writer.insert("c", 2).await.unwrap();
    expect(&app, json!([9, 3, 9, 3]), "the file's overrides win").await;
    let snapshot = view.layered_snapshot();
    assert_eq!(
        KEYS.map(|key| snapshot.layer_of(key)),
        [Some("file"), Some("shared"), Some("file"), Some("shared")],
        "which layer answered"
    );

    // Rewritten with a different size, so that a file system with coarse times sees it.
    std::fs::write(&file, r#"{"a": 9}"#).unwrap();
    writer2.remove("b").await.unwrap();
    expect(&app, json!([9, 1, 2, 3]), "an override removed, a store key removed").await;
    let versions: Vec<(String, u64)> =
        view.layered_snapshot().versions().into_iter().map(|(name, version)| (name.to_owned(), version)).collect();
    assert_eq!(versions, [("file".into(), 3), ("store".into(), 2), ("shared".into(), 2), ("defaults".into(), 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layered_view_follows_every_layer_on_sqlite() {
    layers_follow_their_sources(&sqlite_url("layered")).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layered_view_follows_every_layer_on_redis() {
    let url = durable_testkit::env::redis_url();
    if server_available("Redis", &url, 6379).await {
        layers_follow_their_sources(&url).await;
    }
}
