//! Redis Cluster: the conformance suite on the cluster `scripts/services.sh` starts (3
//! masters and 3 replicas on 127.0.0.1:7001-7006), namespaces carrying a hash tag.

use std::sync::Arc;
use std::time::Duration;

use durable_core::conformance::{BackendFactory, require_service};
use durable_core::{Backend, Error};
use durable_redis::RedisBackend;

fn cluster_url() -> String {
    std::env::var("DURABLE_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into())
}

async fn cluster_available() -> bool {
    let first =
        cluster_url().trim_start_matches("redis+cluster://").split([',', '/']).next().unwrap_or_default().to_owned();
    let reachable =
        matches!(tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(first)).await, Ok(Ok(_)));
    require_service("a Redis Cluster (scripts/services.sh redis-cluster)", reachable)
}

struct Cluster;

#[durable_core::async_trait]
impl BackendFactory for Cluster {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        // The hash tag keeps the namespace's keys in one slot.
        let tagged = format!("{{{namespace}}}");
        Arc::new(RedisBackend::connect(&cluster_url(), &tagged).await.expect("connect to the cluster"))
    }

    async fn available(&self) -> bool {
        cluster_available().await
    }
}

durable_core::conformance_tests!(Cluster);

#[tokio::test]
async fn a_namespace_without_a_hash_tag_is_refused_on_a_cluster() {
    let nothing = format!("redis+cluster://127.0.0.1:{}", durable_testkit::spare_port());
    for ns in ["flags", "{}flags", "flags{"] {
        let refused = RedisBackend::connect(&nothing, ns).await;
        assert!(matches!(refused, Err(Error::InvalidNamespace { .. })), "{ns}");
    }
}
