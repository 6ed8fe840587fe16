//! Where the test databases are, and factories for the conformance suite.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use durable_core::Backend;
use durable_core::conformance::BackendFactory;
use durable_sql::SqlBackend;

pub use durable_testkit::env::{mysql_url, postgres_url};

/// A SQLite file no other test uses, under the target directory.
pub fn sqlite_file(label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durable-sql-tests");
    std::fs::create_dir_all(&dir).expect("create the SQLite test directory");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{label}-{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A table prefix no other run uses, for tests that need tables of their own.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("t{:x}_{}_", (nanos as u64) ^ u64::from(std::process::id()), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The conformance suite's factory: a URL, and how far back tombstones go.
pub struct Sql {
    pub url: String,
    pub service: &'static str,
    pub port: u16,
}

impl Sql {
    pub fn sqlite() -> Self {
        Self { url: sqlite_url(&sqlite_file("conformance")), service: "sqlite", port: 0 }
    }
    pub fn postgres() -> Self {
        Self { url: postgres_url(), service: "PostgreSQL", port: 5432 }
    }
    pub fn mysql() -> Self {
        Self { url: mysql_url(), service: "MySQL/MariaDB", port: 3306 }
    }
}

#[durable_core::async_trait]
impl BackendFactory for Sql {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(SqlBackend::connect(&self.url, namespace).await.expect("connect"))
    }

    async fn with_journal(&self, namespace: &str, journal: durable_core::JournalConfig) -> Arc<dyn Backend> {
        Arc::new(SqlBackend::builder(&self.url).journal(journal).connect(namespace).await.expect("connect"))
    }

    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        let backend = SqlBackend::builder(&self.url)
            .tombstone_retention(mutations as u64)
            .connect(namespace)
            .await
            .expect("connect");
        Some(Arc::new(backend))
    }

    async fn available(&self) -> bool {
        self.port == 0 || durable_testkit::env::require(self.service, &self.url, self.port).await
    }
}

/// How the shared suites reach a SQL server: PostgreSQL or MySQL by scheme.
pub struct SqlTarget(pub &'static str);

#[durable_core::async_trait]
impl durable_testkit::Target for SqlTarget {
    fn name(&self) -> &'static str {
        self.0
    }
    fn url(&self, port: u16) -> String {
        format!("{}://app:{}@127.0.0.1:{port}/test", self.0, durable_testkit::suites::PASSWORD)
    }
    async fn connect(&self, url: &str, namespace: &str, timeout: Duration) -> durable_core::Result<Arc<dyn Backend>> {
        Ok(Arc::new(SqlBackend::builder(url).timeout(timeout).connect(namespace).await?))
    }
}
