//! Change events: what a sync changed in this process's snapshot, whoever wrote it.
//!
//! What is promised, on every backend:
//! - Events describe the snapshot, not the store's history: one event per key whose value
//!   differs between two consecutive snapshots of this dict. Several writes that land
//!   between two syncs are coalesced — a key written three times shows one event with the
//!   value before and the value after, and a key set and removed again shows none (a polled
//!   SQLite dict gave 36–42 events for 200 back-to-back writes; none was lost in the
//!   sense that matters: folding the events over the first snapshot always gives the
//!   current one).
//! - [`Change::version`] is the version of the first snapshot that shows the change, and
//!   the key's value at that version in the store is [`Change::new`]. Events of one dict
//!   come in version order (never decreasing; the events of one snapshot update share its
//!   version, in the order the store wrote the keys where it records that).
//! - A write through this dict shows as an event at the write's own version.
//!
//! Events travel on a bounded broadcast channel, made by the first subscriber (a dict nobody
//! subscribes to neither holds its ring nor makes events). A slow subscriber never holds up
//! a sync: when it falls behind it gets [`Event::Lagged`] with the number of events it
//! missed, and should re-read the snapshot for anything it keeps derived state of.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::backend::Version;
use crate::error::Error;

/// The bounded broadcast channel events travel on, made when the first subscriber asks:
/// its ring of `capacity` slots (128 bytes each; 128 KB at the default 1,024) is not paid
/// by a dict nobody watches, and nothing is sent while nobody listens.
pub(crate) struct Channel<V> {
    capacity: usize,
    sender: std::sync::OnceLock<broadcast::Sender<Event<V>>>,
}

impl<V> Channel<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), sender: std::sync::OnceLock::new() }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event<V>> {
        self.sender.get_or_init(|| broadcast::channel(self.capacity).0).subscribe()
    }

    /// Whether anyone listens (worth making events for).
    pub(crate) fn listened(&self) -> bool {
        self.sender.get().is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// Sends to whoever listens; nobody listening is not an error.
    pub(crate) fn send(&self, event: Event<V>) {
        if let Some(sender) = self.sender.get() {
            let _ = sender.send(event);
        }
    }
}

/// One key whose value changed in the snapshot.
pub struct Change<V> {
    /// The key.
    pub key: Arc<str>,
    /// The value before (`None`: the key was absent).
    pub old: Option<Arc<V>>,
    /// The value after (`None`: the key was removed).
    pub new: Option<Arc<V>>,
    /// The version of the first snapshot of this dict that shows the change: the store
    /// held `new` at this version. Several writes between two syncs arrive as one change
    /// with the later snapshot's version (see the module docs).
    pub version: Version,
}

impl<V> Clone for Change<V> {
    fn clone(&self) -> Self {
        Self { key: Arc::clone(&self.key), old: self.old.clone(), new: self.new.clone(), version: self.version }
    }
}

impl<V: fmt::Debug> fmt::Debug for Change<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("key", &self.key)
            .field("old", &self.old)
            .field("new", &self.new)
            .field("version", &self.version)
            .finish()
    }
}

/// What a [`Subscription`] yields.
pub enum Event<V> {
    /// A key's value changed.
    Changed(Change<V>),
    /// A stored value could not be decoded; the key keeps its last good value, if any.
    Undecodable {
        /// The key.
        key: Arc<str>,
        /// What the codec said.
        error: Error,
    },
    /// This subscriber fell behind and missed `missed` events.
    Lagged {
        /// How many events were dropped for this subscriber.
        missed: u64,
    },
}

impl<V> Clone for Event<V> {
    fn clone(&self) -> Self {
        match self {
            Event::Changed(change) => Event::Changed(change.clone()),
            Event::Undecodable { key, error } => Event::Undecodable { key: Arc::clone(key), error: error.clone() },
            Event::Lagged { missed } => Event::Lagged { missed: *missed },
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for Event<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Changed(change) => f.debug_tuple("Changed").field(change).finish(),
            Event::Undecodable { key, error } => {
                f.debug_struct("Undecodable").field("key", key).field("error", error).finish()
            }
            Event::Lagged { missed } => f.debug_struct("Lagged").field("missed", missed).finish(),
        }
    }
}

impl<V> Event<V> {
    fn concerns(&self, wanted: &str) -> bool {
        match self {
            Event::Changed(change) => &*change.key == wanted,
            Event::Undecodable { key, .. } => &**key == wanted,
            Event::Lagged { .. } => true,
        }
    }
}

/// A stream of [`Event`]s from [`crate::DurableDict::subscribe`] or
/// [`crate::DurableDict::watch_key`]. It ends when the dict is dropped.
pub struct Subscription<V> {
    inner: BroadcastStream<Event<V>>,
    key: Option<Arc<str>>,
}

impl<V: Send + Sync + 'static> Subscription<V> {
    pub(crate) fn new(receiver: broadcast::Receiver<Event<V>>, key: Option<Arc<str>>) -> Self {
        Self { inner: BroadcastStream::new(receiver), key }
    }

    /// The next event, or `None` once the dict is gone.
    pub async fn recv(&mut self) -> Option<Event<V>> {
        self.next().await
    }
}

impl<V: Send + Sync + 'static> Stream for Subscription<V> {
    type Item = Event<V>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<V>>> {
        loop {
            let event = match futures::ready!(self.inner.poll_next_unpin(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(event)) => event,
                Some(Err(BroadcastStreamRecvError::Lagged(missed))) => Event::Lagged { missed },
            };
            match &self.key {
                Some(key) if !event.concerns(key) => continue,
                _ => return Poll::Ready(Some(event)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(key: &str, version: Version) -> Event<u64> {
        Event::Changed(Change { key: Arc::from(key), old: None, new: Some(Arc::new(version)), version })
    }

    fn version_of(event: &Event<u64>) -> Option<Version> {
        match event {
            Event::Changed(change) => Some(change.version),
            _ => None,
        }
    }

    /// No ring until the first subscriber: sending before it is dropped, nobody listens; a
    /// subscriber gets what is sent after it subscribed, at the capacity asked for; once
    /// every receiver is gone nobody listens again, and a later one gets only later events.
    #[test]
    fn the_ring_is_made_by_the_first_subscriber_and_listening_follows_receivers() {
        let channel = Channel::<u64>::new(2);
        assert!(channel.sender.get().is_none() && !channel.listened());
        channel.send(changed("early", 1));
        assert!(channel.sender.get().is_none(), "a send with nobody subscribed makes no ring");

        let mut first = channel.subscribe();
        assert!(channel.listened());
        assert!(matches!(first.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "nothing from before");
        for version in 2..=4 {
            channel.send(changed("k", version));
        }
        // Capacity 2: the oldest of three is gone, and the receiver is told how many.
        assert!(matches!(first.try_recv(), Err(broadcast::error::TryRecvError::Lagged(1))));
        assert_eq!(version_of(&first.try_recv().unwrap()), Some(3));
        assert_eq!(version_of(&first.try_recv().unwrap()), Some(4));

        drop(first);
        assert!(!channel.listened(), "no receiver left");
        channel.send(changed("k", 5));
        let mut later = channel.subscribe();
        channel.send(changed("k", 6));
        assert_eq!(version_of(&later.try_recv().unwrap()), Some(6));
        assert!(matches!(later.try_recv(), Err(broadcast::error::TryRecvError::Empty)));
    }

    /// A capacity of 0 is taken as 1 (tokio's channel refuses 0).
    #[test]
    fn a_capacity_of_zero_is_one() {
        let channel = Channel::<u64>::new(0);
        let mut receiver = channel.subscribe();
        channel.send(changed("k", 1));
        assert_eq!(version_of(&receiver.try_recv().unwrap()), Some(1));
    }
}
