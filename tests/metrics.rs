//! The `metrics` feature on real stores: a dict built with `.metrics(name)` records its
//! syncs by outcome, its store requests, writes and conflicts, its snapshot and its hint
//! listener through the `metrics` facade, read here with metrics-util's debugging
//! recorder; a dict built without it records nothing.

#![cfg(feature = "metrics")]

use durable::DurableDict;
use durable_core::conformance::{require_service, unique_namespace, wait_until};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use std::collections::BTreeMap;

type Recorded = Vec<(metrics_util::CompositeKey, Option<metrics::Unit>, Option<metrics::SharedString>, DebugValue)>;

/// Every metric of `dict` in `all`: `name{label=value,...}` (without the `dict` label) →
/// its value. (A snapshot drains the recorder's histograms: take one, read it per dict.)
fn recorded(all: &Recorded, dict: &str) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    for (key, _, _, value) in all {
        let key = key.key();
        if !key.labels().any(|label| label.key() == "dict" && label.value() == dict) {
            continue;
        }
        let labels: Vec<String> = key
            .labels()
            .filter(|label| label.key() != "dict")
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        let value = match value {
            DebugValue::Counter(n) => Seen::Count(*n),
            DebugValue::Histogram(samples) => Seen::Count(samples.len() as u64),
            DebugValue::Gauge(value) => Seen::Gauge(value.into_inner()),
        };
        out.insert(format!("{}{{{}}}", key.name(), labels.join(",")), value);
    }
    out
}

/// A counter's count or a histogram's number of samples; a gauge's value.
#[derive(Debug)]
enum Seen {
    Count(u64),
    Gauge(f64),
}

fn count(metrics: &BTreeMap<String, Seen>, name: &str) -> u64 {
    match metrics.get(name) {
        Some(Seen::Count(n)) => *n,
        _ => 0,
    }
}

fn gauge(metrics: &BTreeMap<String, Seen>, name: &str) -> Option<f64> {
    match metrics.get(name) {
        Some(Seen::Gauge(value)) => Some(*value),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dict_records_its_syncs_requests_writes_and_listener() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");
    let url = durable_testkit::env::redis_url();
    if !require_service("Redis", durable_testkit::env::reachable(&url, 6379).await) {
        return;
    }
    let ns = unique_namespace("metrics");
    let dict = DurableDict::<serde_json::Value>::builder(durable::connect(&url, &ns).await.unwrap())
        .autosync(false)
        .metrics("checkout")
        .build()
        .await
        .unwrap();
    let other = DurableDict::<serde_json::Value>::builder(durable::connect(&url, &ns).await.unwrap())
        .autosync(false)
        .hints(false)
        .metrics("other")
        .build()
        .await
        .unwrap();
    assert_eq!(dict.backend().describe(), "metrics(redis)");
    dict.insert("a", json!(1)).await.unwrap();
    dict.insert("b", json!(2)).await.unwrap();
    assert!(dict.compare_and_swap("a", Some(&json!(9)), Some(json!(3))).await.is_err(), "a conflict");
    dict.sync().await.unwrap();
    other.insert("c", json!(3)).await.unwrap();
    wait_until("the hint of the other dict's write", || dict.fresh_snapshot().is_none()).await;
    dict.sync().await.unwrap();
    assert_eq!(dict.snapshot().len(), 3);
    dict.sync().await.unwrap(); // quiet: free

    let all = snapshotter.snapshot().into_vec();
    let seen = recorded(&all, "checkout");
    assert_eq!(count(&seen, "durable_write_seconds{operation=persist}"), 2, "{seen:#?}");
    assert_eq!(count(&seen, "durable_write_seconds{operation=compare_and_swap}"), 1);
    assert_eq!(count(&seen, "durable_write_conflicts_total{}"), 1);
    assert_eq!(count(&seen, "durable_store_errors_total{operation=compare_and_swap}"), 1);
    assert!(count(&seen, "durable_store_requests_total{operation=persist}") == 2);
    assert!(count(&seen, "durable_store_requests_total{operation=watch}") >= 1);
    assert!(count(&seen, "durable_sync_seconds{outcome=free}") >= 1, "{seen:#?}");
    assert!(
        count(&seen, "durable_sync_seconds{outcome=delta}") + count(&seen, "durable_sync_seconds{outcome=unchanged}")
            >= 1
    );
    assert!(count(&seen, "durable_sync_seconds{outcome=full}") >= 1, "the first load");
    assert_eq!(gauge(&seen, "durable_snapshot_keys{}"), Some(3.0));
    assert_eq!(gauge(&seen, "durable_snapshot_version{}"), Some(dict.version() as f64));
    assert_eq!(gauge(&seen, "durable_hints_up{}"), Some(1.0));
    assert_eq!(gauge(&seen, "durable_staleness_seconds{}"), Some(0.0));
    let theirs = recorded(&all, "other");
    assert_eq!(count(&theirs, "durable_write_seconds{operation=persist}"), 1, "each dict its own label");

    // A dict without `.metrics` records nothing and is not wrapped.
    let persists = |all: &Recorded| -> u64 {
        let mut total = 0;
        for (key, _, _, value) in all {
            let persist = key.key().labels().any(|label| label.value() == "persist");
            if let (true, true, DebugValue::Counter(n)) =
                (key.key().name() == "durable_store_requests_total", persist, value)
            {
                total += n;
            }
        }
        total
    };
    let before = persists(&snapshotter.snapshot().into_vec());
    let plain =
        DurableDict::<serde_json::Value>::builder(durable::connect(&url, &ns).await.unwrap()).build().await.unwrap();
    plain.insert("d", json!(4)).await.unwrap();
    assert_eq!(plain.backend().describe(), "redis");
    assert_eq!(persists(&snapshotter.snapshot().into_vec()), before, "the plain dict's write is not counted");
}
