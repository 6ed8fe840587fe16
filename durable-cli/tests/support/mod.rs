//! `durable serve` as a test runs it: the real binary on an ephemeral port.

#![allow(dead_code)] // Each test binary uses a part.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use durable_core::conformance::unique_namespace;
use tokio::io::{AsyncBufReadExt, BufReader};

pub const BIN: &str = env!("CARGO_BIN_EXE_durable");
pub const ADMIN: &str = "admin-token-0123456789abcdef";
pub const ADMIN_2: &str = "rotated-admin-token-fedcba9876543210";
pub const READ: &str = "read-token-0123456789abcdef";

pub fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durable-serve-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", unique_namespace("s")))
}

pub fn sqlite() -> String {
    format!("sqlite://{}", tmp("flags.db").display())
}

/// A running `durable serve`; killed when dropped.
pub struct Server {
    pub child: tokio::process::Child,
    pub base: String,
    pub log: PathBuf,
}

/// What a server is started with.
pub struct Start<'a> {
    pub url: &'a str,
    pub namespace: &'a str,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Server {
    /// Starts `durable serve` and waits for its address (not for readiness).
    pub async fn spawn(start: Start<'_>) -> Server {
        let log = tmp("serve.log");
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(["serve", "--url", start.url, "--namespace", start.namespace, "--addr", "127.0.0.1:0"])
            .args(start.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for (name, _) in std::env::vars() {
            if name.starts_with("DURABLE_") && name != "DURABLE_REQUIRE_SERVICES" {
                command.env_remove(name);
            }
        }
        command.envs(start.env.iter().copied());
        let mut child = command.spawn().expect("run durable serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("durable serve prints its address")
            .unwrap()
            .unwrap_or_else(|| panic!("durable serve exited: {}", std::fs::read_to_string(&log).unwrap()));
        // "durable serve: listening on http://127.0.0.1:PORT (page: …)"
        let base = first.split_whitespace().find(|word| word.starts_with("http://")).expect("an address").to_owned();
        // Keep reading stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, base, log }
    }

    /// Starts it and waits until `/ready` says so.
    pub async fn start(start: Start<'_>) -> Server {
        let server = Server::spawn(start).await;
        server.wait_ready().await;
        server
    }

    pub async fn wait_ready(&self) {
        let client = client();
        for _ in 0..300 {
            if let Ok(response) = client.get(self.url("/ready")).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("durable serve never became ready: {}", self.log_text());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as an orchestrator stops it.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the exit, returning its code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.expect("exits").unwrap().code()
    }
}

/// An HTTP client (the workspace builds reqwest with rustls and no default crypto
/// provider: ring is installed once, as durable-object does).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
