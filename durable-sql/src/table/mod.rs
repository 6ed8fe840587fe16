//! [`TableBackend`]: a dict over a table the application already has — durabledict's
//! `ModelDict` — naming its key and value columns, on PostgreSQL, MySQL/MariaDB and SQLite.
//!
//! ```no_run
//! # async fn demo() -> durable_core::Result<()> {
//! use durable_sql::{TableBackend, ValueKind};
//! // The application's own table: CREATE TABLE settings (name TEXT PRIMARY KEY, value JSONB)
//! let settings = TableBackend::builder("postgres://app@127.0.0.1/app", "settings")
//!     .key_column("name")
//!     .value_column("value")
//!     .value_kind(ValueKind::Json)
//!     .install_triggers(true)
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The key column must be the table's primary key or a unique column; NULL values read as
//! absent keys; other columns need defaults (a write sets only the key and the value).
//! The table is read and written as it is: nothing of `durable`'s own schema is created in
//! it.
//!
//! # Two ways to see other applications' writes
//!
//! **With triggers** (opt-in: [`TableBackendBuilder::install_triggers`], idempotent, and
//! removable with [`TableBackend::uninstall_triggers`]), every insert, update and delete of
//! a row — by anyone: a Django admin, a migration, `psql` — bumps a version kept in
//! `<table>_durable_state` and stamps the row's key with it in `<table>_durable_keys` (an
//! index on the version), in the writer's own transaction. On PostgreSQL the trigger also
//! sends `NOTIFY durable_tables, '<version> <table>'`, and a `TRUNCATE` (which fires no row
//! trigger) moves the version and the horizon, so every dict reloads in full. So deltas
//! read only the keys changed since a dict's version, PostgreSQL dicts are told of every
//! change within milliseconds, and the triggers' update of the state row orders every
//! writer of the table, ours and theirs, as the namespace row does for `SqlBackend`. MySQL's
//! `TRUNCATE TABLE` fires no trigger at all: use `DELETE FROM` there.
//!
//! **Without triggers** (an account that may not create them, or a table nobody may
//! touch), the table is polled: [`last_updated`](durable_core::Backend::last_updated)
//! computes a fingerprint of the whole table — on PostgreSQL the MD5 of every row's MD5 in
//! key order, on MySQL a count with a sum and a XOR of 60-bit slices of each row's MD5, both
//! one row over the wire; on SQLite, a local file, a hash of the rows read — and the
//! version moves when the fingerprint does. Versions are then this handle's own count (share
//! one handle between the dicts of a process), every change costs a full reload, and
//! nothing is pushed: dicts poll (their background refresh).

mod install;
mod statements;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::{
    Backend, Batch, Changes, Durables, Error, HintStream, JournalPage, JournalRecord, KeyChange, LeaseAnswer, LeaseOp,
    Op, Result, Source, Version,
};

use crate::builder::SqlBackendBuilder;
use crate::dialect::Dialect;
use crate::error::{Fail, unexpected};
use crate::pool::{Pool, Shared, sql};
use crate::writes::to_version;
pub(crate) use statements::TableStatements;

/// The channel PostgreSQL's triggers notify on: `"<version> <table>"`.
pub const TABLE_CHANNEL: &str = "durable_tables";

/// Longest table name accepted: the longest companion name it makes
/// (`<table>_durable_keys_by_version`) stays under PostgreSQL's 63-byte identifier limit.
pub const MAX_TABLE_NAME_LEN: usize = 36;

/// How the value column holds a value the dict's codec wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueKind {
    /// Text (`TEXT`, `VARCHAR`, ...): the encoded value must be UTF-8 — durable's `Raw`
    /// codec for plain strings, `Json` for JSON kept as text. The default.
    #[default]
    Text,
    /// A JSON column (PostgreSQL `json`/`jsonb`, MySQL `JSON`, or text holding JSON on
    /// SQLite): the encoded value must be JSON (use the `Json` codec). PostgreSQL's `jsonb`
    /// and MySQL's `JSON` store their own normal form (key order, spacing); dicts read that
    /// form back.
    Json,
    /// Bytes (`BYTEA`, `BLOB`, `VARBINARY`): any codec.
    Bytes,
}

impl ValueKind {
    fn is_text(self) -> bool {
        self != ValueKind::Bytes
    }
}

/// Options for [`TableBackend::builder`].
#[derive(Debug, Clone)]
pub struct TableBackendBuilder {
    connection: SqlBackendBuilder,
    table: String,
    key_column: String,
    value_column: String,
    kind: ValueKind,
    install_triggers: bool,
}

impl TableBackendBuilder {
    /// The key column (default `key`, as durabledict's `ModelDict`): the primary key or a
    /// unique column.
    pub fn key_column(mut self, column: &str) -> Self {
        column.clone_into(&mut self.key_column);
        self
    }

    /// The value column (default `value`).
    pub fn value_column(mut self, column: &str) -> Self {
        column.clone_into(&mut self.value_column);
        self
    }

    /// How the value column holds values (default [`ValueKind::Text`]).
    pub fn value_kind(mut self, kind: ValueKind) -> Self {
        self.kind = kind;
        self
    }

    /// Install the triggers that keep a version and the changed keys (default `false`):
    /// idempotent, so every instance may ask; the account needs the right to create
    /// tables, functions (PostgreSQL) and triggers. Without, a backend uses the triggers
    /// when someone installed them, and polls otherwise.
    pub fn install_triggers(mut self, on: bool) -> Self {
        self.install_triggers = on;
        self
    }

    /// Bound on every operation, connecting included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.connection = self.connection.timeout(timeout);
        self
    }

    /// Connections in the pool (default 10).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.connection = self.connection.max_connections(connections);
        self
    }

    /// Largest encoded value accepted (default 4 MiB); bigger ones are refused before I/O.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.connection = self.connection.max_value_size(bytes);
        self
    }

    /// A CA certificate to trust for TLS; see [`SqlBackendBuilder::tls_root_cert`].
    pub fn tls_root_cert(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.connection = self.connection.tls_root_cert(pem_file);
        self
    }

    /// Connects, checks that the table and its columns are there (and fit the value kind),
    /// installs the triggers when asked, and returns the backend.
    pub async fn connect(self) -> Result<TableBackend> {
        validate_table_names(&self.table, &self.key_column, &self.value_column)?;
        let shared = Shared::open(&self.connection).await?;
        let columns = shared.run("connect", || install::read_columns(&shared, &self)).await?;
        let statements = TableStatements::new(shared.dialect, &self, &columns)?;
        if self.install_triggers {
            shared.run("install_triggers", || install::install(&shared, &statements)).await?;
        }
        let triggers = shared.run("connect", || install::has_triggers(&shared, &statements)).await?;
        let mode = if triggers { Mode::Triggers } else { Mode::Polling(tokio::sync::Mutex::new(Poll::default())) };
        Ok(TableBackend { inner: Arc::new(Inner { shared, statements, table: self.table, kind: self.kind, mode }) })
    }
}

/// Table and column names are plain identifiers (`[A-Za-z_][A-Za-z0-9_]*`), the table's at
/// most [`MAX_TABLE_NAME_LEN`] bytes and the columns' at most 63; refused before any I/O.
fn validate_table_names(table: &str, key: &str, value: &str) -> Result<()> {
    for (what, name, max) in
        [("table", table, MAX_TABLE_NAME_LEN), ("key column", key, 63), ("value column", value, 63)]
    {
        let plain = !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !plain || name.len() > max {
            return Err(Error::InvalidNamespace {
                namespace: name.to_owned(),
                reason: format!(
                    "a {what} name must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*) of at most {max} bytes"
                ),
            });
        }
    }
    if key == value {
        return Err(Error::InvalidNamespace {
            namespace: key.to_owned(),
            reason: "the key and value columns must differ".into(),
        });
    }
    Ok(())
}

/// A dict over an existing table; see the [module docs](crate::table). Cheap to clone: clones
/// share the pool and, when polling, the version count.
#[derive(Clone)]
pub struct TableBackend {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    statements: TableStatements,
    table: String,
    kind: ValueKind,
    mode: Mode,
}

enum Mode {
    Triggers,
    /// The version count and the fingerprint it belongs to (`None` after a write of ours:
    /// the next look moves the version).
    Polling(tokio::sync::Mutex<Poll>),
}

#[derive(Default)]
struct Poll {
    version: Version,
    fingerprint: Option<String>,
}

impl Poll {
    /// The version for a table whose fingerprint is `fingerprint`: moved when it changed.
    fn observe(&mut self, fingerprint: String) -> Version {
        if self.fingerprint.as_ref() != Some(&fingerprint) {
            self.version += 1;
            self.fingerprint = Some(fingerprint);
        }
        self.version
    }

    /// After a write of ours: a version of its own, and the next look moves it again.
    fn wrote(&mut self) -> Version {
        self.version += 1;
        self.fingerprint = None;
        self.version
    }
}

impl std::fmt::Debug for TableBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBackend")
            .field("url", &self.inner.shared.secrets.url())
            .field("table", &self.inner.table)
            .field("kind", &self.inner.kind)
            .field("triggers", &self.has_triggers())
            .finish()
    }
}

impl TableBackend {
    /// Options for the table `table` at `url` (sqlite://, postgres://, mysql://, mariadb://).
    pub fn builder(url: &str, table: &str) -> TableBackendBuilder {
        TableBackendBuilder {
            connection: SqlBackendBuilder::new(url),
            table: table.to_owned(),
            key_column: "key".into(),
            value_column: "value".into(),
            kind: ValueKind::default(),
            install_triggers: false,
        }
    }

    /// Whether this handle follows the table through the triggers (`false`: it polls).
    pub fn has_triggers(&self) -> bool {
        matches!(self.inner.mode, Mode::Triggers)
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Removes the triggers, the function and the two companion tables (idempotent). The
    /// table itself is left as it is. Handles that used the triggers then fail until
    /// reconnected (and poll).
    pub async fn uninstall_triggers(&self) -> Result<()> {
        let shared = &self.inner.shared;
        shared.run("uninstall_triggers", || install::uninstall(shared, &self.inner.statements)).await
    }

    /// Refuses a value the column cannot hold, before any I/O.
    fn check_value(&self, key: &str, value: &[u8]) -> Result<()> {
        let max = self.inner.shared.max_value_size;
        if value.len() > max {
            return Err(Error::ValueTooLarge { key: key.into(), size: value.len(), max, backend: self.name() });
        }
        if !self.inner.kind.is_text() {
            return Ok(());
        }
        let text = std::str::from_utf8(value).map_err(|err| Error::Encode {
            key: key.into(),
            source: Source::msg(format!("a text column needs UTF-8: {err}")),
        })?;
        if self.inner.kind == ValueKind::Json
            && let Err(err) = serde_json::from_str::<serde_json::Value>(text)
        {
            return Err(Error::Encode {
                key: key.into(),
                source: Source::msg(format!("a JSON column needs JSON: {err}")),
            });
        }
        Ok(())
    }

    /// The version after a write of ours that changed the table.
    async fn written(&self, version_in_tx: Option<i64>) -> Result<Version, Fail> {
        match (&self.inner.mode, version_in_tx) {
            (Mode::Triggers, Some(version)) => to_version(version),
            (Mode::Polling(poll), _) => Ok(poll.lock().await.wrote()),
            (Mode::Triggers, None) => Err(Fail::Core(unexpected(self.name(), "the triggers left no version"))),
        }
    }
}

/// Binds a value as the column wants it: text or bytes (checked before, so UTF-8 holds).
macro_rules! bind_value {
    ($query:expr, $kind:expr, $value:expr) => {{
        let value: &[u8] = $value;
        if $kind.is_text() { $query.bind(std::str::from_utf8(value).unwrap_or_default()) } else { $query.bind(value) }
    }};
}

/// One write transaction, as an expression of type `Result<Option<(T, Option<i64>)>, Fail>`:
/// begin (SQLite: `BEGIN IMMEDIATE`); for a batch (`$batch`, with triggers), move the
/// version once and tell the triggers so, giving the version before as `$before` (the
/// batch's existing rows, `$keys`, are locked first, in key order); run
/// `$body` (which sees `$tx` and yields `Some(value)` when it changed the table, `None` to
/// roll back); then read the version the write made, and commit. A single row's write takes
/// its row first and the triggers' state row after, as every other writer of the table
/// does; a batch takes the state row first.
macro_rules! table_write {
    ($backend:expr, $batch:expr, $keys:expr, $tx:ident, $before:ident => $body:block) => {{
        let backend: &TableBackend = $backend;
        let inner = &*backend.inner;
        let s = &inner.statements;
        let triggers = matches!(inner.mode, Mode::Triggers);
        let batch = $batch && triggers;
        with_pool!(&inner.shared.pool, pool => async {
            let mut $tx = match inner.shared.dialect {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            let keys: &[&str] = $keys;
            if let Some((statement, table_id)) = &s.key_locks {
                let mut ids: Vec<i32> = keys.iter().map(|key| statements::lock_id(key)).collect();
                ids.sort_unstable();
                ids.dedup();
                // An array literal: the statement runs on PostgreSQL only, binds are per pool.
                let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
                let ids = format!("{{{}}}", ids.join(","));
                sqlx::query(sql(statement)).bind(*table_id).bind(ids).execute(&mut *$tx).await?;
            }
            let $before: Option<i64> = if batch {
                if inner.shared.dialect != Dialect::Sqlite {
                    for chunk in keys.chunks(crate::BATCH_ROWS) {
                        let mut lock = sqlx::QueryBuilder::new(s.lock_rows_head.as_str());
                        for (i, key) in chunk.iter().enumerate() {
                            if i > 0 {
                                lock.push(", ");
                            }
                            lock.push(s.key_cast.0.as_str()).push_bind(*key).push(s.key_cast.1.as_str());
                        }
                        lock.push(s.lock_rows_tail.as_str());
                        lock.build().execute(&mut *$tx).await?;
                    }
                }
                sqlx::query(sql(&s.begin_batch)).execute(&mut *$tx).await?;
                let version: i64 = sqlx::query_scalar(sql(&s.version)).fetch_one(&mut *$tx).await?;
                Some(version - 1)
            } else {
                None
            };
            let outcome: Result<Option<_>, Fail> = async { Ok($body) }.await;
            match outcome? {
                None => {
                    $tx.rollback().await?;
                    Ok::<_, Fail>(None)
                }
                Some(value) => {
                    if batch {
                        sqlx::query(sql(&s.end_batch)).execute(&mut *$tx).await?;
                    }
                    let version: Option<i64> = if triggers {
                        Some(sqlx::query_scalar(sql(&s.version)).fetch_one(&mut *$tx).await?)
                    } else {
                        None
                    };
                    $tx.commit().await?;
                    Ok(Some((value, version)))
                }
            }
        }
        .await)
    }};
}

impl TableBackend {
    async fn upsert_once(&self, key: &str, value: &[u8]) -> Result<Version, Fail> {
        let (s, kind) = (&self.inner.statements, self.inner.kind);
        let done: Option<((), Option<i64>)> = table_write!(self, false, &[key], tx, _before => {
            bind_value!(sqlx::query(sql(&s.upsert)).bind(key), kind, value).execute(&mut *tx).await?;
            Some(())
        })?;
        let (_, version) = done.ok_or_else(|| Fail::Core(unexpected(self.name(), "a put changed nothing")))?;
        self.written(version).await
    }

    async fn pop_once(&self, key: &str) -> Result<Option<(Bytes, Version)>, Fail> {
        let s = &self.inner.statements;
        let done = table_write!(self, false, &[key], tx, _before => {
            let found: Option<Option<Vec<u8>>> =
                sqlx::query_scalar(sql(&s.read_value)).bind(key).fetch_optional(&mut *tx).await?;
            match found {
                Some(value) => {
                    sqlx::query(sql(&s.delete)).bind(key).execute(&mut *tx).await?;
                    // A row whose value is NULL reads as absent: removed, but nothing to give.
                    value.map(Bytes::from)
                }
                None => None,
            }
        })?;
        match done {
            Some((value, version)) => Ok(Some((value, self.written(version).await?))),
            None => Ok(None),
        }
    }

    async fn setdefault_once(&self, key: &str, value: &[u8]) -> Result<(Bytes, Option<Version>), Fail> {
        let (s, kind) = (&self.inner.statements, self.inner.kind);
        let mut found = None;
        let done = table_write!(self, false, &[key], tx, _before => {
            let current: Option<Option<Vec<u8>>> =
                sqlx::query_scalar(sql(&s.read_value)).bind(key).fetch_optional(&mut *tx).await?;
            match current {
                Some(Some(current)) => {
                    found = Some(Bytes::from(current));
                    None
                }
                // Absent, or NULL (absent to the dict): store the default.
                _ => {
                    bind_value!(sqlx::query(sql(&s.upsert)).bind(key), kind, value).execute(&mut *tx).await?;
                    Some(())
                }
            }
        })?;
        match (done, found) {
            (Some((_, version)), _) => Ok((Bytes::copy_from_slice(value), Some(self.written(version).await?))),
            (None, Some(current)) => Ok((current, None)),
            (None, None) => Err(Fail::Core(unexpected(self.name(), "setdefault neither found nor stored"))),
        }
    }

    async fn compare_and_swap_once(
        &self,
        key: &str,
        old: &Option<Bytes>,
        new: &Option<Bytes>,
    ) -> Result<Option<Version>, Fail> {
        let (s, kind) = (&self.inner.statements, self.inner.kind);
        let done = table_write!(self, false, &[key], tx, _before => {
            let current: Option<Option<Vec<u8>>> =
                sqlx::query_scalar(sql(&s.read_value)).bind(key).fetch_optional(&mut *tx).await?;
            let current = current.flatten();
            if current.as_deref() != old.as_deref() {
                return Err(Fail::Core(Error::Conflict { key: key.into() }));
            }
            match new {
                Some(value) => {
                    bind_value!(sqlx::query(sql(&s.upsert)).bind(key), kind, value).execute(&mut *tx).await?;
                    Some(())
                }
                None if current.is_some() => {
                    sqlx::query(sql(&s.delete)).bind(key).execute(&mut *tx).await?;
                    Some(())
                }
                None => None,
            }
        })?;
        match done {
            Some((_, version)) => Ok(Some(self.written(version).await?)),
            None => Ok(None),
        }
    }

    async fn apply_once(&self, batch: &Batch) -> Result<Option<Version>, Fail> {
        let (s, kind) = (&self.inner.statements, self.inner.kind);
        let guard = batch.guard_version();
        let keys: Vec<&str> = batch.ops().map(|(key, _)| key).collect();
        let done = table_write!(self, guard.is_some() || keys.len() > 1, &keys, tx, before => {
            if let (Some(expected), Some(current)) = (guard, before) {
                let current = to_version(current)?;
                if current != expected {
                    return Err(Fail::Core(Error::VersionConflict { expected, current }));
                }
            }
            let mut changed = false;
            for (key, op) in batch.ops() {
                let affected = match op {
                    Op::Put(value) => {
                        bind_value!(sqlx::query(sql(&s.upsert)).bind(key), kind, value).execute(&mut *tx).await?;
                        1
                    }
                    Op::Delete => sqlx::query(sql(&s.delete)).bind(key).execute(&mut *tx).await?.rows_affected(),
                };
                changed |= affected > 0;
            }
            changed.then_some(())
        })?;
        match done {
            Some((_, version)) => Ok(Some(self.written(version).await?)),
            None => Ok(None),
        }
    }

    async fn depersist_once(&self, key: &str) -> Result<Option<Version>, Fail> {
        let s = &self.inner.statements;
        let done = table_write!(self, false, &[key], tx, _before => {
            let affected = sqlx::query(sql(&s.delete)).bind(key).execute(&mut *tx).await?.rows_affected();
            (affected > 0).then_some(())
        })?;
        match done {
            Some((_, version)) => Ok(Some(self.written(version).await?)),
            None => Ok(None),
        }
    }

    /// Every row, and (triggers) the version or (polling) the fingerprint they belong to —
    /// one statement, so one consistent read.
    async fn durables_once(&self) -> Result<Durables, Fail> {
        let s = &self.inner.statements;
        match &self.inner.mode {
            Mode::Triggers => {
                let rows: Vec<(i64, Option<String>, Option<Vec<u8>>)> = with_pool!(&self.inner.shared.pool, pool => {
                    sqlx::query_as(sql(&s.durables)).fetch_all(pool).await?
                });
                let version = to_version(rows.first().map_or(0, |row| row.0))?;
                let entries =
                    rows.into_iter().filter_map(|(_, key, value)| Some((key?, Bytes::from(value?)))).collect();
                Ok(Durables { entries, version })
            }
            Mode::Polling(poll) => {
                let mut poll = poll.lock().await;
                let (fingerprint, entries) = self.read_all().await?;
                Ok(Durables { entries, version: poll.observe(fingerprint) })
            }
        }
    }

    /// Polling: the fingerprint and the rows, read in one statement (the fingerprint
    /// computed here on SQLite, from the rows).
    async fn read_all(&self) -> Result<(String, Vec<(String, Bytes)>), Fail> {
        let s = &self.inner.statements;
        type PollRow = (Option<String>, Option<String>, Option<Vec<u8>>);
        let rows: Vec<PollRow> = with_pool!(&self.inner.shared.pool, pool => {
            sqlx::query_as(sql(&s.poll_all)).fetch_all(pool).await?
        });
        let mut fingerprint = rows.first().and_then(|row| row.0.clone());
        let mut entries: Vec<(String, Bytes)> =
            rows.into_iter().filter_map(|(_, key, value)| Some((key?, Bytes::from(value?)))).collect();
        if fingerprint.is_none() {
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            fingerprint = Some(hash_rows(&entries));
        }
        Ok((fingerprint.unwrap_or_default(), entries))
    }

    async fn last_updated_once(&self) -> Result<Version, Fail> {
        let s = &self.inner.statements;
        match &self.inner.mode {
            Mode::Triggers => {
                let raw: i64 = with_pool!(&self.inner.shared.pool, pool => {
                    sqlx::query_scalar(sql(&s.version)).fetch_one(pool).await?
                });
                to_version(raw)
            }
            Mode::Polling(poll) => {
                let mut poll = poll.lock().await;
                let fingerprint = match &s.fingerprint {
                    Some(statement) => with_pool!(&self.inner.shared.pool, pool => {
                        sqlx::query_scalar::<_, String>(sql(statement)).fetch_one(pool).await?
                    }),
                    None => self.read_all().await?.0,
                };
                Ok(poll.observe(fingerprint))
            }
        }
    }

    async fn changes_once(&self, since: Version) -> Result<Changes, Fail> {
        let s = &self.inner.statements;
        let (Mode::Triggers, Ok(since_raw)) = (&self.inner.mode, i64::try_from(since)) else {
            return Ok(Changes::TooOld);
        };
        type ChangeRow = (i64, i64, Option<String>, Option<Vec<u8>>, Option<i64>);
        let rows: Vec<ChangeRow> = with_pool!(&self.inner.shared.pool, pool => {
            sqlx::query_as(sql(&s.changes)).bind(since_raw).fetch_all(pool).await?
        });
        let (version, horizon) = rows.first().map_or((0, 0), |row| (row.0, row.1));
        if since_raw > version || since_raw < horizon {
            return Ok(Changes::TooOld);
        }
        let mut changes = Vec::with_capacity(rows.len());
        for (_, _, key, value, row_version) in rows {
            let (Some(key), Some(row_version)) = (key, row_version) else { continue };
            changes.push(KeyChange { key, value: value.map(Bytes::from), version: to_version(row_version)? });
        }
        Ok(Changes::Delta { changes, version: to_version(version)? })
    }
}

/// A polled SQLite table's fingerprint: a 64-bit hash of its rows in key order, with the
/// row count.
fn hash_rows(entries: &[(String, Bytes)]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    entries.hash(&mut hasher);
    format!("{}:{:016x}", entries.len(), hasher.finish())
}

#[async_trait]
impl Backend for TableBackend {
    fn name(&self) -> &'static str {
        self.inner.shared.dialect.name()
    }

    fn describe(&self) -> String {
        format!("{}(table {})", self.name(), self.inner.table)
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.inner.shared.max_value_size)
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.validate_key(key)?;
        self.check_value(key, &value)?;
        self.inner.shared.run("persist", || self.upsert_once(key, &value)).await
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.validate_key(key)?;
        self.inner.shared.run("depersist", || self.depersist_once(key)).await
    }

    async fn durables(&self) -> Result<Durables> {
        self.inner.shared.run("durables", || self.durables_once()).await
    }

    async fn last_updated(&self) -> Result<Version> {
        self.inner.shared.run("last_updated", || self.last_updated_once()).await
    }

    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        if batch.leased_keys().iter().any(|(_, fence)| fence.is_some()) {
            return Err(Error::Unsupported { backend: self.name(), what: "leases on an adopted table" });
        }
        for (key, op) in batch.ops() {
            self.validate_key(key)?;
            if let Op::Put(value) = op {
                self.check_value(key, value)?;
            }
        }
        if batch.guard_version().is_some() && !self.has_triggers() {
            // A polled table's versions are this handle's count, not the table's: nothing
            // in the database could check a guard against them.
            return Err(Error::Unsupported { backend: self.name(), what: "guarded batches on a polled table" });
        }
        if batch.ops().len() == 0 && batch.guard_version().is_none() {
            return Ok(None);
        }
        self.inner.shared.run("apply", || self.apply_once(&batch)).await
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.validate_key(key)?;
        self.inner.shared.run("pop", || self.pop_once(key)).await
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.validate_key(key)?;
        self.check_value(key, &value)?;
        self.inner.shared.run("setdefault", || self.setdefault_once(key, &value)).await
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.inner.shared.run("changes_since", || self.changes_once(since)).await
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        #[cfg(feature = "postgres")]
        if let (Mode::Triggers, crate::pool::Pool::Postgres(pool)) = (&self.inner.mode, &self.inner.shared.pool) {
            let shared = &self.inner.shared;
            let listening = async {
                crate::listen::subscribe(pool, &shared.url, TABLE_CHANNEL, &self.inner.table)
                    .await
                    .map_err(|err| crate::error::map(&shared.secrets, "postgres", Fail::Sql(err)))
            };
            return shared.probe.bound("watch", shared.timeout, listening).await.map(Some);
        }
        Ok(None)
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.validate_key(key)?;
        if let Some(value) = &new {
            self.check_value(key, value)?;
        }
        self.inner.shared.run("compare_and_swap", || self.compare_and_swap_once(key, &old, &new)).await
    }

    /// An adopted table keeps no journal (its history is the application's): every version
    /// is a gap to a journal reader.
    async fn journal(&self, _after: Version, _limit: usize) -> Result<JournalPage> {
        let version = self.last_updated().await?;
        Ok(JournalPage { records: Vec::new(), version, trimmed_through: 0, more: false, unchanged: Vec::new() })
    }

    async fn history(&self, _key: &str, _limit: usize) -> Result<Vec<JournalRecord>> {
        Ok(Vec::new())
    }

    async fn lease(&self, _key: &str, _op: LeaseOp) -> Result<LeaseAnswer> {
        Err(Error::Unsupported { backend: self.name(), what: "leases on an adopted table" })
    }

    /// Refused: the table is the application's, and so is deciding to drop it.
    async fn remove_namespace(&self) -> Result<()> {
        Err(Error::Unsupported {
            backend: self.name(),
            what: "removing an adopted table (it belongs to its application: drop it with SQL)",
        })
    }
}
