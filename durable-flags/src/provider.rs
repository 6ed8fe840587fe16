//! [`FlagsProvider`]: an OpenFeature provider (the `open-feature` crate) backed by
//! [`Flags`], for all five value types.

use std::sync::Arc;

use async_trait::async_trait;
use open_feature::provider::{FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadata, FlagMetadataValue, StructValue,
};
use serde_json::{Map, Value};

use crate::error::ErrorCode;
use crate::eval::{Context, FlagValue, Reason, Resolution};
use crate::flags::Flags;

/// OpenFeature's view of [`Flags`]: every resolution reads the dict's current snapshot,
/// compiled once per version, with no I/O. Its status follows the dict's: `Ready`, `STALE`
/// while the store is failing or the flags came from the dict's backup file (the last good
/// flags are served), `Error` while that is so and there are no flags to serve.
///
/// The OpenFeature API hands a provider no default value, so where flagd serves the
/// caller's default — a disabled flag, a flag without a default variant that no rule
/// matched — the provider answers an error (`GENERAL`, saying which) and the client
/// returns the caller's default.
///
/// ```no_run
/// # async fn demo(flags: std::sync::Arc<durable_flags::Flags>) {
/// use open_feature::{EvaluationContext, OpenFeature};
/// let mut api = OpenFeature::singleton_mut().await;
/// api.set_provider(durable_flags::FlagsProvider::new(flags)).await;
/// let client = api.create_client();
/// let context = EvaluationContext::default().with_targeting_key("user-42");
/// let on = client.get_bool_value("new-checkout", Some(&context), None).await.unwrap_or(false);
/// # }
/// ```
pub struct FlagsProvider {
    flags: Arc<Flags>,
    metadata: ProviderMetadata,
}

impl FlagsProvider {
    /// A provider serving `flags`.
    pub fn new(flags: Arc<Flags>) -> Self {
        Self { flags, metadata: ProviderMetadata::new("durable") }
    }

    fn resolve<T: FlagValue, U>(
        &self,
        key: &str,
        context: &EvaluationContext,
        convert: impl FnOnce(T) -> EvaluationResult<U>,
    ) -> EvaluationResult<ResolutionDetails<U>> {
        let resolution: Resolution<T> = self.flags.evaluate(key, &context_of(context));
        if let Some((code, message)) = resolution.error {
            let code = match code {
                ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
                ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
                ErrorCode::ParseError => EvaluationErrorCode::ParseError,
                ErrorCode::General => EvaluationErrorCode::General("GENERAL".into()),
            };
            return Err(EvaluationError { code, message: Some(message) });
        }
        let Some(value) = resolution.value else {
            let why = match resolution.reason {
                Reason::Disabled => "DISABLED",
                _ => "DEFAULT",
            };
            return Err(EvaluationError {
                code: EvaluationErrorCode::General(why.into()),
                message: Some(format!("flag {key:?} serves the caller's default ({why})")),
            });
        };
        let reason = match resolution.reason {
            Reason::Static => EvaluationReason::Static,
            Reason::Default => EvaluationReason::Default,
            Reason::TargetingMatch => EvaluationReason::TargetingMatch,
            Reason::Disabled => EvaluationReason::Disabled,
            Reason::Error => EvaluationReason::Error,
        };
        Ok(ResolutionDetails {
            value: convert(value)?,
            variant: resolution.variant,
            reason: Some(reason),
            flag_metadata: Some(metadata_of(&resolution.metadata)),
        })
    }
}

/// An OpenFeature context as the rules see it: the targeting key, and every field as JSON
/// (a date-time as RFC 3339 text; a structure when it holds a `serde_json::Value`, an
/// OpenFeature `StructValue` or `Value`; other structures are left out).
pub fn context_of(context: &EvaluationContext) -> Context {
    let mut attributes = Map::new();
    for (name, value) in &context.custom_fields {
        let value = match value {
            EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Value::from(*i),
            EvaluationContextFieldValue::Float(f) => Value::from(*f),
            EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
            EvaluationContextFieldValue::DateTime(at) => {
                match at.format(&time::format_description::well_known::Rfc3339) {
                    Ok(text) => Value::String(text),
                    Err(_) => continue,
                }
            }
            EvaluationContextFieldValue::Struct(any) => {
                if let Some(json) = any.downcast_ref::<Value>() {
                    json.clone()
                } else if let Some(fields) = any.downcast_ref::<StructValue>() {
                    json_of_struct(fields)
                } else if let Some(value) = any.downcast_ref::<open_feature::Value>() {
                    json_of(value)
                } else {
                    continue;
                }
            }
        };
        attributes.insert(name.clone(), value);
    }
    Context { targeting_key: context.targeting_key.clone(), attributes }
}

fn json_of_struct(fields: &StructValue) -> Value {
    Value::Object(fields.fields.iter().map(|(name, value)| (name.clone(), json_of(value))).collect())
}

fn json_of(value: &open_feature::Value) -> Value {
    match value {
        open_feature::Value::Bool(b) => Value::Bool(*b),
        open_feature::Value::Int(i) => Value::from(*i),
        open_feature::Value::Float(f) => Value::from(*f),
        open_feature::Value::String(s) => Value::String(s.clone()),
        open_feature::Value::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        open_feature::Value::Struct(fields) => json_of_struct(fields),
    }
}

fn metadata_of(metadata: &Map<String, Value>) -> FlagMetadata {
    let mut out = FlagMetadata::default();
    for (name, value) in metadata {
        let value = match value {
            Value::Bool(b) => FlagMetadataValue::Bool(*b),
            Value::String(s) => FlagMetadataValue::String(s.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => FlagMetadataValue::Int(i),
                None => FlagMetadataValue::Float(n.as_f64().unwrap_or_default()),
            },
            _ => continue,
        };
        out = out.with_value(name.clone(), value);
    }
    out
}

#[async_trait]
impl FeatureProvider for FlagsProvider {
    fn status(&self) -> ProviderStatus {
        let status = self.flags.status();
        if status.failing_since.is_none() && !status.from_backup {
            ProviderStatus::Ready
        } else if self.flags.snapshot().keys().next().is_some() {
            ProviderStatus::STALE
        } else {
            ProviderStatus::Error
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(key, context, Ok)
    }

    async fn resolve_int_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(key, context, Ok)
    }

    async fn resolve_float_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(key, context, Ok)
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(key, context, Ok)
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(key, context, |object: Map<String, Value>| {
            match open_feature::Value::try_from(Value::Object(object))? {
                open_feature::Value::Struct(value) => Ok(value),
                _ => Err(EvaluationError { code: EvaluationErrorCode::TypeMismatch, message: None }),
            }
        })
    }
}
