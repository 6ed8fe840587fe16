//! [`SqlBackendBuilder`]: options, and the namespace rule.

use std::time::Duration;

use std::sync::Arc;

use durable_core::Result;

use crate::MAX_NAMESPACE_LEN;
use crate::backend::SqlBackend;
use crate::pool::Shared;

/// Options for [`SqlBackend::builder`].
#[derive(Debug, Clone)]
pub struct SqlBackendBuilder {
    pub(crate) url: String,
    pub(crate) table_prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) tombstone_retention: u64,
    pub(crate) max_connections: u32,
    pub(crate) max_value_size: usize,
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
