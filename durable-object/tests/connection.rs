//! The shared connection checks on the object backend's S3 and Azure clients (a server
//! that never answers, a refused connection, bad namespaces — none needs a running store),
//! and the shared outage suite on moto and Azurite, whose endpoints are killed and started
//! again under live dicts (`OwnServer::s3_endpoint`, `OwnServer::azure_endpoint`).

use std::sync::Arc;
use std::time::Duration;

use durable_core::Backend;
use durable_object::ObjectBackend;
use durable_testkit::suites::PASSWORD;

struct S3;

#[durable_core::async_trait]
impl durable_testkit::Target for S3 {
    fn name(&self) -> &'static str {
        "s3"
    }
    fn url(&self, port: u16) -> String {
        format!(
            "s3://b/p?endpoint=http://127.0.0.1:{port}&allow_http=true&region=x&access_key_id=app&secret_access_key={PASSWORD}"
        )
    }
    async fn connect(&self, url: &str, namespace: &str, timeout: Duration) -> durable_core::Result<Arc<dyn Backend>> {
        Ok(Arc::new(ObjectBackend::builder(url).timeout(timeout).connect(namespace).await?))
    }
    fn bad_namespaces(&self) -> Vec<String> {
        ["a/b", ".", ".."].map(String::from).to_vec()
    }
}

struct Azure;

#[durable_core::async_trait]
impl durable_testkit::Target for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }
    fn url(&self, port: u16) -> String {
        // The account key is the password, base64 as Azure's are.
        format!("az://c/p?endpoint=http://127.0.0.1:{port}&allow_http=true&account_name=app&access_key=czNjcjN0cHc=")
    }
    async fn connect(&self, url: &str, namespace: &str, timeout: Duration) -> durable_core::Result<Arc<dyn Backend>> {
        Ok(Arc::new(ObjectBackend::builder(url).timeout(timeout).connect(namespace).await?))
    }
    fn bad_namespaces(&self) -> Vec<String> {
        ["a/b", ".", ".."].map(String::from).to_vec()
    }
}

mod s3 {
    durable_testkit::connection_suite!(super::S3);
    durable_testkit::outage_suite!(durable_testkit::OwnServer::s3_endpoint, super::S3);
}

mod azure {
    durable_testkit::connection_suite!(super::Azure);
    durable_testkit::outage_suite!(durable_testkit::OwnServer::azure_endpoint, super::Azure);
}
