//! Leases across processes, on every store a namespace outlives a process in: two
//! processes contending for one key, and a holder killed with SIGKILL. The other process is
//! this test binary again, running the ignored test `child` (see there).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use durable::{DurableDict, Error};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const CHILD: &str = "DURABLE_LEASE_CHILD";

/// `(name, url)` of every store reachable here; under `DURABLE_REQUIRE_SERVICES=1` a
/// missing server fails the test.
async fn stores(label: &str) -> Vec<(&'static str, String)> {
    use durable_testkit::env;
    let mut stores = vec![("sqlite", common::sqlite_url(label))];
    for (name, url, port) in [
        ("postgres", env::postgres_url(), 5432),
        ("mysql", env::mysql_url(), 3306),
        ("redis", env::redis_url(), 6379),
        ("zk", env::zk_url(), 2181),
    ] {
        if common::server_available(name, &url, port).await {
            stores.push((name, url));
        }
    }
    // Object storage: moto's S3 server, Azurite and a local directory.
    #[cfg(feature = "s3")]
    if common::server_available("s3", "tcp://127.0.0.1:9000", 9000).await {
        stores.push(("s3", env::s3_url()));
    }
    #[cfg(feature = "azure")]
    if common::server_available("azure", "tcp://127.0.0.1:10000", 10000).await {
        stores.push(("azure", env::azure_url()));
    }
    #[cfg(feature = "localfs")]
    stores.push(("localfs", format!("file://{}", env!("CARGO_TARGET_TMPDIR"))));
    stores
}

async fn dict(url: &str, namespace: &str) -> DurableDict<Value> {
    let backend = durable::connect(url, namespace).await.expect("connect");
    DurableDict::builder(backend).autosync(false).build().await.expect("build a dict")
}

/// What follows `marker` on a line of the child's output (the test harness may print
/// `test child ... ` on the same line first).
fn after<'l>(line: &'l str, marker: &str) -> Option<&'l str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

/// This binary again, running `child` with `spec` (`<mode> <url> <namespace> <n>`).
fn child_process(spec: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command.args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"]).env(CHILD, spec);
    command.stdout(std::process::Stdio::piped()).kill_on_drop(true);
    command
}

/// The other process of the tests below (ignored when run on its own): `contend` runs 4
/// contenders of `n` increments each under the lease and prints `seen <count> <token>` per
/// increment; `hold` takes the lease for `n` ms, prints `held <token>`, and waits to be
/// killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the other process of this file's tests, started by them"]
async fn child() {
    let spec = std::env::var(CHILD).expect("run by the other tests of tests/leases.rs");
    let [mode, url, namespace, n]: [&str; 4] = spec.splitn(4, ' ').collect::<Vec<_>>().try_into().expect("a spec");
    let n: usize = n.parse().expect("a number");
    let dict = dict(url, namespace).await;
    match mode {
        "contend" => {
            let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let (dict, seen) = (dict.clone(), seen.clone());
                tasks.push(tokio::spawn(async move {
                    durable_core::conformance::increment_under_lease(&dict, n, &seen).await
                }));
            }
            for task in tasks {
                task.await.expect("a contender");
            }
            for (count, token) in seen.lock().unwrap().iter() {
                println!("seen {count} {token}");
            }
        }
        "hold" => {
            let lease = dict.lease("job").ttl(Duration::from_millis(n as u64)).no_wait().await.expect("the lease");
            println!("held {}", lease.token());
            std::future::pending::<()>().await;
        }
        other => panic!("unknown mode {other}"),
    }
}

/// 8 contenders in 2 processes × 50 acquisitions each increment a counter under the lease:
/// the count is exact, and in the order of the increments the tokens strictly increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_contend_for_one_lease() {
    for (name, url) in stores("contend").await {
        let namespace = durable_core::conformance::unique_namespace("lease-procs");
        let spec = format!("contend {url} {namespace} 50");
        let (a, b) = (child_process(&spec).output(), child_process(&spec).output());
        let (a, b) = tokio::join!(a, b);
        let mut seen: Vec<(u64, u64)> = Vec::new();
        for output in [a.expect("child a"), b.expect("child b")] {
            assert!(
                output.status.success(),
                "{name}: a child failed: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                if let Some(rest) = after(line, "seen ") {
                    let (count, token) = rest.split_once(' ').expect("seen <count> <token>");
                    seen.push((count.parse().unwrap(), token.parse().unwrap()));
                }
            }
        }
        seen.sort();
        let counts: Vec<u64> = seen.iter().map(|(count, _)| *count).collect();
        assert_eq!(counts, (1..=400).collect::<Vec<_>>(), "{name}: every increment counted once");
        assert!(seen.windows(2).all(|pair| pair[0].1 < pair[1].1), "{name}: tokens in increment order");
        let reader = dict(&url, &namespace).await;
        reader.sync().await.unwrap();
        assert_eq!(reader.snapshot().get("counter"), Some(&Value::from(400)), "{name}: the stored count");
    }
}

/// A holder killed with SIGKILL releases nothing: another process gets the lease once its
/// ttl ran out by the store's clock — not before, and within a small margin after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_loses_its_lease_when_it_expires() {
    let ttl = Duration::from_millis(2_000);
    for (name, url) in stores("killed").await {
        let namespace = durable_core::conformance::unique_namespace("lease-kill");
        let mut holder = child_process(&format!("hold {url} {namespace} {}", ttl.as_millis())).spawn().unwrap();
        let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
        let token: u64 = loop {
            let line = lines.next_line().await.unwrap().unwrap_or_else(|| panic!("{name}: the holder ended"));
            if let Some(token) = after(&line, "held ") {
                break token.parse().unwrap();
            }
        };
        let granted = tokio::time::Instant::now();
        holder.start_kill().unwrap();
        holder.wait().await.unwrap();
        let waiter = dict(&url, &namespace).await;
        assert!(matches!(waiter.lease("job").no_wait().await, Err(Error::Leased { .. })), "{name}: still held");
        let lease = waiter.lease("job").wait(Duration::from_secs(10)).await.unwrap();
        let after = granted.elapsed();
        assert!(lease.token() > token, "{name}: a new token");
        // The grant was printed after it was made, so the store's expiry is at most `ttl`
        // after `granted`; the test's own steps take a few ms at least.
        assert!(after > ttl / 2, "{name}: acquired {after:?} after the grant, before the ttl ran out");
        assert!(after < ttl + Duration::from_millis(1_500), "{name}: acquired only {after:?} after the grant");
    }
}
