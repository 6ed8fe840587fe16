//! [`OwnCluster`]: a Redis Cluster of the test's own.

use std::time::Duration;

use durable_core::conformance::{PATIENCE, require_service};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use super::{exchange, run, spawn, which};

/// A Redis Cluster of the test's own: 3 masters and 3 replicas on loopback, append-only
/// files synced on every write; a test may kill the master of a slot and watch its replica
/// take over. Killed on drop.
pub struct OwnCluster {
    dir: TempDir,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl OwnCluster {
    /// Starts six servers and joins them with `redis-cli --cluster create`; returns once the
    /// cluster says `cluster_state:ok`.
    pub async fn start() -> Option<Self> {
        let found = which("redis-server").is_some() && which("redis-cli").is_some();
        if !require_service("redis-server and redis-cli (for a cluster of the test's own)", found) {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("durable-cluster-").tempdir().expect("a temporary directory");
        // Each node also listens on its port + 10000 (the cluster bus): both must be free.
        let mut ports = Vec::new();
        while ports.len() < 6 {
            let port = 20_000 + fastrand::u16(..20_000);
            let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            if !ports.contains(&port) && free(port) && free(port + 10_000) {
                ports.push(port);
            }
        }
        let mut cluster = Self { dir, ports, children: (0..6).map(|_| None).collect() };
        for i in 0..6 {
            cluster.spawn(i).await;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(cluster.ports.iter().map(|port| format!("127.0.0.1:{port}")));
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        run(&mut create).await;
        let deadline = tokio::time::Instant::now() + PATIENCE * 3;
        while !cluster.healthy().await {
            assert!(tokio::time::Instant::now() < deadline, "the cluster never became healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(cluster)
    }

    async fn spawn(&mut self, i: usize) {
        let port = self.ports[i];
        let own = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&own).expect("node dir");
        let mut command = Command::new("redis-server");
        command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        command.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0"]);
        command.args(["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"]);
        command.arg("--dir").arg(&own).arg("--logfile").arg(own.join("redis.log"));
        self.children[i] = Some(spawn(&mut command));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !exchange(port, b"PING\r\n").await.is_some_and(|r| r.starts_with("+PONG")) {
            assert!(tokio::time::Instant::now() < deadline, "cluster node {port} did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The URL of the cluster, naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    async fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().await.ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Whether every live node says `cluster_state:ok` and every replica has finished
    /// its first sync (a replica that never synced cannot take over).
    pub async fn healthy(&self) -> bool {
        for (i, port) in self.ports.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            if !self.cli(*port, &["cluster", "info"]).await.is_some_and(|info| info.contains("cluster_state:ok")) {
                return false;
            }
            let Some(replication) = self.cli(*port, &["info", "replication"]).await else { return false };
            if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
                return false;
            }
        }
        true
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub async fn master_of(&self, key: &str) -> Option<u16> {
        let port = self.ports.iter().enumerate().find(|(i, _)| self.children[*i].is_some()).map(|(_, p)| *p)?;
        let slot: u16 = self.cli(port, &["cluster", "keyslot", key]).await?.trim().parse().ok()?;
        let nodes = self.cli(port, &["cluster", "nodes"]).await?;
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields.get(2)?.contains("master") || fields.get(2)?.contains("fail") {
                return None;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => a.parse::<u16>().is_ok_and(|a| a <= slot) && b.parse::<u16>().is_ok_and(|b| slot <= b),
                None => range.parse::<u16>().ok() == Some(slot),
            });
            let address = fields.get(1)?.split('@').next()?;
            serves.then(|| address.rsplit(':').next()?.parse().ok()).flatten()
        })
    }

    /// Moves `key`'s slot, with its keys, from its master to another live master the way
    /// `redis-cli --cluster reshard` does: `SETSLOT IMPORTING` / `MIGRATING`, `MIGRATE` of
    /// every key in the slot, then `SETSLOT NODE` on every master. Returns (from, to).
    pub async fn move_slot_of(&self, key: &str) -> Option<(u16, u16)> {
        let from = self.master_of(key).await?;
        let slot = self.cli(from, &["cluster", "keyslot", key]).await?.trim().to_owned();
        let mut masters = Vec::new();
        for (i, port) in self.ports.iter().enumerate() {
            let live = self.children[i].is_some();
            if live && self.cli(*port, &["role"]).await.is_some_and(|role| role.starts_with("master")) {
                masters.push(*port);
            }
        }
        let to = *masters.iter().find(|port| **port != from)?;
        let from_id = self.cli(from, &["cluster", "myid"]).await?.trim().to_owned();
        let to_id = self.cli(to, &["cluster", "myid"]).await?.trim().to_owned();
        self.cli_ok(to, &["cluster", "setslot", &slot, "importing", &from_id]).await?;
        self.cli_ok(from, &["cluster", "setslot", &slot, "migrating", &to_id]).await?;
        loop {
            let keys = self.cli(from, &["cluster", "getkeysinslot", &slot, "100"]).await?;
            let keys: Vec<&str> = keys.lines().filter(|line| !line.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut migrate = vec!["migrate", "127.0.0.1", port.as_str(), "", "0", "5000", "keys"];
            migrate.extend(keys);
            self.cli_ok(from, &migrate).await?;
        }
        for port in [to, from].into_iter().chain(masters.iter().copied().filter(|p| *p != to && *p != from)) {
            self.cli_ok(port, &["cluster", "setslot", &slot, "node", &to_id]).await?;
        }
        Some((from, to))
    }

    /// Runs a command whose reply must not be an error.
    async fn cli_ok(&self, port: u16, args: &[&str]) -> Option<()> {
        let reply = self.cli(port, args).await?;
        if reply.starts_with("ERR") || reply.contains("(error)") {
            panic!("redis-cli -p {port} {args:?}: {reply}");
        }
        Some(())
    }

    /// `CLUSTER NODES` as a live node sees it (for diagnostics).
    pub async fn nodes(&self) -> String {
        let port = self.ports.iter().enumerate().find(|(i, _)| self.children[*i].is_some()).map(|(_, p)| *p);
        match port {
            Some(port) => self.cli(port, &["cluster", "nodes"]).await.unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Waits until every replica of the master on `port` has acknowledged all it was sent
    /// (the replication offsets `INFO replication` lists are the master's own), so that
    /// killing the master loses nothing to Redis's asynchronous replication.
    pub async fn wait_for_replicas(&self, port: u16) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let info = self.cli(port, &["info", "replication"]).await.unwrap_or_default();
            let field = |line: &str, name: &str| {
                line.split([',', ':']).find_map(|part| part.strip_prefix(name)?.trim().parse::<u64>().ok())
            };
            let master: Option<u64> =
                info.lines().find_map(|line| line.strip_prefix("master_repl_offset:")?.trim().parse().ok());
            let replicas: Vec<u64> = info
                .lines()
                .filter(|line| line.starts_with("slave"))
                .filter_map(|line| field(line, "offset="))
                .collect();
            if let Some(master) = master {
                if !replicas.is_empty() && replicas.iter().all(|offset| *offset >= master) {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "the replicas of {port} never caught up:\n{info}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the node on `port` (SIGKILL).
    pub async fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node of this cluster");
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill().await;
        }
    }
}
