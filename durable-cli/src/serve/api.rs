//! The service's API over its dict: flags (read and written as JSON), the demo route,
//! OFREP, status, history and live change events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use durable::{DurableDict, Event, JournalItem};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Settings;

/// The service's dict: flag name → any JSON value.
pub type FlagDict = DurableDict<Value>;

/// What every API handler reads.
#[derive(Clone)]
pub struct App {
    pub dict: FlagDict,
    pub flags: Arc<durable_flags::Flags>,
    pub settings: Arc<Settings>,
    /// Turns `true` when the service shuts down (the event streams end).
    pub stopping: watch::Receiver<bool>,
    pub opened: Instant,
}

/// The API's routes (no guard, no sync: `super::router` puts them around).
pub fn routes(app: App) -> (Router, Router) {
    let flag = get(get_one);
    let flag = if app.settings.read_only {
        flag
    } else {
        flag.put(set_one).delete(delete_one).route_layer(tower_http::csrf::CsrfLayer::new())
    };
    let requests = Router::new()
        .route("/flags", get(list))
        .route("/flags/{key}", flag)
        .route("/hello", get(hello))
        .route("/status", get(status))
        .route("/history", get(history))
        .with_state(app.clone())
        .merge(durable_flags::ofrep::router(Arc::clone(&app.flags)));
    let streams = Router::new().route("/events", get(events)).with_state(app);
    (requests, streams)
}

async fn list(State(app): State<App>) -> Json<Value> {
    let snapshot = app.dict.snapshot();
    // Sorted by key, so the list reads the same on every call.
    let mut all: Vec<(&str, &Value)> = snapshot.iter().collect();
    all.sort_unstable_by_key(|(key, _)| *key);
    let all: serde_json::Map<String, Value> = all.into_iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    Json(json!({ "flags": all, "version": snapshot.version() }))
}

async fn get_one(State(app): State<App>, Path(key): Path<String>) -> Response {
    match app.dict.snapshot().get(&key) {
        Some(value) => Json(value.clone()).into_response(),
        None => not_found(&key),
    }
}

fn not_found(key: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no flag {key:?}") }))).into_response()
}

async fn set_one(State(app): State<App>, Path(key): Path<String>, body: axum::body::Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(err) => return bad_request(format!("the body is not JSON: {err}")),
    };
    match app.flags.put_value(&key, value).await {
        Ok(version) => Json(json!({ "version": version })).into_response(),
        Err(durable_flags::FlagError::Store(err)) => store_error(err),
        Err(refused) => bad_request(refused.to_string()),
    }
}

async fn delete_one(State(app): State<App>, Path(key): Path<String>) -> Response {
    match app.flags.remove(&key).await {
        Ok(Some(version)) => Json(json!({ "version": version })).into_response(),
        Ok(None) => not_found(&key),
        Err(durable_flags::FlagError::Store(err)) => store_error(err),
        Err(refused) => bad_request(refused.to_string()),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn store_error(err: durable::Error) -> Response {
    let status = match err {
        durable::Error::InvalidKey { .. } | durable::Error::ValueTooLarge { .. } => StatusCode::BAD_REQUEST,
        durable::Error::ReadOnly { .. } => StatusCode::FORBIDDEN,
        ref e if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(json!({ "error": err.to_string() }))).into_response()
}

/// The demo route: shouts when the flag `shout` is on for the `x-user` header's user.
async fn hello(State(app): State<App>, headers: axum::http::HeaderMap) -> &'static str {
    let mut context = durable_flags::Context::new();
    if let Some(user) = headers.get("x-user").and_then(|user| user.to_str().ok()) {
        context = context.targeting_key(user);
    }
    if app.flags.snapshot().boolean("shout", &context, false) { "HELLO, WORLD!" } else { "Hello, world." }
}

/// The dict's state, for the page's status panel and for people.
pub fn status_json(app: &App) -> Value {
    let status = app.dict.status();
    let snapshot = app.flags.snapshot();
    let broken: Vec<Value> =
        snapshot.broken().map(|(key, err)| json!({ "key": key, "error": err.to_string() })).collect();
    json!({
        "version": status.version,
        "keys": app.dict.snapshot().len(),
        "hints": format!("{:?}", status.hints),
        "staleness_ms": u64::try_from(status.staleness().as_millis()).unwrap_or(u64::MAX),
        "from_backup": status.from_backup,
        "last_error": status.last_error.as_ref().map(ToString::to_string),
        "failing_for_ms": status.failing_since.map(|since| since.elapsed().as_millis() as u64),
        "last_success_ms_ago": status.last_success.map(|at| at.elapsed().as_millis() as u64),
        "up_ms": app.opened.elapsed().as_millis() as u64,
        "broken": broken,
    })
}

async fn status(State(app): State<App>) -> Json<Value> {
    Json(status_json(&app))
}

#[derive(Deserialize)]
struct HistoryQuery {
    key: Option<String>,
    limit: Option<usize>,
}

/// The change journal, newest first: of one key (`?key=`), or of the namespace's last
/// versions.
async fn history(State(app): State<App>, Query(query): Query<HistoryQuery>) -> Response {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let items = match &query.key {
        Some(key) => app
            .dict
            .history(key, limit)
            .await
            .map(|records| records.into_iter().map(JournalItem::Record).collect::<Vec<_>>()),
        None => {
            let after = app.dict.version().saturating_sub(limit as u64);
            app.dict.journal(after).await.map(|mut items| {
                items.reverse();
                items.truncate(limit);
                items
            })
        }
    };
    match items {
        Ok(items) => {
            let entries: Vec<Value> = items.iter().map(|item| journal_json(&app.dict, item)).collect();
            Json(json!({ "entries": entries, "version": app.dict.version() })).into_response()
        }
        Err(err) => store_error(err),
    }
}

fn journal_json(dict: &FlagDict, item: &JournalItem) -> Value {
    match item {
        JournalItem::Record(record) => {
            let value = |bytes: &Option<bytes::Bytes>| match bytes {
                None => Value::Null,
                Some(bytes) => match dict.decode(&record.key, bytes) {
                    Ok(value) => value,
                    Err(_) => json!({ "undecodable": String::from_utf8_lossy(bytes) }),
                },
            };
            let time = record
                .time
                .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|since| since.as_millis() as u64);
            json!({
                "version": record.version,
                "key": record.key,
                "old": value(&record.old),
                "new": value(&record.new),
                "deleted": record.new.is_none(),
                "actor": record.actor,
                "reason": record.reason,
                "time_ms": time,
            })
        }
        JournalItem::Gap(gap) => json!({ "gap": { "after": gap.after, "before": gap.before, "key": gap.key } }),
    }
}

/// Server-sent events: `version` first (the snapshot's), then a `change` per changed key
/// (`{"key", "version"}`), `resync` when this stream fell behind (read everything again);
/// it ends when the service shuts down.
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribed before the version is read: a change landing in between is in the stream.
    let subscription = app.dict.subscribe();
    let first = SseEvent::default().event("version").data(json!({ "version": app.dict.version() }).to_string());
    let changes = subscription.map(|event| match event {
        Event::Changed(change) => SseEvent::default().event("change").data(
            json!({ "key": &*change.key, "version": change.version, "deleted": change.new.is_none() }).to_string(),
        ),
        Event::Undecodable { key, error } => SseEvent::default()
            .event("undecodable")
            .data(json!({ "key": &*key, "error": error.to_string() }).to_string()),
        Event::Lagged { missed } => SseEvent::default().event("resync").data(json!({ "missed": missed }).to_string()),
    });
    let mut stopping = app.stopping.clone();
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let stream = futures::stream::once(async { first }).chain(changes).map(Ok).take_until(stop);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
