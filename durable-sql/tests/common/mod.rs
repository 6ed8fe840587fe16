//! Where the test databases are, and factories for the conformance suite.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use durable_core::Backend;
use durable_core::conformance::{BackendFactory, require_service};
use durable_sql::SqlBackend;

pub fn postgres_url() -> String {
    std::env::var("DURABLE_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_url() -> String {
    std::env::var("DURABLE_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

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

/// Whether something accepts TCP connections at the URL's host and port.
pub async fn reachable(url: &str, default_port: u16) -> bool {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let addr = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:{default_port}") };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
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

    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        let backend = SqlBackend::builder(&self.url)
            .tombstone_retention(mutations as u64)
            .connect(namespace)
            .await
            .expect("connect");
        Some(Arc::new(backend))
    }

    async fn available(&self) -> bool {
        self.port == 0 || require_service(self.service, reachable(&self.url, self.port).await)
    }
}
