//! `durable`: a key-value dictionary kept in a durable store — SQLite, PostgreSQL,
//! MySQL/MariaDB, Redis or ZooKeeper — and served from an immutable in-memory snapshot in
//! every process that uses it. The Rust successor to Python's durabledict, and
//! interoperable with it on Redis and ZooKeeper.
//!
//! Reads are memory reads; writes go to the store and return once it acknowledged them;
//! `sync()` costs nothing when nothing changed; a store outage leaves the last good
//! snapshot serving.
//!
//! ```
//! use durable::DurableDict;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> durable::Result<()> {
//! // Any URL whose backend is compiled in: sqlite://flags.db, postgres://..., redis://...
//! let store = durable::connect("memory://", "flags").await?;
//! let flags = DurableDict::<bool>::builder(store).autosync(false).build().await?;
//!
//! flags.insert("new-checkout", true).await?;
//!
//! // Once per request: bring the snapshot up to date (free when nothing changed), then
//! // read from one consistent view.
//! flags.sync().await?;
//! let view = flags.snapshot();
//! assert_eq!(view.get("new-checkout"), Some(&true));
//! # Ok(()) }
//! ```
//!
//! Backends are chosen by Cargo feature, as in sqlx: `sqlite` (default), `postgres`,
//! `mysql`, `redis`, `zookeeper`, and for object storage `s3`, `azure`, `localfs`; [`connect`] picks one by URL scheme and, when the scheme's
//! feature is off, says which feature to enable.
//!
//! The root holds what a service uses. Each backend's own type and builder (for options
//! beyond the URL) are in its module — [`sql`], [`redis`], [`zookeeper`], [`object`] — and
//! [`backend`] holds what a backend or a wrapper is written with.

#![warn(missing_docs)]

use std::sync::Arc;

pub use durable_core::{
    BackupError, Builder, Change, Codec, DurableDict, Error, Event, Gap, GapCause, HintHealth, JournalConfig,
    JournalItem, JournalRecord, Json, KeyName, Layered, LayeredBuilder, LayeredSnapshot, Lease, LeaseRequest,
    LeaseState, Lz4, MemoryBackend, MemoryStore, MsgPack, Raw, Result, Snapshot, Status, Subscription, SyncOutcome,
    Token, Version, WriteBatch, read_backup,
};

/// Archives of the change journal (rolling compressed files) and restore to any version:
/// see [`Archiver`](archive::Archiver) and [`restore`](archive::restore).
pub use durable_core::archive;

pub mod backend {
    //! For writing a backend or a wrapper: the [`Backend`] trait and its types, [`Wrap`]
    //! for wrappers, [`ReadThenWrite`] for a store with only the four primitives, and the
    //! helpers the workspace's backends share. The conformance suite is
    //! `durable_core::conformance` (feature `conformance` of `durable-core`).
    pub use durable_core::{
        Backend, Batch, Bytes, Call, CallCounts, Changes, CountingBackend, DEFAULT_CHANGE_LOG, DEFAULT_MAX_KEY_LEN,
        Delegate, Durables, Hint, HintStream, HostPort, JournalPage, JournalReader, KeyChange, LazyBackend,
        LeaseAnswer, LeaseInfo, LeaseOp, Op, Open, Opening, PROBE_AFTER, PROBE_EVERY, ReadThenWrite, Redactor,
        RefusalProbe, SimpleStore, Source, StoreUrl, Wrap, async_trait, decode_backup, default_key_rule,
        is_secret_param, lease, redact_url, scheme, shared, validate_namespace,
    };
}

/// The SQL backend: SQLite, PostgreSQL and MySQL/MariaDB through sqlx.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod sql {
    pub use durable_sql::{
        DEFAULT_MAX_VALUE_SIZE, DEFAULT_TIMEOUT, DEFAULT_TOMBSTONE_RETENTION, Dialect, MAX_KEY_LEN, MAX_NAMESPACE_LEN,
        MAX_PREFIX_LEN, MAX_TABLE_NAME_LEN, SqlBackend, SqlBackendBuilder, SqlError, TABLE_CHANNEL, TableBackend,
        TableBackendBuilder, ValueKind, validate_namespace, validate_prefix,
    };
}

/// The Redis backend (durabledict's layout; Redis Cluster with `redis+cluster://`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use durable_redis::{
        DEFAULT_CHANGE_LOG_LEN, DEFAULT_MAX_VALUE_SIZE, DEFAULT_ORACLE_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_VERIFY_EVERY,
        MAX_NAMESPACE_LEN, RedisBackend, RedisBackendBuilder, RedisError, VersionOracle, validate_namespace,
    };
}

/// The ZooKeeper backend (durabledict's layout).
#[cfg(feature = "zookeeper")]
pub mod zookeeper {
    pub use durable_zk::{
        DEFAULT_MAX_VALUE_SIZE, DEFAULT_SESSION_TIMEOUT, DEFAULT_TIMEOUT, MAX_KEY_LEN, ZkBackend, ZkBackendBuilder,
        ZkError, validate_key, validate_namespace,
    };
}

/// The object-storage backend: S3, Azure Blob and a local directory through object_store,
/// as a log of create-only commit objects with checkpoints.
#[cfg(any(feature = "s3", feature = "azure", feature = "localfs"))]
pub mod object {
    pub use durable_object::{
        DEFAULT_CHANGE_LOG, DEFAULT_CHECKPOINT_EVERY, DEFAULT_INLINE_LIMIT, DEFAULT_LOG_RETENTION,
        DEFAULT_MAX_VALUE_SIZE, DEFAULT_TIMEOUT, DEFAULT_VERIFY_EVERY, ObjectBackend, ObjectBackendBuilder,
    };
}

#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "tower")]
mod middleware;

#[cfg(feature = "axum")]
pub use extract::{Flags, MissingSyncLayer};
#[cfg(feature = "tower")]
pub use middleware::{OutagePolicy, SyncLayer, SyncService};

// The README's examples compile and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// One backend in the scheme registry: the facade feature that compiles it in, the URL
/// schemes it serves, and its `open` function when the feature is on.
struct Registered {
    feature: &'static str,
    schemes: &'static [&'static str],
    open: Option<backend::Open>,
}

/// `Some(open)` when the facade feature is on, `None` otherwise (the crate is not compiled).
macro_rules! open_if {
    ($feature:literal, $open:path) => {{
        #[cfg(feature = $feature)]
        let open: Option<backend::Open> = Some($open);
        #[cfg(not(feature = $feature))]
        let open: Option<backend::Open> = None;
        open
    }};
}

/// Every backend of the workspace, one line each. Adding a backend: its crate, one line
/// here, and its feature in Cargo.toml.
const REGISTRY: &[Registered] = &[
    Registered { feature: "memory", schemes: &["memory"], open: Some(MemoryBackend::open) },
    Registered { feature: "sqlite", schemes: &["sqlite"], open: open_if!("sqlite", durable_sql::open) },
    Registered {
        feature: "postgres",
        schemes: &["postgres", "postgresql"],
        open: open_if!("postgres", durable_sql::open),
    },
    Registered { feature: "mysql", schemes: &["mysql", "mariadb"], open: open_if!("mysql", durable_sql::open) },
    Registered {
        feature: "redis",
        schemes: &["redis", "rediss", "redis+cluster"],
        open: open_if!("redis", durable_redis::open),
    },
    Registered { feature: "zookeeper", schemes: &["zk", "zookeeper"], open: open_if!("zookeeper", durable_zk::open) },
    Registered { feature: "s3", schemes: &["s3"], open: open_if!("s3", durable_object::open) },
    Registered { feature: "azure", schemes: &["az", "azure"], open: open_if!("azure", durable_object::open) },
    Registered { feature: "localfs", schemes: &["file"], open: open_if!("localfs", durable_object::open) },
];

/// Connects to the store named by `url` and returns a backend on `namespace`, chosen by the
/// URL's scheme:
///
/// | scheme | backend | feature |
/// |---|---|---|
/// | `memory://[name]` | [`MemoryBackend`] in the process-wide store `name` | always |
/// | `sqlite://path` | SQL backend on a SQLite file | `sqlite` |
/// | `postgres://`, `postgresql://` | SQL backend on PostgreSQL | `postgres` |
/// | `mysql://`, `mariadb://` | SQL backend on MySQL/MariaDB | `mysql` |
/// | `redis://`, `rediss://`, `redis+cluster://` | Redis backend | `redis` |
/// | `zk://`, `zookeeper://` | ZooKeeper backend | `zookeeper` |
/// | `s3://bucket/prefix` | object storage on S3 | `s3` |
/// | `az://container/prefix`, `azure://` | object storage on Azure Blob | `azure` |
/// | `file:///dir` | object storage in a local directory | `localfs` |
///
/// Errors show the URL with its password removed.
pub async fn connect(url: &str, namespace: &str) -> Result<Arc<dyn backend::Backend>> {
    Target::parse(url, namespace)?.connect().await
}

/// Like [`connect`], but connects on first use, so a service can start while its store is
/// down and serve its [backup file](Builder::backup_file) until the store answers. The URL,
/// its scheme and feature are checked now; connection errors (and a namespace the backend
/// refuses) come with the first call that needs the store — `build()`, which falls back to
/// the backup file only for connection errors. See [`LazyBackend`](backend::LazyBackend).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durable::Result<()> {
/// let store = durable::connect_lazy("memory://", "flags")?;
/// let flags = durable::DurableDict::<bool>::builder(store).build().await?;
/// # Ok(()) }
/// ```
pub fn connect_lazy(url: &str, namespace: &str) -> Result<Arc<dyn backend::Backend>> {
    let target = Arc::new(Target::parse(url, namespace)?);
    let name = target.feature;
    Ok(Arc::new(backend::LazyBackend::new(name, move || {
        let target = Arc::clone(&target);
        async move { target.connect().await }
    })))
}

/// A URL whose scheme names a compiled-in backend, and the namespace to open on it.
struct Target {
    url: String,
    namespace: String,
    feature: &'static str,
    open: backend::Open,
}

impl Target {
    fn parse(url: &str, namespace: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl { url: backend::redact_url(url), reason };
        // The common rule, now; each backend checks its own limits when it connects.
        backend::validate_namespace(namespace, usize::MAX)?;
        let known = || REGISTRY.iter().map(|entry| format!("{}://", entry.schemes[0])).collect::<Vec<_>>().join(", ");
        let scheme = backend::scheme(url).ok_or_else(|| invalid(format!("no scheme; expected one of {}", known())))?;
        let Some(entry) = REGISTRY.iter().find(|entry| entry.schemes.contains(&scheme.as_str())) else {
            return Err(invalid(format!("unknown scheme {scheme}://; expected one of {}", known())));
        };
        let Some(open) = entry.open else {
            return Err(Error::FeatureDisabled { scheme, feature: entry.feature });
        };
        Ok(Self { url: url.to_owned(), namespace: namespace.to_owned(), feature: entry.feature, open })
    }

    async fn connect(&self) -> Result<Arc<dyn backend::Backend>> {
        (self.open)(&self.url, &self.namespace).await
    }
}
