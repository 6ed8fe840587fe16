//! PostgreSQL change hints: one `LISTEN` connection per process for each database URL and
//! channel, shared by every dict of that process (through durable-core's `SharedFeeds`:
//! PostgreSQL holds a connection per listener, and a thousand dicts must not cost a
//! thousand connections). Each subscriber's stream keeps the notifications of its own
//! namespace. When the connection is lost (notifications sent meanwhile are gone), every
//! stream says `Interrupted`; the shared task reconnects (50 ms, doubling to 250 ms) and
//! says `Resumed`, and each dict then checks the store. The connection closes when the
//! last stream is dropped.

use std::sync::Arc;
use std::time::Duration;

use durable_core::shared::{Note, SharedFeeds};
use durable_core::{Hint, HintStream};
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::{PgListener, PgPool};

/// Notification payloads, `"<version> <namespace>"`, by database URL and channel.
static FEEDS: SharedFeeds<Arc<str>> = SharedFeeds::new("postgres");

/// How long one attempt to open the `LISTEN` connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn listen(pool: PgPool, channel: String) -> Result<BoxStream<'static, Arc<str>>, sqlx::Error> {
    let connecting = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        // A lost connection ends the stream at once, so the dicts mark their hints down
        // at once; by default `try_recv` would first reconnect, waiting out the pool's
        // acquire timeout while the server refuses, with the hints still "healthy".
        listener.eager_reconnect(false);
        listener.listen(&channel).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    let listener = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await.map_err(|_| {
        sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "opening the LISTEN connection"))
    })??;
    // The stream ends when the connection is lost (`Ok(None)` or an error).
    let payloads = futures::stream::unfold(listener, |mut listener| async move {
        let notification = listener.try_recv().await.ok()??;
        Some((Arc::<str>::from(notification.payload()), listener))
    });
    Ok(payloads.boxed())
}

pub(crate) async fn subscribe(
    pool: &PgPool,
    url: &str,
    channel: &str,
    namespace: &str,
) -> Result<HintStream, sqlx::Error> {
    let (pool, channel_name) = (pool.clone(), channel.to_owned());
    let connect = move || listen(pool.clone(), channel_name.clone());
    let notes = FEEDS.subscribe(format!("{url}\n{channel}"), connect).await?;
    let namespace: Arc<str> = namespace.into();
    let hints = notes.filter_map(move |note| {
        let hint = match note {
            Note::Message(payload) => parse(&payload, &namespace),
            Note::Lost => Some(Hint::Interrupted),
            Note::Back => Some(Hint::Resumed),
        };
        std::future::ready(hint)
    });
    Ok(Box::pin(hints))
}

/// `"<version> <namespace>"` → a change at that version, `"lease <namespace>"` → a lease
/// released, `"removed <namespace>"` → a change without a version (the namespace was
/// removed: its version went back), when the namespace is ours.
fn parse(payload: &str, namespace: &str) -> Option<Hint> {
    let (what, ns) = payload.split_once(' ')?;
    if ns != namespace {
        return None;
    }
    match what {
        "lease" => Some(Hint::LeaseReleased),
        "removed" => Some(Hint::Changed { version: None }),
        version => version.parse().ok().map(|version| Hint::Changed { version: Some(version) }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_are_filtered_by_namespace() {
        use durable_core::Hint;
        assert_eq!(super::parse("42 flags", "flags"), Some(Hint::Changed { version: Some(42) }));
        assert_eq!(super::parse("42 flags x", "flags x"), Some(Hint::Changed { version: Some(42) }));
        assert_eq!(super::parse("lease flags", "flags"), Some(Hint::LeaseReleased));
        assert_eq!(super::parse("lease other", "flags"), None);
        assert_eq!(super::parse("removed flags", "flags"), Some(Hint::Changed { version: None }));
        assert_eq!(super::parse("42 other", "flags"), None);
        assert_eq!(super::parse("garbage", "flags"), None);
    }
}
