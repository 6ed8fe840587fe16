//! Redis Cluster: the conformance suite on the cluster `scripts/services.sh` starts (3
//! masters and 3 replicas on 127.0.0.1:7001-7006), namespaces carrying a hash tag.

use std::sync::Arc;
use std::time::Duration;

use durable_core::conformance::BackendFactory;
use durable_core::{Backend, Error};
use durable_redis::RedisBackend;

use durable_testkit::env::redis_cluster_url as cluster_url;

/// The reader's poll interval in the failover tests: far beyond them, so that what the reader
/// learns comes from hints (or the resync after losing them).
const MINUTE: Duration = Duration::from_secs(60);

async fn cluster_available() -> bool {
    durable_testkit::env::require("a Redis Cluster (scripts/services.sh redis-cluster)", &cluster_url(), 7001).await
}

struct Cluster;

#[durable_core::async_trait]
impl BackendFactory for Cluster {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        // The hash tag keeps the namespace's keys in one slot.
        let tagged = format!("{{{namespace}}}");
        Arc::new(RedisBackend::connect(&cluster_url(), &tagged).await.expect("connect to the cluster"))
    }

    async fn with_journal(&self, namespace: &str, journal: durable_core::JournalConfig) -> Arc<dyn Backend> {
        let tagged = format!("{{{namespace}}}");
        Arc::new(RedisBackend::builder(&cluster_url()).journal(journal).connect(&tagged).await.expect("connect"))
    }

    async fn available(&self) -> bool {
        cluster_available().await
    }
}

durable_core::conformance_tests!(Cluster);
durable_core::conformance_tests!(@leases Cluster);

#[tokio::test]
async fn a_namespace_without_a_hash_tag_is_refused_on_a_cluster() {
    let nothing = format!("redis+cluster://127.0.0.1:{}", durable_testkit::spare_port());
    for ns in ["flags", "{}flags", "flags{"] {
        let refused = RedisBackend::connect(&nothing, ns).await;
        assert!(matches!(refused, Err(Error::InvalidNamespace { .. })), "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_its_replica_and_the_dict_recovers() {
    use std::time::Instant;

    use durable_core::conformance::unique_namespace;
    use durable_testkit::LiveDicts;
    use serde_json::json;

    let Some(mut cluster) = durable_testkit::OwnCluster::start().await else { return };
    let ns = format!("{{{}}}", unique_namespace("failover"));
    let connect = || async {
        RedisBackend::builder(&cluster.url()).timeout(Duration::from_secs(1)).connect(&ns).await.expect("connect")
    };
    // A minute between polls: what the reader learns after the failover comes from hints.
    let live = LiveDicts::seeded(Arc::new(connect().await), Arc::new(connect().await), Some(MINUTE), 20).await;
    let reads = live.keep_reading();

    let master = cluster.master_of(&ns).await.expect("the namespace's master");
    // Redis replicates asynchronously: what the master acknowledged but had not yet sent
    // is lost with it, and the dict would rightly follow the store back. Wait for the
    // replica, so that this test is about the dict's recovery, not Redis's replication.
    cluster.wait_for_replicas(master).await;
    cluster.kill(master).await;
    let killed = Instant::now();
    let resumed = live.write_through("after", json!("failover"), killed).await;
    let writes_back_after = killed.elapsed();
    assert_ne!(cluster.master_of(&ns).await, Some(master), "the replica took over");
    // The refreshing dict hears of it without a poll (a minute away): the sharded
    // subscription followed the slot to its new master, or the dict resynced on resuming.
    live.reader_has("after", &json!("failover"), resumed).await;
    let reached_reader_after = killed.elapsed();
    // And a later change too, through the hints.
    let again = live.writer.insert("later", json!(1)).await.unwrap();
    live.reader_has("later", &json!(1), again).await;
    let reads = reads.stop().await;
    eprintln!(
        "cluster failover: writes resumed {writes_back_after:?} after the master was killed, the reader had the \
         change {reached_reader_after:?} after; {reads} reads meanwhile"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharded_slot_ends_in_a_resync_on_its_new_master() {
    use std::time::Instant;

    use durable_core::conformance::unique_namespace;
    use durable_testkit::LiveDicts;
    use serde_json::json;

    let Some(cluster) = durable_testkit::OwnCluster::start().await else { return };
    let ns = format!("{{{}}}", unique_namespace("reshard"));
    let connect = || async {
        RedisBackend::builder(&cluster.url()).timeout(Duration::from_secs(1)).connect(&ns).await.expect("connect")
    };
    // A minute between polls: whatever the reader learns after the move, it learns from
    // the hints or from the resync that follows losing them.
    let live = LiveDicts::seeded(Arc::new(connect().await), Arc::new(connect().await), Some(MINUTE), 0).await;
    let before = live.writer.insert("before", json!(1)).await.unwrap();
    live.reader_has("before", &json!(1), before).await;

    let (from, to) = cluster.move_slot_of(&ns).await.expect("the slot moved");
    assert_eq!(cluster.master_of(&ns).await, Some(to), "the cluster serves the slot from its new master");
    let moved = Instant::now();
    // The keys moved with the slot: the writer's next write follows the redirect and
    // continues the same version sequence.
    let after = live.writer.insert("after", json!("moved")).await.unwrap();
    assert_eq!(after, before + 1, "the namespace's counter moved with its slot");
    live.reader_has("after", &json!("moved"), after).await;
    let reached = moved.elapsed();
    assert_eq!(live.reader.snapshot().get("before"), Some(&json!(1)));
    // The subscription now lives on the new master: later changes keep arriving.
    for i in 0..5 {
        let version = live.writer.insert(&format!("later{i}"), json!(i)).await.unwrap();
        live.reader_has(&format!("later{i}"), &json!(i), version).await;
    }
    let status = live.reader.status();
    assert!(status.last_error.is_none() && status.hints == durable_core::HintHealth::Healthy, "{status:?}");
    eprintln!(
        "cluster resharding: slot moved {from} -> {to}; the reader had the next write {reached:?} after the move"
    );
}
