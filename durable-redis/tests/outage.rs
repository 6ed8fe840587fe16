//! A Redis of the test's own, killed and restarted under two dicts.

use std::sync::Arc;
use std::time::Duration;

use durable_core::Backend;
use durable_redis::RedisBackend;
use durable_testkit::{OwnServer, backup_stands_in_for_an_unreachable_store, outage_and_recovery};

const TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_is_survived_and_recovered_from_within_a_second() {
    let Some(mut server) = OwnServer::redis().await else { return };
    let recovery = outage_and_recovery(&mut server, TIMEOUT, |url, ns| async move {
        Ok(Arc::new(RedisBackend::builder(&url).timeout(TIMEOUT).connect(&ns).await?) as Arc<dyn Backend>)
    })
    .await;
    eprintln!("redis: {recovery:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_while_redis_is_down_serves_its_backup_file_and_catches_up() {
    let Some(mut server) = OwnServer::redis().await else { return };
    let caught_up = backup_stands_in_for_an_unreachable_store(&mut server, |url, ns| async move {
        Ok(Arc::new(RedisBackend::builder(&url).timeout(TIMEOUT).connect(&ns).await?) as Arc<dyn Backend>)
    })
    .await;
    eprintln!("redis: caught up {caught_up:?} after the store came back");
}
