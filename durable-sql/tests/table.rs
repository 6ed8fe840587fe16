//! Adopting an existing table (`TableBackend`, durabledict's `ModelDict`): the conformance
//! suite on tables with the triggers installed, on real SQLite, PostgreSQL and MariaDB;
//! and other applications writing straight to the table with each database's own client
//! (`psql`, `mariadb`, `sqlite3`), with and without the triggers.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use durable_core::conformance::{BackendFactory, PATIENCE, require_service, unique_namespace, wait_until};
use durable_core::{Backend, Changes, DurableDict, Error, JournalConfig, Raw};
use durable_sql::{TableBackend, ValueKind};
use serde_json::{Value, json};

use common::{mysql_url, postgres_url, sqlite_file, sqlite_url};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Db {
    Sqlite,
    Postgres,
    MySql,
}

/// A table name for a namespace (namespaces carry `-`, table names may not).
fn table_for(namespace: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    namespace.hash(&mut hasher);
    format!("adopt_{:016x}", hasher.finish())
}

/// Runs statements as another application would, with the database's own command-line
/// client; returns what it printed (tab-separated rows, no headers).
fn client(db: Db, url: &str, statements: &str) -> String {
    let mut command = match db {
        Db::Postgres => {
            let mut c = std::process::Command::new("psql");
            c.args([url, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", statements]);
            c
        }
        Db::MySql => {
            let parsed = durable_core::StoreUrl::parse(url).expect("a MySQL URL");
            let mut c = std::process::Command::new("mariadb");
            c.arg(format!("--host={}", parsed.hosts()[0].host))
                .arg(format!("--port={}", parsed.hosts()[0].port.unwrap_or(3306)))
                .arg(format!("--user={}", parsed.username()))
                .args(["-N", "-B", "-e", statements])
                .arg(parsed.path().trim_start_matches('/'));
            if let Some(password) = parsed.password() {
                c.arg(format!("--password={password}"));
            }
            c
        }
        Db::Sqlite => {
            let mut c = std::process::Command::new("sqlite3");
            c.args([
                "-bail",
                "-cmd",
                ".timeout 10000",
                "-separator",
                "\t",
                url.trim_start_matches("sqlite://"),
                statements,
            ]);
            c
        }
    };
    let output = command.output().unwrap_or_else(|err| panic!("run the {db:?} client: {err}"));
    assert!(output.status.success(), "{db:?} client on {statements:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The conformance suite's factory: a table per namespace, triggers installed.
struct Adopted {
    db: Db,
    url: String,
}

impl Adopted {
    fn sqlite() -> Self {
        Self { db: Db::Sqlite, url: sqlite_url(&sqlite_file("adopted")) }
    }
    fn postgres() -> Self {
        Self { db: Db::Postgres, url: postgres_url() }
    }
    fn mysql() -> Self {
        Self { db: Db::MySql, url: mysql_url() }
    }

    async fn connect(&self, namespace: &str) -> TableBackend {
        // One creation at a time in this process: PostgreSQL's CREATE TABLE IF NOT EXISTS
        // is not safe against itself.
        static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _creating = CREATING.lock().await;
        let table = table_for(namespace);
        let columns = match self.db {
            Db::Sqlite => "k TEXT PRIMARY KEY, v BLOB",
            Db::Postgres => "k TEXT PRIMARY KEY, v BYTEA",
            Db::MySql => "k VARBINARY(1024) PRIMARY KEY, v LONGBLOB",
        };
        let create = format!("CREATE TABLE IF NOT EXISTS {table} ({columns})");
        let url = self.url.clone();
        let db = self.db;
        tokio::task::spawn_blocking(move || client(db, &url, &create)).await.expect("create the table");
        TableBackend::builder(&self.url, &table)
            .key_column("k")
            .value_column("v")
            .value_kind(ValueKind::Bytes)
            .install_triggers(true)
            .connect()
            .await
            .expect("connect")
    }
}

#[durable_core::async_trait]
impl BackendFactory for Adopted {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(self.connect(namespace).await)
    }

    async fn with_journal(&self, namespace: &str, _journal: JournalConfig) -> Arc<dyn Backend> {
        self.backend(namespace).await
    }

    async fn available(&self) -> bool {
        match self.db {
            Db::Sqlite => require_service("the sqlite3 client", which("sqlite3")),
            Db::Postgres => {
                durable_testkit::env::require("PostgreSQL", &self.url, 5432).await
                    && require_service("the psql client", which("psql"))
            }
            Db::MySql => {
                durable_testkit::env::require("MySQL/MariaDB", &self.url, 3306).await
                    && require_service("the mariadb client", which("mariadb"))
            }
        }
    }
}

fn which(program: &str) -> bool {
    std::process::Command::new(program).arg("--version").output().is_ok_and(|out| out.status.success())
}

// The suite but the journal's tests: an adopted table keeps no journal.
mod sqlite {
    durable_core::conformance_tests!(@without_journal crate::Adopted::sqlite());
}

mod postgres {
    durable_core::conformance_tests!(@without_journal crate::Adopted::postgres());
}

mod mysql {
    durable_core::conformance_tests!(@without_journal crate::Adopted::mysql());
}

/// The table as the database's own client reads it.
fn rows(db: Db, url: &str, table: &str) -> BTreeMap<String, Value> {
    let select = match db {
        Db::Postgres => format!("SELECT name, CAST(value AS TEXT) FROM {table} WHERE value IS NOT NULL"),
        _ => format!("SELECT name, value FROM {table} WHERE value IS NOT NULL"),
    };
    client(db, url, &select)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (key, value) = line.split_once('\t').expect("two columns");
            (key.to_owned(), serde_json::from_str(value).expect("JSON in the value column"))
        })
        .collect()
}

fn snapshot_map(dict: &DurableDict<Value>) -> BTreeMap<String, Value> {
    dict.snapshot().iter().map(|(key, value)| (key.to_owned(), value.clone())).collect()
}

/// An application's settings table with a JSON value column, as each database spells it.
fn create_settings(db: Db, url: &str, table: &str) {
    let columns = match db {
        Db::Postgres => "name TEXT PRIMARY KEY, value JSONB, note TEXT DEFAULT 'app'",
        Db::MySql => "name VARCHAR(100) PRIMARY KEY, value JSON, note VARCHAR(20) DEFAULT 'app'",
        Db::Sqlite => "name TEXT PRIMARY KEY, value TEXT, note TEXT DEFAULT 'app'",
    };
    client(db, url, &format!("CREATE TABLE {table} ({columns})"));
}

struct Setup {
    db: Db,
    url: String,
    table: String,
    _file: Option<PathBuf>,
}

async fn setup(db: Db, label: &str) -> Option<Setup> {
    let (url, file) = match db {
        Db::Sqlite => {
            let file = sqlite_file(label);
            (sqlite_url(&file), Some(file))
        }
        Db::Postgres => (postgres_url(), None),
        Db::MySql => (mysql_url(), None),
    };
    let factory = Adopted { db, url: url.clone() };
    if !factory.available().await {
        return None;
    }
    let table = table_for(&unique_namespace(label));
    create_settings(db, &url, &table);
    Some(Setup { db, url, table, _file: file })
}

impl Setup {
    async fn backend(&self, triggers: bool) -> TableBackend {
        TableBackend::builder(&self.url, &self.table)
            .key_column("name")
            .value_column("value")
            .value_kind(ValueKind::Json)
            .install_triggers(triggers)
            .connect()
            .await
            .expect("connect")
    }

    fn sql(&self, statements: &str) -> String {
        client(self.db, &self.url, statements)
    }

    /// Syncs `dict` until it shows exactly what the client reads. Without hints one sync
    /// does it; with PostgreSQL's, a sync right after the client's commit may come before
    /// the notification does (and then rightly asks nothing), so it is given the patience.
    async fn agree(&self, dict: &DurableDict<Value>, what: &str) {
        let want = rows(self.db, &self.url, &self.table);
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            dict.sync().await.expect("sync");
            if snapshot_map(dict) == want || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(snapshot_map(dict), want, "after {what}");
    }
}

/// Another application's inserts, updates, key renames, deletes and multi-row transactions,
/// made with the database's own client, each reach the dict — as a delta of exactly the
/// keys it touched — and the dict's own writes reach the client.
async fn outside_writers_are_followed_through_the_triggers(db: Db) {
    let Some(setup) = setup(db, "adopt-triggers").await else { return };
    let t = &setup.table;
    setup.sql(&format!("INSERT INTO {t} (name, value) VALUES ('before', '{{\"on\": true}}')"));
    let backend = setup.backend(true).await;
    assert!(backend.has_triggers());
    let dict = DurableDict::<Value>::builder(Arc::new(backend.clone())).autosync(false).build().await.unwrap();
    assert_eq!(dict.snapshot().get("before"), Some(&json!({"on": true})), "rows there before the triggers are read");

    let steps = [
        ("an insert", format!("INSERT INTO {t} (name, value) VALUES ('shout', 'true')")),
        ("an update", format!("UPDATE {t} SET value = '[1, 2]' WHERE name = 'shout'")),
        ("a rename", format!("UPDATE {t} SET name = 'yell' WHERE name = 'shout'")),
        ("a delete", format!("DELETE FROM {t} WHERE name = 'before'")),
        ("a NULL value", format!("INSERT INTO {t} (name, value) VALUES ('unset', NULL)")),
    ];
    for (what, statement) in &steps {
        let before = dict.snapshot().version();
        setup.sql(statement);
        let changes = backend.changes_since(before).await.unwrap();
        let Changes::Delta { changes, version } = changes else { panic!("{what}: a delta, not a reload") };
        assert!(version > before, "{what}: the version moved");
        assert!(changes.len() <= 2, "{what}: only the touched keys come back: {changes:?}");
        setup.agree(&dict, what).await;
    }
    let multi = match db {
        Db::Sqlite => format!(
            "BEGIN; INSERT INTO {t} (name, value) VALUES ('a', '1'), ('b', '2'); UPDATE {t} SET value = '3' WHERE name = 'yell'; COMMIT;"
        ),
        _ => format!(
            "START TRANSACTION; INSERT INTO {t} (name, value) VALUES ('a', '1'), ('b', '2'); UPDATE {t} SET value = '3' WHERE name = 'yell'; COMMIT;"
        ),
    };
    setup.sql(&multi);
    setup.agree(&dict, "a transaction of several rows").await;

    // The dict's writes, read by the other application.
    dict.insert("from_rust", json!({"level": 3})).await.unwrap();
    dict.remove("a").await.unwrap();
    assert_eq!(rows(db, &setup.url, t), snapshot_map(&dict));
    assert_eq!(
        setup.sql(&format!("SELECT note FROM {t} WHERE name = 'from_rust'")).trim(),
        "app",
        "other columns keep their defaults"
    );
    let version = dict.snapshot().version();
    dict.sync().await.unwrap();
    assert_eq!(dict.snapshot().version(), version, "a no-change sync moves nothing");
}

/// PostgreSQL's trigger notifies: a dict with background refresh shows another
/// application's change without anyone calling `sync()`; a TRUNCATE (no row triggers) is
/// followed by a full reload.
async fn postgres_hints_and_truncate() {
    let Some(setup) = setup(Db::Postgres, "adopt-hints").await else { return };
    let backend = setup.backend(true).await;
    assert!(backend.watch().await.unwrap().is_some(), "the triggers' NOTIFY is listened to");
    let dict = DurableDict::<Value>::builder(Arc::new(backend))
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    setup.sql(&format!("INSERT INTO {} (name, value) VALUES ('pushed', '42')", setup.table));
    wait_until("the hinted change", || dict.snapshot().get("pushed") == Some(&json!(42))).await;
    setup.sql(&format!("TRUNCATE {}", setup.table));
    wait_until("the truncate", || dict.snapshot().is_empty()).await;
}

/// Without triggers the table is polled: a change by another application is seen at the
/// next sync, a sync with no change keeps the version, and nothing is created in the
/// database.
async fn outside_writers_are_followed_by_polling(db: Db) {
    let Some(setup) = setup(db, "adopt-poll").await else { return };
    let t = &setup.table;
    setup.sql(&format!("INSERT INTO {t} (name, value) VALUES ('one', '1')"));
    let backend = setup.backend(false).await;
    assert!(!backend.has_triggers());
    assert!(backend.watch().await.unwrap().is_none(), "polling pushes nothing");
    let dict = DurableDict::<Value>::builder(Arc::new(backend.clone())).autosync(false).build().await.unwrap();
    setup.agree(&dict, "the first load").await;
    let quiet = backend.last_updated().await.unwrap();
    assert_eq!(backend.last_updated().await.unwrap(), quiet, "no change, no new version");
    for (what, statement) in [
        ("an insert", format!("INSERT INTO {t} (name, value) VALUES ('two', '2')")),
        (
            "an update of one value to another of the same length",
            format!("UPDATE {t} SET value = '3' WHERE name = 'two'"),
        ),
        ("a rename", format!("UPDATE {t} SET name = 'owt' WHERE name = 'two'")),
        ("a delete", format!("DELETE FROM {t} WHERE name = 'one'")),
    ] {
        let before = dict.snapshot().version();
        setup.sql(&statement);
        setup.agree(&dict, what).await;
        assert!(dict.snapshot().version() > before, "{what}: the version moved");
    }
    dict.insert("mine", json!("x")).await.unwrap();
    setup.agree(&dict, "a write of ours").await;
    assert!(setup.sql(&companions(db, t)).lines().all(|count| count.trim() == "0"), "polling creates nothing");
}

/// Counts, one per line, of the tables, triggers and functions of ours beside `table`.
fn companions(db: Db, table: &str) -> String {
    match db {
        Db::Postgres => format!(
            "SELECT count(*) FROM pg_class WHERE relname LIKE '{table}_durable%' UNION ALL \
             SELECT count(*) FROM pg_trigger WHERE tgname LIKE '{table}_durable%' UNION ALL \
             SELECT count(*) FROM pg_proc WHERE proname LIKE '{table}_durable%'"
        ),
        Db::MySql => format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '{table}\\_durable%' \
             UNION ALL SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE '{table}\\_durable%'"
        ),
        Db::Sqlite => format!("SELECT count(*) FROM sqlite_master WHERE name LIKE '{table}_durable%'"),
    }
}

/// Installing twice (two instances at once) is harmless; uninstalling removes the
/// companion tables and the triggers, and the table goes on being polled.
async fn triggers_install_idempotently_and_uninstall(db: Db) {
    let Some(setup) = setup(db, "adopt-install").await else { return };
    let (a, b) = tokio::join!(setup.backend(true), setup.backend(true));
    assert!(a.has_triggers() && b.has_triggers());
    let version = a.persist("written", bytes::Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(b.last_updated().await.unwrap(), version, "both handles see one version");
    let ours = companions(db, &setup.table);
    assert!(setup.sql(&ours).lines().all(|count| count.trim() != "0"), "the triggers' tables and triggers are there");
    a.uninstall_triggers().await.expect("uninstall");
    a.uninstall_triggers().await.expect("uninstall twice");
    assert!(
        setup.sql(&companions(db, &setup.table)).lines().all(|count| count.trim() == "0"),
        "nothing of ours is left"
    );
    setup.sql(&format!("INSERT INTO {} (name, value) VALUES ('after', 'true')", setup.table));
    let polled = setup.backend(false).await;
    assert!(!polled.has_triggers());
    let dict = DurableDict::<Value>::builder(Arc::new(polled)).autosync(false).build().await.unwrap();
    setup.agree(&dict, "uninstalling").await;
}

/// Bad input: names refused before any I/O, a missing column or a column of the wrong
/// kind named in the error, and values the column cannot hold refused before any I/O with
/// nothing written.
async fn bad_input_gets_typed_errors(db: Db) {
    let Some(setup) = setup(db, "adopt-bad").await else { return };
    for bad in ["x; DROP TABLE y", "1abc", "a-b", ""] {
        let err = TableBackend::builder("postgres://nobody@127.0.0.1:1/x", bad).connect().await.unwrap_err();
        assert!(matches!(err, Error::InvalidNamespace { .. }), "{bad:?}: {err}");
    }
    let missing =
        TableBackend::builder(&setup.url, &setup.table).key_column("name").value_column("nope").connect().await;
    let err = missing.unwrap_err();
    assert!(err.to_string().contains("no column nope"), "{err}");
    if db != Db::Sqlite {
        let wrong = TableBackend::builder(&setup.url, &setup.table)
            .key_column("name")
            .value_column("value")
            .value_kind(ValueKind::Bytes)
            .connect()
            .await;
        assert!(wrong.unwrap_err().to_string().contains("ValueKind"), "a JSON column is not bytes");
    }
    let backend = setup.backend(true).await;
    let err = backend.persist("k", bytes::Bytes::from_static(b"not json")).await.unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err}");
    let err = backend.persist("k", bytes::Bytes::from_static(b"\xff\xfe")).await.unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err}");
    assert_eq!(setup.sql(&format!("SELECT COUNT(*) FROM {}", setup.table)).trim(), "0", "nothing written");
    assert!(matches!(
        backend.lease("k", durable_core::LeaseOp::Acquire { ttl: Duration::from_secs(1) }).await,
        Err(Error::Unsupported { .. })
    ));
    // A text column holds strings as they are: the Raw codec.
    let text_table = format!("{}_text", setup.table);
    setup.sql(&format!("CREATE TABLE {text_table} (k VARCHAR(50) PRIMARY KEY, v TEXT)"));
    let text =
        TableBackend::builder(&setup.url, &text_table).key_column("k").value_column("v").connect().await.unwrap();
    let dict = DurableDict::<String>::builder(Arc::new(text)).codec(Raw).autosync(false).build().await.unwrap();
    dict.insert("greeting", "hello, world".to_owned()).await.unwrap();
    assert_eq!(setup.sql(&format!("SELECT v FROM {text_table}")).trim(), "hello, world");
    setup.sql(&format!("UPDATE {text_table} SET v = 'bye' WHERE k = 'greeting'"));
    dict.sync().await.unwrap();
    assert_eq!(dict.snapshot().get("greeting").map(String::as_str), Some("bye"));
}

macro_rules! per_database {
    ($($name:ident),*) => {
        mod own_clients {
            $(
                mod $name {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn sqlite() {
                        crate::$name(crate::Db::Sqlite).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn postgres() {
                        crate::$name(crate::Db::Postgres).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn mysql() {
                        crate::$name(crate::Db::MySql).await
                    }
                }
            )*
        }
    };
}

per_database!(
    outside_writers_are_followed_through_the_triggers,
    outside_writers_are_followed_by_polling,
    triggers_install_idempotently_and_uninstall,
    bad_input_gets_typed_errors
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifies_and_truncate_reloads() {
    postgres_hints_and_truncate().await
}
