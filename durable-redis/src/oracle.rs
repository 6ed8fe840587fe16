//! [`VersionOracle`]: the data in one store, the version and the change hints in Redis —
//! durabledict's `ModelDict` with its cache as the version oracle.
//!
//! ```no_run
//! # async fn demo() -> durable_core::Result<()> {
//! use std::sync::Arc;
//! use durable_redis::VersionOracle;
//! # let mysql: Arc<dyn durable_core::Backend> = unimplemented!();
//! // `mysql`: any backend, e.g. `durable::connect("mysql://…", "flags").await?`.
//! let flags = VersionOracle::connect(mysql, "redis://127.0.0.1:6379", "flags").await?;
//! # Ok(()) }
//! ```
//!
//! - After each write the data store acknowledged, the oracle sets the Redis key
//!   `<namespace>:oracle` to the write's version (only ever up) and publishes it on
//!   `<namespace>:oracle:changes`, in one script. Dicts subscribe to that channel: MySQL and
//!   SQLite, which push nothing, get hints, and a hinted dict's `sync()` asks nothing.
//! - `last_updated()` — what a polled sync asks — is a Redis `GET` instead of a query of the
//!   data store, and the data store is asked itself at least every `verify_every` (1 s by
//!   default): a write made without the oracle, or whose oracle update failed, is seen
//!   within that.
//! - **The oracle is only a hint** (invariant 3). A key that vanished (eviction,
//!   `FLUSHALL`, a restart without persistence) or went backwards sends the caller to the
//!   data store, whose version then seeds the key again; Redis down sends every call to
//!   the data store (and tries Redis again a second later) — writes and syncs go on; only
//!   the hints stop, and dicts poll until they come back. Nothing is ever read from Redis
//!   but a version: the data, deltas and full loads come from the data store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::{
    Backend, Batch, Changes, Durables, Error, Hint, HintStream, JournalPage, JournalRecord, LeaseAnswer, LeaseOp,
    Redactor, RefusalProbe, Result, Version,
};
use futures::StreamExt;
use redis::aio::ConnectionManager;

use crate::connection::map_error;

/// How often the data store is asked for its version even while the oracle answers.
pub const DEFAULT_VERIFY_EVERY: Duration = Duration::from_secs(1);
/// How long one oracle request may take before the data store is asked instead.
pub const DEFAULT_ORACLE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is left alone after it failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

const PUBLISH: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1";

/// A backend whose version and hints live in Redis beside another backend's data; see the
/// module docs.
pub struct VersionOracle {
    inner: Arc<dyn Backend>,
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    key: String,
    channel: String,
    probe: RefusalProbe,
    redactor: Redactor,
    timeout: Duration,
    verify_every: Duration,
    publish: redis::Script,
    state: Mutex<State>,
    shown: String,
}

#[derive(Default)]
struct State {
    /// When the data store's version was last read.
    verified_at: Option<Instant>,
    /// The highest version the oracle or the data store said since then.
    known: Version,
    /// Redis is not asked before this (it failed).
    resting_until: Option<Instant>,
}

impl std::fmt::Debug for VersionOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionOracle").field("at", &self.shown).finish()
    }
}

impl VersionOracle {
    /// The oracle at `redis_url` for `namespace` in front of `inner` (the data store), with
    /// the defaults. Redis need not be up: until it is, every call goes to `inner`.
    pub async fn connect(inner: Arc<dyn Backend>, redis_url: &str, namespace: &str) -> Result<Self> {
        Self::with_options(inner, redis_url, namespace, DEFAULT_VERIFY_EVERY, DEFAULT_ORACLE_TIMEOUT)
    }

    /// As [`connect`](Self::connect), asking the data store at least every `verify_every`
    /// and giving each oracle request `timeout`.
    pub fn with_options(
        inner: Arc<dyn Backend>,
        redis_url: &str,
        namespace: &str,
        verify_every: Duration,
        timeout: Duration,
    ) -> Result<Self> {
        crate::validate_namespace(namespace)?;
        let redactor = Redactor::new(redis_url);
        let client = redis::Client::open(redis_url).map_err(|err| Error::InvalidUrl {
            url: durable_core::redact_url(redis_url),
            reason: redactor.scrub(&err.to_string()),
        })?;
        let shown = format!("oracle({}, {})", durable_core::redact_url(redis_url), inner.describe());
        Ok(Self {
            inner,
            client,
            connection: tokio::sync::Mutex::new(None),
            key: format!("{namespace}:oracle"),
            channel: format!("{namespace}:oracle:changes"),
            probe: RefusalProbe::from_url(crate::NAME, redis_url, 6379),
            redactor,
            timeout,
            verify_every,
            publish: redis::Script::new(PUBLISH),
            state: Mutex::new(State::default()),
            shown,
        })
    }

    /// The data store behind the oracle.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn resting(&self) -> bool {
        self.state().resting_until.is_some_and(|until| Instant::now() < until)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the oracle's state")
    }

    /// Runs `call` on the Redis connection (made on first use, within the timeout); a
    /// failure leaves Redis alone for a second (but for calls `despite_rest`).
    async fn oracle<T: Send>(
        &self,
        operation: &'static str,
        despite_rest: bool,
        call: impl for<'c> FnOnce(&'c mut ConnectionManager) -> futures::future::BoxFuture<'c, redis::RedisResult<T>> + Send,
    ) -> Result<T> {
        if self.resting() && !despite_rest {
            return Err(Error::StoreUnavailable {
                backend: crate::NAME,
                source: durable_core::Source::msg("the version oracle failed a moment ago"),
            });
        }
        let work = async {
            let mut connection = self.connection.lock().await;
            if connection.is_none() {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                let made = ConnectionManager::new_with_config(self.client.clone(), config).await;
                *connection = Some(made.map_err(|err| map_error(&self.redactor, err))?);
            }
            let manager = connection.as_mut().expect("connected just now");
            let answered = call(manager).await;
            if answered.is_err() {
                // Connected afresh next time: a manager whose server went away answers its
                // next command with the old error while it reconnects.
                *connection = None;
            }
            answered.map_err(|err| map_error(&self.redactor, err))
        };
        let result = self.probe.bound(operation, self.timeout, work).await;
        if let Err(err) = &result {
            tracing::debug!(oracle = %self.shown, %err, "version oracle unavailable: asking the data store");
            self.state().resting_until = Some(Instant::now() + RETRY_AFTER);
        }
        result
    }

    /// Tells the oracle of a version the data store acknowledged (best effort).
    async fn publish(&self, version: Version) {
        let (key, channel, script) = (self.key.clone(), self.channel.clone(), self.publish.clone());
        let published = self
            // Tried even while Redis rests after a failure: a write's hint is worth a try.
            .oracle("publish", true, |connection| {
                Box::pin(async move { script.key(key).key(channel).arg(version).invoke_async::<i64>(connection).await })
            })
            .await;
        if let Err(err) = published {
            tracing::warn!(oracle = %self.shown, version, %err, "version oracle not told of a write: readers see it at their next check of the data store");
        }
    }

    async fn published<T>(&self, written: Result<T>, version: impl Fn(&T) -> Option<Version>) -> Result<T> {
        if let Ok(done) = &written
            && let Some(version) = version(done)
        {
            self.publish(version).await;
        }
        written
    }

    /// The data store's version, remembered as checked now; the oracle is seeded with it.
    async fn verified(&self) -> Result<Version> {
        let version = self.inner.last_updated().await?;
        {
            let mut state = self.state();
            state.verified_at = Some(Instant::now());
            state.known = version;
        }
        if !self.resting() {
            let (key, version_text) = (self.key.clone(), version.to_string());
            let seeded = self
                .oracle("seed", false, |connection| {
                    Box::pin(async move {
                        // Only ever up: a writer may have set a newer one meanwhile.
                        redis::Script::new(
                            "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then \
                             redis.call('SET', KEYS[1], ARGV[1]) end return 1",
                        )
                        .key(key)
                        .arg(version_text)
                        .invoke_async::<i64>(connection)
                        .await
                    })
                })
                .await;
            if let Err(err) = seeded {
                tracing::debug!(oracle = %self.shown, %err, "version oracle not seeded");
            }
        }
        Ok(version)
    }
}

#[async_trait]
impl Backend for VersionOracle {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn validate_key(&self, key: &str) -> Result<()> {
        self.inner.validate_key(key)
    }

    fn max_value_size(&self) -> Option<usize> {
        self.inner.max_value_size()
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        let written = self.inner.persist(key, value).await;
        self.published(written, |version| Some(*version)).await
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        let written = self.inner.depersist(key).await;
        self.published(written, |version| *version).await
    }

    async fn durables(&self) -> Result<Durables> {
        self.inner.durables().await
    }

    async fn last_updated(&self) -> Result<Version> {
        let due = {
            let state = self.state();
            state.verified_at.is_none_or(|at| at.elapsed() >= self.verify_every)
        };
        if due || self.resting() {
            return self.verified().await;
        }
        let key = self.key.clone();
        let answered = self
            .oracle("last_updated", false, |connection| {
                Box::pin(async move { redis::cmd("GET").arg(key).query_async::<Option<u64>>(connection).await })
            })
            .await;
        match answered {
            Ok(Some(version)) if version >= self.state().known => {
                self.state().known = version;
                Ok(version)
            }
            // Vanished, gone backwards, unreadable, or Redis away: the data store says.
            _ => self.verified().await,
        }
    }

    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        let written = self.inner.apply(batch).await;
        self.published(written, |version| *version).await
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        let written = self.inner.pop(key).await;
        self.published(written, |popped| popped.as_ref().map(|(_, version)| *version)).await
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        let written = self.inner.setdefault(key, value).await;
        self.published(written, |(_, version)| *version).await
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.inner.changes_since(since).await
    }

    /// The oracle's channel: `Resumed` once subscribed, then `Changed` with each version
    /// published. It ends when the subscription's connection drops (the dict polls and
    /// watches again later).
    async fn watch(&self) -> Result<Option<HintStream>> {
        let (client, channel) = (self.client.clone(), self.channel.clone());
        let subscribing = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        let subscribing = async { subscribing.await.map_err(|err| map_error(&self.redactor, err)) };
        let messages = self.probe.bound("watch", self.timeout, subscribing).await?;
        let hints = futures::stream::once(async { Hint::Resumed }).chain(messages.map(|message| Hint::Changed {
            version: message.get_payload::<String>().ok().and_then(|payload| payload.parse().ok()),
        }));
        Ok(Some(Box::pin(hints)))
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        let written = self.inner.compare_and_swap(key, old, new).await;
        self.published(written, |version| *version).await
    }

    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        self.inner.journal(after, limit).await
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.inner.history(key, limit).await
    }

    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        self.inner.lease(key, op).await
    }

    /// Removes the data store's namespace, then the oracle's version key, and hints: the
    /// data store is the truth, and a version key left behind would only be found wrong.
    async fn remove_namespace(&self) -> Result<()> {
        self.inner.remove_namespace().await?;
        *self.state() = State::default();
        let (key, channel) = (self.key.clone(), self.channel.clone());
        self.oracle("remove_namespace", true, |connection| {
            Box::pin(async move {
                redis::pipe()
                    .atomic()
                    .del(key)
                    .ignore()
                    .publish(channel, "removed")
                    .ignore()
                    .query_async::<()>(connection)
                    .await
            })
        })
        .await
    }
}
