//! flagd's expected results, as facts: the scenarios of flagd-testbed's evaluator suite
//! (`evaluator/gherkin/*.feature`, v3.9.0) — evaluation, zero values, targeting, fractional
//! (v2 and v1), sem_ver, string operators, evaluator refs, disabled flags, flags without a
//! default variant, metadata, errors — each turned into an assertion here, against flags
//! written here with the definitions those scenarios state. Evaluation reads memory only,
//! so the dict is in memory; `stores.rs` runs flags on real stores.

#![recursion_limit = "512"]

use std::sync::Arc;

use durable_core::{DurableDict, MemoryBackend};
use durable_flags::{Bucketing, Context, ErrorCode, FlagSet, Flags, Reason, Resolution};
use serde_json::{Map, Value, json};

fn string_flag(variants: Value, default: Value, targeting: Value) -> Value {
    json!({"state": "ENABLED", "variants": variants, "defaultVariant": default, "targeting": targeting})
}

/// Four suits at 25 each, bucketed by `seed` joined with `user.name`.
fn suits(seed: Value, names: [&str; 4]) -> Value {
    string_flag(
        json!({"clubs": names[0], "diamonds": names[1], "hearts": names[2], "spades": names[3], "wild": "wild"}),
        json!("wild"),
        json!({"fractional": [{"cat": [seed, {"var": "user.name"}]}, ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}),
    )
}

fn same_name(names: &[&str]) -> Value {
    Value::Object(names.iter().map(|name| ((*name).to_owned(), json!(name))).collect())
}

fn sem_ver_flag(operator: &str, target: Value) -> Value {
    string_flag(
        same_name(&["match", "no-match"]),
        json!("no-match"),
        json!({"if": [{"sem_ver": [{"var": "version"}, operator, target]}, "match", "no-match"]}),
    )
}

fn operator_error_flag(targeting: Value) -> Value {
    string_flag(same_name(&["true", "false", "fallback"]), json!("fallback"), targeting)
}

fn zero_flag(zero: Value, non_zero: Value, targeted: bool) -> Value {
    let mut flag =
        json!({"state": "ENABLED", "variants": {"zero": zero, "non-zero": non_zero}, "defaultVariant": "zero"});
    if targeted {
        flag["targeting"] = json!({"if": [{"$ref": "is_ballmer"}, "zero"]});
    }
    flag
}

/// The flags the scenarios name, as their definitions state them.
fn flag_set() -> FlagSet {
    let template = json!({"showImages": true, "title": "Check out these pics!", "imagesPerPage": 100});
    let bool_variants = json!({"on": true, "off": false});
    let flags = json!({
        "boolean-flag": {"state": "ENABLED", "variants": bool_variants.clone(), "defaultVariant": "on"},
        "string-flag": {"state": "ENABLED", "variants": {"greeting": "hi", "parting": "bye"}, "defaultVariant": "greeting"},
        "integer-flag": {"state": "ENABLED", "variants": {"one": 1, "ten": 10}, "defaultVariant": "ten"},
        "float-flag": {"state": "ENABLED", "variants": {"tenth": 0.1, "half": 0.5}, "defaultVariant": "half"},
        "object-flag": {"state": "ENABLED", "variants": {"empty": {}, "template": template.clone()}, "defaultVariant": "template"},
        "boolean-zero-flag": zero_flag(json!(false), json!(true), false),
        "string-zero-flag": zero_flag(json!(""), json!("str"), false),
        "integer-zero-flag": zero_flag(json!(0), json!(1), false),
        "float-zero-flag": zero_flag(json!(0.0), json!(1.0), false),
        "object-zero-flag": zero_flag(json!({}), template.clone(), false),
        "boolean-targeted-zero-flag": zero_flag(json!(false), json!(true), true),
        "string-targeted-zero-flag": zero_flag(json!(""), json!("str"), true),
        "integer-targeted-zero-flag": zero_flag(json!(0), json!(1), true),
        "float-targeted-zero-flag": zero_flag(json!(0.0), json!(1.0), true),
        "wrong-flag": {"state": "ENABLED", "variants": {"one": "uno", "two": "dos"}, "defaultVariant": "one"},
        "null-default-flag": {"state": "ENABLED", "variants": bool_variants.clone(), "defaultVariant": null},
        "undefined-default-flag": {"state": "ENABLED", "variants": {"small": 10, "big": 1000}},
        "no-default-flag-null-targeting-variant": {"state": "ENABLED", "variants": {"normal": "CFO", "special": "CEO"},
            "targeting": {"if": [{"==": ["jobs@orange.com", {"var": ["email"]}]}, "special", null]}},
        "no-default-flag-undefined-targeting-variant": {"state": "ENABLED", "variants": {"normal": "CFO", "special": "CEO"},
            "targeting": {"if": [{"==": ["jobs@orange.com", {"var": ["email"]}]}, "special"]}},
        "metadata-flag": {"state": "ENABLED", "variants": bool_variants.clone(), "defaultVariant": "on",
            "metadata": {"string": "1.0.2", "integer": 2, "boolean": true, "float": 0.1}},
        "some-email-targeted-flag": string_flag(same_name(&["hi", "bye", "none"]), json!("none"),
            json!({"if": [{"$ref": "is_ballmer"}, "hi", "bye"]})),
        "some-other-email-targeted-flag": string_flag(same_name(&["yes", "no", "none"]), json!("none"),
            json!({"if": [{"$ref": "is_ballmer"}, "yes", "no"]})),
        "ref-flag": string_flag(same_name(&["hi", "bye", "fallback"]), json!("fallback"),
            json!({"if": [{"$ref": "is_ballmer"}, "hi", "bye"]})),
        "fractional-flag": suits(json!({"var": "$flagd.flagKey"}), ["clubs", "diamonds", "hearts", "spades"]),
        "fractional-flag-A-shared-seed": suits(json!("shared-seed"), ["clubs", "diamonds", "hearts", "spades"]),
        "fractional-flag-B-shared-seed": suits(json!("shared-seed"), ["ace-of-clubs", "ace-of-diamonds", "ace-of-hearts", "ace-of-spades"]),
        "fractional-flag-shorthand": string_flag(same_name(&["heads", "tails", "draw"]), json!("draw"),
            json!({"fractional": [["heads"], ["tails", 1]]})),
        "fractional-single-entry-flag": string_flag(same_name(&["single", "fallback"]), json!("fallback"),
            json!({"fractional": [["single", 1]]})),
        "fractional-hash-edge-flag": string_flag(same_name(&["lower", "upper"]), json!("lower"),
            json!({"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]})),
        "fractional-nested-if-flag": string_flag(same_name(&["premium", "standard", "fallback"]), json!("fallback"),
            json!({"fractional": [{"var": "targetingKey"},
                [{"if": [{"==": [{"var": "tier"}, "premium"]}, "premium", "standard"]}, 50], ["standard", 50]]})),
        "fractional-nested-var-flag": string_flag(same_name(&["red", "green", "blue", "fallback"]), json!("fallback"),
            json!({"fractional": [{"var": "targetingKey"}, [{"var": "color"}, 50], ["blue", 50]]})),
        "fractional-nested-weight-flag": string_flag(same_name(&["red", "blue", "fallback"]), json!("fallback"),
            json!({"fractional": [{"var": "targetingKey"},
                ["red", {"if": [{"==": [{"var": "tier"}, "premium"]}, 100, 0]}], ["blue", 10]]})),
        "fractional-as-condition-flag": string_flag(json!({"big": "hundreds", "small": "ones", "fallback": "zero"}),
            json!("fallback"), json!({"if": [{"fractional": [[false, 0], [true, 100]]}, "big", "small"]})),
        "fractional-as-condition-false-flag": string_flag(json!({"big": "hundreds", "small": "ones", "fallback": "zero"}),
            json!("fallback"), json!({"if": [{"fractional": [[false, 100], [true, 0]]}, "big", "small"]})),
        "fractional-null-bucket-key-flag": string_flag(same_name(&["one", "two", "fallback"]), json!("fallback"),
            json!({"fractional": [{"var": "missing_key"}, ["one", 50], ["two", 50]]})),
        "fractional-zero-weights-flag": string_flag(same_name(&["one", "two", "fallback"]), json!("fallback"),
            json!({"fractional": [{"var": "targetingKey"}, ["one", 0], ["two", 0]]})),
        "fractional-negative-weight-flag": string_flag(same_name(&["one", "two", "fallback"]), json!("fallback"),
            json!({"fractional": [{"var": "targetingKey"}, ["one", -50], ["two", 100]]})),
        "starts-ends-flag": string_flag(same_name(&["prefix", "postfix", "none"]), json!("none"),
            json!({"if": [{"starts_with": [{"var": "id"}, "abc"]}, "prefix",
                {"if": [{"ends_with": [{"var": "id"}, "xyz"]}, "postfix", "none"]}]})),
        "starts-with-non-string-flag": operator_error_flag(json!({"starts_with": [{"var": "num"}, "abc"]})),
        "ends-with-non-string-flag": operator_error_flag(json!({"ends_with": [{"var": "num"}, "xyz"]})),
        "starts-with-wrong-args-flag": operator_error_flag(json!({"starts_with": ["abc"]})),
        "ends-with-wrong-args-flag": operator_error_flag(json!({"ends_with": ["xyz"]})),
        "equal-greater-lesser-version-flag": string_flag(same_name(&["equal", "greater", "lesser", "none"]), json!("none"),
            json!({"if": [{"sem_ver": [{"var": "version"}, "=", "2.0.0"]}, "equal",
                {"if": [{"sem_ver": [{"var": "version"}, ">", "2.0.0"]}, "greater",
                    {"if": [{"sem_ver": [{"var": "version"}, "<", "2.0.0"]}, "lesser", "none"]}]}]})),
        "major-minor-version-flag": string_flag(same_name(&["minor", "major", "none"]), json!("none"),
            json!({"if": [{"sem_ver": [{"var": "version"}, "~", "3.0.0"]}, "minor",
                {"if": [{"sem_ver": [{"var": "version"}, "^", "3.0.0"]}, "major", "none"]}]})),
        "semver-invalid-version-flag": operator_error_flag(json!({"sem_ver": [{"var": "version"}, "=", "1.0.0"]})),
        "semver-invalid-operator-flag": operator_error_flag(json!({"sem_ver": [{"var": "version"}, "===", "1.0.0"]})),
        "semver-wrong-args-flag": operator_error_flag(json!({"sem_ver": [{"var": "version"}, "="]})),
        "semver-v-prefix-flag": sem_ver_flag("=", json!("v1.0.0")),
        "semver-partial-version-flag": sem_ver_flag("^", json!("1")),
        "semver-build-metadata-flag": sem_ver_flag("=", json!("1.0.0+build")),
        "semver-numeric-context-flag": sem_ver_flag(">", json!("1.1")),
        "targeting-key-flag": string_flag(same_name(&["miss", "hit"]), json!("miss"),
            json!({"if": [{"==": [{"var": "targetingKey"}, "5c3d8535-f81a-4478-a6d3-afaa4d51199e"]}, "hit", null]})),
        "disabled-boolean-flag": {"state": "DISABLED", "variants": bool_variants, "defaultVariant": "on"},
        "disabled-string-flag": {"state": "DISABLED", "variants": {"greeting": "hi", "parting": "bye"}, "defaultVariant": "greeting"},
        "disabled-integer-flag": {"state": "DISABLED", "variants": {"one": 1, "ten": 10}, "defaultVariant": "ten"},
        "disabled-float-flag": {"state": "DISABLED", "variants": {"tenth": 0.1, "half": 0.5}, "defaultVariant": "half"},
        "disabled-object-flag": {"state": "DISABLED", "variants": {"empty": {}, "template": template}, "defaultVariant": "template"},
    });
    let set =
        json!({"flags": flags, "$evaluators": {"is_ballmer": {"==": ["ballmer@macrosoft.com", {"var": ["email"]}]}}});
    FlagSet::from_json(&set.to_string()).expect("the scenarios' flags are valid")
}

async fn flags(bucketing: Bucketing) -> Flags {
    let ns = durable_core::conformance::unique_namespace("testbed");
    let dict = DurableDict::builder(Arc::new(MemoryBackend::new(&ns))).build().await.unwrap();
    let flags = Flags::with_bucketing(dict, bucketing);
    flags.import(&flag_set(), true).await.unwrap();
    flags
}

fn user(name: &str) -> Context {
    Context::new().with("user", json!({"name": name}))
}

fn key(targeting_key: &str) -> Context {
    Context::new().targeting_key(targeting_key)
}

fn string(flags: &Flags, flag: &str, context: &Context) -> Resolution<String> {
    flags.evaluate(flag, context)
}

#[tokio::test]
async fn resolves_values_of_every_type() {
    let flags = flags(Bucketing::V2).await;
    let none = Context::new();
    let b = flags.evaluate::<bool>("boolean-flag", &none);
    assert_eq!((b.value, b.variant.as_deref(), b.reason), (Some(true), Some("on"), Reason::Static));
    assert_eq!(string(&flags, "string-flag", &none).value.as_deref(), Some("hi"));
    assert_eq!(flags.evaluate::<i64>("integer-flag", &none).value, Some(10));
    assert_eq!(flags.evaluate::<f64>("float-flag", &none).value, Some(0.5));
    let object = flags.evaluate::<Map<String, Value>>("object-flag", &none).value.unwrap();
    assert_eq!(
        Value::Object(object),
        json!({"showImages": true, "title": "Check out these pics!", "imagesPerPage": 100})
    );
}

#[tokio::test]
async fn zero_values_resolve_statically_and_by_targeting() {
    let flags = flags(Bucketing::V2).await;
    let none = Context::new();
    let ballmer = Context::new().with("email", "ballmer@macrosoft.com");
    let other = Context::new().with("email", "ballmer@none.com");
    for (context, targeted, reason) in
        [(&none, false, Reason::Static), (&ballmer, true, Reason::TargetingMatch), (&other, true, Reason::Default)]
    {
        let name =
            |kind: &str| if targeted { format!("{kind}-targeted-zero-flag") } else { format!("{kind}-zero-flag") };
        let b = flags.evaluate::<bool>(&name("boolean"), context);
        assert_eq!((b.value, b.reason), (Some(false), reason));
        let s = string(&flags, &name("string"), context);
        assert_eq!((s.value.as_deref(), s.reason), (Some(""), reason));
        let i = flags.evaluate::<i64>(&name("integer"), context);
        assert_eq!((i.value, i.reason), (Some(0), reason));
        let f = flags.evaluate::<f64>(&name("float"), context);
        assert_eq!((f.value, f.reason), (Some(0.0), reason));
    }
    let object = flags.evaluate::<Map<String, Value>>("object-zero-flag", &none);
    assert_eq!((object.value, object.reason), (Some(Map::new()), Reason::Static));
}

#[tokio::test]
async fn targeting_by_targeting_key() {
    let flags = flags(Bucketing::V2).await;
    let hit = string(&flags, "targeting-key-flag", &key("5c3d8535-f81a-4478-a6d3-afaa4d51199e"));
    assert_eq!((hit.value.as_deref(), hit.reason), (Some("hit"), Reason::TargetingMatch));
    let miss = string(&flags, "targeting-key-flag", &key("f20bd32d-703b-48b6-bc8e-79d53c85134a"));
    assert_eq!((miss.value.as_deref(), miss.reason), (Some("miss"), Reason::Default));
}

/// flagd-testbed's `@fractional-v2` examples: flagd's bucketing since March 2026.
#[tokio::test]
async fn fractional_v2_buckets_as_flagd_does() {
    let flags = flags(Bucketing::V2).await;
    let expect = |flag: &str, context: &Context, want: &str| {
        let got = string(&flags, flag, context);
        assert_eq!(got.value.as_deref(), Some(want), "{flag} for {context:?}: {got:?}");
    };
    for (name, suit) in
        [("jack", "hearts"), ("queen", "spades"), ("ten", "clubs"), ("nine", "diamonds"), ("3", "clubs")]
    {
        expect("fractional-flag", &user(name), suit);
    }
    expect("fractional-flag-shorthand", &key("jon@company.com"), "heads");
    expect("fractional-flag-shorthand", &key("jane@company.com"), "tails");
    for (name, suit) in [("seven", "hearts"), ("eight", "diamonds"), ("nine", "clubs"), ("two", "spades")] {
        expect("fractional-flag-A-shared-seed", &user(name), suit);
        expect("fractional-flag-B-shared-seed", &user(name), &format!("ace-of-{suit}"));
    }
    expect("fractional-single-entry-flag", &key("some-targeting-key"), "single");
    // Keys whose hashes sit on the boundaries.
    for (edge, half) in
        [("ejOoVL", "lower"), ("bY9fO-", "lower"), ("SI7p-", "lower"), ("6LvT0", "upper"), ("ceQdGm", "upper")]
    {
        expect("fractional-hash-edge-flag", &key(edge), half);
    }
    let split = string(&flags, "fractional-flag", &user("jack"));
    assert_eq!(split.reason, Reason::TargetingMatch, "flagd reports a split as a targeting match");
}

/// flagd-testbed's `@fractional-v1` examples: the legacy bucketing, as an option.
#[tokio::test]
async fn fractional_v1_buckets_as_flagd_did() {
    let flags = flags(Bucketing::V1).await;
    for (name, suit) in
        [("jack", "spades"), ("queen", "clubs"), ("ten", "diamonds"), ("nine", "hearts"), ("3", "diamonds")]
    {
        assert_eq!(string(&flags, "fractional-flag", &user(name)).value.as_deref(), Some(suit), "{name}");
    }
    assert_eq!(string(&flags, "fractional-flag-shorthand", &key("jon@company.com")).value.as_deref(), Some("heads"));
    assert_eq!(string(&flags, "fractional-flag-shorthand", &key("jane@company.com")).value.as_deref(), Some("tails"));
    for (name, suit) in [("jack", "hearts"), ("queen", "spades"), ("ten", "hearts"), ("nine", "diamonds")] {
        assert_eq!(string(&flags, "fractional-flag-A-shared-seed", &user(name)).value.as_deref(), Some(suit), "{name}");
        let ace = format!("ace-of-{suit}");
        assert_eq!(
            string(&flags, "fractional-flag-B-shared-seed", &user(name)).value.as_deref(),
            Some(&*ace),
            "{name}"
        );
    }
}

/// flagd-testbed's `@fractional-nested` scenarios: variants and weights computed by rules,
/// and a fractional of booleans as a condition.
#[tokio::test]
async fn fractional_variants_and_weights_may_be_rules() {
    let flags = flags(Bucketing::V2).await;
    let with = |targeting_key: &str, name: &str, value: &str| key(targeting_key).with(name, value);
    for (tk, tier, want) in [
        ("jon@company.com", "premium", "premium"),
        ("jon@company.com", "basic", "standard"),
        ("user1", "premium", "standard"),
        ("user1", "basic", "standard"),
    ] {
        assert_eq!(string(&flags, "fractional-nested-if-flag", &with(tk, "tier", tier)).value.as_deref(), Some(want));
    }
    for (tk, color, want) in [
        ("jon@company.com", "red", "red"),
        ("jon@company.com", "green", "green"),
        ("user1", "red", "blue"),
        ("jon@company.com", "yellow", "fallback"),
        ("jon@company.com", "", "fallback"),
    ] {
        // A computed variant the flag does not have is an error (GENERAL): the caller's
        // default ("fallback" in the scenario) is served.
        let got = string(&flags, "fractional-nested-var-flag", &with(tk, "color", color));
        let general = got.error_code() == Some(ErrorCode::General);
        assert_eq!(general, want == "fallback", "{tk} {color}: {got:?}");
        assert_eq!(got.value_or("fallback".into()), want, "{tk} {color}");
    }
    for (tk, tier, want) in [
        ("jon@company.com", "premium", "red"),
        ("jon@company.com", "basic", "blue"),
        ("user1", "premium", "red"),
        ("user1", "basic", "blue"),
    ] {
        assert_eq!(
            string(&flags, "fractional-nested-weight-flag", &with(tk, "tier", tier)).value.as_deref(),
            Some(want)
        );
    }
    let some = key("some-targeting-key");
    assert_eq!(string(&flags, "fractional-as-condition-flag", &some).value.as_deref(), Some("hundreds"));
    assert_eq!(string(&flags, "fractional-as-condition-false-flag", &some).value.as_deref(), Some("ones"));
}

/// `@operator-errors`: an operator that cannot work answers null, and the default variant
/// is served with reason DEFAULT.
#[tokio::test]
async fn operators_that_cannot_work_serve_the_default_variant() {
    let flags = flags(Bucketing::V2).await;
    let any = key("any-user");
    let cases: Vec<(&str, Context)> = vec![
        ("fractional-null-bucket-key-flag", Context::new()),
        ("fractional-zero-weights-flag", any.clone()),
        ("starts-with-non-string-flag", Context::new().with("num", 123)),
        ("ends-with-non-string-flag", Context::new().with("num", 123)),
        ("starts-with-wrong-args-flag", Context::new()),
        ("ends-with-wrong-args-flag", Context::new()),
        ("semver-invalid-version-flag", Context::new().with("version", "not-a-version")),
        ("semver-invalid-operator-flag", Context::new().with("version", "1.0.0")),
        ("semver-wrong-args-flag", Context::new().with("version", "1.0.0")),
    ];
    for (flag, context) in cases {
        let got = string(&flags, flag, &context);
        assert_eq!((got.value.as_deref(), got.reason), (Some("fallback"), Reason::Default), "{flag}: {got:?}");
    }
    let clamped = string(&flags, "fractional-negative-weight-flag", &any);
    assert_eq!(clamped.value.as_deref(), Some("two"), "a negative weight counts as 0");
}

#[tokio::test]
async fn sem_ver_compares_as_flagd_does() {
    let flags = flags(Bucketing::V2).await;
    let version = |v: Value| Context::new().with("version", v);
    let check = |flag: &str, cases: &[(Value, &str)]| {
        for (v, want) in cases {
            let got = string(&flags, flag, &version(v.clone()));
            assert_eq!(got.value.as_deref(), Some(*want), "{flag} with {v}: {got:?}");
        }
    };
    check(
        "equal-greater-lesser-version-flag",
        &[
            (json!("2.0.0"), "equal"),
            (json!("2.1.0"), "greater"),
            (json!("1.9.0"), "lesser"),
            (json!("2.0.0-alpha"), "lesser"),
            (json!("2.0.0.0"), "none"),
        ],
    );
    check(
        "major-minor-version-flag",
        &[(json!("3.0.1"), "minor"), (json!("3.1.0"), "major"), (json!("4.0.0"), "none")],
    );
    check(
        "semver-v-prefix-flag",
        &[
            (json!("1.0.0"), "match"),
            (json!("v1.0.0"), "match"),
            (json!("V1.0.0"), "match"),
            (json!("2.0.0"), "no-match"),
        ],
    );
    check(
        "semver-partial-version-flag",
        &[
            (json!("1.5.0"), "match"),
            (json!("1.0.0"), "match"),
            (json!("1.0"), "match"),
            (json!("1"), "match"),
            (json!(1), "match"),
            (json!(1.0), "match"),
            (json!(1.2), "match"),
            (json!("2.0.0"), "no-match"),
        ],
    );
    check(
        "semver-numeric-context-flag",
        &[
            (json!(1.2), "match"),
            (json!(1.1), "no-match"),
            (json!(2), "match"),
            (json!(1), "no-match"),
            (json!("1.2"), "match"),
        ],
    );
    check(
        "semver-build-metadata-flag",
        &[(json!("1.0.0"), "match"), (json!("1.0.0+other"), "match"), (json!("1.0.1"), "no-match")],
    );
}

#[tokio::test]
async fn string_operators() {
    let flags = flags(Bucketing::V2).await;
    for (id, want) in [("abcdef", "prefix"), ("uvwxyz", "postfix"), ("abcxyz", "prefix"), ("lmnopq", "none")] {
        assert_eq!(string(&flags, "starts-ends-flag", &Context::new().with("id", id)).value.as_deref(), Some(want));
    }
}

#[tokio::test]
async fn shared_rules_by_ref() {
    let flags = flags(Bucketing::V2).await;
    let ballmer = Context::new().with("email", "ballmer@macrosoft.com");
    assert_eq!(string(&flags, "some-email-targeted-flag", &ballmer).value.as_deref(), Some("hi"));
    assert_eq!(string(&flags, "some-other-email-targeted-flag", &ballmer).value.as_deref(), Some("yes"));
    let hit = string(&flags, "ref-flag", &ballmer);
    assert_eq!((hit.value.as_deref(), hit.reason), (Some("hi"), Reason::TargetingMatch));
    let bye = string(&flags, "ref-flag", &Context::new().with("email", "user@example.com"));
    assert_eq!((bye.value.as_deref(), bye.reason), (Some("bye"), Reason::TargetingMatch));
}

#[tokio::test]
async fn disabled_flags_serve_the_callers_default() {
    let flags = flags(Bucketing::V2).await;
    for flag in [
        "disabled-boolean-flag",
        "disabled-string-flag",
        "disabled-integer-flag",
        "disabled-float-flag",
        "disabled-object-flag",
    ] {
        let got = flags.evaluate::<Value>(flag, &Context::new());
        assert_eq!((got.value, got.variant, got.reason, got.error), (None, None, Reason::Disabled, None), "{flag}");
    }
    assert!(!flags.snapshot().boolean("disabled-boolean-flag", &Context::new(), false));
    assert_eq!(flags.snapshot().integer("disabled-integer-flag", &Context::new(), 1), 1);
}

#[tokio::test]
async fn flags_without_a_default_variant() {
    let flags = flags(Bucketing::V2).await;
    let none = Context::new();
    for flag in ["null-default-flag", "undefined-default-flag"] {
        let got = flags.evaluate::<Value>(flag, &none);
        assert_eq!((got.value, got.reason, got.error), (None, Reason::Default, None), "{flag}");
    }
    assert!(flags.snapshot().boolean("null-default-flag", &none, true));
    assert!(!flags.snapshot().boolean("null-default-flag", &none, false));
    assert_eq!(flags.snapshot().integer("undefined-default-flag", &none, 100), 100);
    let jobs = Context::new().with("email", "jobs@orange.com");
    let wozniak = Context::new().with("email", "wozniak@orange.com");
    let ceo = string(&flags, "no-default-flag-null-targeting-variant", &jobs);
    assert_eq!((ceo.value.as_deref(), ceo.reason), (Some("CEO"), Reason::TargetingMatch));
    for flag in ["no-default-flag-null-targeting-variant", "no-default-flag-undefined-targeting-variant"] {
        let got = string(&flags, flag, &wozniak);
        assert_eq!((got.value, got.reason), (None, Reason::Default), "{flag}");
    }
}

#[tokio::test]
async fn metadata_comes_back_with_every_evaluation() {
    let flags = flags(Bucketing::V2).await;
    let got = flags.evaluate::<bool>("metadata-flag", &Context::new());
    assert_eq!(Value::Object(got.metadata), json!({"string": "1.0.2", "integer": 2, "boolean": true, "float": 0.1}));
    assert!(flags.evaluate::<bool>("boolean-flag", &Context::new()).metadata.is_empty());
}

#[tokio::test]
async fn errors_have_codes() {
    let flags = flags(Bucketing::V2).await;
    let missing = string(&flags, "missing-flag", &Context::new());
    assert_eq!((missing.reason, missing.error_code()), (Reason::Error, Some(ErrorCode::FlagNotFound)));
    let wrong = flags.evaluate::<i64>("wrong-flag", &Context::new());
    assert_eq!((wrong.value, wrong.reason, wrong.error_code()), (None, Reason::Error, Some(ErrorCode::TypeMismatch)));
    assert_eq!(flags.snapshot().integer("wrong-flag", &Context::new(), 13), 13);
}
