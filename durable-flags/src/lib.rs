//! `durable-flags`: feature flags on a `durable` dictionary, in flagd's flag definition
//! format, evaluated as flagd evaluates them, with an OpenFeature provider.
//!
//! - [`FlagDefinition`] reads and writes flagd's format (`state`, `variants`,
//!   `defaultVariant`, `targeting`, `metadata`); [`FlagSet`] a flagd flag file. One flag
//!   per dict key; shared rules under `$evaluators`, referred to with `{"$ref": "name"}`.
//! - [`Flags`] validates every write (variants of one type, a default variant among them,
//!   targeting that compiles, `$ref`s that resolve) and compiles the rules once per
//!   snapshot version; [`FlagsSnapshot::evaluate`] reads memory only — no I/O, no lock.
//! - Targeting is JsonLogic on [datalogic-rs](https://docs.rs/datalogic-rs) (the engine
//!   flagd's own Rust evaluator uses) with flagd's operators and semantics: `fractional`
//!   (MurmurHash3 x86_32 of the bucketing key — by default the flag key joined with the
//!   targeting key — walked through the weights; [`Bucketing::V2`], flagd's current
//!   high-precision form, by default, [`Bucketing::V1`] the legacy one), `sem_ver`,
//!   `starts_with`, `ends_with`, and `$flagd.flagKey` / `$flagd.timestamp` in the data.
//! - A [`Resolution`] carries value, variant, reason and error code as OpenFeature's
//!   resolution details do; [`FlagsProvider`] is the `open-feature` crate's provider, and
//!   `ofrep::router` (feature `ofrep`) serves the OpenFeature Remote Evaluation Protocol.
//!
//! Semantics follow flagd's evaluator: a disabled flag gives reason `DISABLED` and the
//! caller's default; a rule answering `null` gives the default variant (`DEFAULT`); no
//! targeting gives the default variant (`STATIC`); a flag without a default variant gives
//! the caller's default; a rule naming no variant is `GENERAL`; an unknown flag is
//! `FLAG_NOT_FOUND`, a wrong type `TYPE_MISMATCH`, a definition that cannot be read
//! `PARSE_ERROR`. A `fractional` split is a `TARGETING_MATCH`, as in flagd.

mod compile;
mod definition;
mod error;
mod eval;
mod flags;
#[cfg(feature = "ofrep")]
pub mod ofrep;
mod ops;
#[cfg(feature = "openfeature")]
mod provider;

pub use compile::Bucketing;
pub use definition::{
    EVALUATORS_KEY, Evaluators, FlagDefinition, FlagSet, FlagState, METADATA_KEY, VariantType, resolve_refs,
};
pub use error::{ErrorCode, FlagError};
pub use eval::{Context, FlagValue, PLAIN_VARIANT, Reason, Resolution};
pub use flags::{Flags, FlagsSnapshot};
#[cfg(feature = "openfeature")]
pub use provider::{FlagsProvider, context_of};
