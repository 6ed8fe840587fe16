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
//!
//! # Atomicity
//!
//! Every mutation — insert, insert_many, remove, pop, setdefault, compare-and-swap — is one
//! Lua script, run atomically by Redis in one round trip: it writes the hash, INCRs the
//! counter, logs the touched keys, trims the log and publishes the hint. A mutation that
//! changes nothing (removing an absent key, a setdefault that finds its key, a conflict)
//! bumps nothing. `durables()` reads the hash and the counter in one MULTI/EXEC;
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
//! Tested (`tests/cluster.rs`): the conformance suite on a 3-master, 3-replica cluster; a
//! master killed under live dicts (writes resumed about 4.5 s later with a 2 s
//! `cluster-node-timeout`; the reader had the next change within milliseconds of that);
//! and the namespace's slot migrated to another master under a live dict (`SETSLOT
//! IMPORTING`/`MIGRATING`, `MIGRATE`, `SETSLOT NODE`) whose only poll is a minute away —
//! it had the next write about 45 ms after the move and keeps hearing hints from the new
//! master. Keyspace events are not used on a
//! cluster (they stay on the node that produced them): durabledict writers there are
//! heard at the next poll or `resync()`, or use `.hints(false)`.
//!
//! # Hints and failures
//!
//! Every dict of a process on one URL and namespace listens through **one shared pub/sub
//! connection** (tested with 200 dicts: `PUBSUB NUMSUB` says 1), so a thousand dicts cost
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

mod scripts;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::{
    Backend, Changes, Durables, Error, Hint, HintStream, KeyChange, Redactor, RefusalProbe, Result, Source, Version,
};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};

/// Default bound on every operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of keys the change log remembers.
pub const DEFAULT_CHANGE_LOG_LEN: usize = 10_000;
/// Default largest value accepted.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 4 * 1024 * 1024;
/// Longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 1024;

const NAME: &str = "redis";

/// Options for [`RedisBackend::builder`].
#[derive(Clone)]
pub struct RedisBackendBuilder {
    url: String,
    timeout: Duration,
    change_log_len: usize,
    max_value_size: usize,
    #[cfg(feature = "tls")]
    tls_root_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("url", &durable_core::redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("change_log_len", &self.change_log_len)
            .finish()
    }
}

impl RedisBackendBuilder {
    /// Bound on every operation, connecting included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many keys the change log remembers (default 10,000, at least 1).
    pub fn change_log_len(mut self, keys: usize) -> Self {
        self.change_log_len = keys.max(1);
        self
    }

    /// Largest encoded value accepted (default 4 MiB); bigger ones are refused before I/O.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// For `rediss://` URLs (feature `tls`): trust this PEM root certificate instead of the
    /// system's, e.g. a private CA's.
    #[cfg(feature = "tls")]
    pub fn tls_root_cert(mut self, pem: Vec<u8>) -> Self {
        self.tls_root_cert = Some(pem);
        self
    }

    fn client(&self) -> redis::RedisResult<redis::Client> {
        #[cfg(feature = "tls")]
        if let Some(root) = &self.tls_root_cert {
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root.clone()) };
            return redis::Client::build_with_tls(self.url.as_str(), certificates);
        }
        redis::Client::open(self.url.as_str())
    }

    /// Connects and returns a backend on `namespace`.
    pub async fn connect(self, namespace: &str) -> Result<RedisBackend> {
        validate_namespace(namespace)?;
        let redactor = Redactor::new(&self.url);
        let invalid = |reason: String| Error::InvalidUrl { url: redactor.url().to_owned(), reason };
        let (mode, connecting) = match cluster_nodes(&self.url) {
            Some(nodes) => {
                let nodes = nodes.map_err(invalid)?;
                validate_cluster_namespace(namespace)?;
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    .build()
                    .map_err(|err| invalid(redactor.scrub(&err.to_string())))?;
                let connecting: futures::future::BoxFuture<'_, redis::RedisResult<Commands>> =
                    Box::pin(async move { client.get_async_connection().await.map(Commands::Cluster) });
                (Mode::Cluster { nodes, timeout: self.timeout }, connecting)
            }
            None => {
                let client = self.client().map_err(|err| invalid(redactor.scrub(&err.to_string())))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = client.clone();
                let connecting: futures::future::BoxFuture<'_, redis::RedisResult<Commands>> =
                    Box::pin(
                        async move { ConnectionManager::new_with_config(manager, config).await.map(Commands::Single) },
                    );
                (Mode::Single { client }, connecting)
            }
        };
        // Unix sockets (`redis+unix://`) name no host, and are not probed.
        let probe = RefusalProbe::from_url(NAME, &self.url, 6379);
        let connecting = async { connecting.await.map_err(|err| map_error(&redactor, err)) };
        let commands = probe.bound("connect", self.timeout, connecting).await?;
        let cluster = matches!(mode, Mode::Cluster { .. });
        let keys = Keys::new(namespace);
        Ok(RedisBackend {
            shared: Arc::new(Shared {
                url: self.url.clone(),
                mode,
                commands,
                timeout: self.timeout,
                probe,
                change_log_len: self.change_log_len,
                max_value_size: self.max_value_size,
                redactor,
                scripts: Scripts::new(cluster),
            }),
            keys,
        })
    }
}

/// `redis+cluster://[user:password@]host:port,host:port[/]` → one `redis://` URL per node;
/// `None` for any other URL.
fn cluster_nodes(url: &str) -> Option<std::result::Result<Vec<String>, String>> {
    let rest = url.strip_prefix("redis+cluster://")?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Some(Err("a cluster URL names no database: redis+cluster://host:port,host:port".into()));
    }
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> =
        hosts.split(',').filter(|host| !host.is_empty()).map(|host| format!("redis://{userinfo}{host}/")).collect();
    if nodes.is_empty() {
        return Some(Err("no cluster nodes".into()));
    }
    Some(Ok(nodes))
}

/// On a cluster every key of a namespace must hash to one slot, so that a mutation stays
/// one atomic script: the namespace must carry a hash tag, e.g. `{flags}`.
fn validate_cluster_namespace(namespace: &str) -> Result<()> {
    let tagged =
        namespace.find('{').and_then(|open| namespace[open + 1..].find('}').map(|close| close > 0)).unwrap_or(false);
    if tagged {
        return Ok(());
    }
    Err(Error::InvalidNamespace {
        namespace: namespace.to_owned(),
        reason: "on a Redis Cluster the namespace needs a hash tag, e.g. `{flags}`, so that its hash, \
                 counter and change log share one slot"
            .into(),
    })
}

/// The command connection: redis-rs's `ConnectionManager` on one server, its cluster
/// connection on a cluster (which follows MOVED and failovers by itself).
#[derive(Clone)]
enum Commands {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Commands::Single(connection) => connection.req_packed_command(cmd),
            Commands::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Commands::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(connection) => connection.get_db(),
            Commands::Cluster(connection) => connection.get_db(),
        }
    }
}

/// One server, or a cluster (what the hint subscription needs to know).
enum Mode {
    Single { client: redis::Client },
    Cluster { nodes: Vec<String>, timeout: Duration },
}

/// Refuses namespaces that break [the common rule](durable_core::validate_namespace) or are
/// over [`MAX_NAMESPACE_LEN`] bytes.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    durable_core::validate_namespace(namespace, MAX_NAMESPACE_LEN)
}

struct Scripts {
    persist: Script,
    depersist: Script,
    pop: Script,
    setdefault: Script,
    compare_and_swap: Script,
    changes: Script,
}

impl Scripts {
    /// On a cluster the hint goes out with `SPUBLISH`, on the namespace's shard channel.
    fn new(cluster: bool) -> Self {
        let script = |source: String| {
            if cluster { Script::new(&source.replace("'PUBLISH'", "'SPUBLISH'")) } else { Script::new(&source) }
        };
        Self {
            persist: script(scripts::persist()),
            depersist: script(scripts::depersist()),
            pop: script(scripts::pop()),
            setdefault: script(scripts::setdefault()),
            compare_and_swap: script(scripts::compare_and_swap()),
            changes: Script::new(scripts::CHANGES),
        }
    }
}

struct Shared {
    /// The URL as given (password included; never shown): with the channel, it names the
    /// process-wide shared subscription.
    url: String,
    mode: Mode,
    commands: Commands,
    timeout: Duration,
    /// Bounds every operation: the timeout, and a refused server at once (a call that
    /// arrives while the connection manager reconnects would otherwise wait out its
    /// retries).
    probe: RefusalProbe,
    change_log_len: usize,
    max_value_size: usize,
    redactor: Redactor,
    scripts: Scripts,
}

/// The Redis names of one namespace; see the crate docs.
#[derive(Debug, Clone)]
struct Keys {
    namespace: String,
    hash: String,
    counter: String,
    log: String,
    head: String,
    floor: String,
    channel: String,
}

impl Keys {
    fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            hash: namespace.to_owned(),
            counter: format!("{namespace}last_updated"),
            log: format!("{namespace}:log"),
            head: format!("{namespace}:log:head"),
            floor: format!("{namespace}:log:floor"),
            channel: format!("{namespace}:changes"),
        }
    }
}

/// One namespace in Redis; see the crate docs. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
    keys: Keys,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.shared.redactor.url())
            .field("namespace", &self.keys.namespace)
            .finish()
    }
}

impl RedisBackend {
    /// Connects with default options; see [`RedisBackend::builder`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::builder(url).connect(namespace).await
    }

    /// Options: operation timeout, change-log length, value size limit.
    pub fn builder(url: &str) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            change_log_len: DEFAULT_CHANGE_LOG_LEN,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            #[cfg(feature = "tls")]
            tls_root_cert: None,
        }
    }

    /// Another namespace on the same connection.
    pub fn namespace(&self, namespace: &str) -> Result<Self> {
        validate_namespace(namespace)?;
        Ok(Self { shared: Arc::clone(&self.shared), keys: Keys::new(namespace) })
    }

    /// The pub/sub channel hints travel on.
    pub fn channel(&self) -> &str {
        &self.keys.channel
    }

    /// The keyspace-notification channel of the counter, `__keyspace@<db>__:<ns>last_updated`.
    fn keyspace_channel(&self, client: &redis::Client) -> String {
        let db = client.get_connection_info().redis_settings().db();
        format!("__keyspace@{db}__:{}", self.keys.counter)
    }

    /// Whether Redis publishes keyspace events for string commands (`notify-keyspace-events`
    /// containing `K` and `$` or `A`), so that writers that publish no hint of their own —
    /// durabledict's — are heard too. A server that refuses CONFIG GET counts as no.
    async fn keyspace_events_enabled(&self) -> bool {
        let mut connection = self.shared.commands.clone();
        let reply: redis::RedisResult<Vec<String>> =
            redis::cmd("CONFIG").arg("GET").arg("notify-keyspace-events").query_async(&mut connection).await;
        match reply {
            Ok(pair) => {
                pair.get(1).is_some_and(|flags| flags.contains('K') && (flags.contains('$') || flags.contains('A')))
            }
            Err(_) => false,
        }
    }

    /// One pub/sub connection subscribed to the namespace's channel (and to the counter's
    /// keyspace events when the server publishes them), as hints. On a cluster: sharded
    /// pub/sub (`SSUBSCRIBE`), so hints stay in the namespace's shard.
    async fn subscribe_once(&self) -> Result<HintStream> {
        let client = match &self.shared.mode {
            Mode::Single { client } => client,
            Mode::Cluster { nodes, timeout } => return self.subscribe_sharded(nodes, *timeout).await,
        };
        let keyspace = self.keyspace_channel(client);
        let subscribing = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.keys.channel).await?;
            if self.keyspace_events_enabled().await {
                pubsub.subscribe(&keyspace).await?;
            }
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        let messages = self.run("watch", subscribing).await?;
        let ours = self.keys.channel.clone();
        let hints = messages.map(move |message| {
            // Our own hints carry the version; a keyspace event ("incr" by any writer,
            // durabledict's included) only says "look".
            let version = (message.get_channel_name() == ours)
                .then(|| message.get_payload::<String>().ok().and_then(|payload| payload.parse::<u64>().ok()))
                .flatten();
            Hint::Changed { version }
        });
        Ok(Box::pin(hints))
    }

    /// The cluster's hints: a RESP3 cluster connection subscribed to the shard channel. When
    /// the shard's node connection drops (a failover, a resharding) the stream ends, and the
    /// shared listener subscribes again from the cluster's new layout, saying `Interrupted`
    /// then `Resumed`, so every dict resyncs; a confirmation that redis-rs re-subscribed by
    /// itself is a `Resumed` too.
    async fn subscribe_sharded(&self, nodes: &[String], timeout: Duration) -> Result<HintStream> {
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
        let subscribing = async {
            let client = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()?;
            let mut connection = client.get_async_connection().await?;
            connection.ssubscribe(&self.keys.channel).await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let connection = self.run("watch", subscribing).await?;
        let state = (connection, received, false);
        let hints = futures::stream::unfold(state, |(connection, mut received, mut confirmed)| async move {
            loop {
                let push = received.recv().await?;
                let hint = match push.kind {
                    redis::PushKind::SMessage => {
                        let payload =
                            push.data.get(1).cloned().and_then(|value| redis::from_redis_value::<String>(value).ok());
                        Some(Hint::Changed { version: payload.and_then(|payload| payload.parse().ok()) })
                    }
                    redis::PushKind::SSubscribe if confirmed => Some(Hint::Resumed),
                    redis::PushKind::SSubscribe => {
                        confirmed = true;
                        None
                    }
                    // The shard's node went away (a failover), or the slot moved and the
                    // node dropped the subscription (a resharding sends `sunsubscribe`): end
                    // the stream, so that the subscription is made again from the cluster's
                    // new layout.
                    redis::PushKind::Disconnection | redis::PushKind::SUnsubscribe => return None,
                    _ => None,
                };
                if let Some(hint) = hint {
                    return Some((hint, (connection, received, confirmed)));
                }
            }
        });
        Ok(Box::pin(hints))
    }

    /// Runs one command or script within the operation timeout, failing at once when the
    /// server refuses connections.
    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        let call = async { call.await.map_err(|err| map_error(&self.shared.redactor, err)) };
        self.shared.probe.bound(operation, self.shared.timeout, call).await
    }

    /// Invokes a mutation script with the standard KEYS and ARGV[1..2], then `args`.
    async fn mutate(&self, operation: &'static str, script: &Script, args: &[&[u8]]) -> Result<Value> {
        let mut invocation = script.prepare_invoke();
        let k = &self.keys;
        invocation.key(&k.hash).key(&k.counter).key(&k.log).key(&k.head).key(&k.floor);
        invocation.arg(self.shared.change_log_len).arg(&k.channel);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.shared.commands.clone();
        self.run(operation, invocation.invoke_async(&mut connection)).await
    }
}

fn version_of(value: &Value) -> Result<Version> {
    match value {
        Value::Int(n) => Version::try_from(*n).map_err(|_| Error::store(NAME, format!("negative version {n}"))),
        other => Err(Error::store(NAME, format!("expected a version, got {other:?}"))),
    }
}

fn bytes_of(value: Value) -> Result<Option<Bytes>> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(Bytes::from(bytes))),
        Value::SimpleString(text) => Ok(Some(Bytes::from(text))),
        other => Err(Error::store(NAME, format!("expected a value, got {other:?}"))),
    }
}

fn parse_counter(raw: Option<Vec<u8>>) -> Result<Version> {
    let Some(raw) = raw else { return Ok(0) };
    std::str::from_utf8(&raw).ok().and_then(|text| text.trim().parse::<u64>().ok()).ok_or_else(|| {
        Error::store(NAME, format!("the counter holds {:?}, not a version", String::from_utf8_lossy(&raw)))
    })
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.shared.max_value_size)
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.validate_key(key)?;
        let reply = self.mutate("persist", &self.shared.scripts.persist, &[key.as_bytes(), &value]).await?;
        version_of(&reply)
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.validate_key(key)?;
        match self.mutate("depersist", &self.shared.scripts.depersist, &[key.as_bytes()]).await? {
            Value::Nil => Ok(None),
            reply => version_of(&reply).map(Some),
        }
    }

    async fn durables(&self) -> Result<Durables> {
        let mut connection = self.shared.commands.clone();
        let query = redis::pipe().atomic().get(&self.keys.counter).hgetall(&self.keys.hash).to_owned();
        let (counter, entries): (Option<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>) =
            self.run("durables", query.query_async(&mut connection)).await?;
        let version = parse_counter(counter)?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match String::from_utf8(key) {
                Ok(key) => out.push((key, Bytes::from(value))),
                Err(err) => tracing::warn!(
                    namespace = %self.keys.namespace,
                    key = %String::from_utf8_lossy(err.as_bytes()),
                    "durable-redis: skipping a hash field that is not UTF-8"
                ),
            }
        }
        Ok(Durables { entries: out, version })
    }

    async fn last_updated(&self) -> Result<Version> {
        let mut connection = self.shared.commands.clone();
        let raw: Option<Vec<u8>> = self.run("last_updated", connection.get(&self.keys.counter)).await?;
        parse_counter(raw)
    }

    async fn persist_many(&self, entries: Vec<(String, Bytes)>) -> Result<Version> {
        for (key, _) in &entries {
            self.validate_key(key)?;
        }
        if entries.is_empty() {
            return self.last_updated().await;
        }
        let args: Vec<&[u8]> = entries.iter().flat_map(|(k, v)| [k.as_bytes(), v.as_ref()]).collect();
        let reply = self.mutate("persist_many", &self.shared.scripts.persist, &args).await?;
        version_of(&reply)
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.validate_key(key)?;
        match self.mutate("pop", &self.shared.scripts.pop, &[key.as_bytes()]).await? {
            Value::Nil => Ok(None),
            Value::Array(mut items) if items.len() == 2 => {
                let version = version_of(&items[1])?;
                let value = bytes_of(items.swap_remove(0))?.unwrap_or_default();
                Ok(Some((value, version)))
            }
            other => Err(Error::store(NAME, format!("unexpected pop reply {other:?}"))),
        }
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.validate_key(key)?;
        match self.mutate("setdefault", &self.shared.scripts.setdefault, &[key.as_bytes(), &value]).await? {
            Value::Array(mut items) if items.len() == 1 => Ok((bytes_of(items.remove(0))?.unwrap_or_default(), None)),
            Value::Array(mut items) if items.len() == 2 => {
                let version = version_of(&items[1])?;
                Ok((bytes_of(items.swap_remove(0))?.unwrap_or_default(), Some(version)))
            }
            other => Err(Error::store(NAME, format!("unexpected setdefault reply {other:?}"))),
        }
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        let mut invocation = self.shared.scripts.changes.prepare_invoke();
        let k = &self.keys;
        invocation.key(&k.hash).key(&k.counter).key(&k.log).key(&k.head).key(&k.floor).arg(since);
        let mut connection = self.shared.commands.clone();
        let reply: Value = self.run("changes_since", invocation.invoke_async(&mut connection)).await?;
        let Value::Array(items) = reply else {
            return Err(Error::store(NAME, format!("unexpected changes reply {reply:?}")));
        };
        let mut items = items.into_iter();
        let version = match items.next() {
            Some(Value::Int(-1)) | None => return Ok(Changes::TooOld),
            Some(first) => version_of(&first)?,
        };
        let mut changes = Vec::new();
        while let (Some(key), Some(changed_at), Some(value)) = (items.next(), items.next(), items.next()) {
            let key = match bytes_of(key)?.map(|k| String::from_utf8(k.to_vec())) {
                Some(Ok(key)) => key,
                _ => continue,
            };
            changes.push(KeyChange { key, value: bytes_of(value)?, version: version_of(&changed_at)? });
        }
        Ok(Changes::Delta { changes, version })
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        Ok(Some(listen::subscribe(self).await?))
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<Option<Version>> {
        self.validate_key(key)?;
        let flag = |present: bool| if present { &b"1"[..] } else { &b"0"[..] };
        let args: [&[u8]; 5] = [
            key.as_bytes(),
            flag(expected.is_some()),
            expected.as_deref().unwrap_or_default(),
            flag(new.is_some()),
            new.as_deref().unwrap_or_default(),
        ];
        match self.mutate("compare_and_swap", &self.shared.scripts.compare_and_swap, &args).await? {
            Value::BulkString(text) if text == b"conflict" => Err(Error::Conflict { key: key.into() }),
            Value::SimpleString(text) if text == "conflict" => Err(Error::Conflict { key: key.into() }),
            Value::Nil => Ok(None),
            reply => version_of(&reply).map(Some),
        }
    }
}

/// Turns a redis error into the crate's error, passwords scrubbed.
fn map_error(secrets: &Redactor, err: redis::RedisError) -> Error {
    let source = Source::msg(secrets.scrub(&err.to_string()));
    if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_timeout() {
        Error::StoreUnavailable { backend: NAME, source }
    } else {
        Error::Store { backend: NAME, source }
    }
}

mod listen {
    //! One pub/sub connection per process for each Redis URL and namespace, shared by every
    //! dict of that process on that namespace (through durable-core's `SharedFeeds`): a
    //! thousand dicts cost Redis one subscriber and one message per change, not a thousand.
    //! When the connection is lost every stream says `Interrupted`; the shared task
    //! subscribes again (50 ms, doubling to 250 ms) and says `Resumed`. The connection closes
    //! when the last stream is dropped.

    use durable_core::shared::{Note, SharedFeeds};
    use durable_core::{Hint, HintStream, Result};
    use futures::StreamExt;

    use super::{NAME, RedisBackend};

    static FEEDS: SharedFeeds<Hint> = SharedFeeds::new(NAME);

    pub(super) async fn subscribe(backend: &RedisBackend) -> Result<HintStream> {
        let key = format!("{}\n{}", backend.shared.url, backend.keys.channel);
        let backend = backend.clone();
        let connect = move || {
            let backend = backend.clone();
            async move { backend.subscribe_once().await }
        };
        let notes = FEEDS.subscribe(key, connect).await?;
        Ok(Box::pin(notes.map(|note| match note {
            Note::Message(hint) => hint,
            Note::Lost => Hint::Interrupted,
            Note::Back => Hint::Resumed,
        })))
    }
}
