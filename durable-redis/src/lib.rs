//! `durable-redis`: the Redis backend of `durable`, sharing its layout with Python's
//! durabledict so that a Python service using `RedisDict(namespace, redis,
//! encoding=JSONEncoding)` and a Rust service using `DurableDict<_, Json>` on the same
//! namespace share one dictionary.
//!
//! ```no_run
//! # async fn demo() -> durable_core::Result<()> {
//! use durable_redis::RedisBackend;
//! let flags = RedisBackend::connect("redis://127.0.0.1:6379", "flags").await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! | key | type | what |
//! |---|---|---|
//! | `<namespace>` | hash | key → encoded value (durabledict's) |
//! | `<namespace>last_updated` | string (integer) | the dict version, bumped by INCR with every write (durabledict's) |
//! | `<namespace>:log` | sorted set | the change log: member = key, score = version of its latest change |
//! | `<namespace>:log:head` | string | the counter value our last logged write left |
//! | `<namespace>:log:floor` | string | deltas are valid from this version on |
//! | channel `<namespace>:changes` | pub/sub | the new version after every write of ours |
//! | `<namespace>:journal` | stream | the change journal: one entry per changed key, ID `<version>-<n>`, fields `k` key, `o` old value, `n` new value (each absent when the key was), `a` actor, `r` reason, `t` time (the server's `TIME`, ms) |
//! | `<namespace>:journal:trimmed` | string | retention removed every journal entry at or below this version |
//!
//! The journal entries are written by the same script as the change; retention
//! (`RedisBackendBuilder::journal`) trims the stream (`XTRIM MINID`) in the script of every
//! tenth-of-the-count version. A stream left from before a reset counter (its last ID at or
//! past the new version) is dropped, so the script never fails half-way.
//!
//! # Atomicity
//!
//! Every mutation — insert, a batch (insert_many is one), remove, pop, setdefault,
//! compare-and-swap — is one
//! Lua script, run atomically by Redis in one round trip: it writes the hash, INCRs the
//! counter, logs the touched keys, trims the log and publishes the hint. A mutation that
//! changes nothing (removing an absent key, a setdefault that finds its key, a conflict)
//! bumps nothing. A batch (`lua/apply.lua`) checks its guard against the counter inside the
//! script, so a guard that no longer holds writes nothing and answers the current version.
//! `durables()` reads the hash and the counter in one MULTI/EXEC;
//! `last_updated()` is one GET.
//!
//! # Deltas
//!
//! `changes_since(v)` is one script: the keys whose latest change is after `v`, with their
//! current values (absent = deleted). It answers "too old" — and the dict reloads in full —
//! whenever the log cannot explain every change since `v`: `v` below the floor (the log
//! keeps the latest change of at most `change_log_len` keys, default 10,000), the counter
//! moved without a logged write (durabledict's writers keep no log; the next logged write
//! raises the floor past theirs), or the counter is below `v` (the database was flushed).
//! A change is never missed. One case remains for the pub/sub hint and the next full reload
//! to cover: after FLUSHDB, a dict that saw no hint while the counter climbed back past its
//! version.
//!
//! # Redis Cluster
//!
//! `redis+cluster://[user:password@]host:port,host:port,...` (any reachable nodes; the
//! client discovers the rest) connects to a cluster. Every key of a namespace must live in
//! one slot so that each mutation stays one atomic script, so **a namespace on a cluster
//! carries a hash tag**: `{flags}`, or `app:{flags}` — any namespace with a non-empty
//! `{...}`. The hash (`{flags}`), the counter (`{flags}last_updated`), the change log and the
//! channel (`{flags}:changes`) then hash to the slot of `flags`. One without a tag is refused
//! with `InvalidNamespace` before any I/O.
//!
//! To share a namespace with durabledict on a cluster, give the Python side the same
//! tagged string (`RedisDict("{flags}", cluster_connection, encoding=JSONEncoding)`): its
//! hash and counter land in the same slot, so its pipelines stay in one slot too.
//!
//! Hints use sharded pub/sub: the scripts `SPUBLISH` on the namespace's shard channel, and
//! the shared subscription is an `SSUBSCRIBE` through a RESP3 cluster connection, so hints
//! never leave the namespace's shard. When the shard's master dies, that subscription's
//! node connection drops; when the slot moves to another master (a resharding), the old
//! node sends `sunsubscribe` and is treated the same way. Every dict hears `Interrupted`
//! (a refreshing dict then checks the store every 250 ms) and, once the subscription is
//! made again from the cluster's new layout, `Resumed` and a resync — never a stale dict.
//! Redis replicates asynchronously: a write the master acknowledged but had not yet sent to
//! its replica is lost when the replica takes over, and after the resync the dicts show the
//! store as the new master has it, without that write. (The failover test waits for the
//! replica before killing the master, so that it tests the dict, not Redis's replication.)
//! A master failover and a slot migration under live dicts are tested (`tests/cluster.rs`;
//! TESTING.md has what they measured). Keyspace events are not used on a cluster (they stay on the node that produced them): durabledict writers there are
//! heard at the next poll or `resync()`, or use `.hints(false)`.
//!
//! # Hints and failures
//!
//! Every dict of a process on one URL and namespace listens through **one shared pub/sub
//! connection** (`PUBSUB NUMSUB` says 1 however many dicts), so a thousand dicts cost
//! Redis one subscriber and one message per change; it closes with the last dict.
//! It subscribes to the namespace's channel. When
//! Redis publishes keyspace events for string commands (`notify-keyspace-events` holding `K`
//! and `$` or `A`, e.g. `CONFIG SET notify-keyspace-events K$`), it also subscribes to the
//! counter's keyspace channel, so that every INCR — durabledict's writers, which publish
//! nothing, included — is a hint. **Sharing a namespace with durabledict writers**: either
//! enable those keyspace events, or build the dict with `.hints(false)` (every `sync()` then
//! makes one GET, exactly durabledict's behaviour); with neither, a hinted dict sees a Python
//! write only at its next safety poll or `resync()`. When that connection drops, every
//! stream says `Interrupted` (the dicts then ask Redis on every `sync()`); the shared task
//! subscribes again (50 ms, doubling to 250 ms) and says `Resumed`, and each dict checks
//! once, since messages published meanwhile are gone.
//! Commands go through redis-rs's `ConnectionManager`, which reconnects by itself after
//! Redis restarts. Every operation is bounded by the operation timeout (default 5 s) and
//! fails with `Error::Timeout` or `Error::StoreUnavailable` — never hangs.
//!
//! # TLS
//!
//! With the `tls` feature, `rediss://` URLs connect over TLS (rustls with the ring
//! provider), trusting the system's roots or, with `tls_root_cert(pem)`, a given CA. The URL's password
//! never appears in `Debug`, `Display`, errors or logs.

#![warn(missing_docs)]

mod backend;
mod builder;
mod connection;
mod hints;
mod journal;
mod layout;
mod oracle;
mod scripts;

use std::time::Duration;

pub use backend::RedisBackend;
pub use builder::RedisBackendBuilder;
pub use connection::RedisError;
pub use layout::validate_namespace;
pub use oracle::{DEFAULT_ORACLE_TIMEOUT, DEFAULT_VERIFY_EVERY, VersionOracle};

/// Default bound on every operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of keys the change log remembers.
pub const DEFAULT_CHANGE_LOG_LEN: usize = 10_000;
/// Default largest value accepted.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 4 * 1024 * 1024;
/// Longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 1024;

const NAME: &str = "redis";

/// Opens `namespace` at `url` with default options: this crate's entry in the `durable`
/// facade's scheme registry (redis://, rediss:// and redis+cluster://).
pub fn open<'a>(url: &'a str, namespace: &'a str) -> durable_core::Opening<'a> {
    Box::pin(async move {
        let backend: std::sync::Arc<dyn durable_core::Backend> =
            std::sync::Arc::new(RedisBackend::connect(url, namespace).await?);
        Ok(backend)
    })
}
