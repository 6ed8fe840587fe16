//! Evaluating one flag for one context, as flagd does: [`Context`] in, [`Resolution`] out.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use datalogic_rs::bumpalo::Bump;
use datalogic_rs::{DataValue, Engine};
use serde_json::{Map, Value};

use crate::compile::{CompiledFlag, Entry};
use crate::definition::FlagState;
use crate::error::ErrorCode;

/// Who a flag is evaluated for: the targeting key (the user, the request, the tenant —
/// what `fractional` buckets by) and any attributes the rules read with `var`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// OpenFeature's targeting key.
    pub targeting_key: Option<String>,
    /// Attributes, by name.
    pub attributes: Map<String, Value>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this targeting key.
    pub fn targeting_key(mut self, key: impl Into<String>) -> Self {
        self.targeting_key = Some(key.into());
        self
    }

    /// With this attribute.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }
}

/// Why a resolution has the value it has, as OpenFeature and flagd name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting picked no variant (or the flag has no default variant): the default.
    Default,
    /// Targeting picked the variant (flagd reports a `fractional` split this way too).
    TargetingMatch,
    /// The flag is disabled: the caller's default, no variant.
    Disabled,
    /// Something went wrong; see the error code.
    Error,
}

impl Reason {
    /// `STATIC`, `DEFAULT`, `TARGETING_MATCH`, `DISABLED` or `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::Default => "DEFAULT",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Disabled => "DISABLED",
            Self::Error => "ERROR",
        }
    }
}

/// The outcome of evaluating a flag, following OpenFeature's resolution details. `value`
/// is `None` when the caller's default applies: the flag is disabled, has no default
/// variant and no rule picked one, or an error occurred ([`Resolution::value_or`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<T> {
    /// The flag's value, when it has one for this context.
    pub value: Option<T>,
    /// The variant served.
    pub variant: Option<String>,
    /// Why.
    pub reason: Reason,
    /// What went wrong, with a message.
    pub error: Option<(ErrorCode, String)>,
    /// The flag's metadata (the flag set's, with the flag's own over it).
    pub metadata: Map<String, Value>,
}

impl<T> Resolution<T> {
    /// The value, or `default` when the caller's default applies.
    pub fn value_or(self, default: T) -> T {
        self.value.unwrap_or(default)
    }

    /// The error code, if any.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|(code, _)| *code)
    }

    fn failed(code: ErrorCode, message: String, metadata: Map<String, Value>) -> Self {
        Self { value: None, variant: None, reason: Reason::Error, error: Some((code, message)), metadata }
    }
}

/// A type a flag's variants can be read as. Integers are numbers without a fraction;
/// floats are any number; objects are JSON objects (and arrays, with [`Value`]).
pub trait FlagValue: Sized {
    /// The type's name in a type-mismatch message.
    const TYPE: &'static str;
    /// The variant's value as `Self`, or `None` when it is another type.
    fn from_variant(value: &Value) -> Option<Self>;
}

impl FlagValue for bool {
    const TYPE: &'static str = "boolean";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl FlagValue for String {
    const TYPE: &'static str = "string";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_owned)
    }
}

impl FlagValue for i64 {
    const TYPE: &'static str = "integer";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64))
    }
}

impl FlagValue for f64 {
    const TYPE: &'static str = "float";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_f64()
    }
}

impl FlagValue for Map<String, Value> {
    const TYPE: &'static str = "object";
    fn from_variant(value: &Value) -> Option<Self> {
        value.as_object().cloned()
    }
}

impl FlagValue for Value {
    const TYPE: &'static str = "any";
    fn from_variant(value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}

/// The variant a plain value is served as: a plain value is a flag with one variant,
/// `default`, served statically.
pub const PLAIN_VARIANT: &str = "default";

thread_local! {
    /// The evaluation arena of this thread: reset, not freed, between evaluations.
    static ARENA: RefCell<Bump> = RefCell::new(Bump::with_capacity(4096));
}

/// Evaluates `entry` (the flag at `key`, if any) for `context`, as flagd's evaluator does.
pub(crate) fn evaluate<T: FlagValue>(
    engine: &Engine,
    key: &str,
    entry: Option<&Entry>,
    context: &Context,
) -> Resolution<T> {
    let flag = match entry {
        None => return Resolution::failed(ErrorCode::FlagNotFound, format!("flag {key:?} not found"), Map::new()),
        Some(Entry::Broken(err)) => return Resolution::failed(ErrorCode::ParseError, err.to_string(), Map::new()),
        Some(Entry::Ready(flag)) => flag,
        Some(Entry::Plain(value)) => {
            return match T::from_variant(value) {
                Some(value) => Resolution {
                    value: Some(value),
                    variant: Some(PLAIN_VARIANT.to_owned()),
                    reason: Reason::Static,
                    error: None,
                    metadata: Map::new(),
                },
                None => {
                    let message = format!("flag {key:?} is not a{} {}: it is {value}", article(T::TYPE), T::TYPE);
                    Resolution::failed(ErrorCode::TypeMismatch, message, Map::new())
                }
            };
        }
    };
    let metadata = flag.metadata.clone();
    let definition = &flag.definition;
    if definition.state == FlagState::Disabled {
        return Resolution { value: None, variant: None, reason: Reason::Disabled, error: None, metadata };
    }
    let (variant, reason) = match &flag.rule {
        None => (definition.default_variant.clone(), Reason::Static),
        Some(_) => match pick(engine, key, flag, context) {
            Err(message) => return Resolution::failed(ErrorCode::ParseError, message, metadata),
            Ok(None) => (definition.default_variant.clone(), Reason::Default),
            Ok(Some(variant)) => {
                if !definition.variants.contains_key(&variant) {
                    let message = format!("targeting of {key:?} picked {variant:?}, which is not a variant");
                    return Resolution::failed(ErrorCode::General, message, metadata);
                }
                (Some(variant), Reason::TargetingMatch)
            }
        },
    };
    // No default variant and no rule picked one: the caller's default.
    let Some(variant) = variant else {
        return Resolution { value: None, variant: None, reason: Reason::Default, error: None, metadata };
    };
    let stored = &definition.variants[&variant];
    match T::from_variant(stored) {
        Some(value) => Resolution { value: Some(value), variant: Some(variant), reason, error: None, metadata },
        None => {
            let message =
                format!("flag {key:?} is not a{} {}: variant {variant:?} is {stored}", article(T::TYPE), T::TYPE);
            Resolution { variant: Some(variant), ..Resolution::failed(ErrorCode::TypeMismatch, message, metadata) }
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "n" } else { "" }
}

/// Runs the flag's rule: the variant it names, `None` for `null`, or why it failed.
fn pick(engine: &Engine, key: &str, flag: &CompiledFlag, context: &Context) -> Result<Option<String>, String> {
    let Some(rule) = &flag.rule else { return Ok(None) };
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        arena.reset();
        let arena = &*arena;
        let root = root(arena, key, context);
        let result = engine.evaluate(rule, root, arena).map_err(|err| format!("targeting of {key:?} failed: {err}"))?;
        Ok(variant_name(result))
    })
}

/// The data a rule sees: the context's attributes, `targetingKey`, and `$flagd` with
/// `flagKey` and `timestamp` (seconds since the epoch).
fn root<'a>(arena: &'a Bump, key: &str, context: &Context) -> &'a DataValue<'a> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64);
    let flagd: &'a [(&'a str, DataValue<'a>)] = arena.alloc_slice_copy(&[
        ("flagKey", DataValue::String(arena.alloc_str(key))),
        ("timestamp", DataValue::from_i64(timestamp)),
    ]);
    let mut fields: Vec<(&'a str, DataValue<'a>)> = Vec::with_capacity(context.attributes.len() + 2);
    for (name, value) in &context.attributes {
        if name == "targetingKey" && context.targeting_key.is_some() || name == "$flagd" {
            continue;
        }
        fields.push((arena.alloc_str(name), DataValue::from_serde_value_in(value, arena)));
    }
    if let Some(targeting_key) = &context.targeting_key {
        fields.push(("targetingKey", DataValue::String(arena.alloc_str(targeting_key))));
    }
    fields.push(("$flagd", DataValue::Object(flagd)));
    arena.alloc(DataValue::Object(arena.alloc_slice_copy(&fields)))
}

/// What a rule's result names, as flagd reads it: a string as is, other values by their
/// JSON text (`true` names the variant `"true"`), `null` none.
fn variant_name(result: &DataValue<'_>) -> Option<String> {
    match result {
        DataValue::Null => None,
        DataValue::String(name) => Some((*name).to_owned()),
        other => Some(other.to_string().replace('"', "")),
    }
}
