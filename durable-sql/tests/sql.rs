//! What only the SQL backend has to prove, against real databases: SQLite shared by two OS
//! processes, PostgreSQL hints surviving a cut listener, concurrent first starts, tombstone
//! pruning, exact key matching, timeouts and password redaction.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{mysql_url, postgres_url, sqlite_file, sqlite_url, unique_prefix};
use durable_core::conformance::unique_namespace;
use durable_core::{Backend, Bytes, Changes, DurableDict, Error, HintHealth, SyncOutcome};
use durable_sql::SqlBackend;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

async fn postgres_available() -> bool {
    durable_testkit::env::require("PostgreSQL", &postgres_url(), 5432).await
}

async fn mysql_available() -> bool {
    durable_testkit::env::require("MySQL/MariaDB", &mysql_url(), 3306).await
}

/// The three databases' URLs, each with tables of its own (a fresh SQLite file, a fresh
/// table prefix on the servers), skipping servers that are missing outside CI.
async fn fresh_databases() -> Vec<(String, String)> {
    let mut all = vec![(sqlite_url(&sqlite_file("fresh")), String::new())];
    if postgres_available().await {
        all.push((postgres_url(), unique_prefix()));
    }
    if mysql_available().await {
        all.push((mysql_url(), unique_prefix()));
    }
    all
}

async fn drop_tables(url: &str, prefix: &str) {
    if url.starts_with("sqlite") || prefix.is_empty() {
        return;
    }
    let tables = ["durable_entries", "durable_namespaces", "durable_schema"].map(|t| format!("{prefix}{t}"));
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for table in tables {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS \"{table}\""))).execute(&pool).await.unwrap();
        }
    } else {
        let pool = sqlx::MySqlPool::connect(url).await.unwrap();
        for table in tables {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS `{table}`"))).execute(&pool).await.unwrap();
        }
    }
}

// ---- SQLite: two OS processes on one file ---------------------------------------------

const CHILD_DB: &str = "DURABLE_SQLITE_CHILD_DB";
const KEYS_EACH: usize = 150;

/// Runs in the child process (this test binary, started by the test below with the
/// environment variable set); run alone, without it, it has nothing to do and says so.
#[tokio::test]
#[ignore = "the child half of two_os_processes_share_one_sqlite_file"]
async fn sqlite_child_process() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        eprintln!("{CHILD_DB} is not set: this test is the child of two_os_processes_share_one_sqlite_file");
        return;
    };
    let backend = SqlBackend::connect(&format!("sqlite://{path}"), "shared").await.unwrap();
    let dict = DurableDict::<Value>::builder(Arc::new(backend)).autosync(false).build().await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dict.snapshot().get("parent-started").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the parent's start never showed");
        tokio::time::sleep(Duration::from_millis(5)).await;
        dict.sync().await.unwrap();
    }
    for i in 0..KEYS_EACH {
        dict.insert(&format!("child-{i}"), json!(i)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_os_processes_share_one_sqlite_file() {
    let path = sqlite_file("two-processes");
    let backend = SqlBackend::connect(&sqlite_url(&path), "shared").await.unwrap();
    let dict = DurableDict::<Value>::builder(Arc::new(backend)).autosync(false).build().await.unwrap();
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["sqlite_child_process", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DB, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child process");
    dict.insert("parent-started", json!(true)).await.unwrap();
    // Both processes write at once.
    for i in 0..KEYS_EACH {
        dict.insert(&format!("parent-{i}"), json!(i)).await.unwrap();
    }
    let status = tokio::time::timeout(PATIENCE, child.wait_with_output()).await.expect("child finished").unwrap();
    assert!(
        status.status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    dict.sync().await.unwrap();
    let snap = dict.snapshot();
    assert_eq!(snap.len(), 2 * KEYS_EACH + 1);
    for i in 0..KEYS_EACH {
        assert_eq!(snap.get(&format!("child-{i}")), Some(&json!(i)), "the child's write child-{i}");
    }
    assert_eq!(snap.version(), (2 * KEYS_EACH + 1) as u64, "every write had its own version");
}

// ---- PostgreSQL hints --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_are_found_after_the_listener_is_cut() {
    if !postgres_available().await {
        return;
    }
    let prefix = unique_prefix();
    let ns = unique_namespace("cut");
    let listening = SqlBackend::builder(&postgres_url()).table_prefix(&prefix).connect(&ns).await.unwrap();
    let channel = listening.channel().to_owned();
    let writer = listening.namespace(&ns).unwrap();
    let dict = DurableDict::<Value>::builder(Arc::new(listening)).autosync(false).build().await.unwrap();
    assert_eq!(dict.status().hints, HintHealth::Healthy);

    // A change arrives through NOTIFY: sync() needs no check of its own afterwards.
    writer.persist("a", Bytes::from_static(b"1")).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dict.snapshot().get("a").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the NOTIFY never arrived");
        dict.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    // Cut the listener's connection from the server side, then change something.
    let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()",
    )
    .bind(format!("LISTEN \"{channel}\""))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(cut, vec![true], "exactly our listener was cut");
    writer.persist("b", Bytes::from_static(b"2")).await.unwrap();
    // Whether the dict has noticed the cut yet or already re-subscribed, the next sync
    // finds the change: lost notifications never leave it stale.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        dict.sync().await.unwrap();
        if dict.snapshot().get("b") == Some(&json!(2)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the change made during the cut was never found");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // And the listener comes back by itself.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dict.status().hints != HintHealth::Healthy {
        assert!(tokio::time::Instant::now() < deadline, "the listener never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(dict);
    drop_tables(&postgres_url(), &prefix).await;
}

/// The LISTEN connections PostgreSQL holds on `channel`, from any process.
async fn listeners_on(admin: &sqlx::PgPool, channel: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query = $1")
        .bind(format!("LISTEN \"{channel}\""))
        .fetch_one(admin)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dict_of_a_process_shares_one_listen_connection() {
    if !postgres_available().await {
        return;
    }
    const DICTS: usize = 50;
    let prefix = unique_prefix();
    let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let mut dicts = Vec::new();
    let mut channel = String::new();
    for i in 0..DICTS {
        // Each with a backend (and pool) of its own, on namespaces of their own: as a
        // service that calls durable::connect per dict.
        let backend =
            SqlBackend::builder(&postgres_url()).table_prefix(&prefix).connect(&format!("ns-{}", i % 5)).await.unwrap();
        channel = backend.channel().to_owned();
        let dict = DurableDict::<Value>::builder(Arc::new(backend))
            .autosync(false)
            .background_refresh(true)
            .build()
            .await
            .unwrap();
        dicts.push(dict);
    }
    assert_eq!(listeners_on(&admin, &channel).await, 1, "one LISTEN connection for {DICTS} dicts");
    // A change to one namespace reaches exactly its dicts.
    let mut events: Vec<_> = dicts.iter().map(|dict| dict.watch_key("flag")).collect();
    let writer = SqlBackend::builder(&postgres_url()).table_prefix(&prefix).connect("ns-3").await.unwrap();
    writer.persist("flag", Bytes::from_static(b"true")).await.unwrap();
    for (i, events) in events.iter_mut().enumerate().filter(|(i, _)| i % 5 == 3) {
        let event = tokio::time::timeout(PATIENCE, futures::StreamExt::next(events)).await;
        assert!(event.is_ok(), "dict {i} heard of the change");
    }
    for (i, dict) in dicts.iter().enumerate() {
        let want = (i % 5 == 3).then_some(&json!(true));
        assert_eq!(dict.snapshot().get("flag"), want, "dict {i}");
    }
    // The connection goes when the last dict does.
    drop(events);
    drop(dicts);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while listeners_on(&admin, &channel).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the shared LISTEN connection outlived its dicts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop_tables(&postgres_url(), &prefix).await;
}

#[tokio::test]
async fn sqlite_and_mysql_push_no_hints() {
    let sqlite = SqlBackend::connect(&sqlite_url(&sqlite_file("nohints")), "ns").await.unwrap();
    assert!(sqlite.watch().await.unwrap().is_none());
    if mysql_available().await {
        let mysql = SqlBackend::connect(&mysql_url(), "ns").await.unwrap();
        assert!(mysql.watch().await.unwrap().is_none());
        let dict = DurableDict::<Value>::builder(Arc::new(mysql)).build().await.unwrap();
        assert_eq!(dict.status().hints, HintHealth::Unavailable);
    }
}

// ---- schema ----------------------------------------------------------------------------

/// A brand-new database on the server at `url` (same server, new database name), and a way
/// to drop it afterwards.
async fn fresh_server_database(url: &str) -> (String, impl std::future::Future<Output = ()> + use<>) {
    let name = unique_prefix().trim_end_matches('_').replace('_', "x");
    let (base, _) = url.rsplit_once('/').expect("a database URL has a path");
    let fresh = format!("{base}/{name}");
    let postgres = url.starts_with("postgres");
    let create = format!("CREATE DATABASE {name}");
    if postgres {
        let admin = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.unwrap();
    } else {
        let admin = sqlx::MySqlPool::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.unwrap();
    }
    let url = url.to_owned();
    let cleanup = async move {
        let drop = format!("DROP DATABASE IF EXISTS {name}");
        if postgres {
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("{drop} WITH (FORCE)"))).execute(&admin).await.unwrap();
        } else {
            let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await.unwrap();
        }
    };
    (fresh, cleanup)
}

async fn eight_at_once(url: &str) {
    let starts: Vec<_> = (0..8)
        .map(|i| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let backend = SqlBackend::connect(&url, &format!("ns{i}")).await?;
                backend.persist("k", Bytes::from(i.to_string())).await
            })
        })
        .collect();
    for start in starts {
        let version = start.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", durable_core::redact_url(url)));
        assert_eq!(version, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_backends_started_at_once_on_a_fresh_database_all_succeed() {
    eight_at_once(&sqlite_url(&sqlite_file("fresh-start"))).await;
    if postgres_available().await {
        let (url, cleanup) = fresh_server_database(&postgres_url()).await;
        eight_at_once(&url).await;
        cleanup.await;
    }
    if mysql_available().await {
        let (url, cleanup) = fresh_server_database(&mysql_url()).await;
        eight_at_once(&url).await;
        cleanup.await;
    }
}

#[tokio::test]
async fn table_prefixes_that_are_not_identifiers_are_refused() {
    for bad in ["x; DROP TABLE users; --", "a-b", "\"q\""] {
        let err = SqlBackend::builder("sqlite://never-created.db").table_prefix(bad).connect("ns").await.unwrap_err();
        assert!(matches!(err, Error::InvalidNamespace { .. }), "{err}");
    }
    assert!(!std::path::Path::new("never-created.db").exists(), "refused before any I/O");
}

// ---- deltas and retention -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_are_pruned_past_their_retention() {
    for (url, prefix) in fresh_databases().await {
        let backend =
            SqlBackend::builder(&url).table_prefix(&prefix).tombstone_retention(10).connect("ns").await.unwrap();
        backend.persist("doomed", Bytes::from_static(b"1")).await.unwrap();
        let deleted_at = backend.depersist("doomed").await.unwrap().unwrap();
        // Within the retention the deletion travels as a tombstone.
        match backend.changes_since(deleted_at - 1).await.unwrap() {
            Changes::Delta { changes, .. } => {
                assert_eq!(changes.len(), 1);
                assert_eq!((changes[0].key.as_str(), changes[0].value.as_ref()), ("doomed", None));
            }
            Changes::TooOld => panic!("inside the retention"),
        }
        for i in 0..30 {
            backend.persist(&format!("k{i}"), Bytes::from_static(b"0")).await.unwrap();
        }
        assert_eq!(backend.changes_since(deleted_at - 1).await.unwrap(), Changes::TooOld, "past the horizon");
        let tombstones = count_tombstones(&url, &prefix).await;
        assert_eq!(tombstones, 0, "{}: the tombstone was pruned", durable_core::redact_url(&url));
        drop_tables(&url, &prefix).await;
    }
}

async fn count_tombstones(url: &str, prefix: &str) -> i64 {
    let table = format!("{prefix}durable_entries");
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let sql = format!("SELECT COUNT(*) FROM \"{table}\" WHERE tombstone = TRUE");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap()
    } else if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let sql = format!("SELECT COUNT(*) FROM \"{table}\" WHERE tombstone = TRUE");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::MySqlPool::connect(url).await.unwrap();
        let sql = format!("SELECT COUNT(*) FROM `{table}` WHERE tombstone = TRUE");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap()
    }
}

#[tokio::test]
async fn keys_match_byte_for_byte() {
    for (url, prefix) in fresh_databases().await {
        let backend = SqlBackend::builder(&url).table_prefix(&prefix).connect("ns").await.unwrap();
        let keys = ["key", "Key", "KEY", "key ", "kéy", "ke\u{301}y"];
        for (i, key) in keys.iter().enumerate() {
            backend.persist(key, Bytes::from(i.to_string())).await.unwrap();
        }
        let mut stored = backend.durables().await.unwrap().entries;
        stored.sort();
        let mut expected: Vec<(String, Bytes)> =
            keys.iter().enumerate().map(|(i, k)| (k.to_string(), Bytes::from(i.to_string()))).collect();
        expected.sort();
        assert_eq!(stored, expected, "{}", durable_core::redact_url(&url));
        drop_tables(&url, &prefix).await;
    }
}

#[tokio::test]
async fn keys_with_nul_and_oversized_values_are_refused_before_io() {
    let backend =
        SqlBackend::builder(&sqlite_url(&sqlite_file("limits"))).max_value_size(64).connect("ns").await.unwrap();
    assert!(matches!(backend.persist("a\0b", Bytes::new()).await, Err(Error::InvalidKey { .. })));
    let dict = DurableDict::<String>::builder(Arc::new(backend)).build().await.unwrap();
    let err = dict.insert("k", "x".repeat(100)).await.unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { max: 64, .. }), "{err}");
    assert!(SqlBackend::connect("sqlite://x.db", "").await.is_err(), "empty namespace");
}

// ---- failures --------------------------------------------------------------------------

#[tokio::test]
async fn debug_output_shows_no_password() {
    if !postgres_available().await {
        return;
    }
    // Trust authentication ignores the password, so this connects.
    let url = postgres_url().replacen("postgres@", "postgres:s3cr3tpw@", 1);
    let backend = SqlBackend::connect(&url, "ns").await.unwrap();
    let shown = format!("{backend:?}");
    assert!(shown.contains("postgres:***@"), "{shown}");
    assert!(!shown.contains("s3cr3tpw"), "{shown}");
}

#[tokio::test]
async fn a_sync_after_one_change_among_many_is_a_delta() {
    for (url, prefix) in fresh_databases().await {
        let backend = SqlBackend::builder(&url).table_prefix(&prefix).connect("big").await.unwrap();
        let writer =
            DurableDict::<u64>::builder(Arc::new(backend.clone())).autosync(false).hints(false).build().await.unwrap();
        writer.insert_many((0..2_000u64).map(|i| (format!("key{i}"), i))).await.unwrap();
        let reader = DurableDict::<u64>::builder(Arc::new(backend)).autosync(false).hints(false).build().await.unwrap();
        writer.insert("key7", 77).await.unwrap();
        assert_eq!(reader.sync().await.unwrap(), SyncOutcome::Delta { keys: 1, version: 2 });
        assert_eq!(reader.snapshot().get("key7"), Some(&77));
        assert_eq!(reader.snapshot().len(), 2_000);
        drop_tables(&url, &prefix).await;
    }
}

#[tokio::test]
/// (PostgreSQL and MySQL run the shared connection suite below.)
async fn bad_namespaces_are_refused_before_a_sqlite_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("never-created.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    for ns in durable_core::conformance::bad_namespaces() {
        durable_core::conformance::assert_invalid_namespace(&ns, SqlBackend::connect(&url, &ns).await);
    }
    assert!(!file.exists(), "no SQLite file was created");
}

mod postgres {
    durable_testkit::connection_suite!(crate::common::SqlTarget("postgres"));
}

mod mysql {
    durable_testkit::connection_suite!(crate::common::SqlTarget("mysql"));
}

/// A database error keeps its code (SQLSTATE) as the core error's source.
#[tokio::test]
async fn a_database_error_keeps_its_code_in_the_source() {
    if !postgres_available().await {
        return;
    }
    let prefix = unique_prefix();
    let backend = SqlBackend::builder(&postgres_url()).table_prefix(&prefix).connect("codes").await.unwrap();
    drop_tables(&postgres_url(), &prefix).await;
    let err = backend.persist("k", "1".into()).await.unwrap_err();
    let source = err.source_as::<durable_sql::SqlError>();
    match source {
        // undefined_table: the tables went away under the backend.
        Some(durable_sql::SqlError::Driver { code, .. }) => assert_eq!(code.as_deref(), Some("42P01"), "{err}"),
        other => panic!("want the crate's error as the source, got {other:?} for {err}"),
    }
}
