//! [`ZkBackendBuilder`]: options, and connecting (session, namespace node, watch).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use durable_core::{Error, RefusalProbe, Result};
use tokio::sync::broadcast;
use zookeeper_client as zk;

use crate::NAME;
use crate::backend::ZkBackend;
use crate::error::{map_error, unexpected};
use crate::names::{PERSISTENT, protected, validate_namespace};
use crate::session::{Config, Opened, Shared, follow};
use crate::tracker::Tracker;
use crate::url::{ZkUrl, parse_url};
use crate::watch::State;

/// Options for [`ZkBackend::builder`].
#[derive(Clone)]
pub struct ZkBackendBuilder {
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) max_value_size: usize,
    pub(crate) protect_writes: bool,
    pub(crate) read_only: bool,
    pub(crate) journal: durable_core::JournalConfig,
}

/// Shows the URL without its password (invariant 10).
impl std::fmt::Debug for ZkBackendBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkBackendBuilder")
            .field("url", &durable_core::redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("session_timeout", &self.session_timeout)
            .field("max_value_size", &self.max_value_size)
            .field("protect_writes", &self.protect_writes)
            .field("read_only", &self.read_only)
            .finish()
    }
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

    /// Create every node (the namespace node, and each key's) writable only by the identity
    /// in the URL's credentials (`zk://user:password@...`) and readable by anyone
    /// (default `false`: anyone may do anything, as durabledict's nodes). Other processes
    /// then read the dict through any session and write it only with those credentials; a
    /// write by anyone else is refused by ZooKeeper (`NoAuth`). Nodes that exist already
    /// keep their ACL.
    pub fn protect_writes(mut self, on: bool) -> Self {
        self.protect_writes = on;
        self
    }

    /// How the change journal is kept (default: on, see
    /// [`JournalConfig`](durable_core::JournalConfig)): one node per version under
    /// `<namespace node>;journal`, created in the same multi as the change.
    pub fn journal(mut self, journal: durable_core::JournalConfig) -> Self {
        self.journal = journal;
        self
    }

    /// Create nothing when connecting (default `false`): the namespace node must already be
    /// there, or connecting fails saying so — for a session that may only read (see
    /// [`ZkBackendBuilder::protect_writes`]). Put the dict behind `read_only(true)` on its
    /// builder as well to refuse writes before any I/O.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Connects, creates the namespace node if missing (unless [read-only](Self::read_only)),
    /// starts the watch, and returns a backend on `namespace`.
    pub async fn connect(self, namespace: &str) -> Result<ZkBackend> {
        let ZkUrl { cluster, base, auth } = parse_url(&self.url)?;
        if self.protect_writes && auth.is_none() {
            return Err(Error::InvalidUrl {
                url: durable_core::redact_url(&self.url),
                reason: "protect_writes needs the writer's credentials in the URL: zk://user:password@hosts/path"
                    .into(),
            });
        }
        let create = if self.protect_writes { protected() } else { PERSISTENT };
        validate_namespace(namespace)?;
        let ns_path = if base.is_empty() { format!("/{namespace}") } else { format!("{base}/{namespace}") };
        let journal_path = format!("{ns_path};journal");
        let leases_path = format!("{ns_path};leases");
        let config = Config {
            journal: self.journal.clone(),
            journal_path,
            leases_path,
            probe: RefusalProbe::new(NAME, cluster.split(',').map(str::to_owned)),
            cluster,
            auth,
            ns_path,
            timeout: self.timeout,
            session_timeout: self.session_timeout,
            max_value_size: self.max_value_size,
            create,
            read_only: self.read_only,
        };
        let read_only = config.read_only;
        let opening = async {
            config.open().await.map_err(|err| match err {
                zk::Error::NoNode if read_only => unexpected(
                    "read-only: the namespace node is not there; open the dict once with a session that may write",
                ),
                other => map_error(other),
            })
        };
        let Opened { client, watcher, lease_watcher, quorum } =
            config.probe.bound("connect", self.timeout, opening).await?;
        let config = Arc::new(config);
        let state = Arc::new(State {
            ns_path: config.ns_path.clone(),
            client: RwLock::new(client),
            watcher: Mutex::new(Some(watcher)),
            lease_watcher: Mutex::new(Some(lease_watcher)),
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
