//! Where the test ZooKeeper is, and the conformance suite's factory.

#![allow(dead_code)]

use std::sync::Arc;

use durable_core::Backend;
use durable_core::conformance::{BackendFactory, require_service};
use durable_zk::ZkBackend;

pub fn zk_url() -> String {
    std::env::var("DURABLE_ZK_URL").unwrap_or_else(|_| "zk://127.0.0.1:2181/durable-test".into())
}

pub async fn zk_available() -> bool {
    let hosts = zk_url();
    let first = hosts.trim_start_matches("zk://").split(['/', ',']).next().unwrap_or("127.0.0.1:2181").to_owned();
    let reachable = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), tokio::net::TcpStream::connect(first)).await,
        Ok(Ok(_))
    );
    require_service("ZooKeeper", reachable)
}

pub struct ZooKeeper;

#[durable_core::async_trait]
impl BackendFactory for ZooKeeper {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(ZkBackend::connect(&zk_url(), namespace).await.expect("connect to ZooKeeper"))
    }

    async fn available(&self) -> bool {
        zk_available().await
    }
}
