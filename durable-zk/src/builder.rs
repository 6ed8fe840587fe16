//! [`ZkBackendBuilder`]: options, and connecting (session, namespace node, watch).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use durable_core::{RefusalProbe, Result};
use tokio::sync::broadcast;

use crate::NAME;
use crate::backend::ZkBackend;
use crate::error::map_error;
use crate::names::validate_namespace;
use crate::session::{Config, Opened, Shared, follow};
use crate::tracker::Tracker;
use crate::url::{ZkUrl, parse_url};
use crate::watch::State;

/// Options for [`ZkBackend::builder`].
#[derive(Debug, Clone)]
pub struct ZkBackendBuilder {
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) max_value_size: usize,
}

impl ZkBackendBuilder {
    /// Bound on every operation, connecting included (default 5 s). A full or delta read of
    /// many keys is many multi-reads, and the bound applies to each of them, so a big
    /// namespace's reload is cut off when the store stops answering, not for its size.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The ZooKeeper session timeout (default 10 s; the server clamps it to its limits).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Largest encoded value accepted (default 1,000,000 bytes).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Connects, creates the namespace node if missing, starts the watch, and returns a
    /// backend on `namespace`.
    pub async fn connect(self, namespace: &str) -> Result<ZkBackend> {
        let ZkUrl { cluster, base, auth } = parse_url(&self.url)?;
        validate_namespace(namespace)?;
        let ns_path = if base.is_empty() { format!("/{namespace}") } else { format!("{base}/{namespace}") };
        let config = Config {
            probe: RefusalProbe::new(NAME, cluster.split(',').map(str::to_owned)),
            cluster,
            auth,
            ns_path,
            timeout: self.timeout,
            session_timeout: self.session_timeout,
            max_value_size: self.max_value_size,
        };
        let opening = async { config.open().await.map_err(map_error) };
        let Opened { client, watcher, quorum } = config.probe.bound("connect", self.timeout, opening).await?;
        let config = Arc::new(config);
        let state = Arc::new(State {
            ns_path: config.ns_path.clone(),
            client: RwLock::new(client),
            watcher: Mutex::new(Some(watcher)),
            repoll: tokio::sync::Notify::new(),
            tracker: Mutex::new(Tracker::default()),
            hints: broadcast::channel(1024).0,
            disconnected: std::sync::atomic::AtomicBool::new(false),
            quorum: std::sync::atomic::AtomicBool::new(quorum),
        });
        let task = tokio::spawn(follow(Arc::clone(&config), Arc::clone(&state))).abort_handle();
        Ok(ZkBackend { shared: Arc::new(Shared { config, state, task }) })
    }
}
