//! A small web service reading its flags from a `DurableDict`: `SyncLayer` syncs once per
//! request, the `Flags<V>` extractor hands the handler that request's snapshot. The flags
//! service users deploy is `durable serve` (tokens, admin page, OFREP, metrics); this is
//! the library's pattern in a page.
//!
//! ```sh
//! cargo run --example flags_service                      # a SQLite file, no server needed
//! DURABLE_URL=redis://127.0.0.1:6379 cargo run --example flags_service --features redis
//! ```
//!
//! | route | what |
//! |---|---|
//! | `GET /flags` | every flag, with the snapshot version |
//! | `GET /flags/{key}` | one flag (404 if unset) |
//! | `PUT /flags/{key}` | set a flag to the JSON body |
//! | `DELETE /flags/{key}` | remove a flag (404 if unset) |
//! | `GET /hello` | shouts when the flag `shout` is `true` |
//! | `GET /health` | the dict's status (not synced: health checks skip the layer) |
//!
//! Environment: `DURABLE_URL` (default: a SQLite file in the temporary directory),
//! `DURABLE_NAMESPACE` (default `flags`), `DURABLE_ADDR` (default `127.0.0.1:3000`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use durable::{DurableDict, Flags, SyncLayer};
use serde_json::{Value, json};

/// The service's dict: flag name → any JSON value.
pub type FlagDict = DurableDict<Value>;

/// Connects the dict: manual sync (the layer syncs per request) and background refresh, so
/// change hints are applied between requests too.
pub async fn open(url: &str, namespace: &str) -> durable::Result<FlagDict> {
    let backend = durable::connect(url, namespace).await?;
    DurableDict::builder(backend)
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(1))
        .build()
        .await
}

/// The routes, with `SyncLayer` around them.
pub fn router(dict: FlagDict) -> Router {
    Router::new()
        .route("/flags", get(list))
        .route("/flags/{key}", get(get_one).put(set_one).delete(delete_one))
        .route("/hello", get(hello))
        .route("/health", get(health))
        .with_state(dict.clone())
        .layer(SyncLayer::new(dict).skip_paths(["/health"]))
}

async fn list(flags: Flags<Value>) -> Json<Value> {
    let all: serde_json::Map<String, Value> = flags.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    Json(json!({ "flags": all, "version": flags.version() }))
}

async fn get_one(flags: Flags<Value>, Path(key): Path<String>) -> (StatusCode, Json<Value>) {
    match flags.get(&key) {
        Some(value) => (StatusCode::OK, Json(value.clone())),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no flag {key:?}") }))),
    }
}

async fn set_one(
    State(dict): State<FlagDict>,
    Path(key): Path<String>,
    Json(value): Json<Value>,
) -> (StatusCode, Json<Value>) {
    match dict.insert(&key, value).await {
        Ok(version) => (StatusCode::OK, Json(json!({ "version": version }))),
        Err(err) => error_response(err),
    }
}

async fn delete_one(State(dict): State<FlagDict>, Path(key): Path<String>) -> (StatusCode, Json<Value>) {
    match dict.remove(&key).await {
        Ok(Some(version)) => (StatusCode::OK, Json(json!({ "version": version }))),
        Ok(None) => (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no flag {key:?}") }))),
        Err(err) => error_response(err),
    }
}

fn error_response(err: durable::Error) -> (StatusCode, Json<Value>) {
    let status = match err {
        durable::Error::InvalidKey { .. } | durable::Error::ValueTooLarge { .. } => StatusCode::BAD_REQUEST,
        ref e if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(json!({ "error": err.to_string() })))
}

async fn hello(flags: Flags<Value>) -> &'static str {
    if flags.get("shout") == Some(&Value::Bool(true)) { "HELLO, WORLD!" } else { "Hello, world." }
}

async fn health(State(dict): State<FlagDict>) -> (StatusCode, Json<Value>) {
    let status = dict.status();
    let body = json!({
        "version": status.version,
        "hints": format!("{:?}", status.hints),
        "staleness_ms": status.staleness().as_millis().min(u128::from(u64::MAX)) as u64,
        "last_error": status.last_error.as_ref().map(ToString::to_string),
    });
    let code = if status.failing_since.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(body))
}

#[allow(dead_code)] // The end-to-end tests include this file for `open` and `router` only.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let default_file = std::env::temp_dir().join("durable-flags-service.db");
    let url = std::env::var("DURABLE_URL").unwrap_or_else(|_| format!("sqlite://{}", default_file.display()));
    let namespace = std::env::var("DURABLE_NAMESPACE").unwrap_or_else(|_| "flags".into());
    let addr = std::env::var("DURABLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let dict = open(&url, &namespace).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("flags service on http://{} (namespace {namespace})", listener.local_addr()?);
    axum::serve(listener, router(dict))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
