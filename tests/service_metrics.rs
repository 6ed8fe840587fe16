//! The flags service's `/metrics`: Prometheus text (parsed with `prometheus-parse`) whose
//! `durable_*` figures move as requests sync and write. A test binary of its own: it
//! installs the process's one recorder.

mod common;

#[path = "../examples/flags_service.rs"]
#[allow(dead_code)]
mod flags_service;

use common::{call, http_client, sqlite_url};
use durable_core::conformance::unique_namespace;

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text")
}

/// The value of `metric` for this namespace's dict, with `label=value` when given.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, dict: &str, label: Option<(&str, &str)>) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric && sample.labels.get("dict") == Some(dict))
        .find(|sample| label.is_none_or(|(name, wanted)| sample.labels.get(name) == Some(wanted)))
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_syncs_and_writes() {
    flags_service::install_metrics();
    let ns = unique_namespace("service-metrics");
    let dict = flags_service::open(&sqlite_url("service-metrics"), &ns).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, flags_service::router(dict)).await.unwrap() });
    let client = http_client();

    let (status, text) = call(&client, "GET", &format!("{base}/metrics"), None).await;
    assert_eq!(status, 200, "{text}");
    let before = parse(&text);
    let version = |scrape: &prometheus_parse::Scrape| value(scrape, "durable_snapshot_version", &ns, None);
    let persists = |scrape: &prometheus_parse::Scrape| {
        value(scrape, "durable_store_requests_total", &ns, Some(("operation", "persist"))).unwrap_or(0.0)
    };
    assert_eq!(version(&before), Some(0.0), "{text}");
    assert!(
        value(&before, "durable_sync_seconds_count", &ns, Some(("outcome", "full"))).is_some_and(|n| n >= 1.0),
        "{text}"
    );

    for (i, body) in ["true", "false", "1"].into_iter().enumerate() {
        let (status, answer) = call(&client, "PUT", &format!("{base}/flags/f{i}"), Some(body)).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(call(&client, "GET", &format!("{base}/hello"), None).await.0, 200);
    let after = parse(&call(&client, "GET", &format!("{base}/metrics"), None).await.1);
    assert_eq!(persists(&after) - persists(&before), 3.0, "three writes");
    assert_eq!(version(&after), Some(3.0), "the snapshot's version");
    assert_eq!(value(&after, "durable_snapshot_keys", &ns, None), Some(3.0));
    let syncs = |scrape: &prometheus_parse::Scrape| {
        ["free", "unchanged", "delta", "full"]
            .iter()
            .filter_map(|outcome| value(scrape, "durable_sync_seconds_count", &ns, Some(("outcome", outcome))))
            .sum::<f64>()
    };
    assert!(syncs(&after) > syncs(&before), "requests sync: {} then {}", syncs(&before), syncs(&after));
}
