//! `SyncLayer` (feature `tower`): sync once per request, and hand the request one snapshot.
//!
//! Before each request the layer syncs the dict — free while change hints are healthy and
//! nothing changed (then the layer adds no boxed future and no await of its own, through
//! [`DurableDict::fresh_snapshot`]), otherwise a [`DurableDict::sync`]: one cheap round trip,
//! shared by all concurrent requests — and puts the dict's [`Snapshot`] into the request's
//! extensions, so every read
//! during the request sees one version. It is a plain `tower::Layer` over `http` requests,
//! so it serves axum, tonic and hyper alike; with the `axum` feature, handlers take the
//! snapshot as a [`crate::Flags`] argument.
//!
//! When the store cannot be reached the layer follows its [`OutagePolicy`]: serve the last
//! good snapshot (the default; the dict logs the outage once), answer 503, or serve it only
//! while it is younger than a maximum staleness. A sync that goes to the store is
//! recorded in a `durable.sync` span, its latency in the `latency_us` field.
//!
//! ```
//! use std::time::Duration;
//! use durable::{DurableDict, MemoryBackend, OutagePolicy, SyncLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> durable::Result<()> {
//! let flags = DurableDict::<bool>::builder(std::sync::Arc::new(MemoryBackend::new("flags")))
//!     .autosync(false)
//!     .build()
//!     .await?;
//! let layer = SyncLayer::new(flags)
//!     .outage_policy(OutagePolicy::FailOpenFor(Duration::from_secs(300)))
//!     .skip_paths(["/health", "/static/"]);
//! # let _ = layer; Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Either};
use http::{Request, Response, StatusCode};
use tracing::Instrument;

use crate::{Codec, DurableDict, Json, Layered, Snapshot};

/// What a [`SyncLayer`] syncs: a dict, or a layered view of several.
trait Source<V>: Send + Sync {
    fn fresh_snapshot(&self) -> Option<Snapshot<V>>;
    fn sync(&self) -> BoxFuture<'_, durable_core::Result<()>>;
    fn snapshot(&self) -> Snapshot<V>;
    fn staleness(&self) -> Duration;
}

impl<V: Send + Sync + 'static, C: Codec<V>> Source<V> for DurableDict<V, C> {
    fn fresh_snapshot(&self) -> Option<Snapshot<V>> {
        DurableDict::fresh_snapshot(self)
    }
    fn sync(&self) -> BoxFuture<'_, durable_core::Result<()>> {
        DurableDict::sync(self).map(|result| result.map(drop)).boxed()
    }
    fn snapshot(&self) -> Snapshot<V> {
        DurableDict::snapshot(self)
    }
    fn staleness(&self) -> Duration {
        self.status().staleness()
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Source<V> for Layered<V, C> {
    fn fresh_snapshot(&self) -> Option<Snapshot<V>> {
        Layered::fresh_snapshot(self)
    }
    fn sync(&self) -> BoxFuture<'_, durable_core::Result<()>> {
        Layered::sync(self).boxed()
    }
    fn snapshot(&self) -> Snapshot<V> {
        Layered::snapshot(self)
    }
    fn staleness(&self) -> Duration {
        Layered::staleness(self)
    }
}

/// What the layer does when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutagePolicy {
    /// Serve the last good snapshot, however old (the default): a flag store never takes
    /// the service down.
    #[default]
    FailOpen,
    /// Answer 503 Service Unavailable.
    FailClosed,
    /// Serve the last good snapshot while the dict is at most this stale, then answer 503.
    FailOpenFor(Duration),
}

type Skip = Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>;

/// A `tower::Layer` that syncs a [`DurableDict`] (or a [`Layered`] view: every layer)
/// before each request; see the module docs.
pub struct SyncLayer<V, C = Json> {
    dict: Arc<dyn Source<V>>,
    policy: OutagePolicy,
    skip: Option<Skip>,
    codec: std::marker::PhantomData<fn() -> C>,
}

impl<V, C> Clone for SyncLayer<V, C> {
    fn clone(&self) -> Self {
        Self { dict: Arc::clone(&self.dict), policy: self.policy, skip: self.skip.clone(), codec: self.codec }
    }
}

impl<V, C> fmt::Debug for SyncLayer<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncLayer").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> SyncLayer<V, C> {
    /// Syncs `dict` before every request, failing open.
    pub fn new(dict: DurableDict<V, C>) -> Self {
        Self { dict: Arc::new(dict), policy: OutagePolicy::default(), skip: None, codec: std::marker::PhantomData }
    }

    /// Syncs every layer of `view` before every request (one `stat` per overrides file
    /// when nothing else needs a trip), failing open; handlers read the merged view as
    /// [`crate::Flags`] (which layer answered a key: [`Layered::layered_snapshot`]).
    pub fn layered(view: Layered<V, C>) -> Self {
        Self { dict: Arc::new(view), policy: OutagePolicy::default(), skip: None, codec: std::marker::PhantomData }
    }

    /// What to do when the store cannot be reached (default [`OutagePolicy::FailOpen`]).
    pub fn outage_policy(mut self, policy: OutagePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Requests for which `skip` is true are passed through without a sync (and without a
    /// snapshot in their extensions): health checks, static assets.
    pub fn skip_when(mut self, skip: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static) -> Self {
        self.skip = Some(Arc::new(skip));
        self
    }

    /// Skips requests whose path equals one of `paths`, or starts with one that ends in `/`.
    pub fn skip_paths<I, P>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let paths: Vec<String> = paths.into_iter().map(Into::into).collect();
        self.skip_when(move |parts| {
            let path = parts.uri.path();
            paths.iter().any(|p| path == p || (p.ends_with('/') && path.starts_with(p.as_str())))
        })
    }
}

impl<S, V, C> tower::Layer<S> for SyncLayer<V, C> {
    type Service = SyncService<S, V, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SyncService {
            inner,
            dict: Arc::clone(&self.dict),
            policy: self.policy,
            skip: self.skip.clone(),
            codec: self.codec,
        }
    }
}

/// The service [`SyncLayer`] wraps around another.
pub struct SyncService<S, V, C = Json> {
    inner: S,
    dict: Arc<dyn Source<V>>,
    policy: OutagePolicy,
    skip: Option<Skip>,
    codec: std::marker::PhantomData<fn() -> C>,
}

impl<S: Clone, V, C> Clone for SyncService<S, V, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            dict: Arc::clone(&self.dict),
            policy: self.policy,
            skip: self.skip.clone(),
            codec: self.codec,
        }
    }
}

impl<S, V, C, B, ResBody> tower::Service<Request<B>> for SyncService<S, V, C>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    V: Send + Sync + 'static,
    C: Codec<V>,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    /// The inner service's own future when the sync was free (hints healthy, nothing
    /// changed: the common case, with no allocation of the layer's own); a boxed future
    /// that syncs first otherwise.
    type Future = Either<S::Future, BoxFuture<'static, Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(skip) = &self.skip {
            let (parts, body) = request.into_parts();
            let skipped = skip(&parts);
            request = Request::from_parts(parts, body);
            if skipped {
                return Either::Left(self.inner.call(request));
            }
        }
        if let Some(snapshot) = self.dict.fresh_snapshot() {
            request.extensions_mut().insert(snapshot);
            return Either::Left(self.inner.call(request));
        }
        // The clone is not driven to readiness: take the one that is (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (dict, policy) = (Arc::clone(&self.dict), self.policy);
        Either::Right(Box::pin(async move {
            match sync_for_request(&*dict, policy).await {
                Ok(snapshot) => {
                    request.extensions_mut().insert(snapshot);
                    inner.call(request).await
                }
                Err(status) => {
                    let mut response = Response::new(ResBody::default());
                    *response.status_mut() = status;
                    Ok(response)
                }
            }
        }))
    }
}

/// Syncs and returns the request's snapshot, or the status to answer with instead.
async fn sync_for_request<V: Send + Sync + 'static>(
    dict: &dyn Source<V>,
    policy: OutagePolicy,
) -> Result<Snapshot<V>, StatusCode> {
    let span = tracing::debug_span!("durable.sync", latency_us = tracing::field::Empty, ok = tracing::field::Empty);
    let started = Instant::now();
    let result = dict.sync().instrument(span.clone()).await;
    span.record("latency_us", started.elapsed().as_micros() as u64);
    span.record("ok", result.is_ok());
    if result.is_err() {
        // The dict has logged the outage (once) and keeps its last good snapshot.
        let serve = match policy {
            OutagePolicy::FailOpen => true,
            OutagePolicy::FailClosed => false,
            OutagePolicy::FailOpenFor(max) => dict.staleness() <= max,
        };
        if !serve {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    Ok(dict.snapshot())
}
