//! Where the test Redis is, and the conformance suite's factory.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use durable_core::Backend;
use durable_core::conformance::BackendFactory;
use durable_redis::RedisBackend;

pub use durable_testkit::env::redis_url;

pub async fn redis_available() -> bool {
    durable_testkit::env::require("Redis", &redis_url(), 6379).await
}

pub struct Redis;

#[durable_core::async_trait]
impl BackendFactory for Redis {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(RedisBackend::connect(&redis_url(), namespace).await.expect("connect to Redis"))
    }

    async fn with_journal(&self, namespace: &str, journal: durable_core::JournalConfig) -> Arc<dyn Backend> {
        Arc::new(RedisBackend::builder(&redis_url()).journal(journal).connect(namespace).await.expect("connect"))
    }

    async fn with_change_log(&self, namespace: &str, keys: usize) -> Option<Arc<dyn Backend>> {
        let backend =
            RedisBackend::builder(&redis_url()).change_log_len(keys).connect(namespace).await.expect("connect");
        Some(Arc::new(backend))
    }

    async fn available(&self) -> bool {
        redis_available().await
    }
}

/// How the shared suites reach Redis.
pub struct RedisTarget;

#[durable_core::async_trait]
impl durable_testkit::Target for RedisTarget {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn url(&self, port: u16) -> String {
        format!("redis://app:{}@127.0.0.1:{port}/0", durable_testkit::suites::PASSWORD)
    }
    async fn connect(&self, url: &str, namespace: &str, timeout: Duration) -> durable_core::Result<Arc<dyn Backend>> {
        Ok(Arc::new(RedisBackend::builder(url).timeout(timeout).connect(namespace).await?))
    }
}
