//! `examples/openfeature_axum.rs` end to end: the OpenFeature client inside an axum handler,
//! the dict synced per request by `SyncLayer`, a flag changed by another process (another
//! dict on the same SQLite file) seen by the next request.

#![cfg(feature = "openfeature")]
#![allow(dead_code)]

#[path = "../examples/openfeature_axum.rs"]
mod example;

use std::sync::Arc;

use axum::body::Body;
use durable_core::DurableDict;
use durable_flags::{FlagDefinition, Flags};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn get(router: &axum::Router, user: &str, plan: &str) -> Value {
    let request =
        http::Request::get("/checkout").header("x-user", user).header("x-plan", plan).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_flags_through_openfeature() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flags.db").display());
    let ns = durable_core::conformance::unique_namespace("example");
    let (flags, client) = example::open(&url, &ns, &ns).await.unwrap();
    let router = example::router(Arc::clone(&flags), client);
    assert_eq!(get(&router, "ada", "pro").await, json!({"new_checkout": true, "title": "Pay now"}));
    let free = get(&router, "bob", "free").await;
    assert_eq!(free["title"], "Checkout");

    // Another process turns the new checkout off for everyone.
    let other = Flags::new(DurableDict::builder(durable::connect(&url, &ns).await.unwrap()).build().await.unwrap());
    other.put("new-checkout", &FlagDefinition::boolean(false)).await.unwrap();
    assert_eq!(
        get(&router, "ada", "pro").await,
        json!({"new_checkout": false, "title": "Pay now"}),
        "synced per request"
    );
}
