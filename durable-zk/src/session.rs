//! The session: what every handle of one backend shares, and the follower task that keeps
//! a session alive — replacing an expired or closed one — and feeds the watch.

use std::sync::Arc;
use std::time::Duration;

use durable_core::{Backoff, Error, Hint, RefusalProbe};
use zookeeper_client as zk;

use crate::error::map_error;
use crate::watch::State;

pub(crate) struct Config {
    pub(crate) cluster: String,
    /// The ensemble's servers: an operation fails at once when every one refuses.
    pub(crate) probe: RefusalProbe,
    /// Digest credentials (`user:password`); never shown.
    pub(crate) auth: Option<String>,
    pub(crate) ns_path: String,
    pub(crate) timeout: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) max_value_size: usize,
    /// How the nodes this backend creates are made (their ACL).
    pub(crate) create: zk::CreateOptions<'static>,
    /// Create nothing when connecting: the namespace node must be there.
    pub(crate) read_only: bool,
    /// How the journal is kept, and its node `<namespace node>;journal`.
    pub(crate) journal: durable_core::JournalConfig,
    pub(crate) journal_path: String,
    /// The leases node `<namespace node>;leases` (see `leases.rs`).
    pub(crate) leases_path: String,
}

/// A session [`Config::open`] made.
pub(crate) struct Opened {
    pub(crate) client: zk::Client,
    pub(crate) watcher: zk::PersistentWatcher,
    /// The watch on the leases node: every lease operation changes its data.
    pub(crate) lease_watcher: zk::PersistentWatcher,
    /// The server is one of an ensemble, so it may be a follower that has not yet applied
    /// a write another session saw acknowledged: reads that must see every acknowledged
    /// write `sync` with the leader first. A standalone server has no followers.
    pub(crate) quorum: bool,
}

impl Config {
    /// A new session with the namespace node in place and the watch on it, and whether
    /// its server is part of a quorum (see [`Opened::quorum`]).
    pub(crate) async fn open(&self) -> std::result::Result<Opened, zk::Error> {
        let mut connector =
            zk::Client::connector().with_session_timeout(self.session_timeout).with_connection_timeout(self.timeout);
        if let Some(auth) = &self.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let client = connector.connect(&self.cluster).await?;
        if self.read_only {
            if client.check_stat(&self.ns_path).await?.is_none() {
                return Err(zk::Error::NoNode);
            }
        } else {
            match client.mkdir(&self.ns_path, &self.create).await {
                Ok(()) | Err(zk::Error::NodeExists) => {}
                Err(err) => return Err(err),
            }
            let journal = self.journal.is_on().then_some(&self.journal_path);
            for path in journal.into_iter().chain([&self.leases_path]) {
                match client.create(path, b"", &self.create).await {
                    Ok(_) | Err(zk::Error::NodeExists) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        let watcher = client.watch(&self.ns_path, zk::AddWatchMode::PersistentRecursive).await?;
        let lease_watcher = client.watch(&self.leases_path, zk::AddWatchMode::Persistent).await?;
        // A standalone server's configuration node is empty; an ensemble member's lists the
        // servers.
        let quorum = match client.get_data("/zookeeper/config").await {
            Ok((config, _)) => !config.is_empty(),
            Err(zk::Error::NoNode) => false,
            Err(err) => return Err(err),
        };
        Ok(Opened { client, watcher, lease_watcher, quorum })
    }
}

pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) state: Arc<State>,
    pub(crate) task: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows the watch for the backend's lifetime: records changed keys, turns events into
/// hints, and builds a new session when the old one ended — or when it has been
/// disconnected for a while: the client's own reconnection backs off to seconds during a long
/// outage, and a fresh session is how a dict recovers within a fraction of a second of the
/// ensemble coming back. (The abandoned session holds no ephemeral nodes; the server lets it
/// expire.)
pub(crate) async fn follow(config: Arc<Config>, state: Arc<State>) {
    let mut backoff = Backoff::RECONNECT;
    let mut probe_at: Option<tokio::time::Instant> = None;
    // Building a session is a quorum write; right after an election a loaded ensemble may
    // take seconds to commit one, and a bound shorter than its answer would never let a new
    // session through (a writer stayed expired for 30 s so under load). So each attempt
    // that times out gives the next one twice as long, up to the session timeout; the
    // first gets the operation timeout, so that an attempt stuck on a server still
    // starting up does not hold up recovery.
    let longest_build = config.session_timeout.max(config.timeout);
    let mut build_bound = config.timeout;
    let mut lease_events = state.lease_watcher().take();
    loop {
        let client = state.client();
        if state.watcher().is_some() && client.state().is_terminated() {
            // The session ended without its watch saying so: build a new one all the same.
            tracing::warn!(state = ?client.state(), path = %config.ns_path, "durable-zk: session ended; building a new one");
            *state.watcher() = None;
            state.tracker().forget();
            state.hint(Hint::Interrupted);
        }
        let watching = state.watcher().is_some();
        if watching && state.disconnected.load(std::sync::atomic::Ordering::Acquire) {
            probe_at.get_or_insert_with(|| tokio::time::Instant::now() + backoff.peek());
        } else if watching {
            probe_at = None;
            backoff.reset();
        }
        if watching {
            let probe = async {
                match probe_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let mut session = client.state_watcher();
            tokio::select! {
                // `false`: the session ended; build a new one.
                watching = state.next_event() => if watching { continue },
                _ = state.repoll.notified() => continue,
                // The client's own view of its session, in case the watch says nothing.
                _ = session.changed() => continue,
                // A lease operation: whoever waits for a lease may try now.
                released = next_lease_event(&mut lease_events) => {
                    if released {
                        state.hint(Hint::LeaseReleased);
                    }
                    continue;
                }
                _ = probe => {}
            }
        }
        let probing = state.watcher().is_some();
        if probing && config.probe.refused().await.is_some() {
            // Still down: a TCP connect answers that at once, where a session would wait.
            probe_at = Some(tokio::time::Instant::now() + backoff.next_delay());
            continue;
        }
        let opening = async { config.open().await.map_err(map_error) };
        match config.probe.bound("new session", build_bound, opening).await {
            Ok(Opened { client, watcher, lease_watcher, quorum }) => {
                if let Ok(mut slot) = state.client.write() {
                    *slot = client;
                }
                lease_events = Some(lease_watcher);
                *state.watcher() = Some(watcher);
                state.quorum.store(quorum, std::sync::atomic::Ordering::Release);
                state.disconnected.store(false, std::sync::atomic::Ordering::Release);
                backoff.reset();
                probe_at = None;
                state.tracker().forget();
                state.hint(Hint::Resumed);
                build_bound = config.timeout;
            }
            Err(err) => {
                tracing::debug!(error = %err, bound = ?build_bound, "durable-zk: new session failed");
                if matches!(err, Error::Timeout { .. }) {
                    build_bound = (build_bound * 2).min(longest_build);
                }
                let delay = backoff.next_delay();
                if probe_at.is_some() {
                    probe_at = Some(tokio::time::Instant::now() + delay);
                } else {
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// The next event of the leases node's watch: `true` for a change of its data (a lease
/// operation), `false` for anything else. Pends for ever without a watch; a session's end
/// drops the watch (the next session brings its own).
async fn next_lease_event(watcher: &mut Option<zk::PersistentWatcher>) -> bool {
    let Some(active) = watcher.as_mut() else { return std::future::pending().await };
    let event = active.changed().await;
    if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
        *watcher = None;
    }
    event.event_type == zk::EventType::NodeDataChanged
}
