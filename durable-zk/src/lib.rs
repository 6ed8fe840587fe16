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
//! `ValueTooLarge` before being sent; so is an `insert_many` whose values add up past it.
//!
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
//! nothing writes nothing and returns no version. `last_updated()` is one stat read.
//!
//! # Reads, the watch and deltas
//!
//! Each backend holds one persistent recursive watch (ZooKeeper 3.6+) on the namespace node;
//! every event is also a change hint for the dict. ZooKeeper 3.8 sends no zxid with these
//! events, so the backend numbers them in the order they arrive and records, per key, the
//! number of its latest event.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::{
    Backend, Changes, Durables, Error, Hint, HintStream, KeyChange, RefusalProbe, Result, Source, Version,
};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use zookeeper_client as zk;

/// Default bound on every operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many requests a write of many keys keeps in flight at once; see
/// `ZkBackend::batched`.
const BATCH: usize = 1_000;
/// The most keys one multi-read asks for.
const MULTI_READ_KEYS: usize = 2_000;
/// The largest multi-read request: half of ZooKeeper's default 1 MB `jute.maxbuffer` (a
/// server drops a client whose request is larger).
const MULTI_READ_BYTES: usize = 512 * 1024;
/// What a read of many keys aims to keep each multi-read's answer under, judged from the
/// largest value it has seen so far.
const MULTI_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// The value size a read of many keys assumes before its first answer.
const FIRST_VALUE_GUESS: usize = 16 * 1024;
/// One `getData` in a multi-read, besides its path: operation header (type, done, error)
/// 9 bytes, path length 4, watch flag 1.
const MULTI_OP_BYTES: usize = 14;
/// One `getData` answer in a multi-read, besides its data: operation header 9, data length
/// 4, stat 68.
const MULTI_ANSWER_OP_BYTES: usize = 81;
/// Default ZooKeeper session timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest value accepted, under ZooKeeper's default 1 MB request limit.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1_000_000;
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = durable_core::DEFAULT_MAX_KEY_LEN;

const NAME: &str = "zookeeper";
/// Anchors kept (see [`Tracker`]): one per recent snapshot version.
const MAX_ANCHORS: usize = 64;
const MAX_ATTEMPTS: usize = 64;

const PERSISTENT: zk::CreateOptions<'static> = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

/// Options for [`ZkBackend::builder`].
#[derive(Debug, Clone)]
pub struct ZkBackendBuilder {
    url: String,
    timeout: Duration,
    session_timeout: Duration,
    max_value_size: usize,
}

impl ZkBackendBuilder {
    /// Bound on every operation, connecting included (default 5 s). A full or delta read,
    /// one request per key, is bounded per batch of 1,000 pipelined reads instead, so a big
    /// namespace's reload is cut off when the store stops answering, not for its size.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The ZooKeeper session timeout (default 10 s; the server clamps it to its limits).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Largest encoded value accepted (default 1,000,000 bytes).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Connects, creates the namespace node if missing, starts the watch, and returns a
    /// backend on `namespace`.
    pub async fn connect(self, namespace: &str) -> Result<ZkBackend> {
        let ZkUrl { cluster, base, auth } = parse_url(&self.url)?;
        validate_namespace(namespace)?;
        let ns_path = if base.is_empty() { format!("/{namespace}") } else { format!("{base}/{namespace}") };
        let config = Config {
            probe: RefusalProbe::from_url(NAME, &format!("zk://{cluster}"), 2181),
            cluster,
            auth,
            ns_path,
            timeout: self.timeout,
            session_timeout: self.session_timeout,
            max_value_size: self.max_value_size,
        };
        let opening = async { config.open().await.map_err(map_error) };
        let (client, watcher) = config.probe.bound("connect", self.timeout, opening).await?;
        let config = Arc::new(config);
        let state = Arc::new(State {
            ns_path: config.ns_path.clone(),
            client: RwLock::new(client),
            watcher: Mutex::new(Some(watcher)),
            repoll: tokio::sync::Notify::new(),
            tracker: Mutex::new(Tracker::default()),
            hints: broadcast::channel(1024).0,
            disconnected: std::sync::atomic::AtomicBool::new(false),
        });
        let task = tokio::spawn(follow(Arc::clone(&config), Arc::clone(&state))).abort_handle();
        Ok(ZkBackend { shared: Arc::new(Shared { config, state, task }) })
    }
}

/// The parts of a ZooKeeper URL.
#[derive(Debug, PartialEq, Eq)]
struct ZkUrl {
    /// `h1:p1,h2:p2`
    cluster: String,
    /// `/base/path`, or empty.
    base: String,
    /// `user:password` from `zk://user:password@hosts/...`, sent as digest auth.
    auth: Option<String>,
}

/// `zk://[user:password@]h1:p1,h2:p2/base/path`.
fn parse_url(url: &str) -> Result<ZkUrl> {
    let invalid = |reason: &str| Error::InvalidUrl { url: durable_core::redact_url(url), reason: reason.to_owned() };
    let rest = match url.split_once("://") {
        Some(("zk" | "zookeeper", rest)) => rest,
        _ => return Err(invalid("expected zk://host:port[,host:port...]/path")),
    };
    let (hosts, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (auth, hosts) = match hosts.rsplit_once('@') {
        Some((userinfo, hosts)) if userinfo.contains(':') => (Some(userinfo.to_owned()), hosts),
        Some(_) => return Err(invalid("credentials must be user:password")),
        None => (None, hosts),
    };
    if hosts.is_empty() {
        return Err(invalid("no hosts"));
    }
    let base = path.trim_end_matches('/');
    for part in base.split('/').skip(1) {
        validate_node_name(part).map_err(|reason| invalid(&format!("bad path element {part:?}: {reason}")))?;
    }
    Ok(ZkUrl { cluster: hosts.to_owned(), base: base.to_owned(), auth })
}

/// Why `name` cannot be a znode name, if it cannot.
fn validate_node_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not node names".into());
    }
    if name.contains('/') {
        return Err("contains `/`".into());
    }
    // ZooKeeper checks paths per UTF-16 unit: characters past U+FFFF (emoji) become
    // surrogates, which it forbids along with the ranges below.
    if let Some(bad) = name.chars().find(|&c| {
        matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
            || u32::from(c) > 0xffff
    }) {
        return Err(format!("contains {bad:?}, which ZooKeeper forbids in paths"));
    }
    Ok(())
}

/// The ZooKeeper key rule: a key is one znode name (no `/`, not `.` or `..`, none of the
/// characters ZooKeeper forbids in paths, nothing past U+FFFF) of at most [`MAX_KEY_LEN`]
/// bytes. `ZkBackend::validate_key` applies it.
///
/// Fuzzed by `fuzz/fuzz_targets/zk_key.rs` (never panics; every key it accepts is one that
/// ZooKeeper's path rules accept): 84.4 million runs in ten minutes (`cargo +nightly fuzz run
/// -O zk_key -- -max_total_time=600`, AddressSanitizer on, 2026-11-22), no failure.
pub fn validate_key(key: &str) -> Result<()> {
    durable_core::default_key_rule(key)?;
    validate_node_name(key).map_err(|reason| Error::invalid_key(key, format!("not a ZooKeeper node name: {reason}")))
}

/// Refuses namespaces that are not valid znode names.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    durable_core::validate_namespace(namespace, MAX_KEY_LEN)?;
    validate_node_name(namespace).map_err(|reason| Error::InvalidNamespace { namespace: namespace.to_owned(), reason })
}

fn map_error(err: zk::Error) -> Error {
    use zk::Error as E;
    let source = Source::msg(err.to_string());
    match err {
        E::NoHosts | E::Timeout | E::SessionExpired | E::ConnectionLoss | E::ClientClosed | E::SessionMoved => {
            Error::StoreUnavailable { backend: NAME, source }
        }
        _ => Error::Store { backend: NAME, source },
    }
}

fn multi_error(err: zk::MultiWriteError) -> (Option<usize>, zk::Error) {
    match err {
        zk::MultiWriteError::OperationFailed { index, source } => (Some(index), source),
        zk::MultiWriteError::RequestFailed { source } => (None, source),
    }
}

/// A key's value from its `getData` in a multi-read: `None` when there is no such key.
fn value_of(answer: zk::MultiReadResult) -> Result<Option<Bytes>> {
    match answer {
        zk::MultiReadResult::Data { data, .. } => Ok(Some(Bytes::from(data))),
        zk::MultiReadResult::Error { err: zk::Error::NoNode } => Ok(None),
        zk::MultiReadResult::Error { err } => Err(map_error(err)),
        other => Err(Error::store(NAME, format!("a multi-read answered {other:?}"))),
    }
}

fn to_version(version: i32) -> Version {
    Version::try_from(version).unwrap_or(0)
}

struct Config {
    cluster: String,
    /// The ensemble's servers: an operation fails at once when every one refuses.
    probe: RefusalProbe,
    /// Digest credentials (`user:password`); never shown.
    auth: Option<String>,
    ns_path: String,
    timeout: Duration,
    session_timeout: Duration,
    max_value_size: usize,
}

impl Config {
    /// A new session with the namespace node in place and the watch on it.
    async fn open(&self) -> std::result::Result<(zk::Client, zk::PersistentWatcher), zk::Error> {
        let mut connector =
            zk::Client::connector().with_session_timeout(self.session_timeout).with_connection_timeout(self.timeout);
        if let Some(auth) = &self.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let client = connector.connect(&self.cluster).await?;
        match client.mkdir(&self.ns_path, &PERSISTENT).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(err) => return Err(err),
        }
        let watcher = client.watch(&self.ns_path, zk::AddWatchMode::PersistentRecursive).await?;
        Ok((client, watcher))
    }
}

/// What the watch has told this backend. Events are numbered in the order they arrive
/// (ZooKeeper 3.8 sends no zxid with them; the order is the order of the changes). Every
/// change whose event comes after an anchor's or a read's starting number is recorded in
/// `changed` (per key, the number of its latest event) for as long as the `epoch` lasts; a
/// disconnect ends the epoch and forgets everything, since events may have been lost.
#[derive(Default)]
struct Tracker {
    epoch: u64,
    /// Number of the last event processed.
    seq: u64,
    changed: HashMap<String, u64>,
    /// Snapshot version → the event number up to which a read at that version covered
    /// every change.
    anchors: BTreeMap<Version, u64>,
    /// The starting event numbers of the reads under way (see [`Pinned`]): what changed
    /// after them is kept for them.
    pins: Vec<u64>,
}

impl Tracker {
    fn forget(&mut self) {
        self.epoch += 1;
        self.anchors.clear();
        self.changed.clear();
    }

    fn anchor(&mut self, epoch: u64, version: Version, seq: u64) {
        if epoch != self.epoch {
            return;
        }
        self.anchors.insert(version, seq);
        while self.anchors.len() > MAX_ANCHORS {
            self.anchors.pop_first();
        }
        self.prune();
    }

    /// Forgets the changes at or before every anchor and every read under way: no one needs
    /// them.
    fn prune(&mut self) {
        if let Some(oldest) = self.anchors.values().chain(&self.pins).min().copied() {
            self.changed.retain(|_, seq| *seq > oldest);
        }
    }

    /// The keys changed after event `from`.
    fn changed_after(&self, from: u64) -> Vec<String> {
        self.changed.iter().filter(|(_, seq)| **seq > from).map(|(key, _)| key.clone()).collect()
    }
}

/// Keeps the changes after event `from` recorded while a read that started there is under
/// way, whatever other reads anchor meanwhile.
struct Pinned<'s> {
    state: &'s State,
    from: u64,
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let mut tracker = self.state.tracker();
        if let Some(at) = tracker.pins.iter().position(|pin| *pin == self.from) {
            tracker.pins.swap_remove(at);
        }
        tracker.prune();
    }
}

/// The session, the watch and what it has told us: shared by the backend and the task that
/// follows the watch (which holds this, never the backend, so dropping the backend ends it).
struct State {
    ns_path: String,
    client: RwLock<zk::Client>,
    /// The watch; `None` while a new session is being built.
    /// Held only to take an event and process it, so events are processed in order, one at
    /// a time, by whichever of the follower and a reader gets there.
    watcher: Mutex<Option<zk::PersistentWatcher>>,
    /// Tells the follower to poll the watch again: a reader's [`State::drain`] took its
    /// place as the one to wake.
    repoll: tokio::sync::Notify,
    tracker: Mutex<Tracker>,
    hints: broadcast::Sender<Hint>,
    /// The session lost its connection and has not regained it.
    disconnected: std::sync::atomic::AtomicBool,
}

impl State {
    fn client(&self) -> zk::Client {
        match self.client.read() {
            Ok(client) => client.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current epoch and the number of the last event, pinned (see [`Pinned`]).
    fn pin(&self) -> (u64, Pinned<'_>) {
        let mut tracker = self.tracker();
        let from = tracker.seq;
        tracker.pins.push(from);
        (tracker.epoch, Pinned { state: self, from })
    }

    /// The current epoch and the event number that the read at `version` covered, pinned;
    /// `None` when no read at `version` is remembered in this epoch.
    fn pin_anchor(&self, version: Version) -> Option<(u64, Pinned<'_>)> {
        let mut tracker = self.tracker();
        let from = *tracker.anchors.get(&version)?;
        tracker.pins.push(from);
        Some((tracker.epoch, Pinned { state: self, from }))
    }

    fn hint(&self, hint: Hint) {
        let _ = self.hints.send(hint);
    }

    fn key_of<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(self.ns_path.as_str())?.strip_prefix('/').filter(|key| !key.contains('/'))
    }

    /// Records one event. Returns false when the session ended (the watcher must not be
    /// polled again).
    fn process(&self, event: zk::WatchedEvent) -> bool {
        if event.event_type != zk::EventType::Session {
            let mut tracker = self.tracker();
            tracker.seq += 1;
            let seq = tracker.seq;
            if let Some(key) = self.key_of(&event.path) {
                tracker.changed.insert(key.to_owned(), seq);
            }
            drop(tracker);
            self.hint(Hint::Changed { version: None });
            return true;
        }
        self.tracker().forget();
        let disconnected = event.session_state == zk::SessionState::Disconnected;
        self.disconnected.store(disconnected, std::sync::atomic::Ordering::Release);
        match event.session_state {
            zk::SessionState::Disconnected => {
                self.hint(Hint::Interrupted);
                true
            }
            state if state.is_terminated() => {
                tracing::warn!(state = ?state, path = %self.ns_path, "durable-zk: session ended; building a new one");
                self.hint(Hint::Interrupted);
                false
            }
            _ => {
                // (Re)connected within the session: events in between may be lost.
                self.hint(Hint::Resumed);
                true
            }
        }
    }

    fn watcher(&self) -> std::sync::MutexGuard<'_, Option<zk::PersistentWatcher>> {
        self.watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Processes every event already delivered, without waiting for more. ZooKeeper
    /// delivers the events of every change before the answer to any later request, so after
    /// an answer, this brings the tracker up to at least that request's moment.
    fn drain(&self) {
        let mut watcher = self.watcher();
        while let Some(active) = watcher.as_mut() {
            match futures::FutureExt::now_or_never(active.changed()) {
                Some(event) => {
                    if !self.process(event) {
                        *watcher = None;
                    }
                }
                None => break,
            }
        }
        drop(watcher);
        // Polling the watch here left a do-nothing waker in the follower's place.
        self.repoll.notify_one();
    }

    /// Waits for the next event and processes it (under the watcher's lock, so that
    /// [`State::drain`] never returns while an event it did not see is half processed).
    /// `false` when there is no watch (a new session is being built).
    async fn next_event(&self) -> bool {
        std::future::poll_fn(|cx| {
            let mut watcher = self.watcher();
            let Some(active) = watcher.as_mut() else { return std::task::Poll::Ready(false) };
            let event = match std::future::Future::poll(std::pin::pin!(active.changed()), cx) {
                std::task::Poll::Ready(event) => event,
                std::task::Poll::Pending => return std::task::Poll::Pending,
            };
            if !self.process(event) {
                *watcher = None;
            }
            std::task::Poll::Ready(true)
        })
        .await
    }
}

struct Shared {
    config: Arc<Config>,
    state: Arc<State>,
    task: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows the watch for the backend's lifetime: records changed keys, turns events into
/// hints, and builds a new session when the old one ended — or when it has been
/// disconnected for a while: the client's own reconnection backs off to seconds during a long
/// outage, and a fresh session is how a dict recovers within a fraction of a second of the
/// ensemble coming back. (The abandoned session holds no ephemeral nodes; the server lets it
/// expire.)
async fn follow(config: Arc<Config>, state: Arc<State>) {
    let mut backoff = RECONNECT_MIN;
    let mut probe_at: Option<tokio::time::Instant> = None;
    // Building a session is a quorum write; right after an election a loaded ensemble may
    // take seconds to commit one, and a bound shorter than its answer would never let a new
    // session through (a writer stayed expired for 30 s so under load). So each attempt
    // that times out gives the next one twice as long, up to the session timeout; the
    // first gets the operation timeout, so that an attempt stuck on a server still
    // starting up does not hold up recovery.
    let longest_build = config.session_timeout.max(config.timeout);
    let mut build_bound = config.timeout;
    loop {
        let client = state.client();
        if state.watcher().is_some() && client.state().is_terminated() {
            // The session ended without its watch saying so: build a new one all the same.
            tracing::warn!(state = ?client.state(), path = %config.ns_path, "durable-zk: session ended; building a new one");
            *state.watcher() = None;
            state.tracker().forget();
            state.hint(Hint::Interrupted);
        }
        let watching = state.watcher().is_some();
        if watching && state.disconnected.load(std::sync::atomic::Ordering::Acquire) {
            probe_at.get_or_insert_with(|| tokio::time::Instant::now() + backoff);
        } else if watching {
            probe_at = None;
            backoff = RECONNECT_MIN;
        }
        if watching {
            let probe = async {
                match probe_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let mut session = client.state_watcher();
            tokio::select! {
                // `false`: the session ended; build a new one.
                watching = state.next_event() => if watching { continue },
                _ = state.repoll.notified() => continue,
                // The client's own view of its session, in case the watch says nothing.
                _ = session.changed() => continue,
                _ = probe => {}
            }
        }
        let probing = state.watcher().is_some();
        if probing && config.probe.refused().await.is_some() {
            // Still down: a TCP connect answers that at once, where a session would wait.
            probe_at = Some(tokio::time::Instant::now() + backoff);
            backoff = (backoff * 2).min(RECONNECT_MAX);
            continue;
        }
        let opening = async { config.open().await.map_err(map_error) };
        match config.probe.bound("new session", build_bound, opening).await {
            Ok((client, new_watcher)) => {
                if let Ok(mut slot) = state.client.write() {
                    *slot = client;
                }
                *state.watcher() = Some(new_watcher);
                state.disconnected.store(false, std::sync::atomic::Ordering::Release);
                backoff = RECONNECT_MIN;
                probe_at = None;
                state.tracker().forget();
                state.hint(Hint::Resumed);
                build_bound = config.timeout;
            }
            Err(err) => {
                tracing::debug!(error = %err, bound = ?build_bound, "durable-zk: new session failed");
                if matches!(err, Error::Timeout { .. }) {
                    build_bound = (build_bound * 2).min(longest_build);
                }
                if probe_at.is_some() {
                    probe_at = Some(tokio::time::Instant::now() + backoff);
                } else {
                    tokio::time::sleep(backoff).await;
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// The first wait before building a new session; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(250);

/// One namespace in ZooKeeper; see the crate docs. Cheap to clone: clones share the
/// session and the watch. Give each dict a backend of its own (the watch's bookkeeping
/// follows one snapshot history).
#[derive(Clone)]
pub struct ZkBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ZkBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkBackend")
            .field("cluster", &self.shared.config.cluster)
            .field("path", &self.shared.config.ns_path)
            .finish()
    }
}

impl ZkBackend {
    /// Connects with default options; see [`ZkBackend::builder`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::builder(url).connect(namespace).await
    }

    /// Options: operation and session timeouts, value size limit.
    pub fn builder(url: &str) -> ZkBackendBuilder {
        ZkBackendBuilder {
            url: url.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
        }
    }

    /// The namespace node's path (durabledict's `keyspace`).
    pub fn path(&self) -> &str {
        &self.shared.config.ns_path
    }

    /// The current session's id and password, e.g. to end it from another client in tests.
    pub fn session(&self) -> zk::SessionInfo {
        self.shared.state.client().session().clone()
    }

    fn key_path(&self, key: &str) -> String {
        format!("{}/{key}", self.shared.config.ns_path)
    }

    /// Runs a whole operation within the operation timeout.
    async fn run<T>(&self, operation: &'static str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.bounded(operation, call).await?
    }

    /// Waits for one answer from the store (a request, or one batch of pipelined requests)
    /// within the operation timeout, failing at once when every server refuses connections
    /// (the client would wait for a session to come back).
    async fn bounded<F: std::future::Future>(&self, operation: &'static str, call: F) -> Result<F::Output> {
        let config = &self.shared.config;
        config.probe.bound(operation, config.timeout, async { Ok(call.await) }).await
    }

    /// Makes one request per item, [`BATCH`] of them in flight at a time, and returns the
    /// answers in order. The operation timeout bounds each batch, so going through a big
    /// namespace is cut off when the store stops answering, not for its size.
    async fn batched<'i, I, T, Fut>(
        &self,
        operation: &'static str,
        items: &'i [I],
        call: impl Fn(&'i I) -> Fut,
    ) -> Result<Vec<T>>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut answers = Vec::with_capacity(items.len());
        for batch in items.chunks(BATCH) {
            for answer in self.bounded(operation, futures::future::join_all(batch.iter().map(&call))).await? {
                answers.push(answer?);
            }
        }
        Ok(answers)
    }

    /// Commits `ops` + the namespace bump — with `guard`, only if the namespace is still at
    /// that node version; returns the new version, or which operation failed and why (the
    /// bump is the operation after the last of `ops`).
    async fn commit(
        &self,
        client: &zk::Client,
        ops: &[Op<'_>],
        guard: Option<i32>,
    ) -> std::result::Result<Version, (Option<usize>, zk::Error)> {
        // A request made while the session is disconnected waits in the client and is sent
        // if that session reconnects — long after this call has failed with a timeout. A
        // failed write must not land later: while disconnected, fail at once, send nothing.
        let refusal = match client.state() {
            zk::SessionState::SyncConnected => None,
            zk::SessionState::ConnectedReadOnly => Some(zk::Error::NotReadOnly),
            zk::SessionState::Expired => Some(zk::Error::SessionExpired),
            zk::SessionState::AuthFailed => Some(zk::Error::AuthFailed),
            zk::SessionState::Closed => Some(zk::Error::ClientClosed),
            _ => Some(zk::Error::ConnectionLoss),
        };
        if let Some(err) = refusal {
            return Err((None, err));
        }
        let mut writer = client.new_multi_writer();
        let ns = self.shared.config.ns_path.as_str();
        let add = |writer: &mut zk::MultiWriter<'_>, op: &Op<'_>| match op {
            Op::Create(path, data) => writer.add_create(path, data, &PERSISTENT),
            Op::Set(path, data) => writer.add_set_data(path, data, None),
            Op::Delete(path) => writer.add_delete(path, None),
        };
        for op in ops {
            add(&mut writer, op).map_err(|err| (None, err))?;
        }
        writer.add_set_data(ns, b"", guard).map_err(|err| (None, err))?;
        let results = writer.commit().await.map_err(multi_error)?;
        match results.last() {
            Some(zk::MultiWriteResult::SetData { stat }) => Ok(to_version(stat.version)),
            other => Err((None, zk::Error::UnexpectedError(format!("multi answered {other:?}")))),
        }
    }

    fn check_key(&self, key: &str) -> Result<()> {
        self.validate_key(key)
    }

    /// `key`'s value and the namespace node's version as of one moment (one multi-read),
    /// for a write that depends on the value. Guarding that write with the namespace
    /// version, not the key node's own, is what makes it safe: a key deleted and created
    /// again between the read and the write starts over at node version 0, so a write
    /// guarded by the node version could land on a value it never read (ABA).
    async fn read_guarded(&self, client: &zk::Client, key: &str) -> Result<(Option<Vec<u8>>, Option<i32>)> {
        use zk::MultiReadResult as Read;
        let mut reader = client.new_multi_reader();
        reader.add_get_data(self.path()).map_err(map_error)?;
        reader.add_get_data(&self.key_path(key)).map_err(map_error)?;
        let mut answers = reader.commit().await.map_err(map_error)?.into_iter();
        let guard = match answers.next() {
            Some(Read::Data { stat, .. }) => Some(stat.version),
            Some(Read::Error { err: zk::Error::NoNode }) => None,
            other => return Err(Error::store(NAME, format!("a multi-read answered {other:?}"))),
        };
        let Some(answer) = answers.next() else { return Err(Error::store(NAME, "a multi-read answered too little")) };
        Ok((value_of(answer)?.map(Vec::from), guard))
    }

    async fn read(&self, client: &zk::Client, key: &str) -> Result<Option<Vec<u8>>> {
        match client.get_data(&self.key_path(key)).await {
            Ok((data, _)) => Ok(Some(data)),
            Err(zk::Error::NoNode) => Ok(None),
            Err(err) => Err(map_error(err)),
        }
    }

    /// The request bytes of a multi-read of `key`'s data.
    fn request_bytes(&self, key: &str) -> usize {
        self.shared.config.ns_path.len() + 1 + key.len() + MULTI_OP_BYTES
    }

    /// Whether one multi-read can ask for the namespace node and every key of `keys`.
    fn fits_one_request(&self, keys: &[String]) -> bool {
        keys.len() < MULTI_READ_KEYS
            && keys.iter().map(|key| self.request_bytes(key)).sum::<usize>() + self.request_bytes("")
                <= MULTI_READ_BYTES
    }

    /// Sends one multi-read of the data of `paths`; a node that does not exist reads as
    /// `None`.
    async fn multi_read(
        &self,
        client: &zk::Client,
        operation: &'static str,
        paths: impl Iterator<Item = String>,
    ) -> Result<Vec<Option<Bytes>>> {
        let mut reader = client.new_multi_reader();
        let mut asked = 0;
        for path in paths {
            reader.add_get_data(&path).map_err(map_error)?;
            asked += 1;
        }
        let answers = self.bounded(operation, reader.commit()).await?.map_err(map_error)?;
        if answers.len() != asked {
            return Err(Error::store(NAME, format!("a multi-read of {asked} nodes answered {}", answers.len())));
        }
        answers.into_iter().map(value_of).collect()
    }

    /// Reads the values of `keys` (`None`: no such key) in as few multi-reads as
    /// ZooKeeper's request limit and a bound on each answer allow — not as of one moment:
    /// each request is. The operation timeout bounds each request, so a read of any size
    /// finishes while the store answers.
    async fn read_many(
        &self,
        client: &zk::Client,
        operation: &'static str,
        keys: &[String],
    ) -> Result<Vec<Option<Bytes>>> {
        let mut values = Vec::with_capacity(keys.len());
        let mut largest: Option<usize> = None;
        let mut rest = keys;
        while !rest.is_empty() {
            let answer_per_key = largest.unwrap_or(FIRST_VALUE_GUESS) + MULTI_ANSWER_OP_BYTES;
            let (mut take, mut request, mut answer) = (0, 0, 0);
            for key in rest {
                let (more_request, more_answer) = (self.request_bytes(key), answer_per_key + key.len());
                if take > 0
                    && (take == MULTI_READ_KEYS
                        || request + more_request > MULTI_READ_BYTES
                        || answer + more_answer > MULTI_ANSWER_BYTES)
                {
                    break;
                }
                (take, request, answer) = (take + 1, request + more_request, answer + more_answer);
            }
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            for read in self.multi_read(client, operation, batch.iter().map(|key| self.key_path(key))).await? {
                let size = read.as_ref().map_or(0, Bytes::len);
                largest = Some(largest.map_or(size, |largest| largest.max(size)));
                values.push(read);
            }
        }
        Ok(values)
    }

    /// Brings `values` — keys read, each at some moment after event `from` of `epoch` was
    /// processed, plus the keys changed since — to one version of the namespace, and returns
    /// it with the number of the event up to which it covers every change; `None` when the
    /// epoch ended (events may have been lost).
    ///
    /// A key whose event came after `from` may have changed after it was read; the rest have
    /// not changed since. So the keys changed after `from` are read again, with the
    /// namespace node's version, in one multi-read, which ZooKeeper answers as of one
    /// moment. The events of every change up to that moment arrive before the answer: if
    /// the ones that came meanwhile name only keys just read, every key is at that version.
    /// Otherwise the round is made again from there, and from the second round on the
    /// multi-read also lists the namespace's children: a key that came meanwhile and is not
    /// among them did not exist at that moment, so writers that keep adding new keys cannot
    /// starve the read either. Each round reads what changed during the one before.
    async fn settle(
        &self,
        client: &zk::Client,
        operation: &'static str,
        epoch: u64,
        mut from: u64,
        values: &mut HashMap<String, Option<Bytes>>,
    ) -> Result<Option<(Version, u64)>> {
        use zk::MultiReadResult as Read;
        let unexpected = |answer: Option<Read>| Error::store(NAME, format!("a multi-read answered {answer:?}"));
        let state = &self.shared.state;
        for round in 0..MAX_ATTEMPTS {
            state.drain();
            let (keys, seen) = {
                let tracker = state.tracker();
                if tracker.epoch != epoch {
                    return Ok(None);
                }
                (tracker.changed_after(from), tracker.seq)
            };
            if !self.fits_one_request(&keys) {
                // Too many changed keys for one request: read them in several, then settle
                // what changed meanwhile.
                let read = self.read_many(client, operation, &keys).await?;
                values.extend(keys.into_iter().zip(read));
                from = seen;
                continue;
            }
            let listing = round > 0;
            let mut reader = client.new_multi_reader();
            reader.add_get_data(self.path()).map_err(map_error)?;
            if listing {
                reader.add_get_children(self.path()).map_err(map_error)?;
            }
            for key in &keys {
                reader.add_get_data(&self.key_path(key)).map_err(map_error)?;
            }
            let mut answers = self.bounded(operation, reader.commit()).await?.map_err(map_error)?.into_iter();
            let version = match answers.next() {
                Some(Read::Data { stat, .. }) => to_version(stat.version),
                // The namespace node deleted (by hand: it has no children left): version 0,
                // every key gone.
                Some(Read::Error { err: zk::Error::NoNode }) => 0,
                other => return Err(unexpected(other)),
            };
            let children: Option<std::collections::HashSet<String>> = match listing.then(|| answers.next()) {
                None => None,
                Some(Some(Read::Children { children })) => Some(children.into_iter().collect()),
                Some(Some(Read::Error { err: zk::Error::NoNode })) => Some(Default::default()),
                Some(other) => return Err(unexpected(other)),
            };
            if answers.len() != keys.len() {
                return Err(Error::store(
                    NAME,
                    format!("a multi-read of {} keys answered {}", keys.len(), answers.len()),
                ));
            }
            for (key, answer) in keys.iter().zip(answers) {
                values.insert(key.clone(), value_of(answer)?);
            }
            state.drain();
            let tracker = state.tracker();
            if tracker.epoch != epoch {
                return Ok(None);
            }
            let read: std::collections::HashSet<&String> = keys.iter().collect();
            let mut missed = false;
            for (key, _) in tracker.changed.iter().filter(|(key, seq)| **seq > seen && !read.contains(key)) {
                match &children {
                    // Not there at that moment: whatever it is now came later.
                    Some(children) if !children.contains(key) => {
                        values.insert(key.clone(), None);
                    }
                    _ => missed = true,
                }
            }
            if !missed {
                return Ok(Some((version, seen)));
            }
            from = seen;
        }
        Err(Error::store(NAME, "the namespace kept changing during a read"))
    }

    /// Writes `entries` as one mutation, creating or overwriting each key's znode.
    async fn write_all(&self, operation: &'static str, entries: &[(String, Bytes)]) -> Result<Version> {
        let client = self.shared.state.client();
        let paths: Vec<String> = entries.iter().map(|(key, _)| self.key_path(key)).collect();
        for _ in 0..MAX_ATTEMPTS {
            // Which of these keys exist: one request per key written, whatever the
            // namespace's size.
            let existing = self
                .batched(operation, &paths, |path| async { client.check_stat(path).await.map_err(map_error) })
                .await?;
            let ops: Vec<Op<'_>> = entries
                .iter()
                .zip(&paths)
                .zip(existing)
                .map(|(((_, value), path), stat)| match stat {
                    Some(_) => Op::Set(path, value),
                    None => Op::Create(path, value),
                })
                .collect();
            match self.commit(&client, &ops, None).await {
                Ok(version) => return Ok(version),
                // Created or deleted meanwhile: look again.
                Err((Some(_), zk::Error::NoNode | zk::Error::NodeExists)) => continue,
                Err((_, err)) => return Err(map_error(err)),
            }
        }
        Err(Error::store(NAME, "too much contention on the namespace"))
    }
}

enum Op<'a> {
    Create(&'a str, &'a [u8]),
    Set(&'a str, &'a [u8]),
    Delete(&'a str),
}

#[async_trait]
impl Backend for ZkBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate_key(&self, key: &str) -> Result<()> {
        validate_key(key)
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.shared.config.max_value_size)
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.check_key(key)?;
        self.run("persist", self.write_all("persist", &[(key.to_owned(), value)])).await
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.check_key(key)?;
        let work = async {
            let client = self.shared.state.client();
            let path = self.key_path(key);
            match self.commit(&client, &[Op::Delete(&path)], None).await {
                Ok(version) => Ok(Some(version)),
                Err((Some(0), zk::Error::NoNode)) => Ok(None),
                Err((_, err)) => Err(map_error(err)),
            }
        };
        self.run("depersist", work).await
    }

    async fn durables(&self) -> Result<Durables> {
        const OPERATION: &str = "durables";
        let state = &self.shared.state;
        for _ in 0..MAX_ATTEMPTS {
            let client = state.client();
            // Every change whose event is processed after this point is read again below;
            // every earlier one is in what is read now.
            let (epoch, pinned) = state.pin();
            let from = pinned.from;
            let children = match self.bounded(OPERATION, client.get_children(self.path())).await? {
                Ok((children, _)) => children,
                Err(zk::Error::NoNode) => return Ok(Durables::default()),
                Err(err) => return Err(map_error(err)),
            };
            let read = self.read_many(&client, OPERATION, &children).await?;
            let mut values: HashMap<String, Option<Bytes>> = children.into_iter().zip(read).collect();
            let Some((version, covered)) = self.settle(&client, OPERATION, epoch, from, &mut values).await? else {
                continue; // Events may have been lost meanwhile: read again.
            };
            state.tracker().anchor(epoch, version, covered);
            let entries = values.into_iter().filter_map(|(key, value)| Some((key, value?))).collect();
            return Ok(Durables { entries, version });
        }
        Err(Error::store(NAME, "the session kept losing its connection during a full read"))
    }

    async fn last_updated(&self) -> Result<Version> {
        let work = async {
            match self.shared.state.client().check_stat(self.path()).await {
                Ok(stat) => Ok(stat.map_or(0, |stat| to_version(stat.version))),
                Err(err) => Err(map_error(err)),
            }
        };
        self.run("last_updated", work).await
    }

    async fn persist_many(&self, entries: Vec<(String, Bytes)>) -> Result<Version> {
        let mut unique: Vec<(String, Bytes)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            self.check_key(&key)?;
            match unique.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => unique.push((key, value)),
            }
        }
        let total: usize = unique.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > self.shared.config.max_value_size {
            return Err(Error::ValueTooLarge {
                key: unique.first().map_or("", |(k, _)| k.as_str()).into(),
                size: total,
                max: self.shared.config.max_value_size,
                backend: NAME,
            });
        }
        if unique.is_empty() {
            return self.last_updated().await;
        }
        self.run("persist_many", self.write_all("persist_many", &unique)).await
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.check_key(key)?;
        let work = async {
            let client = self.shared.state.client();
            let path = self.key_path(key);
            for _ in 0..MAX_ATTEMPTS {
                let (Some(data), guard) = self.read_guarded(&client, key).await? else { return Ok(None) };
                match self.commit(&client, &[Op::Delete(&path)], guard).await {
                    Ok(version) => return Ok(Some((Bytes::from(data), version))),
                    Err((Some(_), zk::Error::NoNode | zk::Error::BadVersion)) => continue,
                    Err((_, err)) => return Err(map_error(err)),
                }
            }
            Err(Error::store(NAME, "too much contention on the key"))
        };
        self.run("pop", work).await
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.check_key(key)?;
        let work = async {
            let client = self.shared.state.client();
            let path = self.key_path(key);
            for _ in 0..MAX_ATTEMPTS {
                if let Some(found) = self.read(&client, key).await? {
                    return Ok((Bytes::from(found), None));
                }
                match self.commit(&client, &[Op::Create(&path, &value)], None).await {
                    Ok(version) => return Ok((value.clone(), Some(version))),
                    Err((Some(0), zk::Error::NodeExists)) => continue,
                    Err((_, err)) => return Err(map_error(err)),
                }
            }
            Err(Error::store(NAME, "too much contention on the key"))
        };
        self.run("setdefault", work).await
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        const OPERATION: &str = "changes_since";
        let state = &self.shared.state;
        let client = state.client();
        let Some((epoch, pinned)) = state.pin_anchor(since) else { return Ok(Changes::TooOld) };
        let mut values = HashMap::new();
        let Some((version, covered)) = self.settle(&client, OPERATION, epoch, pinned.from, &mut values).await? else {
            return Ok(Changes::TooOld);
        };
        if version < since {
            return Ok(Changes::TooOld); // The namespace was deleted and made again.
        }
        state.tracker().anchor(epoch, version, covered);
        let changes = values.into_iter().map(|(key, value)| KeyChange { key, value, version }).collect();
        Ok(Changes::Delta { changes, version })
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        let client = self.shared.state.client();
        if !matches!(client.state(), zk::SessionState::SyncConnected) {
            return Err(Error::StoreUnavailable {
                backend: NAME,
                source: Source::msg(format!("session is {:?}", client.state())),
            });
        }
        let hints = BroadcastStream::new(self.shared.state.hints.subscribe()).map(|hint| match hint {
            Ok(hint) => hint,
            // Missed hints: look for yourself.
            Err(_) => Hint::Resumed,
        });
        Ok(Some(Box::pin(hints)))
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<Option<Version>> {
        self.check_key(key)?;
        let work = async {
            let client = self.shared.state.client();
            let path = self.key_path(key);
            for _ in 0..MAX_ATTEMPTS {
                let (current, guard) = self.read_guarded(&client, key).await?;
                if current.as_deref() != expected.as_deref() {
                    return Err(Error::Conflict { key: key.into() });
                }
                let op = match (&current, &new) {
                    (Some(_), Some(value)) => Op::Set(&path, value),
                    (Some(_), None) => Op::Delete(&path),
                    (None, Some(value)) => Op::Create(&path, value),
                    // Absent as expected, nothing to delete: no write and no version.
                    (None, None) => return Ok(None),
                };
                match self.commit(&client, &[op], guard).await {
                    Ok(version) => return Ok(Some(version)),
                    Err((Some(_), zk::Error::NoNode | zk::Error::NodeExists | zk::Error::BadVersion)) => continue,
                    Err((_, err)) => return Err(map_error(err)),
                }
            }
            Err(Error::store(NAME, "too much contention on the key"))
        };
        self.run("compare_and_swap", work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read under way keeps the changes after its start, whatever newer reads anchor;
    /// once it ends, they are forgotten.
    #[test]
    fn a_read_under_way_keeps_the_changes_it_needs() {
        let mut tracker = Tracker::default();
        tracker.anchor(0, 1, 0);
        tracker.pins.push(2);
        for (seq, key) in [(1, "a"), (3, "b"), (5, "c")] {
            tracker.changed.insert(key.to_owned(), seq);
        }
        tracker.seq = 5;
        tracker.anchor(0, 2, 5);
        tracker.anchors.remove(&1);
        tracker.prune();
        let mut kept = tracker.changed_after(2);
        kept.sort();
        assert_eq!(kept, ["b", "c"], "the pinned read at 2 still sees what changed after it");
        assert!(!tracker.changed.contains_key("a"), "changes before every anchor and pin go");
        tracker.pins.clear();
        tracker.prune();
        assert!(tracker.changed.is_empty(), "with the read done, the anchor at 5 covers all");
        // An anchor from an ended epoch is not taken.
        tracker.forget();
        tracker.anchor(0, 3, 6);
        assert!(tracker.anchors.is_empty());
    }

    #[test]
    fn urls_give_hosts_and_a_base_path() {
        let url = |cluster: &str, base: &str, auth: Option<&str>| ZkUrl {
            cluster: cluster.into(),
            base: base.into(),
            auth: auth.map(Into::into),
        };
        assert_eq!(parse_url("zk://a:2181,b:2181/durable/app").unwrap(), url("a:2181,b:2181", "/durable/app", None));
        assert_eq!(parse_url("zookeeper://127.0.0.1:2181").unwrap(), url("127.0.0.1:2181", "", None));
        assert_eq!(parse_url("zk://h:1/").unwrap(), url("h:1", "", None));
        assert_eq!(parse_url("zk://u:p@w@h:1,g:2/x").unwrap(), url("h:1,g:2", "/x", Some("u:p@w")));
        assert!(parse_url("zk://justuser@h:1/x").is_err());
        assert!(parse_url("zk:///x").is_err());
        assert!(parse_url("redis://h").is_err());
        assert!(parse_url("zk://h:1/a/../b").is_err());
    }

    #[test]
    fn node_names_follow_zookeepers_rules() {
        for ok in ["flag", "with space", "ünï", "a.b", "..."] {
            assert!(validate_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "nul\0", "bell\u{7}", "\u{e000}private", "\u{fff0}", "key🔑"] {
            assert!(validate_node_name(bad).is_err(), "{bad:?}");
        }
    }
}
