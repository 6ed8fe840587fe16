//! [`RedisBackendBuilder`]: options, and connecting to one server or a cluster.

use std::sync::Arc;
use std::time::Duration;

use durable_core::{Error, JournalConfig, Redactor, RefusalProbe, Result};
use redis::aio::ConnectionManager;

use crate::NAME;
use crate::backend::RedisBackend;
use crate::connection::{Commands, Mode, Shared, map_error};
use crate::layout::{Keys, cluster_nodes, validate_cluster_namespace, validate_namespace};
use crate::scripts::Scripts;

/// Options for [`RedisBackend::builder`].
#[derive(Clone)]
pub struct RedisBackendBuilder {
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    pub(crate) change_log_len: usize,
    pub(crate) journal: JournalConfig,
    pub(crate) max_value_size: usize,
    #[cfg(feature = "tls")]
    pub(crate) tls_root_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("url", &durable_core::redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("change_log_len", &self.change_log_len)
            .field("journal", &self.journal)
            .finish()
    }
}

impl RedisBackendBuilder {
    /// Bound on every operation, connecting included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many keys the change log remembers (default 10,000, at least 1).
    pub fn change_log_len(mut self, keys: usize) -> Self {
        self.change_log_len = keys.max(1);
        self
    }

    /// How the change journal is kept (default: on, see [`JournalConfig`]): the stream
    /// `<namespace>:journal` written by the same script as each change.
    pub fn journal(mut self, journal: JournalConfig) -> Self {
        self.journal = journal;
        self
    }

    /// Largest encoded value accepted (default 4 MiB); bigger ones are refused before I/O.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// For `rediss://` URLs (feature `tls`): trust this PEM root certificate instead of the
    /// system's, e.g. a private CA's.
    #[cfg(feature = "tls")]
    pub fn tls_root_cert(mut self, pem: Vec<u8>) -> Self {
        self.tls_root_cert = Some(pem);
        self
    }

    fn client(&self) -> redis::RedisResult<redis::Client> {
        #[cfg(feature = "tls")]
        if let Some(root) = &self.tls_root_cert {
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root.clone()) };
            return redis::Client::build_with_tls(self.url.as_str(), certificates);
        }
        redis::Client::open(self.url.as_str())
    }

    /// Connects and returns a backend on `namespace`.
    pub async fn connect(self, namespace: &str) -> Result<RedisBackend> {
        validate_namespace(namespace)?;
        let redactor = Redactor::new(&self.url);
        let invalid = |reason: String| Error::InvalidUrl { url: redactor.url().to_owned(), reason };
        let (mode, connecting) = match cluster_nodes(&self.url) {
            Some(nodes) => {
                let nodes = nodes?;
                validate_cluster_namespace(namespace)?;
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    .build()
                    .map_err(|err| invalid(redactor.scrub(&err.to_string())))?;
                let connecting: futures::future::BoxFuture<'_, redis::RedisResult<Commands>> =
                    Box::pin(async move { client.get_async_connection().await.map(Commands::Cluster) });
                (Mode::Cluster { nodes, timeout: self.timeout }, connecting)
            }
            None => {
                let client = self.client().map_err(|err| invalid(redactor.scrub(&err.to_string())))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = client.clone();
                let connecting: futures::future::BoxFuture<'_, redis::RedisResult<Commands>> =
                    Box::pin(
                        async move { ConnectionManager::new_with_config(manager, config).await.map(Commands::Single) },
                    );
                (Mode::Single { client }, connecting)
            }
        };
        // Unix sockets (`redis+unix://`) name no host, and are not probed.
        let probe = RefusalProbe::from_url(NAME, &self.url, 6379);
        let connecting = async { connecting.await.map_err(|err| map_error(&redactor, err)) };
        let commands = probe.bound("connect", self.timeout, connecting).await?;
        let cluster = matches!(mode, Mode::Cluster { .. });
        let keys = Keys::new(namespace);
        Ok(RedisBackend {
            shared: Arc::new(Shared {
                url: self.url.clone(),
                mode,
                commands,
                timeout: self.timeout,
                probe,
                change_log_len: self.change_log_len,
                journal: self.journal.clone(),
                max_value_size: self.max_value_size,
                redactor,
                scripts: Scripts::new(cluster),
            }),
            keys,
        })
    }
}
