//! `durable-zk`: the ZooKeeper backend of `durable` (ZooKeeper 3.6+), sharing its layout with
//! Python durabledict's `ZookeeperDict`.
//!
//! ```no_run
//! # async fn demo() -> durable_core::Result<()> {
//! use durable_zk::ZkBackend;
//! // Namespace "flags" under /durable: the dict lives at /durable/flags.
//! let flags = ZkBackend::connect("zk://127.0.0.1:2181/durable", "flags").await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! URL `zk://host:port[,host:port...]/base` and namespace `ns` make the namespace node
//! `/base/ns` (created with its parents if missing). Each key is one child znode of it whose
//! data is the encoded value — durabledict's `ZookeeperDict(keyspace="/base/ns")` layout.
//! Keys ZooKeeper cannot name are refused before any I/O: empty, `.`, `..`, containing `/`
//! or a character ZooKeeper forbids in paths (NUL, control characters, U+E000–U+F8FF,
//! U+FFF0–U+FFFF, and anything past U+FFFF such as emoji, which Java sees as surrogates), or
//! longer than [`MAX_KEY_LEN`] bytes. Values over `max_value_size`
//! (default 1,000,000 bytes, under ZooKeeper's 1 MB `jute.maxbuffer`) are refused with
//! `ValueTooLarge` before being sent; so is a batch (`insert_many` is one) whose keys and
//! values add up past it, since a batch is one request.
//!
//! # The journal
//! With the journal on (the default; `ZkBackendBuilder::journal`), the node
//! `<namespace node>;journal` (a `;` cannot appear in a namespace, so no dict's node can be
//! named so; durabledict never looks there) holds one child per version, named by the
//! version in 20 digits, created in the same multi as the change: its data is the version's
//! records in MessagePack (actor, reason, and key / old value / new value per changed key),
//! its creation time the store's clock. A journaled write reads the namespace node and its
//! keys first and makes the multi conditional on that namespace version, so the node is
//! named by the version the multi makes and holds the values it replaced. The write and its
//! record share one request: together they must fit `max_value_size` (`ValueTooLarge`
//! otherwise, before anything is written). Retention trims nodes after the write of every
//! tenth-of-the-count version, a thousand nodes per multi (best effort; the next point
//! retries), and keeps the version it trimmed through in the journal node's data.
//! # The version node
//!
//! The dict version is the data version (`stat.version`) of the namespace node. Every
//! mutation is one ZooKeeper `multi` that writes the key's znode and sets the namespace
//! node's data, so a write and its version bump are one atomic step. Conditional mutations
//! read first and retry when another writer got there first: `setdefault` makes the multi
//! conditional on the key's absence (a create); `pop` and `compare_and_swap` read the key
//! and the namespace node's version in one multi-read and make the multi conditional on
//! that *namespace* version. The key's own node version would not do: a key deleted and
//! created again between the read and the write starts over at node version 0, and the
//! write would land on a value it never read. A compare-and-swap of an absent key to
//! nothing writes nothing and returns no version. A batch is one multi too: it checks which
//! of its keys exist and the namespace node's version in one pipelined round trip, creates
//! or overwrites each put, deletes each removed key that exists, and — when guarded — makes
//! the multi conditional on the guard's namespace version. `last_updated()` is one stat read.
//!
//! # Reads, the watch and deltas
//!
//! Each backend holds one persistent recursive watch (ZooKeeper 3.6+) on the namespace node;
//! every event is also a change hint for the dict. ZooKeeper 3.8 sends no zxid with these
//! events, so the backend numbers them in the order they arrive and records, per key, the
//! number of its latest event.
//!
//! On an ensemble a session's server may be a follower that has not yet applied a write the
//! leader committed and another session saw acknowledged. There (when the server's
//! `/zookeeper/config` lists an ensemble) the version check and the full read send a `sync`
//! with the leader first, pipelined with the read (one round trip, which the server answers
//! later): a polled `sync()` on a follower sees every write acknowledged before it began. A
//! standalone server needs no sync. A session on the *leader* is ZooKeeper's documented
//! exception (`sync` is not a quorum operation, ZOOKEEPER-1675): the leader applies a
//! commit on its own thread and a follower may apply it and acknowledge the write first,
//! so a polled read on the leader can, for a moment, miss a write acknowledged through a
//! follower (2 polled syncs in 4,500 under CPU load in this project's ensemble test, none
//! on a follower). The next sync sees it; a dict with hints (the default) is told of the
//! change by the leader's own watch event, after the leader applied it.
//!
//! Reads are multi-reads (ZooKeeper 3.6+), which ZooKeeper answers as of one moment. A
//! multi-read stays under half of ZooKeeper's 1 MB request limit (`jute.maxbuffer`; a
//! server drops a client whose request is larger) and at most 2,000 keys, and a read of
//! many keys aims to keep each answer under 4 MB, judged from the largest value seen so far.
//!
//! - **`durables()`** lists the children and reads them in as many multi-reads as that
//!   takes — a 100k-key namespace in about 50 — and then *settles*.
//! - **`changes_since(v)`** just settles, from the point the dict's last read at `v`
//!   covered.
//!
//! Settling reads again, in one multi-read with the namespace node's version, every key
//! whose event came after the read began; the other keys have not changed since they were
//! read. The events of every change up to that multi-read's moment arrive before its answer.
//! If the ones that came meanwhile name only keys it read, every key is at the version it
//! read: a snapshot never shows half of an `insert_many`, and its version is never newer
//! than its data. Otherwise it settles again from there, and from the second round on the
//! multi-read lists the children too, so that a key added after that moment is known to
//! have been absent at it.
//!
//! Each round reads what changed during the last one. Writers that never pause therefore
//! cannot starve a read, of any size, whether they rewrite keys or keep adding new ones
//! (`tests/zk.rs::steady_writers_cannot_starve_or_tear_a_read`). A delta costs one
//! multi-read when nothing else changes meanwhile.
//!
//! durabledict's Python writers change key znodes without touching the namespace node, so
//! the version does not move. They are seen through the watch: its hints make the dict ask
//! for the changed keys even at an unchanged version. **Polling alone cannot see their
//! data changes** — a dict with `hints(false)` sees them only at a full reload.
//!
//! # Disconnects and session expiry
//!
//! Events can be lost across a disconnect (ZOOKEEPER-4698), so a disconnect forgets what was
//! recorded: the next `changes_since` answers "too old" and the dict reloads in full, and
//! the hint stream says `Interrupted`, then `Resumed` once connected again. When the session
//! expires, the backend builds a new session, re-creates the watch and says `Resumed`; the
//! application sees nothing but a staleness window. Every operation is bounded by the
//! operation timeout (default 5 s) and fails with `Error::Timeout` or
//! `Error::StoreUnavailable` meanwhile — never hangs. The timeout bounds each request of a
//! read, not the read as a whole, so a read of any size finishes while the store answers
//! and fails within the timeout when it stops answering.

#![warn(missing_docs)]

mod backend;
mod builder;
mod error;
mod journal;
mod leases;
mod names;
mod reads;
mod session;
mod tracker;
mod url;
mod watch;
mod writes;

use std::time::Duration;

pub use backend::ZkBackend;
pub use builder::ZkBackendBuilder;
pub use error::ZkError;
pub use names::{validate_key, validate_namespace};

/// Default bound on every operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default ZooKeeper session timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest value accepted, under ZooKeeper's default 1 MB request limit.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1_000_000;
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = durable_core::DEFAULT_MAX_KEY_LEN;

pub(crate) const NAME: &str = "zookeeper";
/// How many times an operation retries a write or a read that raced another writer.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// Opens `namespace` at `url` with default options: this crate's entry in the `durable`
/// facade's scheme registry (zk:// and zookeeper://).
pub fn open<'a>(url: &'a str, namespace: &'a str) -> durable_core::Opening<'a> {
    Box::pin(async move {
        let backend: std::sync::Arc<dyn durable_core::Backend> =
            std::sync::Arc::new(ZkBackend::connect(url, namespace).await?);
        Ok(backend)
    })
}
