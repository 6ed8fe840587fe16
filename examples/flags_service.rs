//! A small feature-flag service: a JSON API over a `DurableDict`, synced once per request by
//! `SyncLayer`, and a demo route whose answer depends on a flag.
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
//! | `GET /hello` | the demo: shouts when the flag `shout` is `true` |
//! | `POST /ofrep/v1/evaluate/flags/{key}`, `POST /ofrep/v1/evaluate/flags` | OFREP: any OpenFeature SDK's OFREP provider evaluates the flags |
//! | `GET /health` | the dict's status (not synced: health checks skip the layer) |
//! | `GET /metrics` | the dict's metrics in Prometheus's text format (`durable_*`, see `durable::metrics`) |
//!
//! A flag is any JSON value (`true`, `"blue"`, `{"limit": 3}`: served as it is) or a flag
//! definition in flagd's format (`state`, `variants`, `defaultVariant`, `targeting`),
//! checked on `PUT` (a 400 says what is wrong) and evaluated per request context by OFREP
//! and `/hello` (durable-flags).
//!
//! Environment: `DURABLE_URL` (default: a SQLite file in the temporary directory),
//! `DURABLE_NAMESPACE` (default `flags`), `DURABLE_ADDR` (default `127.0.0.1:3000`),
//! `DURABLE_BACKUP_FILE` (default none: a local copy of the flags, so that the service
//! starts — stale, and says so on `/health` — while the store is down).
//! Ctrl-C or SIGTERM stops it gracefully: requests in flight finish, then it exits 0.

use std::time::Duration;

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use durable::{DurableDict, Flags, SyncLayer};
use serde_json::{Value, json};

/// The service's dict: flag name → any JSON value.
pub type FlagDict = DurableDict<Value>;

/// Connects the dict the service uses: manual sync (the layer syncs per request) and
/// background refresh, so change events and hints are applied between requests too.
pub async fn open(url: &str, namespace: &str) -> durable::Result<FlagDict> {
    open_with_backup(url, namespace, None).await
}

/// [`open`], with a backup file: the store is then connected lazily, so the service starts
/// from the file when the store is down, and catches up on its own when it returns.
pub async fn open_with_backup(
    url: &str,
    namespace: &str,
    backup: Option<&std::path::Path>,
) -> durable::Result<FlagDict> {
    let backend = match backup {
        Some(_) => durable::connect_lazy(url, namespace)?,
        None => durable::connect(url, namespace).await?,
    };
    let mut builder = DurableDict::builder(backend)
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(1))
        .metrics(namespace);
    if let Some(path) = backup {
        builder = builder.backup_file(path);
    }
    builder.build().await
}

/// The service's state: the dict, and the same dict read as flags (plain values and flagd
/// definitions side by side).
#[derive(Clone)]
pub struct Service {
    dict: FlagDict,
    flags: Arc<durable_flags::Flags>,
}

/// The service's routes, with `SyncLayer` around them.
pub fn router(dict: FlagDict) -> Router {
    let flags = Arc::new(durable_flags::Flags::new(dict.clone()).plain_values(true));
    Router::new()
        .route("/flags", get(list))
        .route("/flags/{key}", get(get_one).put(set_one).delete(delete_one))
        .route("/hello", get(hello))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .with_state(Service { dict: dict.clone(), flags: Arc::clone(&flags) })
        .merge(durable_flags::ofrep::router(flags))
        .layer(SyncLayer::new(dict).skip_paths(["/health", "/metrics"]))
}

async fn list(flags: Flags<Value>) -> Json<Value> {
    // Sorted by key, so the list reads the same on every call.
    let mut all: Vec<(&str, &Value)> = flags.iter().collect();
    all.sort_unstable_by_key(|(key, _)| *key);
    let all: serde_json::Map<String, Value> = all.into_iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    Json(json!({ "flags": all, "version": flags.version() }))
}

async fn get_one(flags: Flags<Value>, Path(key): Path<String>) -> impl IntoResponse {
    match flags.get(&key) {
        Some(value) => (StatusCode::OK, Json(value.clone())),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no flag {key:?}") }))),
    }
}

async fn set_one(
    State(service): State<Service>,
    Path(key): Path<String>,
    Json(value): Json<Value>,
) -> impl IntoResponse {
    match service.flags.put_value(&key, value).await {
        Ok(version) => (StatusCode::OK, Json(json!({ "version": version }))),
        Err(durable_flags::FlagError::Store(err)) => error_response(err),
        Err(refused) => (StatusCode::BAD_REQUEST, Json(json!({ "error": refused.to_string() }))),
    }
}

async fn delete_one(State(service): State<Service>, Path(key): Path<String>) -> impl IntoResponse {
    match service.dict.remove(&key).await {
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

/// The demo route: its answer depends on the flag `shout` — `true`, or a definition whose
/// targeting decides by the `x-user` header (the targeting key).
async fn hello(State(service): State<Service>, headers: axum::http::HeaderMap) -> String {
    let mut context = durable_flags::Context::new();
    if let Some(user) = headers.get("x-user").and_then(|user| user.to_str().ok()) {
        context = context.targeting_key(user);
    }
    if service.flags.snapshot().boolean("shout", &context, false) {
        "HELLO, WORLD!".into()
    } else {
        "Hello, world.".into()
    }
}

/// The process's Prometheus recorder, once installed (`main` does; a test may).
pub static METRICS: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder for the process (the first call; later ones reuse it).
pub fn install_metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    METRICS.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().expect("one recorder per process")
    })
}

async fn prometheus() -> impl IntoResponse {
    match METRICS.get() {
        Some(handle) => (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], handle.render()),
        None => (StatusCode::NOT_FOUND, [("content-type", "text/plain")], "no metrics recorder installed\n".to_owned()),
    }
}

async fn health(State(service): State<Service>) -> impl IntoResponse {
    let status = service.dict.status();
    let body = json!({
        "version": status.version,
        "hints": format!("{:?}", status.hints),
        "last_error": status.last_error.as_ref().map(ToString::to_string),
        "staleness_ms": status.staleness().as_millis().min(u128::from(u64::MAX)) as u64,
        "from_backup": status.from_backup,
        "last_success_ms_ago": status.last_success.map(|at| at.elapsed().as_millis() as u64),
    });
    let code = if status.failing_since.is_some() || status.from_backup {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body))
}

#[allow(dead_code)] // The end-to-end tests include this file for `open` and `router` only.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let default_file = std::env::temp_dir().join("durable-flags-service.db");
    let url = std::env::var("DURABLE_URL").unwrap_or_else(|_| format!("sqlite://{}", default_file.display()));
    let namespace = std::env::var("DURABLE_NAMESPACE").unwrap_or_else(|_| "flags".into());
    let addr = std::env::var("DURABLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());

    install_metrics();
    let backup = std::env::var_os("DURABLE_BACKUP_FILE").map(std::path::PathBuf::from);
    let dict = open_with_backup(&url, &namespace, backup.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "flags service on http://{} (store {}, namespace {namespace})",
        listener.local_addr()?,
        durable::backend::redact_url(&url)
    );
    axum::serve(listener, router(dict))
        .with_graceful_shutdown(async {
            // Ctrl-C, or SIGTERM as orchestrators send it: requests in flight finish first.
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match terminate.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = term => {}
            }
            println!("shutting down");
        })
        .await?;
    Ok(())
}
