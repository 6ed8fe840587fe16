//! The OpenFeature provider through the `open-feature` crate's own client, on SQLite: all
//! five value types with variant, reason and metadata; errors as OpenFeature codes; a
//! request's pinned snapshot; the provider's status following the dict's.

#![cfg(feature = "openfeature")]

use std::sync::Arc;

use durable_core::conformance::unique_namespace;
use durable_core::testing::FaultyBackend;
use durable_core::{Backend, DurableDict};
use durable_flags::{FlagSet, Flags, FlagsProvider};
use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature, StructValue};
use serde_json::json;

async fn sqlite(ns: &str) -> Arc<dyn Backend> {
    let dir = std::env::temp_dir().join(format!("durable-flags-provider-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    durable::connect(&format!("sqlite://{}", dir.join("flags.db").display()), ns).await.unwrap()
}

fn set() -> FlagSet {
    FlagSet::from_json(
        &json!({"flags": {
            "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on"]}, "metadata": {"owner": "payments"}},
            "limit": {"state": "ENABLED", "variants": {"low": 10, "high": 1000}, "defaultVariant": "low",
                "targeting": {"fractional": [["low", 50], ["high", 50]]}},
            "ratio": {"state": "ENABLED", "variants": {"a": 0.25}, "defaultVariant": "a"},
            "banner": {"state": "ENABLED", "variants": {"en": "Hello", "no": "Hei"}, "defaultVariant": "en",
                "targeting": {"if": [{"==": [{"var": "country"}, "NO"]}, "no"]}},
            "theme": {"state": "ENABLED", "variants": {"dark": {"background": "#000", "contrast": 7}}, "defaultVariant": "dark"},
            "killed": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}
        }})
        .to_string(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openfeature_client_resolves_every_type() {
    let ns = unique_namespace("provider");
    let dict = DurableDict::builder(sqlite(&ns).await).build().await.unwrap();
    let flags = Arc::new(Flags::new(dict));
    flags.import(&set(), true).await.unwrap();
    let client = {
        let mut api = OpenFeature::singleton_mut().await;
        api.set_named_provider(&ns, FlagsProvider::new(Arc::clone(&flags))).await;
        api.create_named_client(&ns)
    };
    let pro = EvaluationContext::default().with_targeting_key("user-1").with_custom_field("plan", "pro");
    let details = client.get_bool_details("checkout", Some(&pro), None).await.unwrap();
    assert_eq!((details.value, details.variant.as_deref()), (true, Some("on")));
    assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(
        details.flag_metadata.values.get("owner"),
        Some(&open_feature::FlagMetadataValue::String("payments".into()))
    );
    let free = EvaluationContext::default().with_custom_field("plan", "free");
    let details = client.get_bool_details("checkout", Some(&free), None).await.unwrap();
    assert_eq!((details.value, details.reason), (false, Some(EvaluationReason::Default)));

    let limit = client.get_int_value("limit", Some(&pro), None).await.unwrap();
    assert!(limit == 10 || limit == 1000);
    assert_eq!(client.get_float_value("ratio", None, None).await.unwrap(), 0.25);
    let norway = EvaluationContext::default().with_custom_field("country", "NO");
    assert_eq!(client.get_string_value("banner", Some(&norway), None).await.unwrap(), "Hei");
    let theme: StructValue = client.get_struct_value("theme", None, None).await.unwrap();
    assert_eq!(theme.fields.get("background"), Some(&open_feature::Value::String("#000".into())));
    assert_eq!(theme.fields.get("contrast"), Some(&open_feature::Value::Int(7)));

    let missing = client.get_bool_value("nope", None, None).await.unwrap_err();
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
    let mismatch = client.get_int_value("banner", None, None).await.unwrap_err();
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);
    let killed = client.get_bool_value("killed", None, None).await.unwrap_err();
    assert_eq!(killed.code, EvaluationErrorCode::General("DISABLED".into()), "the client serves the caller's default");
}

/// Within a request's scope, every evaluation reads the snapshot the request pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_request_reads_one_version() {
    let ns = unique_namespace("provider-pinned");
    let dict = DurableDict::builder(sqlite(&ns).await).autosync(false).hints(false).build().await.unwrap();
    let flags = Arc::new(Flags::new(dict));
    flags.import(&set(), true).await.unwrap();
    let provider = FlagsProvider::new(Arc::clone(&flags));
    let norway = EvaluationContext::default().with_custom_field("country", "NO");
    let pinned = flags.snapshot();
    let seen = pinned
        .scope(async {
            let before = provider.resolve_string_value("banner", &norway).await.unwrap().value;
            let mut edited = set().flags["banner"].clone();
            edited.variants.insert("no".into(), json!("Hallo"));
            flags.put("banner", &edited).await.unwrap();
            flags.dict().sync().await.unwrap();
            let after = provider.resolve_string_value("banner", &norway).await.unwrap().value;
            (before, after)
        })
        .await;
    assert_eq!(seen, ("Hei".to_owned(), "Hei".to_owned()), "one version for the whole request");
    assert_eq!(provider.resolve_string_value("banner", &norway).await.unwrap().value, "Hallo", "the next request");
}

/// Ready while the store answers; STALE while it fails (the last flags are served); Error
/// when there was never anything to serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_follows_the_dict() {
    let ns = unique_namespace("provider-status");
    let faulty = Arc::new(FaultyBackend::new(sqlite(&ns).await));
    let dict = DurableDict::builder(faulty.clone()).autosync(false).hints(false).build().await.unwrap();
    let flags = Arc::new(Flags::new(dict));
    flags.import(&set(), true).await.unwrap();
    let provider = FlagsProvider::new(Arc::clone(&flags));
    assert_eq!(provider.status(), ProviderStatus::Ready);
    faulty.set_failing(true);
    assert!(flags.dict().sync().await.is_err());
    assert_eq!(provider.status(), ProviderStatus::STALE);
    assert_eq!(provider.resolve_float_value("ratio", &EvaluationContext::default()).await.unwrap().value, 0.25);
    faulty.set_failing(false);
    flags.dict().sync().await.unwrap();
    assert_eq!(provider.status(), ProviderStatus::Ready);

    // Failing with no flags at all: nothing to serve.
    let empty_ns = unique_namespace("provider-empty");
    let faulty = Arc::new(FaultyBackend::new(sqlite(&empty_ns).await));
    let dict = DurableDict::builder(faulty.clone()).autosync(false).hints(false).build().await.unwrap();
    let empty = Arc::new(Flags::new(dict));
    let provider = FlagsProvider::new(Arc::clone(&empty));
    assert_eq!(provider.status(), ProviderStatus::Ready);
    faulty.set_failing(true);
    assert!(empty.dict().sync().await.is_err());
    assert_eq!(provider.status(), ProviderStatus::Error);
}
