//! `durable-sql`: the SQL backend of `durable` — SQLite, PostgreSQL and MySQL/MariaDB
//! through sqlx, with runtime queries (no build-time database).
//!
//! ```no_run
//! # async fn demo() -> durable_core::Result<()> {
//! use durable_sql::SqlBackend;
//! let flags = SqlBackend::connect("sqlite://flags.db", "flags").await?;
//! let pg = SqlBackend::builder("postgres://app@127.0.0.1/app")
//!     .table_prefix("myapp_")
//!     .connect("flags")
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! Three tables, created if missing by versioned migrations (the `<prefix>durable_schema`
//! table records the schema version; instances that start at once migrate one after the
//! other under PostgreSQL's `pg_advisory_xact_lock`, MySQL's `GET_LOCK` or SQLite's
//! `BEGIN IMMEDIATE`):
//!
//! | table | columns |
//! |---|---|
//! | `<prefix>durable_namespaces` | `namespace` (primary key), `version` (the dict version), `horizon` (see retention) |
//! | `<prefix>durable_entries` | `namespace`, `key` (primary key together), `value` (bytes, NULL in a tombstone), `version` (of the mutation that last touched the row), `tombstone` |
//!
//! plus an index on `durable_entries (namespace, version)` for deltas. On MySQL, namespaces
//! and keys are `VARBINARY` so they compare byte for byte (no case folding, no trailing-space
//! padding). The optional table prefix must be a plain identifier; every identifier is
//! quoted and every value is a bind parameter.
//!
//! # Atomicity and isolation
//!
//! Every mutation is one transaction that first bumps the namespace row (`INSERT ... ON
//! CONFLICT DO UPDATE` / `ON DUPLICATE KEY UPDATE`), which locks that row and so serializes
//! the writers of one namespace, then writes or tombstones the entry rows stamped with the
//! new version, then commits. A mutation that turns out to change nothing (removing an
//! absent key, a `setdefault` that finds its key, a compare-and-swap conflict) rolls back,
//! so the version does not move. PostgreSQL runs at its default READ COMMITTED, MySQL at
//! its default REPEATABLE READ (the snapshot is taken after the namespace row is locked),
//! SQLite in `BEGIN IMMEDIATE` transactions. Deadlocks, serialization failures and a busy
//! SQLite file are retried (with backoff) until the operation timeout.
//!
//! Reads are single statements, so each is one consistent snapshot in all three databases:
//! `durables()` and `changes_since()` join the namespace row with its entries, so the
//! version they report always belongs to the rows they return. `last_updated()` is one
//! primary-key lookup.
//!
//! # Deltas and tombstone retention
//!
//! A deletion leaves a tombstone row carrying its version, so `changes_since(v)` — rows of
//! the namespace with `version > v`, one indexed query — carries deletions too. Tombstones
//! are pruned once they are more than `tombstone_retention` mutations old (default 10,000),
//! and the namespace's `horizon` records up to where: a dict further behind than that gets
//! "too old" and reloads in full.
//!
//! # Change hints
//!
//! PostgreSQL: each mutation sends `NOTIFY` on the channel `<prefix>durable_changes` inside
//! its transaction (delivered at commit) with `"<version> <namespace>"`. Every dict of a
//! process listens through **one shared `LISTEN` connection** per database URL and channel,
//! however many dicts, backends or pools it has (tested with 50 dicts: one connection in
//! `pg_stat_activity`); each dict's stream keeps its own namespace's notifications, and the
//! connection closes with the last dict. When it is lost, every stream says `Interrupted`
//! (the dicts then ask the store on every `sync()`), the shared task reconnects within
//! 250 ms of the server answering and says `Resumed`, and each dict checks once. SQLite and
//! MySQL push nothing: `watch()` returns `None`, and dicts poll (see `DurableDict`'s
//! background refresh).
//!
//! # SQLite
//!
//! WAL journal, `synchronous = NORMAL`, a busy timeout equal to the operation timeout:
//! several OS processes can share one file, each seeing the others' writes at its next
//! `sync()`.
//!
//! # Failures
//!
//! Every operation, retries included, is bounded by the operation timeout (default 5 s):
//! it fails with `Error::Timeout`, or `Error::StoreUnavailable` when the database cannot be
//! reached — never hangs. Messages carry the URL with its password removed.

mod dialect;
mod error;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::{Backend, Changes, Durables, Error, HintStream, KeyChange, Redactor, RefusalProbe, Result, Version};
use sqlx::{AssertSqlSafe, Row};

use dialect::Statements;
pub use dialect::{Dialect, MAX_PREFIX_LEN, validate_prefix};
use error::Fail;

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("durable-sql needs at least one of the features `sqlite`, `postgres`, `mysql`");

/// Default bound on every operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of mutations a tombstone is kept for.
pub const DEFAULT_TOMBSTONE_RETENTION: u64 = 10_000;
/// Default largest value accepted (MySQL's default `max_allowed_packet` is 16 MiB).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 4 * 1024 * 1024;
/// Longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = durable_core::DEFAULT_MAX_KEY_LEN;

const BATCH_ROWS: usize = 500;

enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
}

/// Runs `$body` with `$p` bound to the concrete pool, once per compiled-in dialect.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            Pool::Postgres($p) => $body,
            #[cfg(feature = "mysql")]
            Pool::MySql($p) => $body,
        }
    };
}

fn sql(statement: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(statement))
}

/// Options for [`SqlBackend::builder`].
#[derive(Debug, Clone)]
pub struct SqlBackendBuilder {
    url: String,
    table_prefix: String,
    timeout: Duration,
    tombstone_retention: u64,
    max_connections: u32,
    max_value_size: usize,
}

impl SqlBackendBuilder {
    /// Prefix for the three table names (a plain identifier; default none).
    pub fn table_prefix(mut self, prefix: &str) -> Self {
        self.table_prefix = prefix.to_owned();
        self
    }

    /// Bound on every operation, connecting included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many mutations a tombstone is kept for (default 10,000, at least 1); dicts
    /// further behind reload in full.
    pub fn tombstone_retention(mut self, mutations: u64) -> Self {
        self.tombstone_retention = mutations.max(1);
        self
    }

    /// Connections in the pool (default 10; SQLite writers take turns whatever the size).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Largest encoded value accepted (default 4 MiB); bigger ones are refused before I/O.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Connects, creates or migrates the schema, and returns a backend on `namespace`.
    pub async fn connect(self, namespace: &str) -> Result<SqlBackend> {
        validate_namespace(namespace)?;
        let shared = Arc::new(Shared::connect(self).await?);
        Ok(SqlBackend { shared, namespace: namespace.to_owned() })
    }
}

/// Refuses namespaces that break [the common rule](durable_core::validate_namespace) or are
/// over [`MAX_NAMESPACE_LEN`] bytes (the schema's column).
pub fn validate_namespace(namespace: &str) -> Result<()> {
    durable_core::validate_namespace(namespace, MAX_NAMESPACE_LEN)
}

/// What every handle on one database shares: the pool and the statements.
struct Shared {
    pool: Pool,
    dialect: Dialect,
    statements: Statements,
    timeout: Duration,
    /// Bounds every operation: the timeout, and a refused server at once.
    probe: RefusalProbe,
    retention: i64,
    max_value_size: usize,
    secrets: Redactor,
    /// The URL as given (password included; never shown): with the channel, it names the
    /// process-wide shared LISTEN connection.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    url: String,
}

impl Shared {
    async fn connect(options: SqlBackendBuilder) -> Result<Self> {
        let secrets = Redactor::new(&options.url);
        let scheme = durable_core::scheme(&options.url).unwrap_or_default();
        let Some(dialect) = Dialect::of_scheme(&scheme) else {
            return Err(Error::InvalidUrl {
                url: secrets.url().to_owned(),
                reason: "expected a sqlite://, postgres://, postgresql://, mysql:// or mariadb:// URL".into(),
            });
        };
        let statements = Statements::new(dialect, &options.table_prefix)?;
        let timeout = options.timeout;
        let probe = RefusalProbe::new(dialect.name(), server_addrs(dialect, &options.url));
        // Opening can meet a busy database too (SQLite switching a new file to WAL while
        // another process does): retried like any operation, within the timeout.
        let connecting = async {
            let mut tries = 0u32;
            loop {
                match Self::open_pool(dialect, &options, &secrets).await {
                    Err(fail) if fail.is_retryable() => {
                        tries += 1;
                        tokio::time::sleep(backoff(tries)).await;
                    }
                    other => return other.map_err(|fail| error::map(&secrets, dialect.name(), fail)),
                }
            }
        };
        let pool = probe.bound("connect", timeout, connecting).await?;
        let shared = Self {
            pool,
            dialect,
            statements,
            timeout,
            probe,
            retention: i64::try_from(options.tombstone_retention).unwrap_or(i64::MAX),
            max_value_size: options.max_value_size,
            secrets,
            url: options.url.clone(),
        };
        shared.run("migrate", || shared.migrate()).await?;
        Ok(shared)
    }

    async fn open_pool(dialect: Dialect, options: &SqlBackendBuilder, secrets: &Redactor) -> Result<Pool, Fail> {
        let url = options.url.as_str();
        let bad_url = |err: sqlx::Error| {
            Fail::Core(Error::InvalidUrl { url: secrets.url().to_owned(), reason: secrets.scrub(&err.to_string()) })
        };
        let unavailable = Fail::Sql;
        match dialect {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => {
                use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
                let connect = SqliteConnectOptions::from_str(url)
                    .map_err(bad_url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(options.timeout);
                let pool = SqlitePoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.timeout)
                    .connect_with(connect)
                    .await
                    .map_err(unavailable)?;
                Ok(Pool::Sqlite(pool))
            }
            #[cfg(feature = "postgres")]
            Dialect::Postgres => {
                use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
                let connect = PgConnectOptions::from_str(url).map_err(bad_url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.timeout)
                    .connect_with(connect)
                    .await
                    .map_err(unavailable)?;
                Ok(Pool::Postgres(pool))
            }
            #[cfg(feature = "mysql")]
            Dialect::MySql => {
                use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
                let connect = MySqlConnectOptions::from_str(url).map_err(bad_url)?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.timeout)
                    .connect_with(connect)
                    .await
                    .map_err(unavailable)?;
                Ok(Pool::MySql(pool))
            }
            #[allow(unreachable_patterns)]
            other => Err(Fail::Core(Error::FeatureDisabled {
                scheme: scheme_of(other).to_owned(),
                feature: match other {
                    Dialect::Sqlite => "sqlite",
                    Dialect::Postgres => "postgres",
                    Dialect::MySql => "mysql",
                },
            })),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the operation timeout passes;
    /// deadlocks, serialization failures and busy databases are retried.
    async fn run<T, F, Fut>(&self, operation: &'static str, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let backend = self.dialect.name();
        let attempts = async {
            let mut tries = 0;
            loop {
                match attempt().await {
                    Ok(value) => return Ok(value),
                    Err(fail) if fail.is_retryable() => {
                        tries += 1;
                        tracing::debug!(backend, operation, tries, "durable-sql: retrying after a transient conflict");
                        tokio::time::sleep(backoff(tries)).await;
                    }
                    Err(fail) => return Err(error::map(&self.secrets, backend, fail)),
                }
            }
        };
        self.probe.bound(operation, self.timeout, attempts).await
    }

    async fn migrate(&self) -> Result<(), Fail> {
        let s = &self.statements;
        let migrations = s.migrations();
        let target = migrations.len() as i64;
        let (lock_id, lock_name) = s.migration_lock();
        with_pool!(&self.pool, pool => {
            let mut conn = pool.acquire().await?;
            let mut tx = match self.dialect {
                Dialect::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?,
                _ => sqlx::Connection::begin(&mut *conn).await?,
            };
            match self.dialect {
                Dialect::Postgres => {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock_id).execute(&mut *tx).await?;
                }
                Dialect::MySql => {
                    // DDL commits implicitly on MySQL: a session-level named lock guards it.
                    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 30)")
                        .bind(&lock_name)
                        .fetch_one(&mut *tx)
                        .await?;
                    if got != Some(1) {
                        return Err(Fail::Core(Error::store("mysql", "could not take the migration lock")));
                    }
                }
                Dialect::Sqlite => {}
            }
            let result = async {
                sqlx::query(AssertSqlSafe(s.create_schema_table())).execute(&mut *tx).await?;
                let current: Option<i64> = sqlx::query_scalar(AssertSqlSafe(s.read_schema_version()))
                    .fetch_optional(&mut *tx)
                    .await?;
                let current = current.unwrap_or(0);
                if current > target {
                    tracing::warn!(current, target, "durable-sql: the schema is newer than this version of durable knows");
                }
                for (index, statements) in migrations.iter().enumerate().skip(current.max(0) as usize) {
                    for statement in statements {
                        sqlx::query(AssertSqlSafe(statement.clone())).execute(&mut *tx).await?;
                    }
                    sqlx::query(sql(&s.write_schema_version())).bind(index as i64 + 1).execute(&mut *tx).await?;
                }
                Ok::<(), Fail>(())
            }
            .await;
            if self.dialect == Dialect::MySql {
                let _ = sqlx::query("SELECT RELEASE_LOCK(?)").bind(&lock_name).execute(&mut *tx).await;
            }
            result?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Pause before retry number `tries`: 4 ms doubling up to 128 ms. Retries go on until the
/// operation's timeout.
fn backoff(tries: u32) -> Duration {
    Duration::from_millis(2u64 << tries.clamp(1, 6))
}

/// The TCP address a server URL names, as sqlx reads it (defaults and `host=`/`port=`
/// parameters included), for the [`RefusalProbe`]; none for SQLite and Unix sockets.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(unused_variables))]
fn server_addrs(dialect: Dialect, url: &str) -> Vec<String> {
    let tcp = |host: &str, port: u16, socket: bool| {
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        (!socket && !host.starts_with('/')).then(|| format!("{host}:{port}"))
    };
    let addr = match dialect {
        #[cfg(feature = "postgres")]
        Dialect::Postgres => sqlx::postgres::PgConnectOptions::from_str(url)
            .ok()
            .and_then(|o| tcp(o.get_host(), o.get_port(), o.get_socket().is_some())),
        #[cfg(feature = "mysql")]
        Dialect::MySql => sqlx::mysql::MySqlConnectOptions::from_str(url)
            .ok()
            .and_then(|o| tcp(o.get_host(), o.get_port(), o.get_socket().is_some())),
        _ => None,
    };
    addr.into_iter().collect()
}

fn scheme_of(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgres",
        Dialect::MySql => "mysql",
    }
}

/// One namespace in a SQL database; see the crate docs. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct SqlBackend {
    shared: Arc<Shared>,
    namespace: String,
}

impl std::fmt::Debug for SqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBackend")
            .field("url", &self.shared.secrets.url())
            .field("namespace", &self.namespace)
            .field("tables", &self.shared.statements.entries_table)
            .finish()
    }
}

/// How a mutation ends: committed with its result, or rolled back (nothing changed).
enum Outcome<T> {
    Changed(T),
    Unchanged(T),
}

/// The body of one mutation transaction: begin (SQLite: `BEGIN IMMEDIATE`), bump the
/// namespace version, run `$body` (which sees `$tx` and `$version` and yields an
/// `Outcome`), then prune tombstones, notify and commit — or roll back when nothing changed.
macro_rules! mutation {
    ($backend:expr, $tx:ident, $version:ident, $s:ident, $ns:ident => $body:block) => {{
        let backend: &SqlBackend = $backend;
        let shared = &*backend.shared;
        let $s = &shared.statements;
        let $ns = backend.namespace.as_str();
        with_pool!(&shared.pool, pool => {
            let mut $tx = match shared.dialect {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            let row = if shared.dialect == Dialect::MySql {
                sqlx::query(sql(&$s.bump)).bind($ns).execute(&mut *$tx).await?;
                sqlx::query(sql(&$s.read_bump)).bind($ns).fetch_one(&mut *$tx).await?
            } else {
                sqlx::query(sql(&$s.bump)).bind($ns).fetch_one(&mut *$tx).await?
            };
            let $version: i64 = row.try_get(0)?;
            let horizon: i64 = row.try_get(1)?;
            let outcome: Outcome<_> = $body;
            match outcome {
                Outcome::Unchanged(value) => {
                    $tx.rollback().await?;
                    Ok(value)
                }
                Outcome::Changed(value) => {
                    let slack = (shared.retention / 10).max(1);
                    if $version - horizon >= shared.retention + slack {
                        let new_horizon = $version - shared.retention;
                        sqlx::query(sql(&$s.prune)).bind($ns).bind(new_horizon).execute(&mut *$tx).await?;
                        sqlx::query(sql(&$s.set_horizon)).bind(new_horizon).bind($ns).execute(&mut *$tx).await?;
                    }
                    if shared.dialect == Dialect::Postgres {
                        let payload = format!("{} {}", $version, $ns);
                        sqlx::query(sql(&$s.notify)).bind(&$s.channel).bind(payload).execute(&mut *$tx).await?;
                    }
                    $tx.commit().await?;
                    Ok(value)
                }
            }
        })
    }};
}

fn to_version(raw: i64) -> Result<Version, Fail> {
    Version::try_from(raw).map_err(|_| Fail::Core(Error::store("sql", format!("negative version {raw} in the store"))))
}

impl SqlBackend {
    /// Connects with default options; see [`SqlBackend::builder`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::builder(url).connect(namespace).await
    }

    /// Options: table prefix, timeout, tombstone retention, pool size, value size limit.
    pub fn builder(url: &str) -> SqlBackendBuilder {
        SqlBackendBuilder {
            url: url.to_owned(),
            table_prefix: String::new(),
            timeout: DEFAULT_TIMEOUT,
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            max_connections: 10,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
        }
    }

    /// Another namespace on the same database and pool.
    pub fn namespace(&self, namespace: &str) -> Result<Self> {
        validate_namespace(namespace)?;
        Ok(Self { shared: Arc::clone(&self.shared), namespace: namespace.to_owned() })
    }

    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// The LISTEN/NOTIFY channel hints travel on (PostgreSQL).
    pub fn channel(&self) -> &str {
        &self.shared.statements.channel
    }

    async fn upsert_once(&self, entries: &[(String, Bytes)]) -> Result<Version, Fail> {
        mutation!(self, tx, version, s, ns => {
            for chunk in entries.chunks(BATCH_ROWS) {
                let mut insert = sqlx::QueryBuilder::new(s.upsert_head.as_str());
                insert.push_values(chunk, |mut row, (key, value)| {
                    row.push_bind(ns).push_bind(key.as_str()).push_bind(value.as_ref()).push_bind(version).push("FALSE");
                });
                insert.push(s.upsert_tail.as_str());
                insert.build().execute(&mut *tx).await?;
            }
            Outcome::Changed(to_version(version)?)
        })
    }

    async fn depersist_once(&self, key: &str) -> Result<Option<Version>, Fail> {
        mutation!(self, tx, version, s, ns => {
            let done = sqlx::query(sql(&s.tombstone)).bind(version).bind(ns).bind(key).execute(&mut *tx).await?;
            if done.rows_affected() == 0 { Outcome::Unchanged(None) } else { Outcome::Changed(Some(to_version(version)?)) }
        })
    }

    async fn pop_once(&self, key: &str) -> Result<Option<(Bytes, Version)>, Fail> {
        mutation!(self, tx, version, s, ns => {
            let found: Option<Vec<u8>> =
                sqlx::query_scalar(sql(&s.live_value)).bind(ns).bind(key).fetch_optional(&mut *tx).await?;
            match found {
                None => Outcome::Unchanged(None),
                Some(value) => {
                    sqlx::query(sql(&s.tombstone)).bind(version).bind(ns).bind(key).execute(&mut *tx).await?;
                    Outcome::Changed(Some((Bytes::from(value), to_version(version)?)))
                }
            }
        })
    }

    async fn setdefault_once(&self, key: &str, value: &Bytes) -> Result<(Bytes, Option<Version>), Fail> {
        mutation!(self, tx, version, s, ns => {
            let found: Option<Vec<u8>> =
                sqlx::query_scalar(sql(&s.live_value)).bind(ns).bind(key).fetch_optional(&mut *tx).await?;
            match found {
                Some(found) => Outcome::Unchanged((Bytes::from(found), None)),
                None => {
                    sqlx::query(sql(&s.upsert)).bind(ns).bind(key).bind(value.as_ref()).bind(version).execute(&mut *tx).await?;
                    Outcome::Changed((value.clone(), Some(to_version(version)?)))
                }
            }
        })
    }

    async fn compare_and_swap_once(
        &self,
        key: &str,
        expected: &Option<Bytes>,
        new: &Option<Bytes>,
    ) -> Result<Option<Version>, Fail> {
        mutation!(self, tx, version, s, ns => {
            let found: Option<Vec<u8>> =
                sqlx::query_scalar(sql(&s.live_value)).bind(ns).bind(key).fetch_optional(&mut *tx).await?;
            if found.as_deref() != expected.as_deref() {
                return Err(Fail::Core(Error::Conflict { key: key.into() }));
            }
            match (new, found) {
                (None, None) => Outcome::Unchanged(None),
                (None, Some(_)) => {
                    sqlx::query(sql(&s.tombstone)).bind(version).bind(ns).bind(key).execute(&mut *tx).await?;
                    Outcome::Changed(Some(to_version(version)?))
                }
                (Some(value), _) => {
                    sqlx::query(sql(&s.upsert)).bind(ns).bind(key).bind(value.as_ref()).bind(version).execute(&mut *tx).await?;
                    Outcome::Changed(Some(to_version(version)?))
                }
            }
        })
    }

    async fn last_updated_once(&self) -> Result<Version, Fail> {
        let s = &self.shared.statements;
        let raw: Option<i64> = with_pool!(&self.shared.pool, pool => {
            sqlx::query_scalar(sql(&s.last_updated)).bind(&self.namespace).fetch_optional(pool).await?
        });
        to_version(raw.unwrap_or(0))
    }

    async fn durables_once(&self) -> Result<Durables, Fail> {
        let s = &self.shared.statements;
        let rows: Vec<(i64, Option<String>, Option<Vec<u8>>)> = with_pool!(&self.shared.pool, pool => {
            sqlx::query_as(sql(&s.durables)).bind(&self.namespace).fetch_all(pool).await?
        });
        let version = to_version(rows.first().map_or(0, |row| row.0))?;
        let entries = rows
            .into_iter()
            .filter_map(|(_, key, value)| Some((key?, Bytes::from(value.unwrap_or_default()))))
            .collect();
        Ok(Durables { entries, version })
    }

    async fn changes_once(&self, since: Version) -> Result<Changes, Fail> {
        let s = &self.shared.statements;
        let Ok(since_raw) = i64::try_from(since) else { return Ok(Changes::TooOld) };
        type ChangeRow = (i64, i64, Option<String>, Option<Vec<u8>>, Option<i64>, Option<bool>);
        let rows: Vec<ChangeRow> = with_pool!(&self.shared.pool, pool => {
            sqlx::query_as(sql(&s.changes)).bind(since_raw).bind(&self.namespace).fetch_all(pool).await?
        });
        let (version, horizon) = rows.first().map_or((0, 0), |row| (row.0, row.1));
        if since_raw > version || since_raw < horizon {
            return Ok(Changes::TooOld);
        }
        let mut changes = Vec::with_capacity(rows.len());
        for (_, _, key, value, row_version, tombstone) in rows {
            let (Some(key), Some(row_version)) = (key, row_version) else { continue };
            let value = if tombstone.unwrap_or(false) { None } else { Some(Bytes::from(value.unwrap_or_default())) };
            changes.push(KeyChange { key, value, version: to_version(row_version)? });
        }
        Ok(Changes::Delta { changes, version: to_version(version)? })
    }
}

#[async_trait]
impl Backend for SqlBackend {
    fn name(&self) -> &'static str {
        self.shared.dialect.name()
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.shared.max_value_size)
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.validate_key(key)?;
        let entries = [(key.to_owned(), value)];
        self.shared.run("persist", || self.upsert_once(&entries)).await
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.validate_key(key)?;
        self.shared.run("depersist", || self.depersist_once(key)).await
    }

    async fn durables(&self) -> Result<Durables> {
        self.shared.run("durables", || self.durables_once()).await
    }

    async fn last_updated(&self) -> Result<Version> {
        self.shared.run("last_updated", || self.last_updated_once()).await
    }

    async fn persist_many(&self, entries: Vec<(String, Bytes)>) -> Result<Version> {
        let mut unique: Vec<(String, Bytes)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            self.validate_key(&key)?;
            // One statement cannot touch a row twice (PostgreSQL refuses): the last value wins.
            match unique.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => unique.push((key, value)),
            }
        }
        if unique.is_empty() {
            return self.last_updated().await;
        }
        self.shared.run("persist_many", || self.upsert_once(&unique)).await
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.validate_key(key)?;
        self.shared.run("pop", || self.pop_once(key)).await
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.validate_key(key)?;
        self.shared.run("setdefault", || self.setdefault_once(key, &value)).await
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.shared.run("changes_since", || self.changes_once(since)).await
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        match &self.shared.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                let listening = async {
                    listen::subscribe(pool, &self.shared.url, &self.shared.statements.channel, &self.namespace)
                        .await
                        .map_err(|err| error::map(&self.shared.secrets, "postgres", Fail::Sql(err)))
                };
                self.shared.probe.bound("watch", self.shared.timeout, listening).await.map(Some)
            }
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<Option<Version>> {
        self.validate_key(key)?;
        self.shared.run("compare_and_swap", || self.compare_and_swap_once(key, &expected, &new)).await
    }
}

#[cfg(feature = "postgres")]
mod listen {
    //! PostgreSQL change hints: one `LISTEN` connection per process for each database URL and
    //! channel, shared by every dict of that process (through durable-core's `SharedFeeds`:
    //! PostgreSQL holds a connection per listener, and a thousand dicts must not cost a
    //! thousand connections). Each subscriber's stream keeps the notifications of its own
    //! namespace. When the connection is lost (notifications sent meanwhile are gone), every
    //! stream says `Interrupted`; the shared task reconnects (50 ms, doubling to 250 ms) and
    //! says `Resumed`, and each dict then checks the store. The connection closes when the
    //! last stream is dropped.

    use std::sync::Arc;
    use std::time::Duration;

    use durable_core::shared::{Note, SharedFeeds};
    use durable_core::{Hint, HintStream};
    use futures::StreamExt;
    use futures::stream::BoxStream;
    use sqlx::postgres::{PgListener, PgPool};

    /// Notification payloads, `"<version> <namespace>"`, by database URL and channel.
    static FEEDS: SharedFeeds<Arc<str>> = SharedFeeds::new("postgres");

    /// How long one attempt to open the `LISTEN` connection may take.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    async fn listen(pool: PgPool, channel: String) -> Result<BoxStream<'static, Arc<str>>, sqlx::Error> {
        let connecting = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.ignore_pool_close_event(true);
            // A lost connection ends the stream at once, so the dicts mark their hints down
            // at once; by default `try_recv` would first reconnect, waiting out the pool's
            // acquire timeout while the server refuses, with the hints still "healthy".
            listener.eager_reconnect(false);
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let listener = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await.map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "opening the LISTEN connection"))
        })??;
        // The stream ends when the connection is lost (`Ok(None)` or an error).
        let payloads = futures::stream::unfold(listener, |mut listener| async move {
            let notification = listener.try_recv().await.ok()??;
            Some((Arc::<str>::from(notification.payload()), listener))
        });
        Ok(payloads.boxed())
    }

    pub(crate) async fn subscribe(
        pool: &PgPool,
        url: &str,
        channel: &str,
        namespace: &str,
    ) -> Result<HintStream, sqlx::Error> {
        let (pool, channel_name) = (pool.clone(), channel.to_owned());
        let connect = move || listen(pool.clone(), channel_name.clone());
        let notes = FEEDS.subscribe(format!("{url}\n{channel}"), connect).await?;
        let namespace: Arc<str> = namespace.into();
        let hints = notes.filter_map(move |note| {
            let hint = match note {
                Note::Message(payload) => {
                    parse(&payload, &namespace).map(|version| Hint::Changed { version: Some(version) })
                }
                Note::Lost => Some(Hint::Interrupted),
                Note::Back => Some(Hint::Resumed),
            };
            std::future::ready(hint)
        });
        Ok(Box::pin(hints))
    }

    /// `"<version> <namespace>"` → the version, when the namespace is ours.
    fn parse(payload: &str, namespace: &str) -> Option<u64> {
        let (version, ns) = payload.split_once(' ')?;
        (ns == namespace).then(|| version.parse().ok()).flatten()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn payloads_are_filtered_by_namespace() {
            assert_eq!(super::parse("42 flags", "flags"), Some(42));
            assert_eq!(super::parse("42 flags x", "flags x"), Some(42));
            assert_eq!(super::parse("42 other", "flags"), None);
            assert_eq!(super::parse("garbage", "flags"), None);
        }
    }
}
