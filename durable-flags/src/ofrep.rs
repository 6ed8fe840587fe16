//! The OpenFeature Remote Evaluation Protocol (OFREP) over [`Flags`]: an axum router an
//! OpenFeature SDK in any language with an OFREP provider reads flags from.
//!
//! - `POST /ofrep/v1/evaluate/flags/{key}` — one flag: `200` with `key`, `value`, `reason`,
//!   `variant`, `metadata`; `404` `FLAG_NOT_FOUND`; `400` `PARSE_ERROR`, `GENERAL` or
//!   `INVALID_CONTEXT`, with `errorCode` and `errorDetails`.
//! - `POST /ofrep/v1/evaluate/flags` — every flag, each a success or an error as above,
//!   with an `ETag`; a request whose `If-None-Match` names the current one gets `304`.
//!
//! The body is `{"context": {"targetingKey": "...", ...attributes}}` (empty: no context).
//! As flagd's OFREP service does, a flag that serves the caller's default (disabled, or no
//! default variant and no match) answers its reason without a value or variant, and the
//! SDK returns the caller's default.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use crate::error::ErrorCode;
use crate::eval::{Context, Resolution};
use crate::flags::{Flags, FlagsSnapshot};

/// The OFREP routes over `flags`, to merge into a service's router.
pub fn router(flags: Arc<Flags>) -> Router {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(single))
        .route("/ofrep/v1/evaluate/flags", post(bulk))
        .with_state(flags)
}

/// The request's context, or why it is not one.
fn context_of(body: &[u8]) -> Result<Context, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let request: Value = serde_json::from_slice(body).map_err(|err| format!("the body is not JSON: {err}"))?;
    let context = match request.get("context") {
        None | Some(Value::Null) => return Ok(Context::new()),
        Some(Value::Object(context)) => context,
        Some(_) => return Err("`context` is an object".into()),
    };
    let mut attributes = context.clone();
    let targeting_key = match attributes.remove("targetingKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key),
        Some(_) => return Err("`targetingKey` is a string".into()),
    };
    Ok(Context { targeting_key, attributes })
}

fn invalid_context(key: Option<&str>, details: String) -> Response {
    let mut body = json!({"errorCode": "INVALID_CONTEXT", "errorDetails": details, "metadata": {}});
    if let Some(key) = key {
        body["key"] = json!(key);
    }
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// One flag's answer: its status and JSON.
fn answer(key: &str, resolution: Resolution<Value>) -> (StatusCode, Value) {
    let metadata = Value::Object(resolution.metadata);
    if let Some((code, details)) = resolution.error {
        let status = if code == ErrorCode::FlagNotFound { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
        return (
            status,
            json!({"key": key, "errorCode": code.as_str(), "errorDetails": details, "metadata": metadata}),
        );
    }
    let mut body = Map::new();
    body.insert("key".into(), json!(key));
    if let Some(value) = resolution.value {
        body.insert("value".into(), value);
    }
    body.insert("reason".into(), json!(resolution.reason.as_str()));
    if let Some(variant) = resolution.variant {
        body.insert("variant".into(), json!(variant));
    }
    body.insert("metadata".into(), metadata);
    (StatusCode::OK, Value::Object(body))
}

async fn single(State(flags): State<Arc<Flags>>, Path(key): Path<String>, body: Bytes) -> Response {
    let context = match context_of(&body) {
        Ok(context) => context,
        Err(details) => return invalid_context(Some(&key), details),
    };
    let request: FlagsSnapshot = flags.pinned_or_current();
    let (status, body) = answer(&key, request.evaluate(&key, &context));
    (status, axum::Json(body)).into_response()
}

async fn bulk(State(flags): State<Arc<Flags>>, headers: HeaderMap, body: Bytes) -> Response {
    let context = match context_of(&body) {
        Ok(context) => context,
        Err(details) => return invalid_context(None, details),
    };
    let request = flags.pinned_or_current();
    let mut keys: Vec<&str> = request.keys().collect();
    keys.sort_unstable();
    let answers: Vec<Value> = keys.into_iter().map(|key| answer(key, request.evaluate(key, &context)).1).collect();
    let body = serde_json::to_vec(&json!({"flags": answers, "metadata": {}})).expect("JSON values serialize");
    // The answers themselves name the ETag: equal answers, equal tag (a new version that
    // changes nothing for this context keeps it).
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let etag_header = HeaderValue::from_str(&etag).expect("hex in quotes is a header value");
    let matched = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    if matched {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response();
    }
    (
        StatusCode::OK,
        [(header::ETAG, etag_header), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}
