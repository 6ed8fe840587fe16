//! Change hints: the namespace's pub/sub channel (and the counter's keyspace events, which
//! durabledict's writers trigger too), or a shard channel on a cluster.
//!
//! One pub/sub connection per process for each Redis URL and namespace, shared by every
//! dict of that process on that namespace (through durable-core's `SharedFeeds`): a
//! thousand dicts cost Redis one subscriber and one message per change, not a thousand.
//! When the connection is lost every stream says `Interrupted`; the shared task
//! subscribes again (50 ms, doubling to 250 ms) and says `Resumed`. The connection closes
//! when the last stream is dropped.

use std::time::Duration;

use durable_core::shared::{Note, SharedFeeds};
use durable_core::{Hint, HintStream, Result};
use futures::StreamExt;

use crate::NAME;
use crate::backend::RedisBackend;
use crate::connection::Mode;

static FEEDS: SharedFeeds<Hint> = SharedFeeds::new(NAME);

pub(crate) async fn subscribe(backend: &RedisBackend) -> Result<HintStream> {
    let key = format!("{}\n{}", backend.shared.url, backend.keys.channel);
    let backend = backend.clone();
    let connect = move || {
        let backend = backend.clone();
        async move { backend.subscribe_once().await }
    };
    let notes = FEEDS.subscribe(key, connect).await?;
    Ok(Box::pin(notes.map(|note| match note {
        Note::Message(hint) => hint,
        Note::Lost => Hint::Interrupted,
        Note::Back => Hint::Resumed,
    })))
}

impl RedisBackend {
    /// The keyspace-notification channel of the counter, `__keyspace@<db>__:<ns>last_updated`.
    fn keyspace_channel(&self, client: &redis::Client) -> String {
        let db = client.get_connection_info().redis_settings().db();
        format!("__keyspace@{db}__:{}", self.keys.counter)
    }

    /// Whether Redis publishes keyspace events for string commands (`notify-keyspace-events`
    /// containing `K` and `$` or `A`), so that writers that publish no hint of their own —
    /// durabledict's — are heard too. A server that refuses CONFIG GET counts as no.
    async fn keyspace_events_enabled(&self) -> bool {
        let mut connection = self.shared.commands.clone();
        let reply: redis::RedisResult<Vec<String>> =
            redis::cmd("CONFIG").arg("GET").arg("notify-keyspace-events").query_async(&mut connection).await;
        match reply {
            Ok(pair) => {
                pair.get(1).is_some_and(|flags| flags.contains('K') && (flags.contains('$') || flags.contains('A')))
            }
            Err(_) => false,
        }
    }

    /// One pub/sub connection subscribed to the namespace's channel (and to the counter's
    /// keyspace events when the server publishes them), as hints. On a cluster: sharded
    /// pub/sub (`SSUBSCRIBE`), so hints stay in the namespace's shard.
    async fn subscribe_once(&self) -> Result<HintStream> {
        let client = match &self.shared.mode {
            Mode::Single { client } => client,
            Mode::Cluster { nodes, timeout } => return self.subscribe_sharded(nodes, *timeout).await,
        };
        let keyspace = self.keyspace_channel(client);
        let subscribing = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.keys.channel).await?;
            if self.keyspace_events_enabled().await {
                pubsub.subscribe(&keyspace).await?;
            }
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        let messages = self.run("watch", subscribing).await?;
        let ours = self.keys.channel.clone();
        let hints = messages.map(move |message| {
            // Our own hints carry the version; a keyspace event ("incr" by any writer,
            // durabledict's included) only says "look".
            if message.get_channel_name() == ours {
                hint_of(message.get_payload::<String>().ok())
            } else {
                Hint::Changed { version: None }
            }
        });
        Ok(Box::pin(hints))
    }

    /// The cluster's hints: a RESP3 cluster connection subscribed to the shard channel. When
    /// the shard's node connection drops (a failover, a resharding) the stream ends, and the
    /// shared listener subscribes again from the cluster's new layout, saying `Interrupted`
    /// then `Resumed`, so every dict resyncs; a confirmation that redis-rs re-subscribed by
    /// itself is a `Resumed` too.
    async fn subscribe_sharded(&self, nodes: &[String], timeout: Duration) -> Result<HintStream> {
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
        let subscribing = async {
            let client = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()?;
            let mut connection = client.get_async_connection().await?;
            connection.ssubscribe(&self.keys.channel).await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let connection = self.run("watch", subscribing).await?;
        let state = (connection, received, false);
        let hints = futures::stream::unfold(state, |(connection, mut received, mut confirmed)| async move {
            loop {
                let push = received.recv().await?;
                let hint = match push.kind {
                    redis::PushKind::SMessage => {
                        let payload =
                            push.data.get(1).cloned().and_then(|value| redis::from_redis_value::<String>(value).ok());
                        Some(hint_of(payload))
                    }
                    redis::PushKind::SSubscribe if confirmed => Some(Hint::Resumed),
                    redis::PushKind::SSubscribe => {
                        confirmed = true;
                        None
                    }
                    // The shard's node went away (a failover), or the slot moved and the
                    // node dropped the subscription (a resharding sends `sunsubscribe`): end
                    // the stream, so that the subscription is made again from the cluster's
                    // new layout.
                    redis::PushKind::Disconnection | redis::PushKind::SUnsubscribe => return None,
                    _ => None,
                };
                if let Some(hint) = hint {
                    return Some((hint, (connection, received, confirmed)));
                }
            }
        });
        Ok(Box::pin(hints))
    }
}

/// A message on the namespace's channel: a version (a mutation), `lease` (a lease was
/// released), or anything else (look anyway).
fn hint_of(payload: Option<String>) -> Hint {
    match payload.as_deref() {
        Some("lease") => Hint::LeaseReleased,
        payload => Hint::Changed { version: payload.and_then(|payload| payload.parse().ok()) },
    }
}
