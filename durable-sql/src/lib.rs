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
//! Four tables, created if missing by versioned migrations (the `<prefix>durable_schema`
//! table records the schema version; instances that start at once migrate one after the
//! other under PostgreSQL's `pg_advisory_xact_lock`, MySQL's `GET_LOCK` or SQLite's
//! `BEGIN IMMEDIATE`):
//!
//! | table | columns |
//! |---|---|
//! | `<prefix>durable_namespaces` | `namespace` (primary key), `version` (the dict version), `horizon` (see retention), `journal_trimmed` (the journal's retention removed every record at or below it; schema 2) |
//! | `<prefix>durable_entries` | `namespace`, `key` (primary key together), `value` (bytes, NULL in a tombstone), `version` (of the mutation that last touched the row), `tombstone` |
//! | `<prefix>durable_journal` (schema 2) | `namespace`, `version`, `seq` (primary key together), `key`, `old_value` and `new_value` (NULL: absent / deleted), `actor`, `reason`, `at` (the database's clock, ms since the epoch) |
//!
//! plus an index on `durable_entries (namespace, version)` for deltas and, on PostgreSQL and
//! MySQL, one on `durable_journal (namespace, key, version)` for a key's history (SQLite
//! keeps its journal in one `WITHOUT ROWID` b-tree, a page less per commit, and reads a
//! key's history from the namespace's slice). Schema 1 databases are migrated at connect.
//!
//! # The change journal
//!
//! With the journal on (the default; `SqlBackendBuilder::journal`), each mutation's
//! transaction records its changes. On PostgreSQL and MySQL it inserts the records before
//! it writes the entries: a put with one `INSERT ... VALUES` whose old value is a subquery
//! on the live entry, several keys with one `INSERT ... SELECT` over the new values joined
//! with the live entries (a delete of an absent key records nothing). On SQLite two
//! triggers on the entries table (after insert, after update) write the records inside
//! the entry statements themselves, reading the actor, the reason and whether to journal
//! from the namespace row the mutation's version bump has just set — no extra statement
//! (schema 2 adds `journal_on`, `journal_actor`, `journal_reason` to the namespaces table
//! for them). Either way a record is in the same transaction as its change. Retention (`JournalConfig`) trims in the transaction of
//! every tenth-of-the-count version: the rows at or below the kept window, and those older
//! than the age limit by the database's clock. On MySQL, namespaces
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
//! so the version does not move. A batch is one such transaction: its guard is checked
//! against the version the bump replaced, under the row lock, and a guard that no longer
//! holds rolls everything back. PostgreSQL runs at its default READ COMMITTED, MySQL at
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
//! however many dicts, backends or pools it has (one connection in `pg_stat_activity`); each
//! dict's stream keeps its own namespace's notifications, and the
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

//! # Adopting an existing table
//!
//! [`TableBackend`] keeps a dict in a table the application already has, naming its key and
//! value columns (durabledict's `ModelDict`), and follows other applications' writes to it
//! through opt-in triggers or, without them, by polling a fingerprint of the table; see
//! [its module](table).

#![warn(missing_docs)]

#[macro_use]
mod pool;
mod backend;
mod builder;
mod dialect;
mod error;
mod hints;
mod leases;
#[cfg(feature = "postgres")]
mod listen;
mod reads;
pub mod table;
mod writes;

use std::time::Duration;

pub use backend::SqlBackend;
pub use builder::{SqlBackendBuilder, validate_namespace};
pub use dialect::{Dialect, MAX_PREFIX_LEN, validate_prefix};
pub use error::SqlError;
pub use table::{MAX_TABLE_NAME_LEN, TABLE_CHANNEL, TableBackend, TableBackendBuilder, ValueKind};

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

/// Opens `namespace` at `url` with default options: this crate's entry in the `durable`
/// facade's scheme registry (sqlite://, postgres://, postgresql://, mysql:// and mariadb://).
pub fn open<'a>(url: &'a str, namespace: &'a str) -> durable_core::Opening<'a> {
    Box::pin(async move {
        let backend: std::sync::Arc<dyn durable_core::Backend> =
            std::sync::Arc::new(SqlBackend::connect(url, namespace).await?);
        Ok(backend)
    })
}
