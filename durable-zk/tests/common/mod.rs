//! Where the test ZooKeeper is, and the conformance suite's factory.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use durable_core::Backend;
use durable_core::conformance::BackendFactory;
use durable_zk::ZkBackend;

pub use durable_testkit::env::zk_url;

pub async fn zk_available() -> bool {
    durable_testkit::env::require("ZooKeeper", &zk_url(), 2181).await
}

pub struct ZooKeeper;

#[durable_core::async_trait]
impl BackendFactory for ZooKeeper {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(ZkBackend::connect(&zk_url(), namespace).await.expect("connect to ZooKeeper"))
    }

    async fn with_journal(&self, namespace: &str, journal: durable_core::JournalConfig) -> Arc<dyn Backend> {
        Arc::new(ZkBackend::builder(&zk_url()).journal(journal).connect(namespace).await.expect("connect"))
    }

    async fn available(&self) -> bool {
        zk_available().await
    }
}

/// How the shared suites reach ZooKeeper (its URLs carry digest credentials).
pub struct ZkTarget;

#[durable_core::async_trait]
impl durable_testkit::Target for ZkTarget {
    fn name(&self) -> &'static str {
        "zookeeper"
    }
    fn url(&self, port: u16) -> String {
        format!("zk://app:{}@127.0.0.1:{port}/durable-test", durable_testkit::suites::PASSWORD)
    }
    async fn connect(&self, url: &str, namespace: &str, timeout: Duration) -> durable_core::Result<Arc<dyn Backend>> {
        Ok(Arc::new(ZkBackend::builder(url).timeout(timeout).connect(namespace).await?))
    }
    fn bad_namespaces(&self) -> Vec<String> {
        ["a/b", ".", ".."].map(String::from).to_vec()
    }
}
