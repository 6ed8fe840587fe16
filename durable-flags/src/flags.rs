//! [`Flags`]: a dict of flag definitions, validated on write and compiled once per
//! snapshot version; [`FlagsSnapshot`]: one version of it, to evaluate a request's flags
//! against.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use datalogic_rs::Engine;
use durable_core::{DurableDict, Snapshot, Status, Version};
use serde_json::{Map, Value};

use crate::compile::{Bucketing, Compiled, compile_flag, engine};
use crate::definition::{
    EVALUATORS_KEY, Evaluators, FlagDefinition, FlagSet, METADATA_KEY, check_key, evaluators_from,
};
use crate::error::FlagError;
use crate::eval::{Context, FlagValue, Resolution, evaluate};

/// Feature flags in flagd's format, one flag per key of a `DurableDict<serde_json::Value>`
/// (shared rules under `$evaluators`, the set's metadata under `$metadata`).
///
/// Writes are validated — variants of one type, a default variant among them, targeting
/// that compiles, `$ref`s that resolve — and refused with a [`FlagError`] saying what is
/// wrong. Reads are the dict's: [`Flags::snapshot`] is one atomic load, and the rules of
/// each snapshot version are compiled once (only the flags that changed), not per
/// evaluation; evaluating reads that snapshot, with no I/O and no lock.
///
/// ```
/// use std::sync::Arc;
/// use durable_core::{DurableDict, MemoryBackend};
/// use durable_flags::{Context, FlagDefinition, Flags, Reason};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dict = DurableDict::builder(Arc::new(MemoryBackend::new("flags-doc"))).build().await?;
/// let flags = Flags::new(dict);
/// let mut beta = FlagDefinition::boolean(false);
/// beta.targeting = Some(serde_json::json!({"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on"]}));
/// flags.put("beta", &beta).await?;
///
/// let request = flags.snapshot(); // once per request
/// let staff = Context::new().with("email", "ada@example.com");
/// assert!(request.boolean("beta", &staff, false));
/// let visitor = request.evaluate::<bool>("beta", &Context::new().with("email", "bob@elsewhere.org"));
/// assert_eq!((visitor.value, visitor.reason), (Some(false), Reason::Default));
/// # Ok(()) }
/// ```
pub struct Flags {
    dict: DurableDict<Value>,
    engine: Arc<Engine>,
    bucketing: Bucketing,
    plain_values: bool,
    count: bool,
    compiled: ArcSwap<Compiled>,
    compiling: Mutex<()>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags").field("version", &self.dict.version()).field("bucketing", &self.bucketing).finish()
    }
}

impl Flags {
    /// Flags kept in `dict`, with flagd's current bucketing ([`Bucketing::V2`]).
    pub fn new(dict: DurableDict<Value>) -> Self {
        Self::with_bucketing(dict, Bucketing::default())
    }

    /// Flags kept in `dict`, bucketing `fractional` rollouts as `bucketing` says.
    pub fn with_bucketing(dict: DurableDict<Value>, bucketing: Bucketing) -> Self {
        Self {
            dict,
            engine: Arc::new(engine(bucketing)),
            bucketing,
            plain_values: false,
            count: false,
            compiled: ArcSwap::from_pointee(Compiled::default()),
            compiling: Mutex::new(()),
        }
    }

    /// Also serves values that are no flag definition — `true`, `"blue"`, `{"limit": 3}`:
    /// any JSON but an object with `state` or `variants` — as static flags: a flag with one
    /// variant, `default` ([`PLAIN_VARIANT`](crate::PLAIN_VARIANT)), reason `STATIC`. A
    /// dict of plain settings and flagd definitions side by side then evaluates as one.
    /// Off by default: every value must be a definition.
    pub fn plain_values(mut self, on: bool) -> Self {
        self.plain_values = on;
        self
    }

    /// Counts every evaluation through these flags' snapshots on the `metrics` facade:
    /// `durable_flag_evaluations_total` labelled `flag`, `variant` and `reason` (feature
    /// `metrics`). Off by default: each flag name becomes a label value, so a dict of many
    /// flags makes many series.
    #[cfg(feature = "metrics")]
    pub fn count_evaluations(mut self, on: bool) -> Self {
        self.count = on;
        self
    }

    /// Writes a plain value (see [`Flags::plain_values`]) — or, when it is shaped like a
    /// definition, checks it as [`Flags::put`] does first.
    pub async fn put_value(&self, key: &str, value: Value) -> Result<Version, FlagError> {
        check_key(key)?;
        if crate::compile::is_definition(&value) || !self.plain_values {
            let definition = FlagDefinition::from_value(key, &value)?;
            return self.put(key, &definition).await;
        }
        Ok(self.dict.insert(key, value).await?)
    }

    /// The dict the definitions live in (to sync it, follow its events, read its status).
    pub fn dict(&self) -> &DurableDict<Value> {
        &self.dict
    }

    /// The dict's health (see [`DurableDict::status`]).
    pub fn status(&self) -> Status {
        self.dict.status()
    }

    /// The flags as of the dict's current snapshot, compiled: take one per request and
    /// evaluate every flag of the request against it.
    pub fn snapshot(&self) -> FlagsSnapshot {
        let snapshot = self.dict.snapshot();
        let compiled = self.compiled_for(&snapshot);
        FlagsSnapshot { snapshot, compiled, engine: Arc::clone(&self.engine), count: self.count }
    }

    /// Evaluates `key` for `context` on the snapshot the task pinned, else the current one.
    pub fn evaluate<T: FlagValue>(&self, key: &str, context: &Context) -> Resolution<T> {
        self.pinned_or_current().evaluate(key, context)
    }

    /// The snapshot this task pinned with [`FlagsSnapshot::scope`] (when it is of these
    /// flags' dict), else the current one.
    pub fn pinned_or_current(&self) -> FlagsSnapshot {
        let pinned = PINNED.try_with(|pinned| Arc::ptr_eq(&pinned.engine, &self.engine).then(|| pinned.clone()));
        pinned.ok().flatten().unwrap_or_else(|| self.snapshot())
    }

    fn compiled_for(&self, snapshot: &Snapshot<Value>) -> Arc<Compiled> {
        let current = self.compiled.load_full();
        if current.version == Some(snapshot.version()) {
            return current;
        }
        let _one_at_a_time = self.compiling.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.compiled.load_full();
        if current.version == Some(snapshot.version()) {
            return current;
        }
        let next = Arc::new(Compiled::build(&self.engine, self.plain_values, snapshot, &current));
        self.compiled.store(Arc::clone(&next));
        next
    }

    /// Checks `definition` against the shared rules of the current snapshot.
    fn check(&self, key: &str, definition: &FlagDefinition, evaluators: &Evaluators) -> Result<Value, FlagError> {
        check_key(key)?;
        let raw = serde_json::to_value(definition)
            .map_err(|err| FlagError::Invalid { key: key.into(), reason: err.to_string() })?;
        compile_flag(&self.engine, key, &raw, evaluators, &Map::new())?;
        Ok(raw)
    }

    fn current_evaluators(&self) -> Result<Evaluators, FlagError> {
        evaluators_from(self.dict.snapshot().get(EVALUATORS_KEY))
    }

    /// Validates and writes one flag; returns the new version.
    pub async fn put(&self, key: &str, definition: &FlagDefinition) -> Result<Version, FlagError> {
        let raw = self.check(key, definition, &self.current_evaluators()?)?;
        Ok(self.dict.insert(key, raw).await?)
    }

    /// Removes one flag; the new version, or `None` when there was none.
    pub async fn remove(&self, key: &str) -> Result<Option<Version>, FlagError> {
        check_key(key)?;
        Ok(self.dict.remove(key).await?)
    }

    /// Replaces the shared rules, after checking that every flag still compiles with them
    /// (a rule a flag refers to cannot be removed).
    pub async fn put_evaluators(&self, evaluators: &Evaluators) -> Result<Version, FlagError> {
        let snapshot = self.dict.snapshot();
        let current = evaluators_from(snapshot.get(EVALUATORS_KEY))?;
        for (key, raw) in snapshot.iter().filter(|(key, _)| !key.starts_with('$')) {
            // A flag that is already broken stays as broken; it must not block the rules.
            if compile_flag(&self.engine, key, raw, &current, &Map::new()).is_ok() {
                compile_flag(&self.engine, key, raw, evaluators, &Map::new())?;
            }
        }
        let value = Value::Object(evaluators.iter().map(|(name, rule)| (name.clone(), rule.clone())).collect());
        Ok(self.dict.insert(EVALUATORS_KEY, value).await?)
    }

    /// Writes a whole flagd flag set as one atomic batch — its flags, shared rules and
    /// metadata — after validating every flag against the set's rules. With `replace`,
    /// flags the set does not name are removed in the same batch. `None` when nothing
    /// changed.
    pub async fn import(&self, set: &FlagSet, replace: bool) -> Result<Option<Version>, FlagError> {
        let mut batch = self.dict.batch();
        for (key, definition) in &set.flags {
            batch = batch.insert(key, self.check(key, definition, &set.evaluators)?);
        }
        let evaluators =
            Value::Object(set.evaluators.iter().map(|(name, rule)| (name.clone(), rule.clone())).collect());
        batch = batch.insert(EVALUATORS_KEY, evaluators);
        batch = match &set.metadata {
            Some(metadata) => batch.insert(METADATA_KEY, Value::Object(metadata.clone())),
            None => batch.remove(METADATA_KEY),
        };
        if replace {
            let snapshot = self.dict.snapshot();
            for key in snapshot.keys().filter(|key| !key.starts_with('$') && !set.flags.contains_key(*key)) {
                batch = batch.remove(key);
            }
        }
        Ok(batch.apply().await?)
    }

    /// The flag set as the current snapshot holds it (flags that do not parse are left
    /// out; [`FlagsSnapshot::broken`] lists them).
    pub fn export(&self) -> FlagSet {
        let snapshot = self.dict.snapshot();
        let flags = snapshot
            .iter()
            .filter(|(key, _)| !key.starts_with('$'))
            .filter_map(|(key, raw)| Some((key.to_owned(), FlagDefinition::from_value(key, raw).ok()?)))
            .collect();
        FlagSet {
            schema: None,
            flags,
            evaluators: evaluators_from(snapshot.get(EVALUATORS_KEY)).unwrap_or_default(),
            metadata: snapshot.get(METADATA_KEY).and_then(Value::as_object).cloned(),
        }
    }
}

tokio::task_local! {
    /// The snapshot a request pinned with [`FlagsSnapshot::scope`].
    static PINNED: FlagsSnapshot;
}

/// The flags of one snapshot version, compiled: evaluating reads only memory.
#[derive(Clone)]
pub struct FlagsSnapshot {
    snapshot: Snapshot<Value>,
    compiled: Arc<Compiled>,
    engine: Arc<Engine>,
    count: bool,
}

impl std::fmt::Debug for FlagsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagsSnapshot")
            .field("version", &self.version())
            .field("flags", &self.compiled.flags.len())
            .finish()
    }
}

impl FlagsSnapshot {
    /// Runs `work` (a request's handler) with this snapshot pinned: every evaluation through
    /// [`Flags::pinned_or_current`] — the OpenFeature provider's — within it reads this one
    /// version, even if the dict moves meanwhile.
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        PINNED.scope(self, work).await
    }

    /// The dict version these flags are.
    pub fn version(&self) -> Version {
        self.snapshot.version()
    }

    /// Evaluates `key` for `context`: value, variant, reason, error, metadata.
    pub fn evaluate<T: FlagValue>(&self, key: &str, context: &Context) -> Resolution<T> {
        let resolution = evaluate(&self.engine, key, self.compiled.flags.get(key).map(|(_, entry)| entry), context);
        if self.count {
            count(key, &resolution);
        }
        resolution
    }

    /// The flag's boolean value for `context`, or `default`.
    pub fn boolean(&self, key: &str, context: &Context, default: bool) -> bool {
        self.evaluate(key, context).value_or(default)
    }

    /// The flag's string value for `context`, or `default`.
    pub fn string(&self, key: &str, context: &Context, default: &str) -> String {
        self.evaluate::<String>(key, context).value.unwrap_or_else(|| default.to_owned())
    }

    /// The flag's integer value for `context`, or `default`.
    pub fn integer(&self, key: &str, context: &Context, default: i64) -> i64 {
        self.evaluate(key, context).value_or(default)
    }

    /// The flag's float value for `context`, or `default`.
    pub fn float(&self, key: &str, context: &Context, default: f64) -> f64 {
        self.evaluate(key, context).value_or(default)
    }

    /// The flag keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.compiled.flags.keys().map(|key| &**key)
    }

    /// The definition of `key`, when it parses.
    pub fn definition(&self, key: &str) -> Option<&FlagDefinition> {
        match self.compiled.flags.get(key) {
            Some((_, crate::compile::Entry::Ready(flag))) => Some(&flag.definition),
            _ => None,
        }
    }

    /// Flags whose stored definition is not valid (written around [`Flags::put`]), with
    /// why: they evaluate to `PARSE_ERROR`.
    pub fn broken(&self) -> impl Iterator<Item = (&str, &FlagError)> + '_ {
        self.compiled.flags.iter().filter_map(|(key, (_, entry))| match entry {
            crate::compile::Entry::Broken(err) => Some((&**key, &**err)),
            crate::compile::Entry::Ready(_) | crate::compile::Entry::Plain(_) => None,
        })
    }
}

/// One evaluation on the `metrics` facade (see [`Flags::count_evaluations`]).
#[cfg(feature = "metrics")]
fn count<T>(key: &str, resolution: &Resolution<T>) {
    let variant = resolution.variant.clone().unwrap_or_default();
    metrics::counter!("durable_flag_evaluations_total", "flag" => key.to_owned(), "variant" => variant,
        "reason" => resolution.reason.as_str())
    .increment(1);
}

#[cfg(not(feature = "metrics"))]
fn count<T>(_: &str, _: &Resolution<T>) {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use durable_core::{DurableDict, MemoryBackend};
    use serde_json::json;

    use super::Flags;
    use crate::compile::Entry;
    use crate::definition::FlagDefinition;

    fn ready(flags: &super::FlagsSnapshot, key: &str) -> Arc<crate::compile::CompiledFlag> {
        match &flags.compiled.flags[key].1 {
            Entry::Ready(flag) => Arc::clone(flag),
            Entry::Broken(err) => panic!("{key}: {err}"),
            Entry::Plain(value) => panic!("{key}: a plain value {value}"),
        }
    }

    /// Every snapshot of one version shares one compilation; a new version compiles only
    /// the flags that changed (and everything when the shared rules change).
    #[tokio::test]
    async fn rules_are_compiled_once_per_version_and_only_where_they_changed() {
        let ns = durable_core::conformance::unique_namespace("flags-compile");
        let dict = DurableDict::builder(Arc::new(MemoryBackend::new(&ns))).build().await.unwrap();
        let flags = Flags::new(dict);
        for key in ["a", "b", "c"] {
            flags.put(key, &FlagDefinition::boolean(true)).await.unwrap();
        }
        let first = flags.snapshot();
        assert!(Arc::ptr_eq(&first.compiled, &flags.snapshot().compiled), "one compilation per version");
        let mut edited = FlagDefinition::boolean(true);
        edited.targeting = Some(json!({"if": [{"var": "beta"}, "on", "off"]}));
        flags.put("b", &edited).await.unwrap();
        let second = flags.snapshot();
        assert_eq!(second.version(), first.version() + 1);
        assert!(Arc::ptr_eq(&ready(&first, "a"), &ready(&second, "a")), "a did not change: not compiled again");
        assert!(Arc::ptr_eq(&ready(&first, "c"), &ready(&second, "c")));
        assert!(!Arc::ptr_eq(&ready(&first, "b"), &ready(&second, "b")), "b changed: compiled again");
        flags.put_evaluators(&[("x".to_owned(), json!(true))].into()).await.unwrap();
        let third = flags.snapshot();
        assert!(!Arc::ptr_eq(&ready(&second, "a"), &ready(&third, "a")), "new shared rules: everything compiled again");
    }
}
