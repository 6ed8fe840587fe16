//! The admin page: three files embedded in the binary (no build step), and `/whoami`, which
//! tells the page what its token allows.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::Settings;
use super::auth::{Access, Tokens};

/// Scripts, styles and connections from this server only; no inline script or style, no
/// frames, no forms posting anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

pub fn routes<S: Clone + Send + Sync + 'static>(settings: Arc<Settings>, tokens: Arc<Tokens>) -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin/") }))
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/admin/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/admin/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/whoami", get(whoami))
        .with_state((settings, tokens))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)], body)
        .into_response()
}

/// What the presented token (if any) allows, and what the page should show.
async fn whoami(
    State((settings, tokens)): State<(Arc<Settings>, Arc<Tokens>)>,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let (access, name) = match tokens.access(&headers) {
        Access::Anonymous => ("anonymous", None),
        Access::Invalid => ("invalid", None),
        Access::Read(name) => ("read", Some(name)),
        Access::Admin(name) => ("admin", Some(name)),
    };
    // Where the flags live is for those who may read them.
    let shown = !settings.reads_need_token || name.is_some();
    Json(json!({
        "access": access,
        "name": name,
        "writable": settings.writable,
        "read_only": settings.read_only,
        "reads_need_token": settings.reads_need_token,
        "environment": settings.environment,
        "namespace": shown.then_some(&settings.namespace),
        "store": shown.then_some(&settings.store),
    }))
}
