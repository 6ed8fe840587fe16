//! The core of `durable`: a key-value dictionary kept in a durable store and served from an
//! immutable in-memory snapshot in every process that uses it.
//!
//! - [`DurableDict`] — the dictionary: reads from a [`Snapshot`], writes to the store,
//!   `sync()` that costs nothing when nothing changed.
//! - [`Backend`] — the store interface every backend crate implements (durabledict's four
//!   methods on bytes plus optional faster paths), and [`MemoryBackend`], the in-process one.
//! - Codecs: [`Json`] (durabledict-compatible), [`MsgPack`], [`Raw`], [`Lz4`].
//! - [`CountingBackend`] — a wrapper that counts store calls (round trips), for tests,
//!   benchmarks and metrics.
//! - `conformance` (feature `conformance`) — the test suite every backend must pass.
//!
//! Most services use the `durable` facade crate, which re-exports all of this and picks
//! backends by Cargo feature.
//!
//! # Fuzzing
//!
//! Everything here that decodes bytes from outside the process has a `cargo fuzz` target in
//! the repository's `fuzz/` directory. Each ran for ten minutes (`cargo +nightly fuzz run -O
//! <target> -- -max_total_time=600`, AddressSanitizer on, 2-core VM, 2026-11-22):
//!
//! | target | runs | result |
//! |---|---|---|
//! | `codec_json` (`Json` decode, then re-encode and decode) | 14.4 million | no failure |
//! | `codec_msgpack` (`MsgPack`, the same) | 9.7 million | no failure |
//! | `codec_lz4` (`Lz4<Raw>`, forged length headers included) | 8.8 million | no failure |
//! | `backup` ([`decode_backup`]) | 72.3 million | no failure |
//!
//! The first `codec_json` run failed within two seconds: a 51-digit number decoded to a
//! float that did not survive a round trip, since serde_json's default float parsing may be
//! one unit in the last place off. `durable` now builds serde_json with `float_roundtrip`
//! (exact, as Python's `json` is); the run above is the one after that fix, and the case is
//! a unit test (`floats_round_trip_exactly`). CI builds the targets on every run.

#![warn(missing_docs)]

mod backend;
mod builder;
mod codec;
mod dict;
mod engine;
mod error;
mod events;
mod instrument;
mod lazy;
mod memory;
mod read_then_write;
mod refusal;
mod snapshot;
mod url;
mod wrap;

pub mod shared;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "conformance")]
pub mod testing;

pub use backend::{
    Backend, Changes, DEFAULT_MAX_KEY_LEN, Durables, Hint, HintStream, KeyChange, Open, Opening, Version,
    default_key_rule, validate_namespace,
};
pub use builder::Builder;
pub use codec::{Codec, Json, Lz4, MsgPack, Raw};
pub use dict::DurableDict;
pub use engine::backup::{BackupError, decode_backup, read_backup};
pub use engine::{HintHealth, Status, SyncOutcome};
pub use error::{Error, KeyName, Result, Source};
pub use events::{Change, Event, Subscription};
pub use instrument::{CallCounts, CountingBackend};
pub use lazy::LazyBackend;
pub use memory::{DEFAULT_CHANGE_LOG, MemoryBackend, MemoryStore};
pub use read_then_write::{ReadThenWrite, SimpleStore};
pub use refusal::{PROBE_AFTER, PROBE_EVERY, RefusalProbe};
pub use snapshot::Snapshot;
pub use url::{Redactor, redact_url, scheme};
pub use wrap::{Call, Delegate, Wrap};

/// Re-exported so backend crates and users name the same versions.
pub use async_trait::async_trait;
pub use bytes::Bytes;
