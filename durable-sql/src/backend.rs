//! [`SqlBackend`]: one namespace in a SQL database, and its `Backend` implementation —
//! every operation one transaction (see `writes.rs` and `reads.rs`), run by the pool.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::{
    Backend, Batch, Changes, Durables, HintStream, JournalPage, JournalRecord, LeaseAnswer, LeaseOp, Result, Version,
};

use crate::builder::{SqlBackendBuilder, validate_namespace};
use crate::dialect::Dialect;
use crate::pool::Shared;

/// One namespace in a SQL database; see the crate docs. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct SqlBackend {
    pub(crate) shared: Arc<Shared>,
    pub(crate) namespace: String,
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

impl SqlBackend {
    /// Connects with default options; see [`SqlBackend::builder`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::builder(url).connect(namespace).await
    }

    /// Options: table prefix, timeout, tombstone retention, pool size, value size limit, TLS
    /// root certificate.
    pub fn builder(url: &str) -> SqlBackendBuilder {
        SqlBackendBuilder::new(url)
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
}

#[async_trait]
impl Backend for SqlBackend {
    fn name(&self) -> &'static str {
        self.shared.dialect.name()
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.shared.max_value_size)
    }

    /// The server, the tables and the namespace, on PostgreSQL and MySQL. Not on SQLite: an
    /// in-memory database is a store of its own per pool whatever its URL says.
    fn fetch_scope(&self) -> Option<String> {
        let statements = &self.shared.statements;
        match self.shared.dialect {
            crate::Dialect::Sqlite => None,
            dialect => Some(format!(
                "{}\n{}\n{}\n{}",
                dialect.name(),
                self.shared.url,
                statements.entries_table,
                self.namespace
            )),
        }
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.validate_key(key)?;
        let batch = Batch::new().put(key, value);
        let written = self.shared.run("persist", || self.apply_once(&batch)).await?;
        written.ok_or_else(|| crate::error::unexpected(self.name(), "a put changed nothing"))
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

    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        for (key, _) in batch.ops() {
            self.validate_key(key)?;
        }
        if batch.leased_keys().is_empty() && batch.guard_version().is_none() {
            return Ok(None);
        }
        self.shared.run("apply", || self.apply_once(&batch)).await
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
        self.hints().await
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.validate_key(key)?;
        self.shared.run("compare_and_swap", || self.compare_and_swap_once(key, &old, &new)).await
    }

    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        self.shared.run("journal", || self.journal_once(after, limit)).await
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.shared.run("history", || self.history_once(key, limit)).await
    }

    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        self.validate_key(key)?;
        self.shared.run("lease", || self.lease_once(key, op)).await
    }

    async fn remove_namespace(&self) -> Result<()> {
        self.shared.run("remove_namespace", || self.remove_once()).await
    }
}
