//! The watch state: the persistent recursive watch's events, turned into hints and into the
//! tracker's record of changed keys.

use std::sync::{Mutex, RwLock};

use durable_core::{Hint, Version};
use tokio::sync::broadcast;
use zookeeper_client as zk;

use crate::tracker::{Pinned, Tracker};

/// The session, the watch and what it has told us: shared by the backend and the task that
/// follows the watch (which holds this, never the backend, so dropping the backend ends it).
pub(crate) struct State {
    pub(crate) ns_path: String,
    pub(crate) client: RwLock<zk::Client>,
    /// The watch; `None` while a new session is being built.
    /// Held only to take an event and process it, so events are processed in order, one at
    /// a time, by whichever of the follower and a reader gets there.
    pub(crate) watcher: Mutex<Option<zk::PersistentWatcher>>,
    /// The first session's watch on the leases node, until the follower takes it.
    pub(crate) lease_watcher: Mutex<Option<zk::PersistentWatcher>>,
    /// Tells the follower to poll the watch again: a reader's [`State::drain`] took its
    /// place as the one to wake.
    pub(crate) repoll: tokio::sync::Notify,
    pub(crate) tracker: Mutex<Tracker>,
    pub(crate) hints: broadcast::Sender<Hint>,
    /// The session lost its connection and has not regained it.
    pub(crate) disconnected: std::sync::atomic::AtomicBool,
    /// The session's server is one of an ensemble (see `Opened::quorum`).
    pub(crate) quorum: std::sync::atomic::AtomicBool,
}

impl State {
    pub(crate) fn client(&self) -> zk::Client {
        match self.client.read() {
            Ok(client) => client.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current epoch and the number of the last event, pinned (see [`Pinned`]).
    pub(crate) fn pin(&self) -> (u64, Pinned<'_>) {
        let mut tracker = self.tracker();
        let from = tracker.seq;
        tracker.pins.push(from);
        (tracker.epoch, Pinned { state: self, from })
    }

    /// The current epoch and the event number that the read at `version` covered, pinned;
    /// `None` when no read at `version` is remembered in this epoch.
    pub(crate) fn pin_anchor(&self, version: Version) -> Option<(u64, Pinned<'_>)> {
        let mut tracker = self.tracker();
        let from = *tracker.anchors.get(&version)?;
        tracker.pins.push(from);
        Some((tracker.epoch, Pinned { state: self, from }))
    }

    pub(crate) fn hint(&self, hint: Hint) {
        let _ = self.hints.send(hint);
    }

    pub(crate) fn key_of<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(self.ns_path.as_str())?.strip_prefix('/').filter(|key| !key.contains('/'))
    }

    /// Records one event. Returns false when the session ended (the watcher must not be
    /// polled again).
    pub(crate) fn process(&self, event: zk::WatchedEvent) -> bool {
        if event.event_type != zk::EventType::Session {
            let mut tracker = self.tracker();
            tracker.seq += 1;
            let seq = tracker.seq;
            if let Some(key) = self.key_of(&event.path) {
                tracker.changed.insert(key.to_owned(), seq);
            }
            drop(tracker);
            self.hint(Hint::Changed { version: None });
            return true;
        }
        self.tracker().forget();
        let disconnected = event.session_state == zk::SessionState::Disconnected;
        let was_disconnected = self.disconnected.swap(disconnected, std::sync::atomic::Ordering::AcqRel);
        match event.session_state {
            zk::SessionState::Disconnected => {
                self.hint(Hint::Interrupted);
                true
            }
            state if state.is_terminated() => {
                tracing::warn!(state = ?state, path = %self.ns_path, "durable-zk: session ended; building a new one");
                self.hint(Hint::Interrupted);
                false
            }
            _ if was_disconnected => {
                // Reconnected within the session. zookeeper-client 0.11.2 re-registers only
                // one-shot watches on a reconnection (its `resend_watches` never sends the
                // persistent ones), so this watch would stay silent for good while the
                // session looks healthy — a dict stale until restarted. A new session with a
                // new watch is built instead (the follower does it at once), and `Resumed`
                // is only hinted once that watch is in place.
                tracing::info!(path = %self.ns_path, "durable-zk: reconnected; renewing the watch with a new session");
                self.hint(Hint::Interrupted);
                false
            }
            _ => {
                self.hint(Hint::Resumed);
                true
            }
        }
    }

    pub(crate) fn watcher(&self) -> std::sync::MutexGuard<'_, Option<zk::PersistentWatcher>> {
        self.watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lease_watcher(&self) -> std::sync::MutexGuard<'_, Option<zk::PersistentWatcher>> {
        self.lease_watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Processes every event already delivered, without waiting for more. ZooKeeper
    /// delivers the events of every change before the answer to any later request, so after
    /// an answer, this brings the tracker up to at least that request's moment.
    pub(crate) fn drain(&self) {
        let mut watcher = self.watcher();
        while let Some(active) = watcher.as_mut() {
            match futures::FutureExt::now_or_never(active.changed()) {
                Some(event) => {
                    if !self.process(event) {
                        *watcher = None;
                    }
                }
                None => break,
            }
        }
        drop(watcher);
        // Polling the watch here left a do-nothing waker in the follower's place.
        self.repoll.notify_one();
    }

    /// Waits for the next event and processes it (under the watcher's lock, so that
    /// [`State::drain`] never returns while an event it did not see is half processed).
    /// `false` when there is no watch (a new session is being built).
    pub(crate) async fn next_event(&self) -> bool {
        std::future::poll_fn(|cx| {
            let mut watcher = self.watcher();
            let Some(active) = watcher.as_mut() else { return std::task::Poll::Ready(false) };
            let event = match std::future::Future::poll(std::pin::pin!(active.changed()), cx) {
                std::task::Poll::Ready(event) => event,
                std::task::Poll::Pending => return std::task::Poll::Pending,
            };
            if !self.process(event) {
                *watcher = None;
            }
            std::task::Poll::Ready(true)
        })
        .await
    }
}
