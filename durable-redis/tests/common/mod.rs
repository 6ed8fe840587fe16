//! Where the test Redis is, and the conformance suite's factory.

#![allow(dead_code)]

use std::sync::Arc;

use durable_core::Backend;
use durable_core::conformance::{BackendFactory, require_service};
use durable_redis::RedisBackend;

pub fn redis_url() -> String {
    std::env::var("DURABLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub async fn redis_available() -> bool {
    let url = redis_url();
    let reachable = match redis::Client::open(url.as_str()) {
        Ok(client) => matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), client.get_multiplexed_async_connection()).await,
            Ok(Ok(_))
        ),
        Err(_) => false,
    };
    require_service("Redis", reachable)
}

pub struct Redis;

#[durable_core::async_trait]
impl BackendFactory for Redis {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(RedisBackend::connect(&redis_url(), namespace).await.expect("connect to Redis"))
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
