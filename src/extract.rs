//! The axum extractor (feature `axum`): a handler takes the request's snapshot, put there by
//! [`crate::SyncLayer`], as a `Flags<V>` argument.
//!
//! ```
//! use durable::Flags;
//!
//! async fn checkout(flags: Flags<bool>) -> &'static str {
//!     if flags.get("new-checkout") == Some(&true) { "new checkout" } else { "old checkout" }
//! }
//! ```

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::Snapshot;

/// The request's snapshot of a `DurableDict<V, _>`: every read through it sees one version.
/// Dereferences to [`Snapshot<V>`].
pub struct Flags<V>(pub Snapshot<V>);

impl<V> Deref for Flags<V> {
    type Target = Snapshot<V>;

    fn deref(&self) -> &Snapshot<V> {
        &self.0
    }
}

/// The rejection when no [`crate::SyncLayer`] for this value type ran on the request
/// (not installed, or the request's path is skipped): a 500 that says so.
#[derive(Debug)]
pub struct MissingSyncLayer(&'static str);

impl IntoResponse for MissingSyncLayer {
    fn into_response(self) -> Response {
        let message = format!("no durable snapshot of `{}` on this request: is SyncLayer installed for it?", self.0);
        (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
    }
}

impl<S, V> FromRequestParts<S> for Flags<V>
where
    S: Send + Sync,
    V: Send + Sync + 'static,
{
    type Rejection = MissingSyncLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Snapshot<V>>() {
            Some(snapshot) => Ok(Flags(snapshot.clone())),
            None => Err(MissingSyncLayer(std::any::type_name::<V>())),
        }
    }
}
