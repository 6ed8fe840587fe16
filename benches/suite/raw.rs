//! Each backend's own client, for the figures measured beside the library.

use std::hint::black_box;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

/// The backend's own client, beside the library: its cheapest request (PING, `SELECT 1`,
/// `exists` of the root) and the polled sync's own request (the namespace's version: `GET`
/// of the counter, `SELECT version ...`, `exists` of the namespace znode).
pub(crate) enum Raw {
    None,
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
    Redis(redis::aio::ConnectionManager, String),
    Zk(zookeeper_client::Client, String),
    /// An object store and the namespace's directory in it.
    Object(Arc<dyn ObjectStore>, Path),
}

impl Raw {
    pub(crate) async fn connect(backend: &str, url: &str, ns: &str) -> Self {
        match backend {
            "memory" => Self::None,
            "sqlite" => Self::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap()),
            "postgres" => Self::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
            "mysql" => Self::Mysql(sqlx::MySqlPool::connect(url).await.unwrap()),
            "redis" => {
                let client = redis::Client::open(url).unwrap();
                Self::Redis(redis::aio::ConnectionManager::new(client).await.unwrap(), format!("{ns}last_updated"))
            }
            "zk" => {
                let rest = url.trim_start_matches("zk://");
                let (hosts, base) = rest.split_once('/').unwrap_or((rest, ""));
                let path = if base.is_empty() { format!("/{ns}") } else { format!("/{base}/{ns}") };
                Self::Zk(zookeeper_client::Client::connect(hosts).await.unwrap(), path)
            }
            "s3" | "azure" | "localfs" => {
                let (store, prefix) = object_store_of(backend, url);
                Self::Object(store, prefix.join(ns))
            }
            other => panic!("unknown backend {other}"),
        }
    }

    pub(crate) async fn roundtrip(&self) {
        match self {
            Self::None => {}
            Self::Sqlite(pool) => drop(sqlx::query("SELECT 1").execute(pool).await.unwrap()),
            Self::Postgres(pool) => drop(sqlx::query("SELECT 1").execute(pool).await.unwrap()),
            Self::Mysql(pool) => drop(sqlx::query("SELECT 1").execute(pool).await.unwrap()),
            Self::Redis(connection, _) => {
                let _: String = redis::cmd("PING").query_async(&mut connection.clone()).await.unwrap();
            }
            Self::Zk(client, _) => drop(black_box(client.check_stat("/").await.unwrap())),
            // One HEAD of an object that is not there: a 404, as the polled sync's GET gets.
            Self::Object(store, dir) => {
                assert!(matches!(
                    store.head(&dir.clone().join("absent")).await,
                    Err(object_store::Error::NotFound { .. })
                ));
            }
        }
    }

    pub(crate) async fn version_read(&self, ns: &str) {
        const SQL: &str = "SELECT version FROM \"durable_namespaces\" WHERE namespace = $1";
        match self {
            Self::None => {}
            Self::Sqlite(pool) => drop(black_box(sqlx::query(SQL).bind(ns).fetch_optional(pool).await.unwrap())),
            Self::Postgres(pool) => drop(black_box(sqlx::query(SQL).bind(ns).fetch_optional(pool).await.unwrap())),
            Self::Mysql(pool) => {
                let sql = "SELECT version FROM `durable_namespaces` WHERE namespace = ?";
                drop(black_box(sqlx::query(sql).bind(ns).fetch_optional(pool).await.unwrap()));
            }
            Self::Redis(connection, counter) => {
                let _: Option<Vec<u8>> =
                    redis::cmd("GET").arg(counter).query_async(&mut connection.clone()).await.unwrap();
            }
            Self::Zk(client, path) => {
                assert!(client.check_stat(path).await.unwrap().is_some(), "the namespace znode exists");
            }
            // The namespace has no version object: its next log object's HEAD is the same.
            Self::Object(..) => self.roundtrip().await,
        }
    }
}

/// The store behind an object-store URL of the suite's, and the URL's prefix, built the way
/// the backend builds it (the URLs' options are object_store's configuration keys).
pub(crate) fn object_store_of(backend: &str, url: &str) -> (Arc<dyn ObjectStore>, Path) {
    let parsed = url::Url::parse(url).unwrap();
    let options = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned()));
    let prefix = Path::from(parsed.path().trim_matches('/'));
    // The backend has installed rustls's provider by now (it connected first).
    match backend {
        "s3" => {
            let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name(parsed.host_str().unwrap());
            for (key, value) in options {
                builder = builder.with_config(key.parse().unwrap(), value);
            }
            (Arc::new(builder.build().unwrap()), prefix)
        }
        "azure" => {
            let mut builder =
                object_store::azure::MicrosoftAzureBuilder::new().with_container_name(parsed.host_str().unwrap());
            for (key, value) in options {
                builder = builder.with_config(key.parse().unwrap(), value);
            }
            (Arc::new(builder.build().unwrap()), prefix)
        }
        _ => {
            let dir = parsed.to_file_path().unwrap();
            (Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap()), Path::default())
        }
    }
}
