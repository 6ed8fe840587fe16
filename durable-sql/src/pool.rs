//! The connection pool of one database — one per compiled-in dialect — what every handle
//! on it shares, connecting and migrating, and how each operation runs: retried while the
//! database is busy, bounded by the timeout and the refusal probe.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use durable_core::{Backoff, Error, Redactor, RefusalProbe, Result};
use sqlx::AssertSqlSafe;

use crate::builder::SqlBackendBuilder;
use crate::dialect::{Dialect, Statements};
use crate::error::{self, Fail};

pub(crate) enum Pool {
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

/// Runs `$body` — an `async` block of type `Result<(), Fail>` that uses `$tx` — in one
/// transaction that first takes the lock `$lock` (`(number, name)`) so that instances
/// changing the schema at once go one after the other: PostgreSQL's transaction-level
/// advisory lock, MySQL's session-level `GET_LOCK` (DDL commits implicitly there, so the
/// transaction cannot hold it; released after the body), SQLite's `BEGIN IMMEDIATE`. An
/// expression of type `Result<(), Fail>` (a macro: each dialect's transaction is its own
/// type).
macro_rules! under_schema_lock {
    ($shared:expr, $lock:expr, $tx:ident => $body:expr) => {{
        let shared: &crate::pool::Shared = $shared;
        let (lock_id, lock_name): (i64, String) = $lock;
        with_pool!(&shared.pool, pool => {
            let mut conn = pool.acquire().await?;
            let mut $tx = match shared.dialect {
                Dialect::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?,
                _ => sqlx::Connection::begin(&mut *conn).await?,
            };
            match shared.dialect {
                Dialect::Postgres => {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock_id).execute(&mut *$tx).await?;
                }
                Dialect::MySql => {
                    let got: Option<i64> =
                        sqlx::query_scalar("SELECT GET_LOCK(?, 30)").bind(&lock_name).fetch_one(&mut *$tx).await?;
                    if got != Some(1) {
                        let message = format!("could not take the lock {lock_name}");
                        return Err(Fail::Core(crate::error::unexpected("mysql", message)));
                    }
                }
                Dialect::Sqlite => {}
            }
            let result: Result<(), Fail> = $body.await;
            if shared.dialect == Dialect::MySql {
                let _ = sqlx::query("SELECT RELEASE_LOCK(?)").bind(&lock_name).execute(&mut *$tx).await;
            }
            result?;
            $tx.commit().await?;
            Ok(())
        })
    }};
}

pub(crate) fn sql(statement: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(statement))
}

/// What every handle on one database shares: the pool and the statements.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) dialect: Dialect,
    pub(crate) statements: Statements,
    pub(crate) timeout: Duration,
    /// Bounds every operation: the timeout, and a refused server at once.
    pub(crate) probe: RefusalProbe,
    pub(crate) retention: i64,
    pub(crate) journal: durable_core::JournalConfig,
    pub(crate) max_value_size: usize,
    pub(crate) secrets: Redactor,
    /// The URL as given (password included; never shown): with the channel, it names the
    /// process-wide shared LISTEN connection.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) url: String,
}

impl Shared {
    pub(crate) async fn connect(options: SqlBackendBuilder) -> Result<Self> {
        let shared = Self::open(&options).await?;
        if options.read_only {
            shared.run("check_schema", || shared.check_schema()).await?;
        } else {
            shared.run("migrate", || shared.migrate()).await?;
        }
        Ok(shared)
    }

    /// The pool and statements, with nothing created or checked in the database.
    pub(crate) async fn open(options: &SqlBackendBuilder) -> Result<Self> {
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
            let mut backoff = Backoff::BUSY;
            loop {
                match Self::open_pool(dialect, options, &secrets).await {
                    Err(fail) if fail.is_retryable() => tokio::time::sleep(backoff.next_delay()).await,
                    other => return other.map_err(|fail| error::map(&secrets, dialect.name(), fail)),
                }
            }
        };
        let pool = probe.bound("connect", timeout, connecting).await?;
        Ok(Self {
            pool,
            dialect,
            statements,
            timeout,
            probe,
            retention: i64::try_from(options.tombstone_retention).unwrap_or(i64::MAX),
            max_value_size: options.max_value_size,
            journal: options.journal.clone(),
            secrets,
            url: options.url.clone(),
        })
    }

    pub(crate) async fn open_pool(
        dialect: Dialect,
        options: &SqlBackendBuilder,
        secrets: &Redactor,
    ) -> Result<Pool, Fail> {
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
                let mut connect = PgConnectOptions::from_str(url).map_err(bad_url)?;
                if let Some(ca) = &options.tls_root_cert {
                    connect = connect.ssl_root_cert(ca);
                    if !names_ssl_mode(url) {
                        connect = connect.ssl_mode(sqlx::postgres::PgSslMode::VerifyFull);
                    }
                }
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
                let mut connect = MySqlConnectOptions::from_str(url).map_err(bad_url)?;
                if let Some(ca) = &options.tls_root_cert {
                    connect = connect.ssl_ca(ca);
                    if !names_ssl_mode(url) {
                        connect = connect.ssl_mode(sqlx::mysql::MySqlSslMode::VerifyIdentity);
                    }
                }
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
    pub(crate) async fn run<T, F, Fut>(&self, operation: &'static str, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let backend = self.dialect.name();
        let attempts = async {
            let mut backoff = Backoff::BUSY;
            loop {
                match attempt().await {
                    Ok(value) => return Ok(value),
                    Err(fail) if fail.is_retryable() => {
                        let delay = backoff.next_delay();
                        tracing::debug!(backend, operation, ?delay, "durable-sql: retrying after a transient conflict");
                        tokio::time::sleep(delay).await;
                    }
                    Err(fail) => return Err(error::map(&self.secrets, backend, fail)),
                }
            }
        };
        self.probe.bound(operation, self.timeout, attempts).await
    }

    /// For a read-only account: the schema must already be there, at the version this
    /// crate writes.
    pub(crate) async fn check_schema(&self) -> Result<(), Fail> {
        let s = &self.statements;
        let target = s.migrations().len() as i64;
        let current: Result<Option<i64>, sqlx::Error> = with_pool!(&self.pool, pool => {
            sqlx::query_scalar(AssertSqlSafe(s.read_schema_version())).fetch_optional(pool).await
        });
        let missing = |found: String| {
            Fail::Core(crate::error::unexpected(
                self.dialect.name(),
                format!(
                    "read-only: the schema is {found}, not version {target}; open the store once with an account \
                     that may write, so that it is created or migrated"
                ),
            ))
        };
        match current {
            Ok(Some(version)) if version >= target => Ok(()),
            Ok(Some(version)) => Err(missing(format!("at version {version}"))),
            Ok(None) => Err(missing("not there".into())),
            Err(sqlx::Error::Database(err)) if is_missing_table(&*err) => Err(missing("not there".into())),
            Err(err) => Err(Fail::Sql(err)),
        }
    }

    pub(crate) async fn migrate(&self) -> Result<(), Fail> {
        let s = &self.statements;
        let migrations = s.migrations();
        let target = migrations.len() as i64;
        under_schema_lock!(self, s.migration_lock(), tx => async {
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
            Ok(())
        })
    }
}

/// PostgreSQL 42P01, MySQL 1146 (SQLSTATE 42S02), SQLite's "no such table": the table is not there.
pub(crate) fn is_missing_table(err: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(err.code().as_deref(), Some("42P01" | "1146" | "42S02")) || err.message().starts_with("no such table")
}

/// Whether the URL's query says which TLS mode to use (`sslmode=` or `ssl-mode=`).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn names_ssl_mode(url: &str) -> bool {
    durable_core::StoreUrl::parse(url).is_ok_and(|url| url.query("sslmode").or(url.query("ssl-mode")).is_some())
}

/// The TCP address a server URL names, as sqlx reads it (defaults and `host=`/`port=`
/// parameters included), for the [`RefusalProbe`]; none for SQLite and Unix sockets.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(unused_variables))]
pub(crate) fn server_addrs(dialect: Dialect, url: &str) -> Vec<String> {
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

pub(crate) fn scheme_of(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgres",
        Dialect::MySql => "mysql",
    }
}
