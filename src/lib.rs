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
//! `mysql`, `redis`, `zookeeper`; [`connect`] picks one by URL scheme and, when the scheme's
//! feature is off, says which feature to enable.

pub use durable_core::*;

#[cfg(feature = "redis")]
pub use durable_redis::{RedisBackend, RedisBackendBuilder};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use durable_sql::{SqlBackend, SqlBackendBuilder};
#[cfg(feature = "zookeeper")]
pub use durable_zk::{ZkBackend, ZkBackendBuilder};

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

use std::sync::Arc;

/// Connects to the store named by `url` and returns a backend on `namespace`, chosen by the
/// URL's scheme:
///
/// | scheme | backend | feature |
/// |---|---|---|
/// | `memory://[name]` | [`MemoryBackend`] in the process-wide store `name` | always |
/// | `sqlite://path` | SQL backend on a SQLite file | `sqlite` |
/// | `postgres://`, `postgresql://` | SQL backend on PostgreSQL | `postgres` |
/// | `mysql://`, `mariadb://` | SQL backend on MySQL/MariaDB | `mysql` |
/// | `redis://`, `rediss://` | Redis backend | `redis` |
/// | `zk://`, `zookeeper://` | ZooKeeper backend | `zookeeper` |
///
/// Errors show the URL with its password removed.
pub async fn connect(url: &str, namespace: &str) -> Result<Arc<dyn Backend>> {
    Target::parse(url, namespace)?.connect().await
}

/// Like [`connect`], but connects on first use, so a service can start while its store is
/// down and serve its [backup file](Builder::backup_file) until the store answers. The URL,
/// its scheme and feature are checked now; connection errors (and a namespace the backend
/// refuses) come with the first call that needs the store — `build()`, which falls back to
/// the backup file only for connection errors. See [`LazyBackend`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durable::Result<()> {
/// let store = durable::connect_lazy("memory://", "flags")?;
/// let flags = durable::DurableDict::<bool>::builder(store).build().await?;
/// # Ok(()) }
/// ```
pub fn connect_lazy(url: &str, namespace: &str) -> Result<Arc<dyn Backend>> {
    let target = Arc::new(Target::parse(url, namespace)?);
    let name = target.feature;
    Ok(Arc::new(LazyBackend::new(name, move || {
        let target = Arc::clone(&target);
        async move { target.connect().await }
    })))
}

/// A URL whose scheme names a compiled-in backend, and the namespace to open on it.
struct Target {
    url: String,
    namespace: String,
    feature: &'static str,
}

impl Target {
    fn parse(url: &str, namespace: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl { url: redact_url(url), reason: reason.to_owned() };
        // The common rule, now; each backend checks its own limits when it connects.
        validate_namespace(namespace, usize::MAX)?;
        let scheme = scheme(url).ok_or_else(|| {
            invalid("no scheme; expected memory://, sqlite://, postgres://, mysql://, redis:// or zk://")
        })?;
        let (feature, enabled): (&'static str, bool) = match scheme.as_str() {
            "memory" => ("memory", true),
            "sqlite" => ("sqlite", cfg!(feature = "sqlite")),
            "postgres" | "postgresql" => ("postgres", cfg!(feature = "postgres")),
            "mysql" | "mariadb" => ("mysql", cfg!(feature = "mysql")),
            "redis" | "rediss" | "redis+cluster" => ("redis", cfg!(feature = "redis")),
            "zk" | "zookeeper" => ("zookeeper", cfg!(feature = "zookeeper")),
            _ => return Err(invalid(&format!("unknown scheme {scheme}://"))),
        };
        if !enabled {
            return Err(Error::FeatureDisabled { scheme, feature });
        }
        Ok(Self { url: url.to_owned(), namespace: namespace.to_owned(), feature })
    }

    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        let (url, namespace) = (self.url.as_str(), self.namespace.as_str());
        match self.feature {
            "memory" => {
                let name = url.split_once("://").map_or("", |(_, rest)| rest);
                Ok(Arc::new(MemoryBackend::in_store(MemoryStore::named(name), namespace)))
            }
            #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
            "sqlite" | "postgres" | "mysql" => Ok(Arc::new(durable_sql::SqlBackend::connect(url, namespace).await?)),
            #[cfg(feature = "redis")]
            "redis" => Ok(Arc::new(durable_redis::RedisBackend::connect(url, namespace).await?)),
            #[cfg(feature = "zookeeper")]
            "zookeeper" => Ok(Arc::new(durable_zk::ZkBackend::connect(url, namespace).await?)),
            feature => Err(Error::InvalidUrl {
                url: redact_url(url),
                reason: format!(
                    "the `{feature}` feature is on, but its backend has not landed in this version of durable yet"
                ),
            }),
        }
    }
}
