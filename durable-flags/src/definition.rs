//! flagd's flag definition format: [`FlagDefinition`] (one flag), [`FlagSet`] (a flagd flag
//! file: flags, shared rules under `$evaluators`, metadata), and the checks a definition
//! passes before it is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FlagError;

/// The dict key that holds the shared rules (`$evaluators`) a flag's targeting refers to
/// with `{"$ref": "name"}`. Flag keys cannot start with `$`.
pub const EVALUATORS_KEY: &str = "$evaluators";

/// The dict key that holds the flag set's metadata, merged under every flag's own.
pub const METADATA_KEY: &str = "$metadata";

/// How deep `$ref`s may refer to rules that refer to rules (a cycle is refused long
/// before a stack could overflow).
const MAX_REF_DEPTH: usize = 32;

/// Whether a flag is served (`ENABLED`) or resolves to the caller's default with reason
/// `DISABLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FlagState {
    /// Evaluated.
    Enabled,
    /// Resolves to the caller's default value, with reason `DISABLED` and no variant.
    Disabled,
}

/// One flag in flagd's format:
///
/// ```json
/// {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
///  "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on"]},
///  "metadata": {"owner": "checkout"}}
/// ```
///
/// `targeting` is JsonLogic returning a variant name (or `null`: the default variant); it
/// may use flagd's `fractional`, `sem_ver`, `starts_with` and `ends_with`, the context's
/// `targetingKey`, `$flagd.flagKey` and `$flagd.timestamp`, and shared rules by
/// `{"$ref": "name"}`. An absent or `null` `defaultVariant` makes the flag resolve to the
/// caller's default value when no rule picks a variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagDefinition {
    /// Served or not.
    pub state: FlagState,
    /// The values the flag can take, by variant name. All of one type: booleans, strings,
    /// numbers, or objects.
    pub variants: Map<String, Value>,
    /// The variant served when targeting picks none (absent: the caller's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_variant: Option<String>,
    /// JsonLogic choosing a variant; absent or `{}`: none (the default variant, `STATIC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting: Option<Value>,
    /// Strings, numbers and booleans handed back with every evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// The type every variant of a flag shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantType {
    /// `true` / `false`.
    Boolean,
    /// Text.
    String,
    /// Integers and floats.
    Number,
    /// JSON objects (and arrays).
    Object,
}

impl VariantType {
    /// The type of one variant value, `None` for `null`.
    pub fn of(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(_) => Some(Self::Boolean),
            Value::String(_) => Some(Self::String),
            Value::Number(_) => Some(Self::Number),
            Value::Object(_) | Value::Array(_) => Some(Self::Object),
            Value::Null => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Number => "number",
            Self::Object => "object",
        }
    }
}

impl FlagDefinition {
    /// A flag that is on or off, serving `on` by default when `default_on`.
    pub fn boolean(default_on: bool) -> Self {
        let mut variants = Map::new();
        variants.insert("on".into(), Value::Bool(true));
        variants.insert("off".into(), Value::Bool(false));
        Self {
            state: FlagState::Enabled,
            variants,
            default_variant: Some(if default_on { "on" } else { "off" }.into()),
            targeting: None,
            metadata: None,
        }
    }

    /// Reads one flag from its JSON, with the definition's own checks (not its rules'; see
    /// [`FlagDefinition::check`]).
    pub fn from_value(key: &str, value: &Value) -> Result<Self, FlagError> {
        let definition =
            Self::deserialize(value).map_err(|err| FlagError::Invalid { key: key.into(), reason: err.to_string() })?;
        definition.check_shape(key)?;
        Ok(definition)
    }

    /// The type all variants share.
    pub fn variant_type(&self) -> Option<VariantType> {
        self.variants.values().next().and_then(VariantType::of)
    }

    /// The targeting rule, unless absent, `null` or `{}` (flagd treats those alike).
    pub fn rule(&self) -> Option<&Value> {
        match &self.targeting {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(rule) => Some(rule),
        }
    }

    /// Checks everything that needs no engine: a flag key, variants of one type, a default
    /// variant among them, metadata of plain values.
    pub(crate) fn check_shape(&self, key: &str) -> Result<(), FlagError> {
        check_key(key)?;
        let invalid = |reason: String| FlagError::Invalid { key: key.into(), reason };
        let mut kinds = self.variants.iter().map(|(name, value)| (name, VariantType::of(value)));
        let Some((_, first)) = kinds.next() else {
            return Err(invalid("a flag needs at least one variant".into()));
        };
        let Some(first) = first else {
            return Err(invalid("a variant cannot be null".into()));
        };
        for (name, kind) in kinds {
            match kind {
                None => return Err(invalid(format!("variant {name:?} is null"))),
                Some(kind) if kind != first => {
                    return Err(invalid(format!(
                        "variant {name:?} is a {}, the others are {}s: all variants of a flag share one type",
                        kind.name(),
                        first.name()
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(default) = &self.default_variant
            && !self.variants.contains_key(default)
        {
            let known: Vec<&str> = self.variants.keys().map(String::as_str).collect();
            return Err(invalid(format!("defaultVariant {default:?} is not one of the variants {known:?}")));
        }
        for (name, value) in self.metadata.iter().flatten() {
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return Err(invalid(format!("metadata {name:?} must be a string, a number or a boolean")));
            }
        }
        Ok(())
    }
}

/// Flag keys are dict keys that do not start with `$` (reserved: [`EVALUATORS_KEY`]).
pub(crate) fn check_key(key: &str) -> Result<(), FlagError> {
    if key.is_empty() || key.starts_with('$') {
        return Err(FlagError::Invalid {
            key: key.into(),
            reason: "a flag key is not empty and does not start with `$` (reserved: `$evaluators`, `$metadata`)".into(),
        });
    }
    Ok(())
}

/// The shared rules of a flag set, by name.
pub type Evaluators = BTreeMap<String, Value>;

/// Reads the `$evaluators` entry: an object of rules.
pub(crate) fn evaluators_from(value: Option<&Value>) -> Result<Evaluators, FlagError> {
    match value {
        None | Some(Value::Null) => Ok(Evaluators::new()),
        Some(Value::Object(map)) => Ok(map.iter().map(|(name, rule)| (name.clone(), rule.clone())).collect()),
        Some(other) => Err(FlagError::Invalid {
            key: EVALUATORS_KEY.into(),
            reason: format!("`$evaluators` is an object of named rules, not {other}"),
        }),
    }
}

/// `rule` with every `{"$ref": "name"}` replaced by the named shared rule (recursively:
/// a shared rule may refer to others). flagd substitutes the text; this substitutes the
/// JSON, so spacing in the reference does not matter.
pub fn resolve_refs(key: &str, rule: &Value, evaluators: &Evaluators) -> Result<Value, FlagError> {
    resolve(key, rule, evaluators, 0)
}

fn resolve(key: &str, rule: &Value, evaluators: &Evaluators, depth: usize) -> Result<Value, FlagError> {
    match rule {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(reference) = map.get("$ref")
            {
                let Some(name) = reference.as_str() else {
                    return Err(FlagError::Invalid {
                        key: key.into(),
                        reason: format!("a $ref names a rule: {reference}"),
                    });
                };
                let Some(shared) = evaluators.get(name) else {
                    return Err(FlagError::UnknownRef { key: key.into(), name: name.into() });
                };
                if depth >= MAX_REF_DEPTH {
                    return Err(FlagError::Invalid {
                        key: key.into(),
                        reason: format!("$ref {name:?} refers to rules more than {MAX_REF_DEPTH} deep (a cycle?)"),
                    });
                }
                return resolve(key, shared, evaluators, depth + 1);
            }
            let mut out = Map::with_capacity(map.len());
            for (name, value) in map {
                out.insert(name.clone(), resolve(key, value, evaluators, depth)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            items.iter().map(|item| resolve(key, item, evaluators, depth)).collect::<Result<_, _>>().map(Value::Array)
        }
        other => Ok(other.clone()),
    }
}

/// A flagd flag file: `{"flags": {...}, "$evaluators": {...}, "metadata": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagSet {
    /// The JSON schema the file names, kept as it was.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Flags by key.
    pub flags: BTreeMap<String, FlagDefinition>,
    /// Shared rules by name.
    #[serde(rename = "$evaluators", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evaluators: Evaluators,
    /// The flag set's metadata (merged under each flag's own in every evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl FlagSet {
    /// Reads a flagd flag file.
    pub fn from_json(text: &str) -> Result<Self, FlagError> {
        serde_json::from_str(text)
            .map_err(|err| FlagError::Invalid { key: "(flag set)".into(), reason: err.to_string() })
    }
}
