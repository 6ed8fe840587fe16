//! A three-server ensemble: the conformance suite against its connect string (the ensemble
//! `scripts/services.sh` starts on 127.0.0.1:2191-2193), and a leader killed under live
//! dicts (an ensemble of the test's own).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use durable_core::conformance::{BackendFactory, PATIENCE, require_service, unique_namespace};
use durable_core::{Backend, DurableDict};
use durable_testkit::OwnEnsemble;
use durable_zk::ZkBackend;
use serde_json::{Value, json};

fn ensemble_url() -> String {
    std::env::var("DURABLE_ZK_ENSEMBLE_URL")
        .unwrap_or_else(|_| "zk://127.0.0.1:2191,127.0.0.1:2192,127.0.0.1:2193/durable-test".into())
}

struct Ensemble;

#[durable_core::async_trait]
impl BackendFactory for Ensemble {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(ZkBackend::connect(&ensemble_url(), namespace).await.expect("connect to the ensemble"))
    }

    async fn available(&self) -> bool {
        let first = ensemble_url().trim_start_matches("zk://").split([',', '/']).next().unwrap_or_default().to_owned();
        let reachable = matches!(
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(first)).await,
            Ok(Ok(_))
        );
        require_service("a ZooKeeper ensemble (scripts/services.sh zookeeper-ensemble)", reachable)
    }
}

durable_core::conformance_tests!(Ensemble);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_and_writes_resume_when_the_leader_dies() {
    let Some(mut ensemble) = OwnEnsemble::start().await else { return };
    let url = ensemble.url();
    let ns = unique_namespace("leader");
    let connect = |timeout| {
        let (url, ns) = (url.clone(), ns.clone());
        async move { ZkBackend::builder(&url).timeout(timeout).connect(&ns).await.expect("connect") }
    };
    let reader = DurableDict::<Value>::builder(Arc::new(connect(Duration::from_secs(2)).await))
        .autosync(false)
        .background_refresh(true)
        .build()
        .await
        .unwrap();
    let writer = DurableDict::<Value>::builder(Arc::new(connect(Duration::from_secs(2)).await))
        .autosync(false)
        .build()
        .await
        .unwrap();
    for i in 0..20 {
        writer.insert(&format!("k{i}"), json!(i)).await.unwrap();
    }
    let deadline = Instant::now() + PATIENCE;
    while reader.snapshot().len() < 20 {
        assert!(Instant::now() < deadline, "the reader never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Reads are checked all along, from another task, while the leader dies and the rest
    // elect a new one.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = tokio::spawn({
        let (reader, stop) = (reader.clone(), stop.clone());
        async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let view = reader.snapshot();
                assert!(view.len() >= 20, "a read lost keys: {} left", view.len());
                assert_eq!(reader.get("k7").await.as_deref(), Some(&json!(7)));
                reads += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            reads
        }
    });

    let leader = ensemble.leader().await.expect("a leader");
    ensemble.kill(leader).await;
    let killed = Instant::now();
    // Writes fail (or wait) during the election, then go through again.
    let resumed = loop {
        match writer.insert("after", json!("election")).await {
            Ok(version) => break version,
            Err(err) => {
                assert!(err.is_unavailable(), "a write during the election: {err}");
                assert!(killed.elapsed() < PATIENCE * 3, "writes never resumed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let writes_back_after = killed.elapsed();
    let deadline = Instant::now() + PATIENCE;
    while reader.snapshot().get("after") != Some(&json!("election")) || reader.version() < resumed {
        assert!(Instant::now() < deadline, "the write after the election never reached the reader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reads.await.expect("no read failed");
    assert!(reads > 0);
    assert_ne!(ensemble.leader().await, Some(leader), "another server leads");
    eprintln!("ensemble: writes resumed {writes_back_after:?} after the leader was killed; {reads} reads meanwhile");

    // The old leader rejoins as a follower, and everything still holds.
    ensemble.restart(leader).await;
    writer.insert("rejoined", json!(true)).await.unwrap();
    let fresh = DurableDict::<Value>::builder(Arc::new(connect(Duration::from_secs(2)).await))
        .autosync(false)
        .hints(false)
        .build()
        .await
        .unwrap();
    assert_eq!(fresh.snapshot().len(), 22);
}
