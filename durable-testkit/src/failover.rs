//! The parts every failover test is made of (a Redis Cluster master, a ZooKeeper leader):
//! two live dicts with data in, reads checked all along from another task while the server
//! fails, writes retried until the store takes them again, and the reader awaited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use durable_core::conformance::PATIENCE;
use durable_core::{Backend, DurableDict, Version};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A dict that refreshes in the background and a dict that writes, on one namespace, with
/// `k0 = 0 … k{seeded-1}` written and seen by the reader.
pub struct LiveDicts {
    /// Refreshes in the background; never called to sync.
    pub reader: DurableDict<Value>,
    /// Syncs only when it writes.
    pub writer: DurableDict<Value>,
    /// How many keys were written first.
    pub seeded: usize,
}

impl LiveDicts {
    /// Builds both (the reader polling every `poll`, `None` for the default), writes
    /// `seeded` keys and waits for the reader to have them.
    pub async fn seeded(
        reader: Arc<dyn Backend>,
        writer: Arc<dyn Backend>,
        poll: Option<Duration>,
        seeded: usize,
    ) -> Self {
        let mut building = DurableDict::<Value>::builder(reader).autosync(false).background_refresh(true);
        if let Some(poll) = poll {
            building = building.poll_interval(poll);
        }
        let reader = building.build().await.expect("the reader");
        let writer = DurableDict::<Value>::builder(writer).autosync(false).build().await.expect("the writer");
        for i in 0..seeded {
            writer.insert(&format!("k{i}"), json!(i)).await.expect("a write before the failure");
        }
        let dicts = Self { reader, writer, seeded };
        dicts.reader_reaches(|snapshot| snapshot.len() >= seeded, "the reader to catch up").await;
        dicts
    }

    /// Starts reading the reader's snapshot every millisecond from another task, checking
    /// each time that no seeded key is missing and `k7` still holds 7.
    pub fn keep_reading(&self) -> Reads {
        let stop = Arc::new(AtomicBool::new(false));
        let (reader, seeded, stopping) = (self.reader.clone(), self.seeded, stop.clone());
        let task = tokio::spawn(async move {
            let mut reads = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let view = reader.snapshot();
                assert!(view.len() >= seeded, "a read lost keys: {} left", view.len());
                if seeded > 7 {
                    assert_eq!(view.get("k7"), Some(&json!(7)), "a read saw k7 change");
                }
                reads += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            reads
        });
        Reads { stop, task }
    }

    /// Writes `key = value` until the store takes it — every failure meanwhile must be an
    /// outage, and the store must take it within three times [`PATIENCE`] of `failed_at` —
    /// and returns its version.
    pub async fn write_through(&self, key: &str, value: Value, failed_at: Instant) -> Version {
        loop {
            match self.writer.insert(key, value.clone()).await {
                Ok(version) => return version,
                Err(err) => {
                    assert!(err.is_unavailable(), "a write during the failover: {err}");
                    assert!(failed_at.elapsed() < PATIENCE * 3, "writes never resumed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Waits (up to [`PATIENCE`]) until the reader shows `key = value` at `version` or later.
    pub async fn reader_has(&self, key: &str, value: &Value, version: Version) {
        let what = format!("the reader to have {key} = {value} at version {version}");
        self.reader_reaches(
            |_| self.reader.version() >= version && self.reader.snapshot().get(key) == Some(value),
            &what,
        )
        .await;
    }

    async fn reader_reaches(&self, done: impl Fn(&durable_core::Snapshot<Value>) -> bool, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.reader.snapshot()) {
            assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The reading task of [`LiveDicts::keep_reading`].
pub struct Reads {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl Reads {
    /// Stops reading; how many reads were made (at least one), every one of them checked.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let reads = self.task.await.expect("a read failed");
        assert!(reads > 0, "no read was made");
        reads
    }
}
