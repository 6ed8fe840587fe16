//! PostgreSQL and MariaDB over TLS, each a server of the test's own serving a certificate
//! from a throwaway CA: with the CA trusted (the builder's option, or the URL's own
//! `sslrootcert=` / `ssl-ca=`) the connection verifies the server and carries writes, reads
//! and hints; the server reports the session encrypted; a certificate from another CA is
//! refused with its cause.

#![cfg(feature = "tls")]

use std::sync::Arc;
use std::time::Duration;

use durable_core::conformance::{PATIENCE, unique_namespace};
use durable_core::{DurableDict, Event};
use durable_sql::SqlBackend;
use durable_testkit::OwnServer;
use durable_testkit::tls::TestCa;

/// A writer on one connection form and a refreshing reader on the other: a write reaches
/// the reader through the store (and on PostgreSQL through LISTEN, over TLS too).
async fn a_write_travels(writer: SqlBackend, reader: SqlBackend) {
    let writer = DurableDict::<String>::builder(Arc::new(writer)).autosync(false).build().await.unwrap();
    let reader = DurableDict::<String>::builder(Arc::new(reader))
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let mut events = reader.watch_key("greeting");
    writer.insert("greeting", "hello over TLS".into()).await.unwrap();
    let event = tokio::time::timeout(PATIENCE, events.recv()).await.expect("the change reaches the reader");
    assert!(matches!(event, Some(Event::Changed(_))), "{event:?}");
    assert_eq!(reader.snapshot().get("greeting").map(String::as_str), Some("hello over TLS"));
}

/// Connecting while trusting another CA fails, naming the certificate.
async fn another_ca_is_refused(url: &str, other: &TestCa) {
    let started = std::time::Instant::now();
    let err = SqlBackend::builder(url)
        .tls_root_cert(other.ca())
        .timeout(Duration::from_secs(3))
        .connect(&unique_namespace("tls-refused"))
        .await
        .unwrap_err();
    let shown = err.to_string().to_lowercase();
    assert!(shown.contains("certificate") || shown.contains("issuer"), "the error names the certificate: {err}");
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once, not at the timeout: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_and_refuses_another_ca() {
    let (Some(ca), Some(other)) = (TestCa::make("durable-test-ca").await, TestCa::make("another-ca").await) else {
        return;
    };
    let Some(server) = OwnServer::postgres_with_tls(&ca).await else { return };
    let url = server.url();
    let ns = unique_namespace("tls");
    let by_option = SqlBackend::builder(&url).tls_root_cert(ca.ca()).connect(&ns).await.expect("verify-full");
    let in_url = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.ca().display());
    let by_url = SqlBackend::connect(&in_url, &ns).await.expect("verify-full from the URL");
    a_write_travels(by_option, by_url).await;

    let admin = sqlx::PgPool::connect(&in_url).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&admin).await.unwrap();
    assert!(encrypted, "the server reports the session encrypted");

    another_ca_is_refused(&url, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_over_tls_verifies_the_server_and_refuses_another_ca() {
    let (Some(ca), Some(other)) = (TestCa::make("durable-test-ca").await, TestCa::make("another-ca").await) else {
        return;
    };
    let Some(server) = OwnServer::mariadb_with_tls(&ca).await else { return };
    let url = server.url();
    let ns = unique_namespace("tls");
    let by_option = SqlBackend::builder(&url).tls_root_cert(ca.ca()).connect(&ns).await.expect("VERIFY_IDENTITY");
    let in_url = format!("{url}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.ca().display());
    let by_url = SqlBackend::connect(&in_url, &ns).await.expect("VERIFY_IDENTITY from the URL");
    a_write_travels(by_option, by_url).await;

    let admin = sqlx::MySqlPool::connect(&in_url).await.unwrap();
    let (_, cipher): (String, String) =
        sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'").fetch_one(&admin).await.unwrap();
    assert!(!cipher.is_empty(), "the server reports the session encrypted");

    another_ca_is_refused(&url, &other).await;
}
