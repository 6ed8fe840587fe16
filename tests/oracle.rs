//! The version oracle (`durable::redis::VersionOracle`): the data in SQLite or MariaDB, the
//! version and the hints in Redis. The conformance suite through it, and the oracle being
//! only a hint: flushed, killed and restarted under live dicts, with a writer that goes
//! around it.

#![cfg(all(feature = "redis", feature = "sqlite", feature = "mysql"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable::backend::Backend;
use durable::redis::VersionOracle;
use durable::{DurableDict, HintHealth};
use durable_core::conformance::{BackendFactory, unique_namespace, wait_until};
use durable_testkit::OwnServer;

/// The oracle in front of `data` (a SQL URL), on the shared Redis.
struct Oracle {
    data: String,
}

impl Oracle {
    fn sqlite() -> Self {
        Self { data: common::sqlite_url("oracle") }
    }

    fn mysql() -> Self {
        Self { data: durable_testkit::env::mysql_url() }
    }

    async fn over(&self, inner: durable::sql::SqlBackend, namespace: &str) -> Arc<dyn Backend> {
        let redis = durable_testkit::env::redis_url();
        Arc::new(VersionOracle::connect(Arc::new(inner), &redis, namespace).await.expect("the oracle"))
    }
}

#[durable_core::async_trait]
impl BackendFactory for Oracle {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        self.over(durable::sql::SqlBackend::connect(&self.data, namespace).await.expect("connect"), namespace).await
    }

    async fn with_journal(&self, namespace: &str, journal: durable::JournalConfig) -> Arc<dyn Backend> {
        let inner = durable::sql::SqlBackend::builder(&self.data).journal(journal).connect(namespace).await;
        self.over(inner.expect("connect"), namespace).await
    }

    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        let inner = durable::sql::SqlBackend::builder(&self.data)
            .tombstone_retention(mutations as u64)
            .connect(namespace)
            .await;
        Some(self.over(inner.expect("connect"), namespace).await)
    }

    async fn available(&self) -> bool {
        let redis = common::server_available("Redis", &durable_testkit::env::redis_url(), 6379).await;
        let data = self.data.starts_with("sqlite") || common::server_available("MariaDB", &self.data, 3306).await;
        redis && data
    }
}

mod sqlite {
    durable_core::conformance_tests!(crate::Oracle::sqlite());
    durable_core::conformance_tests!(@leases crate::Oracle::sqlite());
}

mod mysql {
    durable_core::conformance_tests!(crate::Oracle::mysql());
}

/// The oracle at a Redis of the test's own, checked against the data store every 200 ms.
async fn oracle(data: &str, redis: &str, namespace: &str) -> Arc<dyn Backend> {
    let inner = durable::connect(data, namespace).await.expect("connect the data store");
    let oracle =
        VersionOracle::with_options(inner, redis, namespace, Duration::from_millis(200), Duration::from_millis(300));
    Arc::new(oracle.expect("the oracle"))
}

async fn oracle_value(redis: &str, namespace: &str) -> Option<u64> {
    let client = redis::Client::open(redis).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET").arg(format!("{namespace}:oracle")).query_async(&mut connection).await.unwrap()
}

/// A writer and a reader through the oracle, and a writer that goes around it, on SQLite
/// and MariaDB: a write reaches the reader by the oracle's hint and sets the oracle's
/// version; flushed, the oracle is seeded again from the data store and the bypassing
/// write is seen; killed, writes go on and the reader follows the data store; restarted,
/// the hints come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oracle_hints_and_is_only_a_hint() {
    let Some(mut server) = OwnServer::redis().await else { return };
    let redis = server.url();
    let mut stores = vec![common::sqlite_url("oracle-hint")];
    let mysql = durable_testkit::env::mysql_url();
    if common::server_available("MariaDB", &mysql, 3306).await {
        stores.push(mysql);
    }
    for data in stores {
        if !server.answers().await {
            server.start().await;
        }
        let ns = unique_namespace("oracle");
        let writer =
            DurableDict::<u64>::builder(oracle(&data, &redis, &ns).await).autosync(false).build().await.unwrap();
        let reader = DurableDict::<u64>::builder(oracle(&data, &redis, &ns).await)
            .autosync(false)
            .background_refresh(true)
            .poll_interval(Duration::from_millis(100))
            .build()
            .await
            .unwrap();
        let around = DurableDict::<u64>::builder(durable::connect(&data, &ns).await.unwrap())
            .autosync(false)
            .build()
            .await
            .unwrap();
        wait_until("the reader's hints", || reader.status().hints == HintHealth::Healthy).await;

        let version = writer.insert("k", 1).await.unwrap();
        wait_until("the write at the reader", || reader.snapshot().get("k") == Some(&1)).await;
        assert_eq!(oracle_value(&redis, &ns).await, Some(version), "{data}: the oracle holds the version");

        // Flushed: the key is gone; the reader's checks go to the data store, which seeds it.
        let client = redis::Client::open(redis.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await.unwrap();
        let version = around.insert("k", 2).await.unwrap();
        wait_until("a write around the oracle at the reader", || reader.snapshot().get("k") == Some(&2)).await;
        let deadline = tokio::time::Instant::now() + durable_core::conformance::PATIENCE;
        while oracle_value(&redis, &ns).await != Some(version) {
            assert!(tokio::time::Instant::now() < deadline, "{data}: the oracle was never seeded again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Killed: writes go on at once, the reader follows the data store.
        server.kill().await;
        let started = Instant::now();
        writer.insert("k", 3).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{data}: a write waited {:?} on the oracle",
            started.elapsed()
        );
        wait_until("a write made while the oracle is down, at the reader", || reader.snapshot().get("k") == Some(&3))
            .await;
        wait_until("the reader's hints to be down", || reader.status().hints != HintHealth::Healthy).await;

        // Restarted: the hints come back, and carry the next write.
        server.start().await;
        wait_until("the reader's hints back", || reader.status().hints == HintHealth::Healthy).await;
        let version = writer.insert("k", 4).await.unwrap();
        wait_until("a write after the restart at the reader", || reader.snapshot().get("k") == Some(&4)).await;
        assert_eq!(oracle_value(&redis, &ns).await, Some(version), "{data}");
    }
}
