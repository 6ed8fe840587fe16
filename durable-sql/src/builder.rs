//! [`SqlBackendBuilder`]: options, and the namespace rule.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use durable_core::Result;

use crate::MAX_NAMESPACE_LEN;
use crate::backend::SqlBackend;
use crate::pool::Shared;

/// Options for [`SqlBackend::builder`].
#[derive(Clone)]
pub struct SqlBackendBuilder {
    pub(crate) url: String,
    pub(crate) table_prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) tombstone_retention: u64,
    pub(crate) max_connections: u32,
    pub(crate) max_value_size: usize,
    pub(crate) tls_root_cert: Option<PathBuf>,
    pub(crate) read_only: bool,
    pub(crate) journal: durable_core::JournalConfig,
}

impl std::fmt::Debug for SqlBackendBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBackendBuilder")
            .field("url", &durable_core::redact_url(&self.url))
            .field("table_prefix", &self.table_prefix)
            .field("timeout", &self.timeout)
            .field("tombstone_retention", &self.tombstone_retention)
            .field("max_connections", &self.max_connections)
            .field("max_value_size", &self.max_value_size)
            .field("tls_root_cert", &self.tls_root_cert)
            .field("read_only", &self.read_only)
            .field("journal", &self.journal)
            .finish()
    }
}

impl SqlBackendBuilder {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            table_prefix: String::new(),
            timeout: crate::DEFAULT_TIMEOUT,
            tombstone_retention: crate::DEFAULT_TOMBSTONE_RETENTION,
            max_connections: 10,
            max_value_size: crate::DEFAULT_MAX_VALUE_SIZE,
            tls_root_cert: None,
            read_only: false,
            journal: durable_core::JournalConfig::default(),
        }
    }

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

    /// For PostgreSQL and MySQL/MariaDB over TLS (feature `tls`): trust the CA certificate in
    /// this PEM file instead of the system's roots, e.g. a private CA's. Unless the URL says
    /// otherwise (`sslmode=` for PostgreSQL, `ssl-mode=` for MySQL), the connection then
    /// requires TLS and verifies the server's certificate and name (`verify-full`,
    /// `VERIFY_IDENTITY`). Without it, the URL's own `sslrootcert=` / `ssl-ca=` apply.
    pub fn tls_root_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_root_cert = Some(pem_file.into());
        self
    }

    /// Connect with an account that may only read (default `false`): connecting then
    /// creates and migrates nothing — it checks that the schema is there and current, and
    /// fails saying so if not (a writer must open the store first). The account needs
    /// `SELECT` on the three tables (and, on PostgreSQL, nothing more for `LISTEN`). Writes
    /// are then refused by the database with a typed error; put the dict behind
    /// `read_only(true)` on its builder to refuse them before any I/O.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// How the change journal is kept (default: on, see
    /// [`JournalConfig`](durable_core::JournalConfig)): rows of `<prefix>durable_journal`
    /// written in each mutation's transaction.
    pub fn journal(mut self, journal: durable_core::JournalConfig) -> Self {
        self.journal = journal;
        self
    }

    /// Connects, creates or migrates the schema (unless [read-only](Self::read_only)), and
    /// returns a backend on `namespace`.
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
