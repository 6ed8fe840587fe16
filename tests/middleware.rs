//! `SyncLayer` and the `Flags` extractor: one snapshot per request under concurrency,
//! outage policies with the store made unreachable, the skip filter, and the latency field.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{call, http_client, server_available, sqlite_url};
use durable::{DurableDict, Flags, OutagePolicy, SyncLayer};
use durable_core::testing::FaultyBackend;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEYS: [&str; 3] = ["a", "b", "c"];

/// Answers the three batch keys and the snapshot version, all from the request's snapshot.
async fn batch(flags: Flags<u64>) -> axum::Json<Value> {
    let values: Vec<Option<u64>> = KEYS.iter().map(|k| flags.get(k).copied()).collect();
    axum::Json(json!({ "version": flags.version(), "values": values }))
}

async fn get_status(app: &Router, path: &str) -> (u16, String) {
    let request = http::Request::builder().uri(path).body(axum::body::Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// 200 concurrent requests while a writer replaces the three keys in one batch after
/// another: every response's values come from one version.
async fn no_request_sees_half_a_batch(url: &str) {
    let ns = durable_core::conformance::unique_namespace("mw");
    let writer =
        DurableDict::<u64>::builder(durable::connect(url, &ns).await.unwrap()).autosync(false).build().await.unwrap();
    let base = writer.insert_many(KEYS.map(|k| (k, 0u64))).await.unwrap();
    let served = DurableDict::<u64>::builder(durable::connect(url, &ns).await.unwrap())
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let app = Router::new().route("/batch", get(batch)).layer(SyncLayer::new(served));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}/batch", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let writes = tokio::spawn(async move {
        for n in 1..=100u64 {
            writer.insert_many(KEYS.map(|k| (k, n))).await.unwrap();
        }
    });
    let client = http_client();
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let (client, addr) = (client.clone(), addr.clone());
            tokio::spawn(async move { call(&client, "GET", &addr, None).await })
        })
        .collect();
    let mut seen_versions = std::collections::BTreeSet::new();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let values = body["values"].as_array().unwrap();
        let version = body["version"].as_u64().unwrap();
        assert!(values.iter().all(|v| *v == values[0]), "half a batch: {body}");
        assert_eq!(values[0].as_u64().unwrap() + base, version, "the values are the version's: {body}");
        seen_versions.insert(version);
    }
    writes.await.unwrap();
    assert!(!seen_versions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_see_one_version_on_sqlite() {
    no_request_sees_half_a_batch(&sqlite_url("middleware")).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_see_one_version_on_redis() {
    let url = durable_testkit::env::redis_url();
    if server_available("Redis", &url, 6379).await {
        no_request_sees_half_a_batch(&url).await;
    }
}

/// With hints healthy the layer asks the store nothing while nothing changes (its fast
/// path), and a change written by another instance is served on a later request all the
/// same: the hint turns the fast path off until a sync has brought the change in.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_asks_nothing_until_a_hint_then_serves_the_change() {
    use durable::backend::CountingBackend;
    let url = &durable_testkit::env::redis_url();
    if !server_available("Redis", url, 6379).await {
        return;
    }
    let ns = durable_core::conformance::unique_namespace("mw-fast");
    let writer =
        DurableDict::<u64>::builder(durable::connect(url, &ns).await.unwrap()).autosync(false).build().await.unwrap();
    let counting = Arc::new(CountingBackend::new(durable::connect(url, &ns).await.unwrap()));
    // No background refresh and no poll: only a request's sync can bring a change in.
    let served = DurableDict::<u64>::builder(counting.clone())
        .autosync(false)
        .background_refresh(false)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + durable_core::conformance::PATIENCE;
    while served.status().hints != durable::HintHealth::Healthy {
        assert!(tokio::time::Instant::now() < deadline, "hints never became healthy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let app = Router::new().route("/batch", get(batch)).layer(SyncLayer::new(served.clone()));
    let before = counting.counts();
    for _ in 0..100 {
        let (status, body) = get_status(&app, "/batch").await;
        assert_eq!((status, body.contains("[null,null,null]")), (200, true), "{body}");
    }
    let after = counting.counts();
    assert_eq!(
        (after.last_updated, after.changes_since, after.durables),
        (before.last_updated, before.changes_since, before.durables),
        "100 requests with nothing changed asked the store nothing"
    );

    let version = writer.insert_many(KEYS.map(|k| (k, 7u64))).await.unwrap();
    let deadline = tokio::time::Instant::now() + durable_core::conformance::PATIENCE;
    loop {
        let (status, body) = get_status(&app, "/batch").await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        if body["version"].as_u64() == Some(version) {
            assert_eq!(body["values"], json!([7, 7, 7]), "the change came in whole");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the change never reached a request: {body}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(counting.counts().changes_since > after.changes_since, "a request's sync fetched the change");
}

/// A dict on a SQLite file behind a fault switch, holding `flag = 1`, and a router on it.
async fn faulty_app(policy: OutagePolicy) -> (Arc<FaultyBackend>, Router) {
    let store = durable::connect(&sqlite_url("outage"), "flags").await.unwrap();
    let faulty = Arc::new(FaultyBackend::new(store));
    let dict = DurableDict::<u64>::builder(faulty.clone()).autosync(false).build().await.unwrap();
    dict.insert("flag", 1).await.unwrap();
    let app = Router::new()
        .route("/flag", get(|flags: Flags<u64>| async move { format!("{:?}", flags.get("flag")) }))
        .route("/health", get(|| async { "ok" }))
        .layer(SyncLayer::new(dict).outage_policy(policy).skip_paths(["/health"]));
    (faulty, app)
}

#[tokio::test]
async fn fail_open_serves_the_last_good_snapshot_while_the_store_is_down() {
    let (faulty, app) = faulty_app(OutagePolicy::FailOpen).await;
    assert_eq!(get_status(&app, "/flag").await, (200, "Some(1)".into()));
    faulty.set_failing(true);
    for _ in 0..3 {
        assert_eq!(get_status(&app, "/flag").await, (200, "Some(1)".into()));
    }
    faulty.set_failing(false);
    assert_eq!(get_status(&app, "/flag").await, (200, "Some(1)".into()));
}

#[tokio::test]
async fn fail_closed_answers_503_while_the_store_is_down() {
    let (faulty, app) = faulty_app(OutagePolicy::FailClosed).await;
    assert_eq!(get_status(&app, "/flag").await.0, 200);
    faulty.set_failing(true);
    assert_eq!(get_status(&app, "/flag").await.0, 503);
    // Skipped paths are not synced, so they answer whatever the store does.
    assert_eq!(get_status(&app, "/health").await, (200, "ok".into()));
    faulty.set_failing(false);
    assert_eq!(get_status(&app, "/flag").await, (200, "Some(1)".into()));
}

#[tokio::test]
async fn fail_open_for_a_while_then_503() {
    let (faulty, app) = faulty_app(OutagePolicy::FailOpenFor(Duration::from_millis(300))).await;
    assert_eq!(get_status(&app, "/flag").await.0, 200);
    faulty.set_failing(true);
    assert_eq!(get_status(&app, "/flag").await, (200, "Some(1)".into()), "young enough to serve");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get_status(&app, "/flag").await.0, 503, "too stale to serve");
    faulty.set_failing(false);
    assert_eq!(get_status(&app, "/flag").await.0, 200);
}

#[tokio::test]
async fn the_extractor_says_when_no_layer_ran() {
    let app: Router =
        Router::new().route("/flag", get(|flags: Flags<u64>| async move { format!("{:?}", flags.len()) }));
    let (status, body) = get_status(&app, "/flag").await;
    assert_eq!(status, 500);
    assert!(body.contains("SyncLayer"), "{body}");
}

/// Captures the `latency_us` field recorded on `durable.sync` spans.
#[derive(Clone, Default)]
struct Latencies(Arc<Mutex<Vec<u64>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Latencies {
    fn on_record(
        &self,
        _span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Visit<'a>(&'a Mutex<Vec<u64>>);
        impl tracing::field::Visit for Visit<'_> {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "latency_us" {
                    self.0.lock().unwrap().push(value);
                }
            }
            fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
        }
        values.record(&mut Visit(&self.0));
    }
}

#[tokio::test]
async fn the_sync_latency_is_a_span_field() {
    use tracing_subscriber::layer::SubscriberExt;
    let latencies = Latencies::default();
    let subscriber = tracing_subscriber::registry().with(latencies.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_faulty, app) = faulty_app(OutagePolicy::FailOpen).await;
    for _ in 0..3 {
        assert_eq!(get_status(&app, "/flag").await.0, 200);
    }
    assert_eq!(latencies.0.lock().unwrap().len(), 3, "one latency per synced request");
    get_status(&app, "/health").await;
    assert_eq!(latencies.0.lock().unwrap().len(), 3, "skipped paths are not synced");
}

/// Not only axum: any `tower::Service` over `http` requests — what hyper and tonic hand the
/// layer — gets the request's snapshot in its extensions.
#[tokio::test]
async fn a_plain_tower_http_service_gets_the_snapshot() {
    use tower::Layer;
    let dict = DurableDict::<u64>::builder(durable::connect(&sqlite_url("plain"), "flags").await.unwrap())
        .autosync(false)
        .build()
        .await
        .unwrap();
    dict.insert("limit", 42).await.unwrap();
    let inner = tower::service_fn(|request: http::Request<String>| async move {
        let snapshot = request.extensions().get::<durable::Snapshot<u64>>().expect("the layer put a snapshot");
        Ok::<_, std::convert::Infallible>(http::Response::new(format!(
            "{:?}@{}",
            snapshot.get("limit"),
            snapshot.version()
        )))
    });
    let service = SyncLayer::new(dict).layer(inner);
    let response = service.oneshot(http::Request::new(String::new())).await.unwrap();
    assert_eq!(response.into_body(), "Some(42)@1");
}
