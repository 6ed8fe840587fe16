//! A real OFREP client from another ecosystem for tests: Python's OpenFeature SDK with
//! `openfeature-provider-ofrep` (from PyPI, in a virtual environment made once under
//! `target/`), driven by a small script.

use std::path::{Path, PathBuf};

use durable_core::conformance::{python_venv, run_python_helper};
use serde_json::{Value, json};

const HELPER: &str = r#"
import json, sys
import requests
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.contrib.provider.ofrep import OFREPProvider

def name(x):
    return x and str(getattr(x, "value", x))

command, base = sys.argv[1], sys.argv[2]
if command == "eval":
    api.set_provider(OFREPProvider(base_url=base))
    client = api.get_client()
    for query in sys.argv[3:]:
        q = json.loads(query)
        context = EvaluationContext(targeting_key=q.get("targetingKey"), attributes=q.get("attributes", {}))
        d = getattr(client, "get_%s_details" % q["type"])(q["key"], q["default"], context)
        print(json.dumps({"key": q["key"], "value": d.value, "reason": name(d.reason), "variant": d.variant,
                          "error": name(d.error_code)}))
elif command == "bulk":
    headers = {"If-None-Match": sys.argv[4]} if len(sys.argv) > 4 else {}
    r = requests.post(base + "/ofrep/v1/evaluate/flags", json={"context": json.loads(sys.argv[3])}, headers=headers)
    print(json.dumps({"status": r.status_code, "etag": r.headers.get("ETag"), "body": r.json() if r.status_code == 200 else None}))
"#;

/// The virtual environment, made once (`None`: a skip, or a failure under
/// `DURABLE_REQUIRE_SERVICES=1`, when python3 or PyPI cannot be had).
pub async fn python_client() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join("durable-ofrep-venv");
    python_venv(&dir, &["openfeature-sdk==0.10.0", "openfeature-provider-ofrep==0.3.0"], HELPER).await?;
    Some(dir)
}

/// One evaluation to ask: the SDK method's type (`boolean`, `string`, `integer`, `float`,
/// `object`), the flag, the targeting key, attributes, and the caller's default.
pub fn query(kind: &str, key: &str, targeting_key: Option<&str>, attributes: Value, default: Value) -> String {
    json!({"type": kind, "key": key, "targetingKey": targeting_key, "attributes": attributes, "default": default})
        .to_string()
}

/// Evaluates each query through the OFREP provider against the service at `base`: one JSON
/// object per query with `value`, `reason`, `variant` and `error` as the SDK reports them.
pub async fn evaluate(venv: &Path, base: &str, queries: &[String]) -> Vec<Value> {
    let args: Vec<&str> = ["eval", base].into_iter().chain(queries.iter().map(String::as_str)).collect();
    run_python_helper(venv, &args)
        .await
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON from the helper"))
        .collect()
}

/// A bulk evaluation for `context` (with `If-None-Match: etag` when given): `status`,
/// `etag` and, on 200, the `body`.
pub async fn bulk(venv: &Path, base: &str, context: &Value, etag: Option<&str>) -> Value {
    let context = context.to_string();
    let args: Vec<&str> = ["bulk", base, context.as_str()].into_iter().chain(etag).collect();
    serde_json::from_str(run_python_helper(venv, &args).await.trim()).expect("JSON from the helper")
}
