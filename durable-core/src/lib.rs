//! The core of `durable`: a key-value dictionary kept in a durable store and served from an
//! immutable in-memory snapshot in every process that uses it.
//!
//! - [`DurableDict`] — the dictionary: reads from a [`Snapshot`], writes to the store,
//!   `sync()` that costs nothing when nothing changed.
//! - [`Backend`] — the store interface every backend crate implements (durabledict's four
//!   methods on bytes plus the atomic writes, deltas and hints the dict relies on, all
//!   required), and [`MemoryBackend`], the in-process one.
//! - [`Wrap`] — how a wrapper is written (it inherits every method of what it wraps):
//!   [`CountingBackend`] counts store calls, [`LazyBackend`] connects on first use.
//!   [`ReadThenWrite`] adapts a [`SimpleStore`] that has only the four primitives.
//! - Codecs: [`Json`] (durabledict-compatible), [`MsgPack`], [`Raw`], [`Lz4`].
//! - `conformance` (feature `conformance`) — the test suite every backend must pass.
//!
//! Most services use the `durable` facade crate: the user API at its root, what backends
//! and wrappers are written with in `durable::backend`, and backends picked by Cargo
//! feature.
//!
//! # Fuzzing
//!
//! Everything here that decodes bytes from outside the process has a `cargo fuzz` target in
//! the repository's `fuzz/` directory; TESTING.md records the runs.

#![warn(missing_docs)]

pub mod archive;
mod backend;
mod backoff;
mod batch;
mod builder;
mod codec;
mod dict;
mod engine;
mod entry_map;
mod error;
mod events;
mod instrument;
pub mod journal;
mod layered;
mod lazy;
pub mod lease;
mod lease_handle;
mod memory;
mod read_only;
mod read_then_write;
mod refusal;
mod snapshot;
mod store_url;
mod wrap;
mod write_batch;

pub mod shared;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "conformance")]
pub mod testing;

pub use backend::{
    Backend, Changes, DEFAULT_MAX_KEY_LEN, Durables, Hint, HintStream, KeyChange, Open, Opening, Version,
    default_key_rule, validate_namespace,
};
pub use backoff::Backoff;
pub use batch::{Batch, Op};
pub use builder::Builder;
pub use codec::{Codec, Json, Lz4, MsgPack, Raw};
pub use dict::DurableDict;
pub use engine::backup::{BackupError, decode_backup, read_backup};
pub use engine::{HintHealth, Status, SyncOutcome};
pub use error::{Error, KeyName, Result, Source};
pub use events::{Change, Event, Subscription};
pub use instrument::{CallCounts, CountingBackend};
pub use journal::{Gap, GapCause, JournalConfig, JournalItem, JournalPage, JournalReader, JournalRecord};
pub use layered::{Layered, LayeredBuilder, LayeredSnapshot};
pub use lazy::LazyBackend;
pub use lease::{LeaseAnswer, LeaseInfo, LeaseOp, Token};
pub use lease_handle::{Lease, LeaseRequest, LeaseState};
pub use memory::{DEFAULT_CHANGE_LOG, MemoryBackend, MemoryStore};
pub use read_only::ReadOnlyBackend;
pub use read_then_write::{ReadThenWrite, SimpleStore};
pub use refusal::{PROBE_AFTER, PROBE_EVERY, RefusalProbe};
pub use snapshot::Snapshot;
pub use store_url::{HostPort, Redactor, StoreUrl, is_secret_param, redact_url, scheme};
pub use wrap::{Call, Delegate, Wrap};
pub use write_batch::WriteBatch;

/// Re-exported so backend crates and users name the same versions.
pub use async_trait::async_trait;
pub use bytes::Bytes;
