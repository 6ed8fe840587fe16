//! Feature flags in an axum service through OpenFeature: the flags live in a durable dict
//! (a SQLite file by default; any store by URL), `SyncLayer` syncs it once per request,
//! and each request pins one snapshot, so every flag a request evaluates through the
//! OpenFeature client reads one version.
//!
//! ```sh
//! cargo run -p durable-flags --example openfeature_axum
//! curl -H 'x-user: ada' -H 'x-plan: pro' http://127.0.0.1:3001/checkout
//! ```
//!
//! Environment: `DURABLE_URL`, `DURABLE_NAMESPACE` (default `flags`), `DURABLE_ADDR`
//! (default `127.0.0.1:3001`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use durable::{DurableDict, SyncLayer};
use durable_flags::{FlagSet, Flags, FlagsProvider};
use open_feature::{Client, EvaluationContext, OpenFeature};
use serde_json::{Value, json};

/// The flags a new namespace starts with.
pub fn starter_flags() -> FlagSet {
    FlagSet::from_json(
        &json!({"flags": {
            "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on",
                    {"fractional": [["on", 10], ["off", 90]]}]}},
            "checkout-title": {"state": "ENABLED", "variants": {"classic": "Checkout", "new": "Pay now"},
                "defaultVariant": "classic", "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "new"]}}
        }})
        .to_string(),
    )
    .expect("valid flags")
}

/// Opens the flags, writes the starter set into an empty namespace, and registers the
/// provider under `domain` (OpenFeature's name for a named provider).
pub async fn open(
    url: &str,
    namespace: &str,
    domain: &str,
) -> Result<(Arc<Flags>, Client), Box<dyn std::error::Error>> {
    let dict = DurableDict::builder(durable::connect(url, namespace).await?).autosync(false).build().await?;
    let flags = Arc::new(Flags::new(dict));
    if flags.snapshot().keys().next().is_none() {
        flags.import(&starter_flags(), false).await?;
    }
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider(domain, FlagsProvider::new(Arc::clone(&flags))).await;
    Ok((flags, api.create_named_client(domain)))
}

/// The routes: `SyncLayer` syncs the dict, then `pin` takes the request's snapshot.
pub fn router(flags: Arc<Flags>, client: Client) -> Router {
    Router::new()
        .route("/checkout", get(checkout))
        .with_state(Arc::new(client))
        .layer(middleware::from_fn_with_state(Arc::clone(&flags), pin))
        .layer(SyncLayer::new(flags.dict().clone()))
}

/// Runs the request with the flags' current snapshot pinned.
async fn pin(State(flags): State<Arc<Flags>>, request: Request, next: Next) -> Response {
    flags.snapshot().scope(next.run(request)).await
}

/// The user's OpenFeature context from the request headers.
fn context(headers: &HeaderMap) -> EvaluationContext {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let mut context = EvaluationContext::default();
    if let Some(user) = header("x-user") {
        context = context.with_targeting_key(user);
    }
    if let Some(plan) = header("x-plan") {
        context = context.with_custom_field("plan", plan);
    }
    context
}

async fn checkout(State(client): State<Arc<Client>>, headers: HeaderMap) -> Json<Value> {
    let context = context(&headers);
    let new_checkout = client.get_bool_value("new-checkout", Some(&context), None).await.unwrap_or(false);
    let title =
        client.get_string_value("checkout-title", Some(&context), None).await.unwrap_or_else(|_| "Checkout".into());
    Json(json!({"new_checkout": new_checkout, "title": title}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let default_file = std::env::temp_dir().join("durable-flags-openfeature.db");
    let url = std::env::var("DURABLE_URL").unwrap_or_else(|_| format!("sqlite://{}", default_file.display()));
    let namespace = std::env::var("DURABLE_NAMESPACE").unwrap_or_else(|_| "flags".into());
    let addr = std::env::var("DURABLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let (flags, client) = open(&url, &namespace, "durable").await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("OpenFeature example on http://{}/checkout", listener.local_addr()?);
    axum::serve(listener, router(flags, client))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
