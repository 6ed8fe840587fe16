//! Flags on real stores (Redis, PostgreSQL, SQLite): written by one process's `Flags`,
//! evaluated by another's after a sync; a flag set imported as one version; refused
//! definitions write nothing; a definition written around the checks evaluates to
//! `PARSE_ERROR` and is listed, never misread.

use std::sync::Arc;

use durable_core::conformance::{require_service, unique_namespace};
use durable_core::{Backend, DurableDict};
use durable_flags::{Context, ErrorCode, FlagDefinition, FlagError, FlagSet, Flags, Reason};
use durable_testkit::env::{postgres_url, redis_url};
use serde_json::{Value, json};

async fn connect(url: &str, ns: &str) -> Arc<dyn Backend> {
    durable::connect(url, ns).await.unwrap_or_else(|err| panic!("connect {url}: {err}"))
}

async fn flags(url: &str, ns: &str) -> Flags {
    // Without hints: every `sync()` asks the store, so a write is seen by the next one.
    let dict = DurableDict::builder(connect(url, ns).await).autosync(false).hints(false).build().await.unwrap();
    Flags::new(dict)
}

/// The stores to run on: SQLite always, the servers when reachable (required in CI).
async fn stores() -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("durable-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut urls = vec![format!("sqlite://{}", dir.join("flags.db").display())];
    for (name, url, port) in [("Redis", redis_url(), 6379), ("PostgreSQL", postgres_url(), 5432)] {
        if require_service(name, durable_testkit::env::reachable(&url, port).await) {
            urls.push(url);
        }
    }
    urls
}

fn checkout() -> FlagDefinition {
    let mut flag = FlagDefinition::boolean(false);
    flag.targeting = Some(json!({"if": [{"in": [{"var": "plan"}, ["pro", "team"]]}, "on"]}));
    flag.metadata = Some(json!({"owner": "payments"}).as_object().unwrap().clone());
    flag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_written_by_one_process_is_evaluated_by_another() {
    for url in stores().await {
        let ns = unique_namespace("flags-shared");
        let (writer, reader) = (flags(&url, &ns).await, flags(&url, &ns).await);
        let pro = Context::new().targeting_key("u1").with("plan", "pro");
        let free = Context::new().targeting_key("u2").with("plan", "free");
        let version = writer.put("checkout", &checkout()).await.unwrap();
        reader.dict().sync().await.unwrap();
        let request = reader.snapshot();
        assert_eq!(request.version(), version, "{url}");
        let on = request.evaluate::<bool>("checkout", &pro);
        assert_eq!(
            (on.value, on.variant.as_deref(), on.reason),
            (Some(true), Some("on"), Reason::TargetingMatch),
            "{url}"
        );
        assert_eq!(on.metadata.get("owner"), Some(&json!("payments")));
        assert!(!request.boolean("checkout", &free, true), "{url}");

        // A kill switch: disabled everywhere at the next sync.
        let mut off = checkout();
        off.state = durable_flags::FlagState::Disabled;
        writer.put("checkout", &off).await.unwrap();
        assert!(request.boolean("checkout", &pro, false), "{url}: a request keeps its snapshot");
        reader.dict().sync().await.unwrap();
        assert_eq!(reader.evaluate::<bool>("checkout", &pro).reason, Reason::Disabled, "{url}");
        writer.remove("checkout").await.unwrap();
        reader.dict().sync().await.unwrap();
        assert_eq!(reader.evaluate::<bool>("checkout", &pro).error_code(), Some(ErrorCode::FlagNotFound), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_set_is_imported_as_one_version_and_exported_back() {
    for url in stores().await {
        let ns = unique_namespace("flags-import");
        let (writer, reader) = (flags(&url, &ns).await, flags(&url, &ns).await);
        writer.put("stale", &FlagDefinition::boolean(true)).await.unwrap();
        let set = FlagSet::from_json(
            &json!({
                "$schema": "https://flagd.dev/schema/v0/flags.json",
                "flags": {
                    "banner": {"state": "ENABLED", "variants": {"a": "Hello", "b": "Welcome"}, "defaultVariant": "a",
                        "targeting": {"if": [{"$ref": "staff"}, "b"]}},
                    "rollout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                        "targeting": {"fractional": [["on", 10], ["off", 90]]}}
                },
                "$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.com"]}},
                "metadata": {"environment": "staging"}
            })
            .to_string(),
        )
        .unwrap();
        let before = writer.dict().version();
        let version = writer.import(&set, true).await.unwrap().expect("the import changed something");
        assert_eq!(version, before + 1, "{url}: one batch, one version");
        reader.dict().sync().await.unwrap();
        let request = reader.snapshot();
        let mut keys: Vec<&str> = request.keys().collect();
        keys.sort();
        assert_eq!(keys, ["banner", "rollout"], "{url}: replace removed the flag the set does not name");
        let staff = Context::new().with("email", "ada@example.com");
        assert_eq!(request.string("banner", &staff, "?"), "Welcome", "{url}");
        let banner = request.evaluate::<String>("banner", &Context::new());
        assert_eq!(banner.metadata.get("environment"), Some(&json!("staging")), "the set's metadata");
        let on = (0..1000)
            .filter(|i| request.boolean("rollout", &Context::new().targeting_key(format!("user-{i}")), false))
            .count();
        assert!((60..=140).contains(&on), "{url}: about 10% of 1000 users, got {on}");
        let exported = reader.export();
        assert_eq!(
            (exported.flags, exported.evaluators, exported.metadata),
            (set.flags, set.evaluators, set.metadata),
            "{url}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_that_breaks_the_rules_is_refused_and_writes_nothing() {
    for url in stores().await {
        let ns = unique_namespace("flags-refused");
        let flags = flags(&url, &ns).await;
        flags
            .put_evaluators(&[("staff".to_owned(), json!({"ends_with": [{"var": "email"}, "@example.com"]}))].into())
            .await
            .unwrap();
        flags
            .put("uses-staff", &{
                let mut flag = FlagDefinition::boolean(false);
                flag.targeting = Some(json!({"if": [{"$ref": "staff"}, "on"]}));
                flag
            })
            .await
            .unwrap();
        let at = flags.dict().backend().last_updated().await.unwrap();
        let parse = |text: Value| serde_json::from_value::<FlagDefinition>(text).unwrap();
        let mixed = parse(json!({"state": "ENABLED", "variants": {"on": true, "off": "no"}, "defaultVariant": "on"}));
        let missing_default = parse(json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "yes"}));
        let unknown_ref = parse(json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
            "targeting": {"if": [{"$ref": "nobody"}, "on"]}}));
        let unknown_operator = parse(json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
            "targeting": {"frobnicate": [1]}}));
        let cases: Vec<(&str, FlagDefinition, &str)> = vec![
            ("mixed", mixed, "share one type"),
            ("missing-default", missing_default, "is not one of the variants"),
            ("unknown-ref", unknown_ref, "names no rule"),
            ("unknown-operator", unknown_operator, "unknown operator \"frobnicate\""),
            ("$reserved", FlagDefinition::boolean(true), "does not start with `$`"),
        ];
        for (key, definition, says) in cases {
            let refused = flags.put(key, &definition).await.expect_err(key);
            assert!(refused.to_string().contains(says), "{url} {key}: {refused}");
            assert!(!matches!(refused, FlagError::Store(_)), "{key}: a typed refusal, not a store error");
        }
        // A shared rule a flag uses cannot be removed.
        let refused = flags.put_evaluators(&Default::default()).await.expect_err("staff is in use");
        assert!(matches!(refused, FlagError::UnknownRef { ref name, .. } if name == "staff"), "{refused}");
        let bad_set = FlagSet::from_json(
            r#"{"flags": {"ok": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
            "bad": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}}"#,
        )
        .unwrap();
        assert!(flags.import(&bad_set, false).await.is_err(), "one bad flag refuses the whole set");
        assert_eq!(flags.dict().backend().last_updated().await.unwrap(), at, "{url}: nothing was written");
        assert!(FlagSet::from_json(r#"{"flags": {"x": {"state": "ON", "variants": {}}}}"#).is_err());
    }
}

/// A definition written straight to the dict, around `Flags::put` (another tool, a hand
/// edit), that is not valid: its evaluations say `PARSE_ERROR`, `broken()` names it, and
/// every other flag is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_definition_in_the_store_is_a_parse_error_not_a_misread() {
    for url in stores().await {
        let ns = unique_namespace("flags-broken");
        let flags = flags(&url, &ns).await;
        flags.put("fine", &FlagDefinition::boolean(true)).await.unwrap();
        flags
            .dict()
            .insert("typo", json!({"state": "ENABLED", "variants": {"on": true}, "defaultVarient": "on"}))
            .await
            .unwrap();
        flags
            .dict()
            .insert(
                "bad-rule",
                json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
            "targeting": {"if": [{"$ref": "missing"}, "on"]}}),
            )
            .await
            .unwrap();
        let request = flags.snapshot();
        for key in ["typo", "bad-rule"] {
            let got = request.evaluate::<bool>(key, &Context::new());
            assert_eq!(
                (got.value, got.reason, got.error_code()),
                (None, Reason::Error, Some(ErrorCode::ParseError)),
                "{url} {key}"
            );
        }
        let mut broken: Vec<String> = request.broken().map(|(key, err)| format!("{key}: {err}")).collect();
        broken.sort();
        assert!(broken[0].starts_with("bad-rule: ") && broken[0].contains("missing"), "{broken:?}");
        assert!(broken[1].starts_with("typo: ") && broken[1].contains("defaultVarient"), "{broken:?}");
        assert!(request.boolean("fine", &Context::new(), false), "{url}");
    }
}

/// With plain values on, a dict of plain settings and definitions evaluates as one: a plain
/// value is a static flag; a value shaped like a definition is checked as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_values_are_static_flags_beside_definitions() {
    for url in stores().await {
        let ns = unique_namespace("flags-plain");
        let strict = flags(&url, &ns).await;
        let mixed = flags(&url, &ns).await.plain_values(true);
        mixed.put_value("shout", json!(true)).await.unwrap();
        mixed.put_value("limits", json!({"rps": 100})).await.unwrap();
        mixed.put_value("checkout", serde_json::to_value(checkout()).unwrap()).await.unwrap();
        let typo = mixed
            .put_value("typo", json!({"state": "ENABLED", "variants": {"on": true}, "defaultVarient": "on"}))
            .await;
        assert!(matches!(typo, Err(FlagError::Invalid { .. })), "{url}: a definition with a typo is refused: {typo:?}");
        let refused = strict.put_value("shout", json!(false)).await;
        assert!(refused.is_err(), "{url}: without plain values every value is a definition");

        mixed.dict().sync().await.unwrap();
        let request = mixed.snapshot();
        let shout = request.evaluate::<bool>("shout", &Context::new());
        assert_eq!(
            (shout.value, shout.variant.as_deref(), shout.reason),
            (Some(true), Some("default"), Reason::Static),
            "{url}"
        );
        assert_eq!(request.evaluate::<Value>("limits", &Context::new()).value, Some(json!({"rps": 100})));
        assert_eq!(request.evaluate::<i64>("shout", &Context::new()).error_code(), Some(ErrorCode::TypeMismatch));
        assert!(
            request.boolean("checkout", &Context::new().with("plan", "pro"), false),
            "{url}: definitions still evaluate"
        );
        strict.dict().sync().await.unwrap();
        let strictly = strict.evaluate::<bool>("shout", &Context::new());
        assert_eq!(strictly.error_code(), Some(ErrorCode::ParseError), "{url}: strict flags refuse to guess");
    }
}
