//! A database account that may only read: PostgreSQL and MariaDB each grant `SELECT` on a
//! schema a writer created, and a backend built `read_only(true)` on that account connects
//! without migrating, follows changes, and gets a typed error — quickly, not a hang — when
//! asked to write; the database is what refuses.

#![cfg(all(feature = "postgres", feature = "mysql"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_core::conformance::unique_namespace;
use durable_core::{DurableDict, Error, StoreUrl};
use durable_sql::{SqlBackend, SqlError};
use durable_testkit::LiveDicts;
use serde_json::{Value, json};

use common::{mysql_url, postgres_url, unique_prefix};

const TABLES: [&str; 4] = ["durable_entries", "durable_namespaces", "durable_schema", "durable_journal"];

/// What one database needs: how to run the administrator's statements, how to make the
/// reading account, and that account's URL.
struct Database {
    admin: String,
    postgres: bool,
    grant: fn(user: &str, table: &str) -> Vec<String>,
    create_user: fn(user: &str) -> Vec<String>,
    drop_user: fn(user: &str) -> Vec<String>,
}

impl Database {
    async fn run(&self, statements: Vec<String>) {
        for statement in statements {
            let done = if self.postgres {
                let pool = sqlx::PgPool::connect(&self.admin).await.expect("the administrator connects");
                sqlx::query(sqlx::AssertSqlSafe(statement.clone())).execute(&pool).await.map(drop)
            } else {
                let pool = sqlx::MySqlPool::connect(&self.admin).await.expect("the administrator connects");
                sqlx::query(sqlx::AssertSqlSafe(statement.clone())).execute(&pool).await.map(drop)
            };
            done.unwrap_or_else(|err| panic!("{statement}: {err}"));
        }
    }

    /// The administrator's URL with the reading account's name and password.
    fn reader_url(&self, user: &str) -> String {
        let url = StoreUrl::parse(&self.admin).unwrap();
        let host = &url.hosts()[0];
        format!("{}://{user}:{PASSWORD}@{}{}", url.scheme(), host.addr(0).trim_end_matches(":0"), url.path())
    }
}

const PASSWORD: &str = "read0nly";

async fn a_select_only_account_reads_and_cannot_write(database: Database) {
    let prefix = unique_prefix();
    let user = format!("ro_{}", prefix.trim_end_matches('_'));
    let ns = unique_namespace("read-only");
    // A writer creates the schema; the reading account gets SELECT on its three tables.
    let writer = SqlBackend::builder(&database.admin).table_prefix(&prefix).connect(&ns).await.unwrap();
    database.run((database.create_user)(&user)).await;
    for table in TABLES {
        database.run((database.grant)(&user, &format!("{prefix}{table}"))).await;
    }
    let url = database.reader_url(&user);

    // Without the option, connecting would create or migrate, which the account may not.
    let started = Instant::now();
    let refused = SqlBackend::builder(&url).table_prefix(&prefix).connect(&ns).await;
    assert!(refused.is_err(), "a SELECT-only account migrated");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());

    // It loads what the writer wrote and follows what it writes next.
    let reader = SqlBackend::builder(&url).table_prefix(&prefix).read_only(true).connect(&ns).await.unwrap();
    let live = LiveDicts::seeded(Arc::new(reader), Arc::new(writer), Some(Duration::from_millis(100)), 10).await;
    let (reader, writer) = (&live.reader, &live.writer);
    let version = writer.insert("flag", json!(false)).await.unwrap();
    live.reader_has("flag", &json!(false), version).await;
    // It reads the journal the writer kept.
    let history = reader.history("flag", 10).await.unwrap();
    assert_eq!(history.first().map(|record| record.version), Some(version));

    // A write is refused by the database: a typed error carrying the database's word, fast.
    let started = Instant::now();
    let err = reader.insert("flag", json!("mine")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Store { .. }) && err.source_as::<SqlError>().is_some(), "{err:?}");
    assert!(err.to_string().contains("denied"), "{err}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert_eq!(writer.get("flag").await.as_deref(), Some(&json!(false)), "nothing was written");
    // The dict-level guard refuses before the database is asked.
    let guarded = SqlBackend::builder(&url).table_prefix(&prefix).read_only(true).connect(&ns).await.unwrap();
    let guarded = DurableDict::<Value>::builder(Arc::new(guarded)).read_only(true).build().await.unwrap();
    assert!(matches!(guarded.insert("flag", json!(1)).await, Err(Error::ReadOnly { .. })));

    // A read-only connect to a schema no writer made says so (MariaDB does not tell an
    // account about tables it has no grant on: it says access is denied).
    let missing = SqlBackend::builder(&url).table_prefix(&unique_prefix()).read_only(true).connect(&ns).await;
    let err = missing.expect_err("a schema that is not there");
    let said = err.to_string();
    assert!(said.contains("not there") || (!database.postgres && said.contains("denied")), "{err}");

    drop((live, guarded));
    database.run((database.drop_user)(&user)).await;
    database.run(TABLES.iter().map(|table| format!("DROP TABLE {prefix}{table}")).collect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_role_with_only_select_reads_and_cannot_write() {
    if !durable_testkit::env::require("PostgreSQL", &postgres_url(), 5432).await {
        return;
    }
    a_select_only_account_reads_and_cannot_write(Database {
        admin: postgres_url(),
        postgres: true,
        create_user: |user| vec![format!("CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'")],
        grant: |user, table| vec![format!("GRANT SELECT ON {table} TO {user}")],
        drop_user: |user| vec![format!("DROP OWNED BY {user}"), format!("DROP ROLE {user}")],
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_account_with_only_select_reads_and_cannot_write() {
    if !durable_testkit::env::require("MariaDB", &mysql_url(), 3306).await {
        return;
    }
    a_select_only_account_reads_and_cannot_write(Database {
        admin: mysql_url(),
        postgres: false,
        create_user: |user| vec![format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")],
        grant: |user, table| vec![format!("GRANT SELECT ON {table} TO '{user}'@'%'")],
        drop_user: |user| vec![format!("DROP USER '{user}'@'%'")],
    })
    .await;
}
