//! `durable serve`: the flags service — a JSON API, OFREP and an admin page over one
//! namespace, with bearer tokens, Prometheus metrics, health and readiness, and graceful
//! shutdown on SIGTERM and Ctrl-C.
//!
//! The process listens at once; the dict opens in the background (retrying while the store
//! is down and no backup file stands in), and until it has, `/ready` and the API answer
//! 503 while `/health`, `/metrics` and the page answer.

mod api;
mod auth;
mod config;
mod page;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

pub use config::ServeArgs;
use config::{Config, LogFormat};

use crate::CliError;

/// What the page and `/whoami` show of the configuration (no secret in it).
#[derive(Debug)]
pub struct Settings {
    pub namespace: String,
    pub store: String,
    pub read_only: bool,
    pub environment: Option<String>,
    pub writable: bool,
    pub reads_need_token: bool,
}

/// Runs the service until SIGTERM or Ctrl-C, then drains requests in flight and returns.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let config = Config::load(args)?;
    init_logging(config.log_format);
    let prometheus = match config.metrics {
        true => Some(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|err| CliError::Input(format!("metrics: {err}")))?,
        ),
        false => None,
    };
    let settings = Arc::new(Settings {
        namespace: config.namespace.clone(),
        store: durable::backend::redact_url(&config.url),
        read_only: config.read_only,
        environment: config.environment.clone(),
        writable: !config.read_only && config.tokens.has_admin(),
        reads_need_token: config.tokens.reads_need_token(),
    });
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|err| CliError::Input(format!("cannot listen on {}: {err}", config.addr)))?;
    let addr = listener.local_addr().map_err(|err| CliError::Input(err.to_string()))?;
    // The first line on stdout, for scripts and tests that asked for port 0.
    println!("durable serve: listening on http://{addr} (page: http://{addr}/admin/)");
    tracing::info!(
        store = %settings.store, namespace = %settings.namespace, read_only = settings.read_only,
        writes = settings.writable, read_tokens = settings.reads_need_token, "serving"
    );
    if !settings.writable && !settings.read_only {
        tracing::warn!("no admin token is set (DURABLE_ADMIN_TOKENS or --admin-tokens-file): every write is refused");
    }

    let (stop, stopping) = watch::channel(false);
    let gate: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
    let tokens = Arc::new(config.tokens);
    let page = page::routes(Arc::clone(&settings), Arc::clone(&tokens));
    let opener = {
        let (gate, settings, stopping) = (Arc::clone(&gate), Arc::clone(&settings), stopping.clone());
        let open = Open {
            url: config.url,
            backup_file: config.backup_file,
            metrics: config.metrics,
            count_evaluations: config.count_evaluations,
            request_timeout: config.request_timeout,
        };
        tokio::spawn(async move {
            let app = open.until_open(settings, stopping).await;
            let _ = gate.set(api_router(app, tokens, open.request_timeout));
        })
    };
    let router = outer_router(Outer { gate, page, prometheus, stopping: stopping.clone() });

    let shutdown = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: requests in flight finish first");
        println!("durable serve: shutting down");
        let _ = stop.send(true);
    };
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown);
    let mut stopping = stopping;
    let deadline = async {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    let outcome = tokio::select! {
        outcome = served => outcome.map_err(|err| CliError::Input(format!("serving: {err}"))),
        () = deadline => Err(CliError::Input(format!(
            "requests were still in flight {:?} after the shutdown began", config.shutdown_timeout
        ))),
    };
    opener.abort();
    outcome?;
    tracing::info!("stopped");
    Ok(())
}

/// How the dict is opened.
struct Open {
    url: String,
    backup_file: Option<std::path::PathBuf>,
    metrics: bool,
    count_evaluations: bool,
    request_timeout: Duration,
}

impl Open {
    /// Opens the dict, retrying (with backoff, up to 10 s apart) until it opens or the
    /// service stops.
    async fn until_open(&self, settings: Arc<Settings>, stopping: watch::Receiver<bool>) -> api::App {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.open(&settings.namespace, settings.read_only).await {
                Ok(dict) => {
                    let status = dict.status();
                    tracing::info!(version = status.version, from_backup = status.from_backup, "ready");
                    let flags = durable_flags::Flags::new(dict.clone())
                        .plain_values(true)
                        .count_evaluations(self.count_evaluations);
                    return api::App { dict, flags: Arc::new(flags), settings, stopping, opened: Instant::now() };
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?wait, "the store cannot be opened yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn open(&self, namespace: &str, read_only: bool) -> durable::Result<api::FlagDict> {
        let backend = match &self.backup_file {
            Some(_) => durable::connect_lazy(&self.url, namespace)?,
            None => durable::connect(&self.url, namespace).await?,
        };
        let mut builder = durable::DurableDict::builder(backend)
            .autosync(false)
            .background_refresh(true)
            .poll_interval(Duration::from_secs(1))
            .read_only(read_only);
        if self.metrics {
            builder = builder.metrics(namespace);
        }
        if let Some(path) = &self.backup_file {
            builder = builder.backup_file(path);
        }
        builder.build().await
    }
}

/// The API once the dict is open: guarded by tokens, synced per request, with a timeout
/// (the event stream has none: it lasts as long as the page).
fn api_router(app: api::App, tokens: Arc<auth::Tokens>, timeout: Duration) -> Router {
    let dict = app.dict.clone();
    let (requests, streams) = api::routes(app);
    let requests = requests.layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout));
    requests
        .merge(streams)
        .layer(durable::SyncLayer::new(dict).skip_paths(["/events"]))
        .layer(axum::middleware::from_fn_with_state(tokens, auth::guard))
}

struct Outer {
    gate: Arc<OnceLock<Router>>,
    page: Router<Arc<OnceLock<Router>>>,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    stopping: watch::Receiver<bool>,
}

/// What answers before the dict is open too: health, readiness, metrics, the page; the
/// rest goes to the API once it is there.
fn outer_router(outer: Outer) -> Router {
    let Outer { gate, page, prometheus, stopping } = outer;
    let ready_gate = Arc::clone(&gate);
    Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "alive" })) }))
        .route(
            "/ready",
            get(move || {
                let (gate, stopping) = (Arc::clone(&ready_gate), stopping.clone());
                async move { ready(&gate, &stopping) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let prometheus = prometheus.clone();
                async move {
                    match prometheus {
                        Some(handle) => {
                            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
                        }
                        None => {
                            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "metrics are off\n".into())
                        }
                    }
                }
            }),
        )
        .merge(page)
        .fallback(dispatch)
        .with_state(gate)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
}

fn ready(gate: &OnceLock<Router>, stopping: &watch::Receiver<bool>) -> Response {
    if *stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "why": "shutting down" })))
            .into_response();
    }
    match gate.get() {
        Some(_) => Json(json!({ "ready": true })).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "why": "the store is not open yet" })))
            .into_response(),
    }
}

/// Hands a request to the API once the dict is open; 503 before.
async fn dispatch(State(gate): State<Arc<OnceLock<Router>>>, request: Request) -> Response {
    match gate.get() {
        Some(api) => match api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => {
            let body = Json(json!({ "error": "not ready: the store is not open yet" }));
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], body).into_response()
        }
    }
}

/// Ctrl-C, or SIGTERM as orchestrators send it.
async fn wait_for_signal() {
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
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
