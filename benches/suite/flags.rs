//! Flag evaluation (durable-flags): the cost of one evaluation of a static flag, a flag
//! with three targeting rules and a fractional rollout, beside a plain snapshot `get` and
//! beside flagd's Rust evaluation engine (`flagd-evaluation-engine`) applying the same
//! rule to the same context, measured in turns in one process.
//!
//! The engine's API takes a rule as JSON text and compiles it on every call (that is how
//! flagd's Rust provider calls it); durable-flags compiles once per snapshot version.

use std::hint::black_box;
use std::sync::Arc;

use durable::{DurableDict, MemoryBackend, MemoryStore};
use durable_flags::{Context, FlagSet, Flags};
use open_feature::EvaluationContext;
use serde_json::{Value, json};

use crate::{Config, Results, median, time_ns};

const TARGETING: &str = r#"{"if": [{"==": [{"var": "plan"}, "enterprise"]}, "enterprise",
    {"ends_with": [{"var": "email"}, "@example.com"]}, "staff",
    {">=": [{"var": "age"}, 18]}, "adult", null]}"#;

pub(crate) async fn flag_figures(config: &Config, out: &mut Results) {
    let targeting: Value = serde_json::from_str(TARGETING).unwrap();
    let set = FlagSet::from_json(
        &json!({"flags": {
            "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "targeted": {"state": "ENABLED", "variants": {"enterprise": "E", "staff": "S", "adult": "A", "other": "O"},
                "defaultVariant": "other", "targeting": targeting},
            "rollout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"fractional": [["on", 25], ["off", 75]]}}
        }})
        .to_string(),
    )
    .unwrap();
    let dict = DurableDict::builder(Arc::new(MemoryBackend::in_store(MemoryStore::new(), "bench-flags")))
        .autosync(false)
        .build()
        .await
        .unwrap();
    let flags = Flags::new(dict.clone());
    flags.import(&set, true).await.unwrap();
    let request = flags.snapshot();
    let snapshot = dict.snapshot();
    // The third rule matches: the evaluation walks all three.
    let context =
        Context::new().targeting_key("user-42").with("plan", "pro").with("email", "ada@elsewhere.org").with("age", 37);
    let of_context = EvaluationContext::default()
        .with_targeting_key("user-42")
        .with_custom_field("plan", "pro")
        .with_custom_field("email", "ada@elsewhere.org")
        .with_custom_field("age", 37);
    assert_eq!(request.string("targeted", &context, "?"), "A");
    let engine = flagd_evaluation_engine::Operator::new();
    assert_eq!(engine.apply("targeted", TARGETING, &of_context).unwrap().as_deref(), Some("adult"));

    let ops = if config.quick { 20_000 } else { 200_000 };
    let engine_ops = ops / 20;
    let rounds = config.rounds();
    let (mut gets, mut statics, mut targeted, mut fractional, mut flagd) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        gets.push(time_ns(1, ops, |_| {
            black_box(snapshot.get(black_box("targeted")));
        }));
        statics.push(time_ns(1, ops, |_| {
            black_box(request.evaluate::<bool>(black_box("static"), &context));
        }));
        targeted.push(time_ns(1, ops, |_| {
            black_box(request.evaluate::<String>(black_box("targeted"), &context));
        }));
        fractional.push(time_ns(1, ops, |_| {
            black_box(request.evaluate::<bool>(black_box("rollout"), &context));
        }));
        flagd.push(time_ns(1, engine_ops, |_| {
            black_box(engine.apply(black_box("targeted"), TARGETING, &of_context).unwrap());
        }));
    }
    let (get, targeted, flagd) = (median(gets), median(targeted), median(flagd));
    out.put("flags.snapshot_get_ns", get);
    out.put("flags.eval_static_ns", median(statics));
    out.put("flags.eval_targeting_ns", targeted);
    out.put("flags.eval_fractional_ns", median(fractional));
    out.put("flags.flagd_engine_targeting_ns", flagd);
    out.put("flags.eval_targeting_vs_snapshot_get_ratio", targeted / get);
    out.put("flags.eval_targeting_vs_flagd_engine_ratio", targeted / flagd);
}
