//! One subscription per process, shared by every dict on it: for backends whose change
//! hints come over a connection of their own (Redis pub/sub, PostgreSQL `LISTEN`), so that a
//! thousand dicts of one process cost the store one subscriber, not a thousand.
//!
//! A backend keeps one [`SharedFeeds`] in a `static` and asks it for a feed by key (what
//! identifies one subscription: the server and the channel). The first subscriber connects;
//! later ones join the same feed. A task follows the connection and hands every message to
//! every subscriber; when the connection's stream ends (the connection was lost) every
//! subscriber hears [`Note::Lost`], the task connects again (50 ms, doubling to 250 ms) and
//! every subscriber hears [`Note::Back`]. The connection closes when the last subscriber's
//! stream is dropped.
//!
//! ```
//! use durable_core::shared::{Note, SharedFeeds};
//! use futures::StreamExt;
//!
//! static FEEDS: SharedFeeds<u64> = SharedFeeds::new("example");
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A real backend subscribes to its store here; this feed yields three numbers and ends.
//! let connect = || async { Ok::<_, std::io::Error>(futures::stream::iter([1u64, 2, 3]).boxed()) };
//! let notes = FEEDS.subscribe("server/channel".into(), connect).await.unwrap();
//! let heard: Vec<Note<u64>> = notes.take(6).collect().await;
//! use Note::*;
//! assert_eq!(heard, [Message(1), Message(2), Message(3), Lost, Back, Message(1)]);
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{Mutex, broadcast};
use tokio_stream::wrappers::BroadcastStream;

use crate::backoff::Backoff;

/// Notes a slow subscriber may fall behind by before it hears [`Note::Back`] instead.
const CAPACITY: usize = 1024;

/// What a subscriber of a shared feed hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note<M> {
    /// A message from the connection.
    Message(M),
    /// The connection was lost: messages sent from now until [`Note::Back`] are gone.
    Lost,
    /// Connected again — or this subscriber fell behind and missed notes. Either way,
    /// whatever it follows may have changed unseen: look at the store.
    Back,
}

/// The process's shared feeds of one backend, by key; see the module docs.
pub struct SharedFeeds<M> {
    name: &'static str,
    feeds: OnceLock<Mutex<HashMap<String, Weak<Feed<M>>>>>,
}

/// One shared connection: its task, and the notes it sends to every subscriber.
struct Feed<M> {
    notes: broadcast::Sender<Note<M>>,
    task: tokio::task::AbortHandle,
}

impl<M> Drop for Feed<M> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<M: Clone + Send + Sync + 'static> SharedFeeds<M> {
    /// No feeds yet; `name` (the backend's) labels the log lines.
    pub const fn new(name: &'static str) -> Self {
        Self { name, feeds: OnceLock::new() }
    }

    /// The notes of the feed for `key`, connecting with `connect` when this process has no
    /// live feed for it. `connect` is called again after every loss; a first connect that
    /// fails is this call's error. The key may hold secrets (a URL with a password): it is
    /// never logged.
    pub async fn subscribe<F, Fut, E>(&'static self, key: String, connect: F) -> Result<BoxStream<'static, Note<M>>, E>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BoxStream<'static, M>, E>> + Send + 'static,
        E: Send + 'static,
    {
        // The receiver is made under the registry's lock, before a new feed's task starts,
        // so that a subscriber hears every message from the moment its call returns.
        let (feed, receiver) = {
            let mut feeds = self.feeds.get_or_init(Mutex::default).lock().await;
            feeds.retain(|_, feed| feed.strong_count() > 0);
            match feeds.get(&key).and_then(Weak::upgrade) {
                Some(feed) => {
                    let receiver = feed.notes.subscribe();
                    (feed, receiver)
                }
                None => {
                    let messages = connect().await?;
                    let (notes, receiver) = broadcast::channel(CAPACITY);
                    let task = tokio::spawn(self.follow(messages, connect, notes.clone())).abort_handle();
                    let feed = Arc::new(Feed { notes, task });
                    feeds.insert(key, Arc::downgrade(&feed));
                    (feed, receiver)
                }
            }
        };
        let notes = BroadcastStream::new(receiver).map(move |note| {
            // The stream holds the feed: the last stream dropped closes the connection.
            let _alive = &feed;
            note.unwrap_or(Note::Back)
        });
        Ok(notes.boxed())
    }

    async fn follow<F, Fut, E>(
        &'static self,
        mut messages: BoxStream<'static, M>,
        connect: F,
        notes: broadcast::Sender<Note<M>>,
    ) where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BoxStream<'static, M>, E>> + Send + 'static,
        E: Send + 'static,
    {
        loop {
            while let Some(message) = messages.next().await {
                let _ = notes.send(Note::Message(message));
            }
            tracing::debug!(backend = self.name, "durable: a shared subscription was lost; connecting again");
            let _ = notes.send(Note::Lost);
            let mut backoff = Backoff::RECONNECT;
            messages = loop {
                tokio::time::sleep(backoff.next_delay()).await;
                if let Ok(messages) = connect().await {
                    break messages;
                }
            };
            let _ = notes.send(Note::Back);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures::channel::mpsc;

    use super::*;

    /// A connection the test drives: each connect hands out a fresh channel's receiver and
    /// keeps its sender in `senders`; dropping a sender loses that connection.
    #[derive(Clone, Default)]
    struct Store {
        connects: Arc<AtomicUsize>,
        senders: Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<u32>>>>,
    }

    impl Store {
        fn connect(
            &self,
        ) -> impl Fn() -> futures::future::Ready<Result<BoxStream<'static, u32>, ()>> + Send + Sync + 'static {
            let store = self.clone();
            move || {
                store.connects.fetch_add(1, Ordering::SeqCst);
                let (sender, receiver) = mpsc::unbounded();
                store.senders.lock().unwrap().push(sender);
                futures::future::ready(Ok(receiver.boxed()))
            }
        }

        fn send(&self, message: u32) {
            self.senders.lock().unwrap().last().unwrap().unbounded_send(message).unwrap();
        }

        /// True while the newest connection is still followed by someone.
        fn open(&self) -> bool {
            !self.senders.lock().unwrap().last().unwrap().is_closed()
        }
    }

    #[tokio::test]
    async fn subscribers_of_one_key_share_one_connection_and_the_last_one_closes_it() {
        static FEEDS: SharedFeeds<u32> = SharedFeeds::new("test");
        let store = Store::default();
        let mut first = FEEDS.subscribe("a".into(), store.connect()).await.unwrap();
        let mut second = FEEDS.subscribe("a".into(), store.connect()).await.unwrap();
        assert_eq!(store.connects.load(Ordering::SeqCst), 1);
        store.send(7);
        assert_eq!(first.next().await, Some(Note::Message(7)));
        assert_eq!(second.next().await, Some(Note::Message(7)));

        // Another key is another connection.
        let other = Store::default();
        let _third = FEEDS.subscribe("b".into(), other.connect()).await.unwrap();
        assert_eq!(other.connects.load(Ordering::SeqCst), 1);

        drop(first);
        tokio::task::yield_now().await;
        assert!(store.open(), "one subscriber is left");
        drop(second);
        // The task is aborted; its stream (and so the connection) goes with it.
        tokio::time::timeout(Duration::from_secs(5), async {
            while store.open() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the connection closes with its last subscriber");

        // A later subscriber connects afresh.
        let mut again = FEEDS.subscribe("a".into(), store.connect()).await.unwrap();
        assert_eq!(store.connects.load(Ordering::SeqCst), 2);
        store.send(8);
        assert_eq!(again.next().await, Some(Note::Message(8)));
    }

    #[tokio::test]
    async fn a_lost_connection_is_heard_as_lost_then_back() {
        static FEEDS: SharedFeeds<u32> = SharedFeeds::new("test");
        let store = Store::default();
        let mut notes = FEEDS.subscribe("a".into(), store.connect()).await.unwrap();
        store.senders.lock().unwrap().clear();
        assert_eq!(notes.next().await, Some(Note::Lost));
        assert_eq!(notes.next().await, Some(Note::Back));
        assert_eq!(store.connects.load(Ordering::SeqCst), 2);
        store.send(9);
        assert_eq!(notes.next().await, Some(Note::Message(9)));
    }

    #[tokio::test]
    async fn a_failing_first_connect_is_the_callers_error_and_leaves_nothing_behind() {
        static FEEDS: SharedFeeds<u32> = SharedFeeds::new("test");
        let failing = || futures::future::ready(Err::<BoxStream<'static, u32>, _>("refused"));
        assert_eq!(FEEDS.subscribe("a".into(), failing).await.err(), Some("refused"));
        let store = Store::default();
        let _notes = FEEDS.subscribe("a".into(), store.connect()).await.unwrap();
        assert_eq!(store.connects.load(Ordering::SeqCst), 1);
    }
}
