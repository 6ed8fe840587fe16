//! OFREP served by `durable_flags::ofrep::router` over a real socket, read by a real OFREP
//! provider from another ecosystem: Python's OpenFeature SDK with
//! `openfeature-provider-ofrep` (from PyPI). Every type, targeting, a disabled flag, a
//! missing flag, a change seen at the next evaluation; the bulk endpoint's ETag and 304.

#![cfg(feature = "ofrep")]

use std::sync::Arc;

use durable_core::DurableDict;
use durable_core::conformance::unique_namespace;
use durable_flags::{Context, FlagDefinition, FlagSet, Flags};
use durable_testkit::ofrep::{bulk, evaluate, python_client, query};
use serde_json::json;

fn flag_set() -> FlagSet {
    FlagSet::from_json(
        &json!({"flags": {
            "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on"]}, "metadata": {"owner": "payments"}},
            "title": {"state": "ENABLED", "variants": {"a": "Checkout", "b": "Pay now"}, "defaultVariant": "a",
                "targeting": {"fractional": [["a", 50], ["b", 50]]}},
            "limit": {"state": "ENABLED", "variants": {"low": 10, "high": 1000}, "defaultVariant": "high"},
            "ratio": {"state": "ENABLED", "variants": {"quarter": 0.25}, "defaultVariant": "quarter"},
            "theme": {"state": "ENABLED", "variants": {"dark": {"background": "#000"}}, "defaultVariant": "dark"},
            "killed": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}
        }})
        .to_string(),
    )
    .unwrap()
}

async fn serve(flags: Arc<Flags>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, durable_flags::ofrep::router(flags)).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pythons_ofrep_provider_reads_the_flags() {
    let Some(venv) = python_client().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flags.db").display());
    let dict =
        DurableDict::builder(durable::connect(&url, &unique_namespace("ofrep")).await.unwrap()).build().await.unwrap();
    let flags = Arc::new(Flags::new(dict));
    flags.import(&flag_set(), true).await.unwrap();
    let base = serve(Arc::clone(&flags)).await;

    let users: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let mut queries = vec![
        query("boolean", "checkout", Some("ada"), json!({"plan": "pro"}), json!(false)),
        query("boolean", "checkout", Some("bob"), json!({"plan": "free"}), json!(true)),
        query("integer", "limit", None, json!({}), json!(1)),
        query("float", "ratio", None, json!({}), json!(1.5)),
        query("object", "theme", None, json!({}), json!({})),
        query("boolean", "killed", None, json!({}), json!(false)),
        query("boolean", "missing", None, json!({}), json!(true)),
    ];
    queries.extend(users.iter().map(|user| query("string", "title", Some(user), json!({}), json!("?"))));
    let lines = evaluate(&venv, &base, &queries).await;
    assert_eq!(lines.len(), queries.len());
    let got = |i: usize| (&lines[i]["value"], lines[i]["reason"].as_str(), lines[i]["variant"].as_str());
    assert_eq!(got(0), (&json!(true), Some("TARGETING_MATCH"), Some("on")));
    assert_eq!(got(1), (&json!(false), Some("DEFAULT"), Some("off")));
    assert_eq!(got(2), (&json!(1000), Some("STATIC"), Some("high")));
    assert_eq!(got(3), (&json!(0.25), Some("STATIC"), Some("quarter")));
    assert_eq!(got(4), (&json!({"background": "#000"}), Some("STATIC"), Some("dark")));
    assert_eq!(lines[5]["value"], json!(false), "disabled: the caller's default");
    assert_eq!((&lines[6]["value"], lines[6]["error"].as_str()), (&json!(true), Some("FLAG_NOT_FOUND")));
    // The fractional split as the server's own evaluation buckets each user.
    let request = flags.snapshot();
    let mut seen = std::collections::BTreeSet::new();
    for (i, user) in users.iter().enumerate() {
        let here = request.string("title", &Context::new().targeting_key(user), "?");
        assert_eq!(lines[7 + i]["value"], json!(here), "{user}");
        seen.insert(here);
    }
    assert_eq!(seen.len(), 2, "20 users fall in both halves");

    // A change is served at the next evaluation.
    let low: FlagDefinition = serde_json::from_value(
        json!({"state": "ENABLED", "variants": {"low": 10, "high": 1000}, "defaultVariant": "low"}),
    )
    .unwrap();
    flags.put("limit", &low).await.unwrap();
    let again = evaluate(&venv, &base, &[query("integer", "limit", None, json!({}), json!(1))]).await;
    assert_eq!(again[0]["value"], json!(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_evaluation_has_an_etag_and_answers_304_until_something_changes() {
    let Some(venv) = python_client().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flags.db").display());
    let dict = DurableDict::builder(durable::connect(&url, &unique_namespace("ofrep-bulk")).await.unwrap())
        .build()
        .await
        .unwrap();
    let flags = Arc::new(Flags::new(dict));
    flags.import(&flag_set(), true).await.unwrap();
    let base = serve(Arc::clone(&flags)).await;
    let context = json!({"targetingKey": "ada", "plan": "pro"});
    let first = bulk(&venv, &base, &context, None).await;
    assert_eq!(first["status"], 200);
    let etag = first["etag"].as_str().expect("an ETag").to_owned();
    let flags_in = first["body"]["flags"].as_array().unwrap();
    let keys: Vec<&str> = flags_in.iter().map(|flag| flag["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["checkout", "killed", "limit", "ratio", "theme", "title"]);
    assert_eq!(
        flags_in[0],
        json!({"key": "checkout", "value": true, "reason": "TARGETING_MATCH", "variant": "on", "metadata": {"owner": "payments"}})
    );
    assert_eq!(flags_in[1], json!({"key": "killed", "reason": "DISABLED", "metadata": {}}), "no value, no variant");
    assert_eq!(bulk(&venv, &base, &context, Some(&etag)).await["status"], 304, "nothing changed");
    flags.remove("ratio").await.unwrap();
    let changed = bulk(&venv, &base, &context, Some(&etag)).await;
    assert_eq!(changed["status"], 200, "a flag went away");
    assert_ne!(changed["etag"].as_str(), Some(etag.as_str()));
    assert_eq!(changed["body"]["flags"].as_array().unwrap().len(), 5);
}
