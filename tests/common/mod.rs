//! Helpers for the facade's cross-crate tests: a real HTTP client over loopback, and where
//! the test servers are.

#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<bytes::Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request; the status and the body as text.
pub async fn call(client: &HttpClient, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let response = client.request(request).await.expect("the request reached the service");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether the server at `url` accepts TCP connections, under the CI rule for missing servers.
pub async fn server_available(service: &str, url: &str, default_port: u16) -> bool {
    durable_testkit::env::require(service, url, default_port).await
}

/// A SQLite URL for a file of its own under the target directory.
pub fn sqlite_url(label: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path =
        dir.join(format!("{label}-{}-{}.db", std::process::id(), durable_core::conformance::unique_namespace("f")));
    format!("sqlite://{}", path.display())
}
