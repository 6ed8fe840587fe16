//! The three stores the object backend's tests run on: moto's S3 server, Azurite's blob
//! service (both started by `scripts/services.sh`) and a local directory.

#![allow(dead_code)]

use std::sync::{Arc, LazyLock};

use durable_core::conformance::BackendFactory;
use durable_core::{Backend, JournalConfig};
use durable_object::{ObjectBackend, ObjectBackendBuilder};

/// Which store a factory opens.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    S3,
    Azure,
    LocalFs,
}

static LOCAL_DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::Builder::new().prefix("durable-object-").tempdir().expect("a temporary directory"));

impl Store {
    pub fn url(self) -> String {
        match self {
            Store::S3 => durable_testkit::env::s3_url(),
            Store::Azure => durable_testkit::env::azure_url(),
            Store::LocalFs => format!("file://{}", LOCAL_DIR.path().display()),
        }
    }

    pub fn builder(self) -> ObjectBackendBuilder {
        ObjectBackend::builder(&self.url())
    }

    pub async fn connect(self, namespace: &str) -> ObjectBackend {
        self.builder().connect(namespace).await.unwrap_or_else(|err| panic!("connect to {self:?}: {err}"))
    }

    pub async fn available(self) -> bool {
        let (service, port) = match self {
            Store::S3 => ("moto's S3 server (scripts/services.sh s3)", 9000),
            Store::Azure => ("Azurite's blob service (scripts/services.sh azure)", 10000),
            Store::LocalFs => return true,
        };
        durable_testkit::env::require(service, &format!("tcp://127.0.0.1:{port}"), port).await
    }
}

#[durable_core::async_trait]
impl BackendFactory for Store {
    /// An open handle notices a removal at its next full check (`verify_every`, 5 min);
    /// `tests/object.rs` checks that with a short one.
    fn removal_reaches_open_handles(&self) -> bool {
        false
    }

    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Arc::new(self.connect(namespace).await)
    }

    async fn with_journal(&self, namespace: &str, journal: JournalConfig) -> Arc<dyn Backend> {
        Arc::new(self.builder().journal(journal).connect(namespace).await.expect("connect"))
    }

    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.builder().change_log(mutations).connect(namespace).await.expect("connect")))
    }

    async fn available(&self) -> bool {
        Store::available(*self).await
    }
}

impl Store {
    /// The store itself, for writing objects behind the backend's back (damaged ones), and
    /// the prefix the backend's URL puts namespaces under.
    pub fn raw(self) -> Option<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
        match self {
            Store::S3 => {
                // The HTTP client wants rustls's process-wide provider (the backend installs
                // it too, when it connects first).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name("durable-test")
                    .with_endpoint("http://127.0.0.1:9000")
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id("testing")
                    .with_secret_access_key("testing")
                    .build()
                    .expect("an S3 client");
                Some((Arc::new(store), object_store::path::Path::from("t")))
            }
            Store::LocalFs => {
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(LOCAL_DIR.path()).expect("the directory");
                Some((Arc::new(store), object_store::path::Path::default()))
            }
            Store::Azure => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let store = object_store::azure::MicrosoftAzureBuilder::new()
                    .with_container_name("durable-test")
                    .with_use_emulator(true)
                    .build()
                    .expect("an Azure client");
                Some((Arc::new(store), object_store::path::Path::from("t")))
            }
        }
    }
}
