//! The command connection (one server or a cluster), what every backend on one URL shares,
//! and how each operation runs: bounded by the timeout and the refusal probe, errors mapped
//! with passwords scrubbed.

use std::time::Duration;

use durable_core::{Error, Redactor, RefusalProbe, Result, Source};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::NAME;
use crate::backend::RedisBackend;
use crate::scripts::Scripts;

/// The command connection: redis-rs's `ConnectionManager` on one server, its cluster
/// connection on a cluster (which follows MOVED and failovers by itself).
#[derive(Clone)]
pub(crate) enum Commands {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Commands::Single(connection) => connection.req_packed_command(cmd),
            Commands::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Commands::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(connection) => connection.get_db(),
            Commands::Cluster(connection) => connection.get_db(),
        }
    }
}

/// One server, or a cluster (what the hint subscription needs to know).
pub(crate) enum Mode {
    Single { client: redis::Client },
    Cluster { nodes: Vec<String>, timeout: Duration },
}

pub(crate) struct Shared {
    /// The URL as given (password included; never shown): with the channel, it names the
    /// process-wide shared subscription.
    pub(crate) url: String,
    pub(crate) mode: Mode,
    pub(crate) commands: Commands,
    pub(crate) timeout: Duration,
    /// Bounds every operation: the timeout, and a refused server at once (a call that
    /// arrives while the connection manager reconnects would otherwise wait out its
    /// retries).
    pub(crate) probe: RefusalProbe,
    pub(crate) change_log_len: usize,
    pub(crate) journal: durable_core::JournalConfig,
    pub(crate) max_value_size: usize,
    pub(crate) redactor: Redactor,
    pub(crate) scripts: Scripts,
}

impl RedisBackend {
    /// Runs one command or script within the operation timeout, failing at once when the
    /// server refuses connections.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        let call = async { call.await.map_err(|err| map_error(&self.shared.redactor, err)) };
        self.shared.probe.bound(operation, self.shared.timeout, call).await
    }

    /// Invokes a mutation script with the standard KEYS and ARGV[1..7] (see `lua/commit.lua`),
    /// the keys whose leases it checks with the token it carries for each (`lua/fence.lua`),
    /// then `args`. A lease refusal comes back as [`Error::Leased`] or [`Error::LeaseLost`].
    pub(crate) async fn mutate(
        &self,
        operation: &'static str,
        script: &Script,
        reason: Option<&str>,
        leased: &[(&str, Option<durable_core::Token>)],
        args: &[&[u8]],
    ) -> Result<Value> {
        let mut invocation = script.prepare_invoke();
        let k = &self.keys;
        invocation.key(&k.hash).key(&k.counter).key(&k.log).key(&k.head).key(&k.floor);
        invocation.key(&k.journal).key(&k.journal_trimmed).key(&k.leases);
        invocation.arg(self.shared.change_log_len).arg(&k.channel);
        let journal = &self.shared.journal;
        if journal.is_on() {
            invocation.arg(journal.versions_kept().unwrap_or(0));
        } else {
            invocation.arg("");
        }
        let age = journal.kept_for().map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX).max(1));
        let every = journal.versions_kept().map_or(100, |keep| (keep / 10).max(1));
        invocation.arg(age).arg(journal.actor_name()).arg(reason.unwrap_or_default()).arg(every);
        invocation.arg(leased.len());
        for (key, token) in leased {
            invocation.arg(*key).arg(token.map(|token| token.to_string()).unwrap_or_default());
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.shared.commands.clone();
        let call = async {
            match invocation.invoke_async::<Value>(&mut connection).await {
                Err(err) if matches!(err.code(), Some("LEASED" | "LEASE_LOST")) => Ok(Err(lease_refusal(&err, leased))),
                other => other.map(Ok),
            }
        };
        self.run(operation, call).await?
    }
}

/// The error a `LEASED` or `LEASE_LOST` reply of `lua/fence.lua` stands for.
fn lease_refusal(err: &redis::RedisError, leased: &[(&str, Option<durable_core::Token>)]) -> Error {
    let detail = err.detail().unwrap_or_default();
    let words: Vec<&str> = detail.splitn(5, ' ').collect();
    let number = |at: usize| words.get(at).and_then(|word| word.parse::<i64>().ok());
    let parsed = (|| {
        let index = usize::try_from(number(0)?).ok()?.checked_sub(1)?;
        let key = leased.get(index)?.0;
        if err.code() == Some("LEASE_LOST") {
            return Some(Error::LeaseLost { key: key.into(), token: u64::try_from(number(1)?).ok()? });
        }
        let lease = durable_core::lease::StoredLease {
            token: u64::try_from(number(1)?).ok()?,
            holder: words.get(4).copied().unwrap_or_default().to_owned(),
            expires_ms: number(2)?,
        };
        Some(durable_core::lease::leased(key, &lease.info(number(3)?)))
    })();
    parsed.unwrap_or_else(|| unexpected(format!("unexpected lease refusal {detail:?}")))
}

/// What went wrong talking to Redis: the source of the `durable_core::Error` this crate
/// returns (`std::error::Error::source` downcasts to it). Its messages carry no password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// redis-rs reported an error: its kind, the server's error code when it sent one
    /// (`WRONGTYPE`, `NOSCRIPT`, ...), and its message with any password removed. (The
    /// driver's own error is not kept: its text may hold the URL's password.)
    #[error("{message}")]
    Client {
        /// What kind of failure.
        kind: redis::ErrorKind,
        /// The server's error code, if it sent one.
        code: Option<String>,
        /// The message, password removed.
        message: String,
    },
    /// Redis answered something this crate did not expect.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// Turns a redis error into the crate's error, passwords scrubbed.
pub(crate) fn map_error(secrets: &Redactor, err: redis::RedisError) -> Error {
    let unavailable =
        err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_timeout();
    let source = Source::new(RedisError::Client {
        kind: err.kind(),
        code: err.code().map(str::to_owned),
        message: secrets.scrub(&err.to_string()),
    });
    if unavailable { Error::StoreUnavailable { backend: NAME, source } } else { Error::Store { backend: NAME, source } }
}

/// A reply this crate did not expect, as the core's error.
pub(crate) fn unexpected(message: impl Into<String>) -> Error {
    Error::Store { backend: NAME, source: Source::new(RedisError::Unexpected(message.into())) }
}
