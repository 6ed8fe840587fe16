//! [`Lease`]: a dict's handle on a lease the store granted, and [`LeaseRequest`], how one is
//! asked for (see [`DurableDict::lease`]).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{Hint, HintStream, Version};
use crate::codec::Codec;
use crate::dict::DurableDict;
use crate::error::{Error, Result};
use crate::lease::{self, DEFAULT_LEASE_TTL, LeaseAnswer, LeaseInfo, LeaseOp, Token};
use crate::write_batch::WriteBatch;

/// How often a waiter asks again when the store pushes no hints (SQLite, MySQL).
const POLL_WITHOUT_HINTS: Duration = Duration::from_millis(20);
/// How often a waiter asks again when hints flow: a safety net only.
const POLL_WITH_HINTS: Duration = Duration::from_secs(1);

/// What a holder knows of its lease; see [`Lease::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Held: the store granted it and its time has not run out as far as this process can
    /// tell.
    Held {
        /// The expiry the store reported, by the store's clock.
        expires_at: SystemTime,
        /// The latest instant, by this process's monotonic clock, at which the lease is
        /// surely still live: when the request that granted or renewed it was sent, plus the
        /// time the store said it had left. The process's wall clock is never read.
        deadline: Instant,
    },
    /// Lost: its time ran out, a renewal or a fenced write found it gone, or another holder
    /// took the key. Writes under it fail with [`Error::LeaseLost`].
    Lost,
    /// Released by its holder.
    Released,
}

/// Asks for a lease on one key; made by [`DurableDict::lease`], granted by
/// [`LeaseRequest::acquire`] or by awaiting it. By default the lease lasts
/// [`DEFAULT_LEASE_TTL`] and the request waits as long as it takes.
#[must_use = "a lease request does nothing until it is awaited"]
pub struct LeaseRequest<'a, V, C> {
    dict: &'a DurableDict<V, C>,
    key: String,
    ttl: Duration,
    /// `None`: fail at once; `Some(None)`: wait for ever; `Some(Some(d))`: wait up to `d`.
    wait: Option<Option<Duration>>,
}

impl<'a, V: Send + Sync + 'static, C: Codec<V>> LeaseRequest<'a, V, C> {
    pub(crate) fn new(dict: &'a DurableDict<V, C>, key: &str) -> Self {
        Self { dict, key: key.to_owned(), ttl: DEFAULT_LEASE_TTL, wait: Some(None) }
    }

    /// How long the lease lasts (by the store's clock) unless renewed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Waits at most `timeout` for a lease another holder has, then fails with
    /// [`Error::Leased`].
    pub fn wait(mut self, timeout: Duration) -> Self {
        self.wait = Some(Some(timeout));
        self
    }

    /// Waits as long as it takes (the default).
    pub fn wait_forever(mut self) -> Self {
        self.wait = Some(None);
        self
    }

    /// Fails at once with [`Error::Leased`] when another holder has the key.
    pub fn no_wait(mut self) -> Self {
        self.wait = None;
        self
    }

    /// Acquires the lease. While another holder has it, waits (unless told not to) to be
    /// woken by the release's hint, or asks again when its time runs out; where the store
    /// pushes no hints, asks again every 20 ms.
    pub async fn acquire(self) -> Result<Lease<V, C>> {
        let Self { dict, key, ttl, wait } = self;
        dict.validate_key(&key)?;
        let backend = Arc::clone(dict.backend());
        let until = wait.map(|timeout| timeout.map(|timeout| Instant::now() + timeout));
        let mut hints: Option<HintStream> = None;
        let mut subscribed = false;
        loop {
            let sent = Instant::now();
            let info = match backend.lease(&key, LeaseOp::Acquire { ttl }).await? {
                LeaseAnswer::Granted(info) => return Ok(Lease::new(dict.clone(), key, ttl, info, sent)),
                LeaseAnswer::Held(info) => info,
                LeaseAnswer::Released { .. } => {
                    return Err(Error::store(backend.name(), "the store answered an acquire with a release"));
                }
            };
            let Some(until) = until else { return Err(lease::leased(&key, &info)) };
            if until.is_some_and(|until| Instant::now() >= until) {
                return Err(lease::leased(&key, &info));
            }
            if !subscribed {
                // Subscribe, then ask once more: a release after the subscription is hinted,
                // one before it is seen by the second ask.
                subscribed = true;
                hints = backend.watch().await.ok().flatten();
                continue;
            }
            let poll = if hints.is_some() { POLL_WITH_HINTS } else { POLL_WITHOUT_HINTS };
            let mut wake = Instant::now() + poll.min(info.remaining + Duration::from_millis(1));
            if let Some(until) = until {
                wake = wake.min(until);
            }
            tokio::select! {
                _ = released(&mut hints) => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

impl<'a, V: Send + Sync + 'static, C: Codec<V>> IntoFuture for LeaseRequest<'a, V, C> {
    type Output = Result<Lease<V, C>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.acquire())
    }
}

/// Waits for a hint that a lease may be free (a release, or hints resuming after a gap);
/// when the stream ends, hints are dropped and the waiter polls.
async fn released(hints: &mut Option<HintStream>) {
    let Some(stream) = hints.as_mut() else { return std::future::pending().await };
    loop {
        match stream.next().await {
            Some(Hint::LeaseReleased | Hint::Resumed) => return,
            Some(_) => continue,
            None => {
                *hints = None;
                return;
            }
        }
    }
}

/// A lease on one key, granted by the store: while it is live, only writes carrying its
/// [token](Lease::token) change the key — [`Lease::insert`], [`Lease::remove`],
/// [`Lease::compare_and_swap`], [`Lease::batch`] — and the store refuses everyone else's
/// with [`Error::Leased`]. Once it is lost (expired by the store's clock, taken over), writes
/// under it fail with [`Error::LeaseLost`] and change nothing.
///
/// Dropping a held lease releases it in the background (best effort: its expiry covers the
/// rest); [`Lease::release`] releases it and says whether it was still held.
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use durable_core::{DurableDict, Error, MemoryBackend};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durable_core::Result<()> {
/// let store = Arc::new(MemoryBackend::new("jobs"));
/// let jobs = DurableDict::<u64>::builder(store.clone()).build().await?;
/// let other = DurableDict::<u64>::builder(store).build().await?;
///
/// let lease = jobs.lease("migrations").ttl(Duration::from_secs(10)).await?;
/// lease.insert(1).await?;
/// // Nobody else acquires or writes the key meanwhile.
/// assert!(matches!(other.lease("migrations").no_wait().await, Err(Error::Leased { .. })));
/// assert!(matches!(other.insert("migrations", 2).await, Err(Error::Leased { .. })));
/// assert!(lease.release().await?);
/// other.insert("migrations", 2).await?;
/// # Ok(()) }
/// ```
pub struct Lease<V, C> {
    dict: DurableDict<V, C>,
    backend: Arc<dyn crate::Backend>,
    key: String,
    ttl: Duration,
    token: Token,
    holder: String,
    state: Arc<watch::Sender<LeaseState>>,
    expiry: tokio::task::AbortHandle,
}

impl<V, C> std::fmt::Debug for Lease<V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("token", &self.token)
            .field("holder", &self.holder)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Lease<V, C> {
    fn new(dict: DurableDict<V, C>, key: String, ttl: Duration, info: LeaseInfo, sent: Instant) -> Self {
        let state = LeaseState::Held { expires_at: info.expires_at, deadline: sent + info.remaining };
        let state = Arc::new(watch::channel(state).0);
        let expiry = tokio::spawn(run_out(Arc::clone(&state))).abort_handle();
        let backend = Arc::clone(dict.backend());
        Self { dict, backend, key, ttl, token: info.token, holder: info.holder, state, expiry }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fencing token: above every token granted on this key before.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The holder's name (the backend's actor name).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The expiry the store last reported, by the store's clock.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match &*self.state.borrow() {
            LeaseState::Held { expires_at, .. } => Some(*expires_at),
            _ => None,
        }
    }

    /// How long the lease surely has left, by this process's monotonic clock; zero once it
    /// is lost or released.
    pub fn remaining(&self) -> Duration {
        match &*self.state.borrow() {
            LeaseState::Held { deadline, .. } => deadline.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        }
    }

    /// Whether the lease is held as far as this process can tell.
    pub fn is_held(&self) -> bool {
        matches!(&*self.state.borrow(), LeaseState::Held { .. }) && !self.remaining().is_zero()
    }

    /// The lease's state as it changes: held (with each renewal), then lost or released.
    pub fn watch(&self) -> watch::Receiver<LeaseState> {
        self.state.subscribe()
    }

    /// Extends the lease by its ttl from now (the store's now). Fails with
    /// [`Error::LeaseLost`] when it is no longer live, and the lease is then lost.
    pub async fn renew(&self) -> Result<()> {
        let sent = Instant::now();
        let answer = self.backend.lease(&self.key, LeaseOp::Renew { token: self.token, ttl: self.ttl }).await;
        match self.noting_loss(answer)? {
            LeaseAnswer::Granted(info) => {
                self.state
                    .send_replace(LeaseState::Held { expires_at: info.expires_at, deadline: sent + info.remaining });
                Ok(())
            }
            other => Err(Error::store(self.backend.name(), format!("unexpected answer to a renewal: {other:?}"))),
        }
    }

    /// Releases the lease; `true` when it was still live (else it had expired or been taken
    /// over, and nothing changed in the store).
    pub async fn release(&self) -> Result<bool> {
        let answer = self.backend.lease(&self.key, LeaseOp::Release { token: self.token }).await?;
        self.state.send_replace(LeaseState::Released);
        Ok(matches!(answer, LeaseAnswer::Released { held: true }))
    }

    /// Stores `value` at the key under the lease.
    pub async fn insert(&self, value: V) -> Result<Version> {
        let applied = self.batch().insert(self.key.clone(), value).apply().await;
        Ok(self.noting_loss(applied)?.unwrap_or_else(|| self.dict.version()))
    }

    /// Removes the key under the lease; `None` when it was absent.
    pub async fn remove(&self) -> Result<Option<Version>> {
        let applied = self.batch().remove(self.key.clone()).apply().await;
        self.noting_loss(applied)
    }

    /// Sets the key to `new` (removes it when `None`) if its value is `expected`, under the
    /// lease. While the lease is live nobody else writes the key, so the comparison is made
    /// on a snapshot read from the store after the grant, and the write is fenced: if the
    /// lease was lost in between, it fails with [`Error::LeaseLost`] and writes nothing.
    pub async fn compare_and_swap(&self, expected: Option<&V>, new: Option<V>) -> Result<Option<Version>>
    where
        V: PartialEq,
    {
        self.dict.resync().await?;
        let snapshot = self.dict.snapshot();
        if snapshot.get(&self.key) != expected {
            return Err(Error::Conflict { key: self.key.as_str().into() });
        }
        let batch = match new {
            Some(value) => self.batch().insert(self.key.clone(), value),
            None => self.batch().remove(self.key.clone()),
        };
        self.noting_loss(batch.apply().await)
    }

    /// A batch carrying the lease's token: it may write this key (and any key without a
    /// live lease) as one mutation.
    pub fn batch(&self) -> WriteBatch<'_, V, C> {
        self.dict.batch().fence(self.key.clone(), self.token)
    }

    /// Marks the lease lost when `result` says so.
    fn noting_loss<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(Error::LeaseLost { key, .. }) = &result
            && key.0 == self.key
        {
            self.state.send_replace(LeaseState::Lost);
        }
        result
    }
}

impl<V, C> Drop for Lease<V, C> {
    fn drop(&mut self) {
        self.expiry.abort();
        if !matches!(&*self.state.borrow(), LeaseState::Held { .. }) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let backend = Arc::clone(&self.backend);
            let (key, token) = (std::mem::take(&mut self.key), self.token);
            runtime.spawn(async move {
                if let Err(err) = backend.lease(&key, LeaseOp::Release { token }).await {
                    tracing::debug!(error = %err, "durable: releasing a dropped lease failed; it expires on its own");
                }
            });
        }
    }
}

/// Marks the lease lost when its deadline passes without a renewal.
async fn run_out(state: Arc<watch::Sender<LeaseState>>) {
    let mut changes = state.subscribe();
    loop {
        let LeaseState::Held { deadline, .. } = *changes.borrow_and_update() else { return };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                state.send_if_modified(|now| match now {
                    LeaseState::Held { deadline: current, .. } if *current == deadline => {
                        *now = LeaseState::Lost;
                        true
                    }
                    _ => false,
                });
            }
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}
