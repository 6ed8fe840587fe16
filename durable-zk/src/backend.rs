//! [`ZkBackend`]: one namespace in ZooKeeper, and its `Backend` implementation.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::{
    Backend, Batch, Changes, Durables, Error, Hint, HintStream, JournalPage, JournalRecord, KeyChange, Result, Source,
    Version,
};
use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use zookeeper_client as zk;

use crate::builder::ZkBackendBuilder;
use crate::error::{map_error, to_version, unexpected};
use crate::journal::Journaled;
use crate::names::validate_key;
use crate::session::Shared;
use crate::writes::Op;
use crate::{DEFAULT_MAX_VALUE_SIZE, DEFAULT_SESSION_TIMEOUT, DEFAULT_TIMEOUT, MAX_ATTEMPTS, NAME};

/// One namespace in ZooKeeper; see the crate docs. Cheap to clone: clones share the
/// session and the watch. Give each dict a backend of its own (the watch's bookkeeping
/// follows one snapshot history).
#[derive(Clone)]
pub struct ZkBackend {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ZkBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkBackend")
            .field("cluster", &self.shared.config.cluster)
            .field("path", &self.shared.config.ns_path)
            .finish()
    }
}

impl ZkBackend {
    /// Connects with default options; see [`ZkBackend::builder`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::builder(url).connect(namespace).await
    }

    /// Options: operation and session timeouts, value size limit.
    pub fn builder(url: &str) -> ZkBackendBuilder {
        ZkBackendBuilder {
            url: url.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            protect_writes: false,
            read_only: false,
            journal: durable_core::JournalConfig::default(),
        }
    }

    /// The namespace node's path (durabledict's `keyspace`).
    pub fn path(&self) -> &str {
        &self.shared.config.ns_path
    }

    /// The current session's id and password, e.g. to end it from another client in tests.
    pub fn session(&self) -> zk::SessionInfo {
        self.shared.state.client().session().clone()
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        format!("{}/{key}", self.shared.config.ns_path)
    }

    /// Runs a whole operation within the operation timeout.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.bounded(operation, call).await?
    }

    /// Waits for one answer from the store (a request, or one batch of pipelined requests)
    /// within the operation timeout, failing at once when every server refuses connections
    /// (the client would wait for a session to come back).
    pub(crate) async fn bounded<F: std::future::Future>(&self, operation: &'static str, call: F) -> Result<F::Output> {
        let config = &self.shared.config;
        config.probe.bound(operation, config.timeout, async { Ok(call.await) }).await
    }

    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        self.validate_key(key)
    }
}

#[async_trait]
impl Backend for ZkBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate_key(&self, key: &str) -> Result<()> {
        validate_key(key)
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.shared.config.max_value_size)
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.check_key(key)?;
        let batch = Batch::new().put(key, value);
        let written = self.run("persist", self.apply_batch("persist", &batch)).await?;
        written.ok_or_else(|| unexpected("a put changed nothing"))
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.check_key(key)?;
        self.run("depersist", self.apply_batch("depersist", &Batch::new().delete(key))).await
    }

    async fn durables(&self) -> Result<Durables> {
        const OPERATION: &str = "durables";
        let state = &self.shared.state;
        for _ in 0..MAX_ATTEMPTS {
            let client = state.client();
            // Every change whose event is processed after this point is read again below;
            // every earlier one is in what is read now.
            let (epoch, pinned) = state.pin();
            let from = pinned.from;
            // After a `sync` with the leader on an ensemble, pipelined (see `last_updated`).
            let quorum = state.quorum.load(std::sync::atomic::Ordering::Acquire);
            let listing = async {
                if quorum {
                    let (synced, listed) = futures::join!(client.sync("/"), client.get_children(self.path()));
                    synced.and(listed)
                } else {
                    client.get_children(self.path()).await
                }
            };
            let children = match self.bounded(OPERATION, listing).await? {
                Ok((children, _)) => children,
                Err(zk::Error::NoNode) => return Ok(Durables::default()),
                Err(err) => return Err(map_error(err)),
            };
            let read = self.read_many(&client, OPERATION, &children).await?;
            let mut values: HashMap<String, Option<Bytes>> = children.into_iter().zip(read).collect();
            let Some((version, covered)) = self.settle(&client, OPERATION, epoch, from, &mut values).await? else {
                continue; // Events may have been lost meanwhile: read again.
            };
            state.tracker().anchor(epoch, version, covered);
            let entries = values.into_iter().filter_map(|(key, value)| Some((key, value?))).collect();
            return Ok(Durables { entries, version });
        }
        Err(unexpected("the session kept losing its connection during a full read"))
    }

    async fn last_updated(&self) -> Result<Version> {
        let work = async {
            // On an ensemble the server this session talks to may be a follower that has not
            // applied a write another session already saw acknowledged: `sync` with the
            // leader first. Both requests are sent now and answered in order — one round
            // trip. A standalone server needs no sync.
            let client = self.shared.state.client();
            let stat = if self.shared.state.quorum.load(std::sync::atomic::Ordering::Acquire) {
                let (synced, stat) = futures::join!(client.sync("/"), client.check_stat(self.path()));
                synced.and(stat)
            } else {
                client.check_stat(self.path()).await
            };
            match stat {
                Ok(stat) => Ok(stat.map_or(0, |stat| to_version(stat.version))),
                Err(err) => Err(map_error(err)),
            }
        };
        self.run("last_updated", work).await
    }

    /// One ZooKeeper multi, so a batch must fit one request: its keys and values together
    /// at most the value size limit (`ValueTooLarge` otherwise, before any I/O).
    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        for (key, _) in batch.ops() {
            self.check_key(key)?;
        }
        let total = batch.payload_size();
        if total > self.shared.config.max_value_size {
            return Err(Error::ValueTooLarge {
                key: batch.ops().next().map_or("", |(key, _)| key).into(),
                size: total,
                max: self.shared.config.max_value_size,
                backend: NAME,
            });
        }
        if batch.leased_keys().is_empty() && batch.guard_version().is_none() {
            return Ok(None);
        }
        self.run("apply", self.apply_batch("apply", &batch)).await
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.check_key(key)?;
        let work = async {
            let client = self.shared.state.client();
            let path = self.key_path(key);
            for _ in 0..MAX_ATTEMPTS {
                let read = self.read_guarded(&client, key).await?;
                let leases = self.lease_fence(&client, read.leases, &[(key, None)]).await?;
                let Some(data) = read.value else { return Ok(None) };
                let journaled =
                    Journaled { changes: vec![(key, Some(Bytes::copy_from_slice(&data)), None)], reason: None };
                match self.commit(&client, &[Op::Delete(&path)], read.guard, leases, Some(&journaled)).await {
                    Ok(version) => return Ok(Some((Bytes::from(data), version))),
                    Err((Some(_), zk::Error::NoNode | zk::Error::BadVersion)) => continue,
                    Err((_, err)) => return Err(map_error(err)),
                }
            }
            Err(unexpected("too much contention on the key"))
        };
        self.run("pop", work).await
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.check_key(key)?;
        let work = async {
            let client = self.shared.state.client();
            let path = self.key_path(key);
            for _ in 0..MAX_ATTEMPTS {
                // The namespace version is read with the key (with the journal on, it names the
                // journal node; without, the create alone decides), and the leases node.
                let read = self.read_guarded(&client, key).await?;
                let leases = self.lease_fence(&client, read.leases, &[(key, None)]).await?;
                if let Some(found) = read.value {
                    return Ok((Bytes::from(found), None));
                }
                let guard = if self.shared.config.journal.is_on() { read.guard } else { None };
                let journaled = Journaled { changes: vec![(key, None, Some(value.clone()))], reason: None };
                match self.commit(&client, &[Op::Create(&path, &value)], guard, leases, Some(&journaled)).await {
                    Ok(version) => return Ok((value.clone(), Some(version))),
                    Err((Some(_), zk::Error::NodeExists | zk::Error::BadVersion)) => continue,
                    Err((_, err)) => return Err(map_error(err)),
                }
            }
            Err(unexpected("too much contention on the key"))
        };
        self.run("setdefault", work).await
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        const OPERATION: &str = "changes_since";
        let state = &self.shared.state;
        let client = state.client();
        let Some((epoch, pinned)) = state.pin_anchor(since) else { return Ok(Changes::TooOld) };
        let mut values = HashMap::new();
        let Some((version, covered)) = self.settle(&client, OPERATION, epoch, pinned.from, &mut values).await? else {
            return Ok(Changes::TooOld);
        };
        if version < since {
            return Ok(Changes::TooOld); // The namespace was deleted and made again.
        }
        state.tracker().anchor(epoch, version, covered);
        let changes = values.into_iter().map(|(key, value)| KeyChange { key, value, version }).collect();
        Ok(Changes::Delta { changes, version })
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        let client = self.shared.state.client();
        if !matches!(client.state(), zk::SessionState::SyncConnected) {
            return Err(Error::StoreUnavailable {
                backend: NAME,
                source: Source::msg(format!("session is {:?}", client.state())),
            });
        }
        let hints = BroadcastStream::new(self.shared.state.hints.subscribe()).map(|hint| match hint {
            Ok(hint) => hint,
            // Missed hints: look for yourself.
            Err(_) => Hint::Resumed,
        });
        Ok(Some(Box::pin(hints)))
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.check_key(key)?;
        let work = async {
            let client = self.shared.state.client();
            let path = self.key_path(key);
            for _ in 0..MAX_ATTEMPTS {
                let read = self.read_guarded(&client, key).await?;
                let leases = self.lease_fence(&client, read.leases, &[(key, None)]).await?;
                let (current, guard) = (read.value, read.guard);
                if current.as_deref() != old.as_deref() {
                    return Err(Error::Conflict { key: key.into() });
                }
                let op = match (&current, &new) {
                    (Some(_), Some(value)) => Op::Set(&path, value),
                    (Some(_), None) => Op::Delete(&path),
                    (None, Some(value)) => Op::Create(&path, value),
                    // Absent as expected, nothing to delete: no write and no version.
                    (None, None) => return Ok(None),
                };
                let old = current.as_deref().map(Bytes::copy_from_slice);
                let journaled = Journaled { changes: vec![(key, old, new.clone())], reason: None };
                match self.commit(&client, &[op], guard, leases, Some(&journaled)).await {
                    Ok(version) => return Ok(Some(version)),
                    Err((Some(_), zk::Error::NoNode | zk::Error::NodeExists | zk::Error::BadVersion)) => continue,
                    Err((_, err)) => return Err(map_error(err)),
                }
            }
            Err(unexpected("too much contention on the key"))
        };
        self.run("compare_and_swap", work).await
    }

    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        self.run("journal", self.journal_page(after, limit)).await
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.run("history", self.key_history(key, limit)).await
    }

    async fn lease(&self, key: &str, op: durable_core::LeaseOp) -> Result<durable_core::LeaseAnswer> {
        self.check_key(key)?;
        self.run("lease", self.lease_op(key, op)).await
    }

    /// Handles still open on the namespace find it gone (version 0, no keys) and their
    /// writes fail until they are opened again, which makes the namespace anew.
    async fn remove_namespace(&self) -> Result<()> {
        self.remove().await
    }
}
