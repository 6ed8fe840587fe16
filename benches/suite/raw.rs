//! Each backend's own client, for the figures measured beside the library.

use std::hint::black_box;

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
        }
    }
}
