//! [`OwnEnsemble`]: a three-server ZooKeeper ensemble of the test's own.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use durable_core::conformance::{PATIENCE, require_service};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use super::{ZK_CLASSPATH, ZK_JAR, exchange, spare_port, spawn, which};

/// A three-server ZooKeeper ensemble of the test's own on loopback (separate data
/// directories, client and quorum ports), whose servers a test may kill and restart one by
/// one. Killed on drop.
pub struct OwnEnsemble {
    dir: TempDir,
    client_ports: [u16; 3],
    children: [Option<Child>; 3],
}

impl OwnEnsemble {
    /// Starts the three servers and returns once all serve (a leader is elected). `None`
    /// (or a panic under `DURABLE_REQUIRE_SERVICES=1`) without ZooKeeper's jars.
    pub async fn start() -> Option<Self> {
        let found = Path::new(ZK_JAR).exists() && which("java").is_some();
        if !require_service("ZooKeeper's jars and java (for an ensemble of the test's own)", found) {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("durable-ensemble-").tempdir().expect("a temporary directory");
        let client_ports = [spare_port(), spare_port(), spare_port()];
        let quorum: Vec<(u16, u16)> = (0..3).map(|_| (spare_port(), spare_port())).collect();
        let servers: String = quorum
            .iter()
            .enumerate()
            .map(|(i, (peer, election))| format!("server.{}=127.0.0.1:{peer}:{election}\n", i + 1))
            .collect();
        for (i, port) in client_ports.iter().enumerate() {
            let own = dir.path().join(format!("zk{}", i + 1));
            std::fs::create_dir_all(own.join("data")).expect("data dir");
            std::fs::write(own.join("data").join("myid"), format!("{}\n", i + 1)).expect("myid");
            let config = format!(
                "tickTime=1000\ninitLimit=10\nsyncLimit=2\ndataDir={data}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nmaxSessionTimeout=60000\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,srvr\nforceSync=no\n{servers}",
                data = own.join("data").display(),
            );
            std::fs::write(own.join("zoo.cfg"), config).expect("zoo.cfg");
        }
        let mut ensemble = Self { dir, client_ports, children: [None, None, None] };
        for i in 0..3 {
            ensemble.spawn(i);
        }
        for i in 0..3 {
            ensemble.wait_serving(i).await;
        }
        Some(ensemble)
    }

    /// The connect string of all three, as a backend URL.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.client_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        format!("zk://{}/durable-test", hosts.join(","))
    }

    fn spawn(&mut self, i: usize) {
        let own = self.dir.path().join(format!("zk{}", i + 1));
        let mut command = Command::new("java");
        command.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]);
        command.arg(format!("-Dzookeeper.log.dir={}", own.display()));
        command.args(["-Dzookeeper.root.logger=WARN,CONSOLE", "-cp", ZK_CLASSPATH]);
        command.arg("org.apache.zookeeper.server.quorum.QuorumPeerMain").arg(own.join("zoo.cfg"));
        command.stdout(Stdio::null()).stderr(Stdio::null());
        self.children[i] = Some(spawn(&mut command));
    }

    async fn mode(&self, i: usize) -> Option<String> {
        zookeeper_mode(self.client_ports[i]).await
    }

    async fn wait_serving(&self, i: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE * 6;
        while self.mode(i).await.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "ensemble server {} never served", i + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Which server (0, 1 or 2) leads right now.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..3 {
            if self.mode(i).await.as_deref() == Some("leader") {
                return Some(i);
            }
        }
        None
    }

    /// Kills server `i` (SIGKILL) and returns once its port is closed.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill().await;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.client_ports[i])).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "ensemble server {} did not stop", i + 1);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts server `i` again on its data and returns once it serves.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_serving(i).await;
    }
}

/// The mode the ZooKeeper server on 127.0.0.1:`port` reports (`leader`, `follower`,
/// `standalone`), by the `srvr` four-letter word; `None` when it does not answer.
pub async fn zookeeper_mode(port: u16) -> Option<String> {
    let reply = exchange(port, b"srvr").await?;
    reply.lines().find_map(|line| line.strip_prefix("Mode: ").map(str::to_owned))
}
