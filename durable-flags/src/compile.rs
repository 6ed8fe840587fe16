//! Rules compiled once per snapshot version: [`Compiled`] holds every flag of one version
//! read, its `$ref`s resolved and its targeting compiled, and is built from the previous
//! version's, compiling again only the flags that changed.

use std::collections::HashMap;
use std::sync::Arc;

use datalogic_rs::{Engine, Logic};
use durable_core::{Snapshot, Version};
use serde_json::{Map, Value};

use crate::definition::{EVALUATORS_KEY, Evaluators, FlagDefinition, METADATA_KEY, evaluators_from, resolve_refs};
use crate::error::FlagError;
use crate::ops::{Affix, Fractional, SemVer};

/// Which `fractional` bucketing targeting rules use.
///
/// flagd moved from the legacy float form (v1) to the high-precision integer form (v2) in
/// March 2026 (flagd 0.15, its providers alongside; flagd-testbed's `@fractional-v2`), so
/// v2 is the default: a user lands in the same bucket here as in flagd and every current
/// flagd provider. V1 keeps the assignments of flag sets evaluated before the move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Bucketing {
    /// `(hash * totalWeight) >> 32` on the unsigned 32-bit MurmurHash3 x86_32 of the
    /// bucketing key; weights up to `i32::MAX` in total, any weight ≥ 1 gets traffic.
    #[default]
    V2,
    /// `abs(hash as i32) / i32::MAX * 100` against each variant's percentage of the
    /// total weight: 1/100 resolution.
    V1,
}

/// The JsonLogic engine with flagd's operators (see `ops.rs`), `fractional` bucketing as
/// `bucketing` says.
pub(crate) fn engine(bucketing: Bucketing) -> Engine {
    Engine::builder()
        .add_operator("fractional", Fractional { bucketing })
        .add_operator("sem_ver", SemVer)
        .add_operator("starts_with", Affix { suffix: false })
        .add_operator("ends_with", Affix { suffix: true })
        .build()
}

/// One flag, ready to evaluate.
#[derive(Debug)]
pub(crate) struct CompiledFlag {
    pub(crate) definition: FlagDefinition,
    pub(crate) rule: Option<Logic>,
    /// The flag set's metadata with the flag's own over it.
    pub(crate) metadata: Map<String, Value>,
}

/// A flag as the snapshot holds it: compiled, why it cannot be, or (with plain values
/// allowed) a value that is no definition, served as it is.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Ready(Arc<CompiledFlag>),
    Broken(Arc<FlagError>),
    Plain(Arc<Value>),
}

/// Whether a stored value means to be a flag definition: an object with `state` or
/// `variants` (a definition with a typo in it is still one, and is refused as such).
pub(crate) fn is_definition(value: &Value) -> bool {
    value.as_object().is_some_and(|map| map.contains_key("state") || map.contains_key("variants"))
}

/// Every flag of one snapshot version, compiled.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) version: Option<Version>,
    pub(crate) flags: HashMap<Arc<str>, (Arc<Value>, Entry)>,
    evaluators: Option<Arc<Value>>,
    metadata: Option<Arc<Value>>,
}

fn same(a: Option<&Arc<Value>>, b: Option<&Arc<Value>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

impl Compiled {
    /// Compiles `snapshot`, reusing what `previous` compiled of flags that did not change
    /// (when the shared rules and the set's metadata did not either). With `plain_values`,
    /// a value that is no definition is a static flag of that value.
    pub(crate) fn build(engine: &Engine, plain_values: bool, snapshot: &Snapshot<Value>, previous: &Compiled) -> Self {
        let evaluators = snapshot.get_arc(EVALUATORS_KEY);
        let metadata = snapshot.get_arc(METADATA_KEY);
        let reusable = same(evaluators.as_ref(), previous.evaluators.as_ref())
            && same(metadata.as_ref(), previous.metadata.as_ref());
        let shared = evaluators_from(evaluators.as_deref());
        let set_metadata = match metadata.as_deref() {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let mut flags = HashMap::with_capacity(snapshot.len());
        for key in snapshot.keys().filter(|key| !key.starts_with('$')) {
            let Some(raw) = snapshot.get_arc(key) else { continue };
            if reusable
                && let Some((before, entry)) = previous.flags.get(key)
                && (Arc::ptr_eq(before, &raw) || **before == *raw)
            {
                flags.insert(Arc::from(key), (raw, entry.clone()));
                continue;
            }
            let entry = match &shared {
                _ if plain_values && !is_definition(&raw) => Entry::Plain(Arc::clone(&raw)),
                Ok(shared) => match compile_flag(engine, key, &raw, shared, &set_metadata) {
                    Ok(flag) => Entry::Ready(Arc::new(flag)),
                    Err(err) => Entry::Broken(Arc::new(err)),
                },
                Err(err) => Entry::Broken(Arc::new(err.clone())),
            };
            flags.insert(Arc::from(key), (raw, entry));
        }
        Self { version: Some(snapshot.version()), flags, evaluators, metadata }
    }
}

/// Reads, checks and compiles one flag: the write path's validation and the read path's
/// compilation are this one function.
pub(crate) fn compile_flag(
    engine: &Engine,
    key: &str,
    raw: &Value,
    evaluators: &Evaluators,
    set_metadata: &Map<String, Value>,
) -> Result<CompiledFlag, FlagError> {
    let definition = FlagDefinition::from_value(key, raw)?;
    let rule = match definition.rule() {
        None => None,
        Some(rule) => {
            let rule = resolve_refs(key, rule, evaluators)?;
            check_operators(engine, key, &rule)?;
            let logic =
                engine.compile(&rule).map_err(|err| FlagError::Rule { key: key.into(), reason: err.to_string() })?;
            Some(logic)
        }
    };
    let mut metadata = set_metadata.clone();
    metadata.extend(definition.metadata.iter().flatten().map(|(name, value)| (name.clone(), value.clone())));
    Ok(CompiledFlag { definition, rule, metadata })
}

/// Refuses an operator the engine does not know (JsonLogic would only fail when the rule
/// reaches it, perhaps for one user in a thousand): a one-key object is an operation.
fn check_operators(engine: &Engine, key: &str, rule: &Value) -> Result<(), FlagError> {
    match rule {
        Value::Object(map) => {
            if map.len() == 1
                && let Some((name, _)) = map.iter().next()
                && !engine.has_custom_operator(name)
                && !engine.builtin_operator_names().any(|known| known == name)
            {
                return Err(FlagError::Rule { key: key.into(), reason: format!("unknown operator {name:?}") });
            }
            map.values().try_for_each(|value| check_operators(engine, key, value))
        }
        Value::Array(items) => items.iter().try_for_each(|item| check_operators(engine, key, item)),
        _ => Ok(()),
    }
}
