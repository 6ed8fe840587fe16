//! `rediss://` against a TLS Redis this test starts itself (Debian's redis-server is built
//! with TLS), with a certificate from a throwaway CA (`durable_testkit::tls`) trusted through
//! `tls_root_cert`.

#![cfg(feature = "tls")]

use std::process::Stdio;
use std::sync::Arc;

use durable_core::DurableDict;
use durable_core::conformance::require_service;
use durable_redis::RedisBackend;
use durable_testkit::tls::TestCa;

struct TlsRedis {
    port: u16,
    ca: TestCa,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(self.ca.ca())
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn start_tls_redis() -> Option<TlsRedis> {
    let ca = TestCa::make("durable-test-ca").await?;
    let port = durable_testkit::spare_port();
    let started = tokio::process::Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--tls-cert-file")
        .arg(ca.cert())
        .arg("--tls-key-file")
        .arg(ca.key())
        .args(["--tls-auth-clients", "no", "--daemonize", "yes"])
        .arg("--logfile")
        .arg(ca.dir().join("redis.log"))
        .status()
        .await;
    if !require_service("redis-server with TLS", matches!(started, Ok(s) if s.success())) {
        return None;
    }
    let server = TlsRedis { port, ca };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the TLS Redis did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Some(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_work_with_a_trusted_root() {
    let Some(server) = start_tls_redis().await else { return };
    let url = format!("rediss://127.0.0.1:{}/", server.port);
    let root = std::fs::read(server.ca.ca()).unwrap();
    let connect = || RedisBackend::builder(&url).tls_root_cert(root.clone()).connect("tls-flags");
    let a = DurableDict::<String>::builder(Arc::new(connect().await.unwrap())).autosync(false).build().await.unwrap();
    let b = DurableDict::<String>::builder(Arc::new(connect().await.unwrap()))
        .autosync(false)
        .background_refresh(true)
        .build()
        .await
        .unwrap();
    let mut events = b.watch_key("greeting");
    a.insert("greeting", "hello over TLS".into()).await.unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await.expect("a hint over TLS");
    assert!(matches!(event, Some(durable_core::Event::Changed(_))), "{event:?}");
    assert_eq!(b.snapshot().get("greeting").map(String::as_str), Some("hello over TLS"));

    // Without the root, the self-signed certificate is refused.
    let untrusted = RedisBackend::builder(&url).timeout(std::time::Duration::from_secs(2)).connect("tls-flags").await;
    assert!(untrusted.is_err(), "an untrusted certificate must not connect");
}
