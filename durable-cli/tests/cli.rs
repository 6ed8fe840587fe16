//! The `durable` binary against real stores: export and import round trips, copies
//! around every kind of store, staged pushes guarded by a version, watching, a progress
//! bar on a terminal only, and bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use durable_core::conformance::{require_service, unique_namespace};
use durable_testkit::env::{mysql_url, postgres_url, redis_url, zk_url};

const BIN: &str = env!("CARGO_BIN_EXE_durable");

async fn durable(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN).args(args).stdin(Stdio::null()).output().await.expect("run durable")
}

/// Runs `durable`, asserts it succeeded, and returns its stdout.
async fn ok(args: &[&str]) -> String {
    let output = durable(args).await;
    assert!(
        output.status.success(),
        "durable {args:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durable-cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", unique_namespace("f")))
}

fn sqlite() -> String {
    format!("sqlite://{}", tmp("store.db").display())
}

async fn servers() -> bool {
    let pg = durable_testkit::env::require("PostgreSQL", &postgres_url(), 5432).await;
    let my = durable_testkit::env::require("MySQL/MariaDB", &mysql_url(), 3306).await;
    let redis = durable_testkit::env::require("Redis", &redis_url(), 6379).await;
    let zk = durable_testkit::env::require("ZooKeeper", &zk_url(), 2181).await;
    pg && my && redis && zk
}

/// The entries of an export file (everything but the header), as lines by key.
fn entries(export: &str) -> BTreeMap<String, String> {
    export
        .lines()
        .skip(1)
        .map(|line| {
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
            (parsed["key"].as_str().unwrap().to_owned(), line.to_owned())
        })
        .collect()
}

async fn backend(url: &str, ns: &str) -> Arc<dyn durable::backend::Backend> {
    durable::connect(url, ns).await.unwrap()
}

/// A file of `n` keys: JSON values, text, and bytes that are neither.
fn seed_file(n: usize) -> PathBuf {
    use base64::Engine;
    let path = tmp("seed.ndjson");
    let mut text = String::new();
    for i in 0..n {
        let line = match i % 3 {
            0 => format!(r#"{{"key":"k{i:06}","value":{{"n": {i}, "f": {i}.5, "s": "\u00e9"}}}}"#),
            1 => format!(r#"{{"key":"k{i:06}","text":"plain text {i}"}}"#),
            _ => {
                let bytes = [0u8, 1, 0xff, (i % 256) as u8, 0x80];
                format!(r#"{{"key":"k{i:06}","bytes":"{}"}}"#, base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// 100,000 keys go Redis → PostgreSQL → MySQL → SQLite → ZooKeeper → Redis with `copy`;
/// the last namespace's export equals the first's, value for value, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_around_every_store_changes_no_byte() {
    if !servers().await {
        return;
    }
    let keys: usize = std::env::var("DURABLE_CLI_RING_KEYS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let ns = unique_namespace("ring");
    let ring = [redis_url(), postgres_url(), mysql_url(), sqlite(), zk_url(), redis_url()];
    let seed = seed_file(keys);
    let first_ns = format!("{ns}-0");
    ok(&["import", seed.to_str().unwrap(), &ring[0], &first_ns]).await;
    let first = ok(&["export", &ring[0], &first_ns]).await;
    assert_eq!(entries(&first).len(), keys);
    for (i, pair) in ring.windows(2).enumerate() {
        let (src_ns, dst_ns) = (format!("{ns}-{i}"), format!("{ns}-{}", i + 1));
        let said = ok(&["copy", &pair[0], &src_ns, &pair[1], &dst_ns]).await;
        assert!(said.contains(&format!("copied {keys} keys")), "{said}");
        assert!(said.contains("batches, each atomic") || said.contains("one atomic batch"), "{said}");
    }
    let last = ok(&["export", &ring[5], &format!("{ns}-5")]).await;
    assert!(entries(&first) == entries(&last), "the ring changed something");
    for (i, url) in ring.iter().enumerate().take(5) {
        ok(&["drop", url, &format!("{ns}-{i}"), "--yes"]).await;
    }
}

/// Export then import into another store gives the same entries; `--dry-run` writes
/// nothing; `upsert` keeps keys the file does not name and `replace` removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_round_trip_with_both_modes() {
    if !durable_testkit::env::require("PostgreSQL", &postgres_url(), 5432).await {
        return;
    }
    let (src, ns) = (sqlite(), unique_namespace("export"));
    ok(&["set", &src, &ns, "beta", r#"{"on": true, "pct": 12.5}"#]).await;
    ok(&["set", &src, &ns, "motd", "--raw", "Hello, world"]).await;
    ok(&["set", &src, &ns, "list", "[1, 2, 3]"]).await;
    let file = tmp("export.ndjson");
    ok(&["export", &src, &ns, file.to_str().unwrap()]).await;
    let exported = std::fs::read_to_string(&file).unwrap();
    assert!(exported.starts_with(&format!(r#"{{"durable_export":1,"namespace":"{ns}","version":3,"#)), "{exported}");

    let dst = postgres_url();
    ok(&["set", &dst, &ns, "extra", "1"]).await;
    let dry = ok(&["import", file.to_str().unwrap(), &dst, &ns, "--mode", "replace", "--dry-run"]).await;
    assert!(dry.contains("+ beta") && dry.contains("- extra") && dry.contains("nothing written"), "{dry}");
    assert_eq!(ok(&["ls", &dst, &ns]).await, "extra\n", "a dry run writes nothing");

    ok(&["import", file.to_str().unwrap(), &dst, &ns]).await;
    assert_eq!(ok(&["ls", &dst, &ns]).await, "beta\nextra\nlist\nmotd\n", "upsert keeps what the file does not name");
    let said = ok(&["import", file.to_str().unwrap(), &dst, &ns, "--mode", "replace"]).await;
    assert!(said.contains("one atomic batch"), "{said}");
    let back = ok(&["export", &dst, &ns]).await;
    assert_eq!(entries(&back), entries(&exported), "replace leaves exactly the file");
    assert_eq!(ok(&["get", &dst, &ns, "motd", "--raw"]).await, "Hello, world");
    // A dict reading the copy decodes the values as the source's writers wrote them.
    let dict = durable::DurableDict::<serde_json::Value>::builder(backend(&dst, &ns).await).build().await.unwrap();
    assert_eq!(dict.snapshot().get("beta"), Some(&serde_json::json!({"on": true, "pct": 12.5})));
    assert!(!ok(&["history", &dst, &ns]).await.is_empty());
    let said = ok(&["drop", &dst, &ns, "--yes"]).await;
    assert!(said.starts_with(&format!("removed namespace {ns}: 3 keys")), "{said}");
    assert_eq!(ok(&["ls", &dst, &ns]).await, "");
    assert_eq!(ok(&["history", &dst, &ns]).await, "", "the journal went with it");
    let removed = backend(&dst, &ns).await;
    assert_eq!(removed.last_updated().await.unwrap(), 0, "the version went with it");

    // `copy --mode replace` leaves exactly the source; the default keeps other keys.
    let other = sqlite();
    ok(&["set", &other, &ns, "stale", "0"]).await;
    ok(&["copy", &src, &ns, &other, &ns]).await;
    assert_eq!(ok(&["ls", &other, &ns]).await, "beta\nlist\nmotd\nstale\n");
    ok(&["set", &other, &ns, "list", "[4]"]).await;
    ok(&["copy", &src, &ns, &other, &ns, "--mode", "replace"]).await;
    assert_eq!(entries(&ok(&["export", &other, &ns]).await), entries(&exported));
}

/// A push against a version the store moved past writes nothing and exits 3 naming what
/// moved; against the current version it lands as exactly one new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_is_guarded_by_its_base_version() {
    let (url, ns) = (sqlite(), unique_namespace("push"));
    ok(&["set", &url, &ns, "a", "1"]).await;
    ok(&["set", &url, &ns, "b", "2"]).await;
    let staged = tmp("staged.ndjson");
    std::fs::write(
        &staged,
        "{\"key\":\"a\",\"value\":10}\n{\"key\":\"b\",\"delete\":true}\n{\"key\":\"c\",\"text\":\"new\"}\n",
    )
    .unwrap();
    let diff = ok(&["diff", staged.to_str().unwrap(), &url, &ns]).await;
    assert_eq!(diff, "~ a 1 -> 10\n- b\n+ c text:\"new\"\n");

    ok(&["set", &url, &ns, "b", "3"]).await; // Someone else writes: version 3.
    let stale = durable(&["push", staged.to_str().unwrap(), &url, &ns, "--base", "2"]).await;
    assert_eq!(stale.status.code(), Some(3), "{}", String::from_utf8_lossy(&stale.stderr));
    let said = String::from_utf8_lossy(&stale.stderr);
    assert!(said.contains("moved from version 2 to 3") && said.contains("changed since: b"), "{said}");
    assert_eq!(ok(&["get", &url, &ns, "a"]).await, "1\n", "nothing written");

    let pushed = ok(&["push", staged.to_str().unwrap(), &url, &ns, "--base", "3"]).await;
    assert!(pushed.contains("one atomic batch (version 4)"), "{pushed}");
    assert_eq!(ok(&["ls", &url, &ns, "--values"]).await, "a\t10\nc\ttext:\"new\"\n");
    let history = ok(&["history", &url, &ns]).await;
    assert_eq!(history.lines().filter(|line| line.contains("\"version\":4")).count(), 3, "{history}");
}

/// `watch` prints the events another process writes, as NDJSON, and stops cleanly on
/// SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_changes_until_sigterm() {
    if !durable_testkit::env::require("Redis", &redis_url(), 6379).await {
        return;
    }
    let (url, ns) = (redis_url(), unique_namespace("watch"));
    let mut watcher = tokio::process::Command::new(BIN)
        .args(["watch", &url, &ns])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(watcher.stderr.take().unwrap());
    let mut ready = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut ready).await.unwrap();
    assert!(ready.contains("watching"), "{ready}");
    ok(&["set", &url, &ns, "beta", "true"]).await;
    ok(&["rm", &url, &ns, "beta"]).await;
    let mut stdout = tokio::io::BufReader::new(watcher.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line))
            .await
            .expect("an event within 10 s")
            .unwrap();
        lines.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    assert_eq!(lines[0], serde_json::json!({"key": "beta", "old": null, "new": true, "version": 1}));
    assert_eq!(lines[1], serde_json::json!({"key": "beta", "old": true, "new": null, "version": 2}));
    let pid = watcher.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), watcher.wait()).await.expect("it stops").unwrap();
    assert!(status.success(), "SIGTERM ends watch cleanly: {status:?}");
}

/// The progress bar is drawn on a terminal (a pseudo-terminal made by `script`) and not
/// in a pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_bar_shows_on_a_terminal_only() {
    if !require_service("script (util-linux)", Path::new("/usr/bin/script").exists()) {
        return;
    }
    let (src, dst, ns) = (sqlite(), sqlite(), unique_namespace("bar"));
    ok(&["import", seed_file(30_000).to_str().unwrap(), &src, &ns]).await;
    let piped = durable(&["copy", &src, &ns, &dst, &ns, "--batch-keys", "500"]).await;
    assert!(piped.status.success());
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("keys "), "no bar in a pipe");
    let command = format!("{BIN} copy {src} {ns} {dst} {ns}-tty --batch-keys 500");
    let tty =
        tokio::process::Command::new("script").args(["-q", "-e", "-c", &command, "/dev/null"]).output().await.unwrap();
    assert!(tty.status.success(), "{}", String::from_utf8_lossy(&tty.stdout));
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(shown.contains("/30000 keys"), "a bar on a terminal: {shown:?}");
}

/// Bad input: an unknown scheme, a store that is not there, a malformed line (named by
/// number, nothing written), a value that is not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_clear_line_and_an_exit_code() {
    let unknown = durable(&["ls", "nosuch://x", "ns"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.starts_with("durable: invalid store URL") && said.lines().count() == 1, "{said}");

    let away = durable(&["ls", "redis://:hunter2@127.0.0.1:1", "ns"]).await;
    assert_eq!(away.status.code(), Some(4), "unreachable: {}", String::from_utf8_lossy(&away.stderr));
    assert!(!String::from_utf8_lossy(&away.stderr).contains("hunter2"), "no password shown");

    let (url, ns) = (sqlite(), unique_namespace("bad"));
    let file = tmp("bad.ndjson");
    std::fs::write(&file, "{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\",\"value\":2}\n{\"key\":\"c\",\"value\":\n")
        .unwrap();
    let bad = durable(&["import", file.to_str().unwrap(), &url, &ns]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 3"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert_eq!(ok(&["ls", &url, &ns]).await, "", "nothing written");

    let not_json = durable(&["set", &url, &ns, "k", "not json"]).await;
    assert_eq!(not_json.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("--raw"));
    let usage = durable(&["set", &url]).await;
    assert_eq!(usage.status.code(), Some(2), "bad usage");
    let completions = ok(&["completions", "bash"]).await;
    assert!(completions.contains("durable") && completions.contains("export"));
}
