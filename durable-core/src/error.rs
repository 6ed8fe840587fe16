//! The one error type of `durable`: every backend converts its own errors into it at the
//! crate boundary, so a service handles a Redis outage and a PostgreSQL outage the same way.
//!
//! Errors never carry credentials: backends build their messages from redacted URLs
//! ([`crate::redact_url`]) and never from a driver error that could echo a connection string.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Version;

/// A cloneable, shareable source error (a driver's error, a codec's error).
#[derive(Clone)]
pub struct Source(Arc<dyn StdError + Send + Sync>);

impl Source {
    /// Wraps any error.
    pub fn new(err: impl StdError + Send + Sync + 'static) -> Self {
        Self(Arc::new(err))
    }

    /// A source made of a message only.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(Arc::new(Message(message.into())))
    }

    /// The wrapped error as `T`, if it is one.
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Source {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

/// Keys in messages are cut to this many characters, so that a megabyte-long invalid key
/// does not end up in a log line whole.
const KEY_IN_MESSAGE: usize = 120;

/// A key as shown in an error message: quoted, escaped, and cut when long.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyName(pub String);

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars = self.0.chars().count();
        if chars <= KEY_IN_MESSAGE {
            write!(f, "{:?}", self.0)
        } else {
            let head: String = self.0.chars().take(KEY_IN_MESSAGE).collect();
            write!(f, "{head:?}… ({chars} characters)")
        }
    }
}

impl From<&str> for KeyName {
    fn from(key: &str) -> Self {
        Self(key.to_owned())
    }
}

/// Everything that can go wrong in `durable`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be reached, or the connection broke mid-operation. The dict
    /// keeps serving its last good snapshot.
    #[error("{backend} store unavailable: {source}")]
    StoreUnavailable {
        /// Which backend (`redis`, `postgres`, ...).
        backend: &'static str,
        /// What the driver said (credentials removed).
        source: Source,
    },

    /// An operation did not finish within its configured time limit.
    #[error("{backend} {operation} timed out after {after:?}")]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// Which operation (`persist`, `durables`, ...).
        operation: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },

    /// A stored value could not be decoded with the dict's codec.
    #[error("cannot decode the value of key {key}: {source}")]
    Decode {
        /// The key whose value is bad.
        key: KeyName,
        /// What the codec said.
        source: Source,
    },

    /// A value could not be encoded with the dict's codec.
    #[error("cannot encode the value for key {key}: {source}")]
    Encode {
        /// The key being written.
        key: KeyName,
        /// What the codec said.
        source: Source,
    },

    /// A key the store cannot hold; refused before any I/O.
    #[error("invalid key {key}: {reason}")]
    InvalidKey {
        /// The refused key.
        key: KeyName,
        /// Why it was refused.
        reason: String,
    },

    /// A namespace (or table prefix, or ZooKeeper path) the store cannot hold.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The refused namespace.
        namespace: String,
        /// Why it was refused.
        reason: String,
    },

    /// An encoded value larger than the store accepts; refused before any I/O.
    #[error("the value for key {key} is {size} bytes; the {backend} store takes at most {max}")]
    ValueTooLarge {
        /// The key being written.
        key: KeyName,
        /// The encoded size.
        size: usize,
        /// The store's limit.
        max: usize,
        /// Which backend.
        backend: &'static str,
    },

    /// A compare-and-swap found a value other than the expected one; nothing was written.
    #[error("compare-and-swap on key {key} failed: the stored value is not the expected one")]
    Conflict {
        /// The key.
        key: KeyName,
    },

    /// A guarded write found the namespace at another version than the one it was guarded
    /// by; nothing was written.
    #[error("the namespace is at version {current}, not {expected} as the write required")]
    VersionConflict {
        /// The version the write required.
        expected: Version,
        /// The version the namespace was at.
        current: Version,
    },
    /// A write to a key another holder has a live lease on, made without its token, or an
    /// acquire that found the lease taken (after waiting as long as it was told to); nothing
    /// was written.
    #[error(
        "key {key} is leased to {holder} (token {token}) for another {remaining:?} by the store's clock; nothing was written"
    )]
    Leased {
        /// The key.
        key: KeyName,
        /// The lease's holder (its actor name).
        holder: String,
        /// The lease's fencing token.
        token: crate::lease::Token,
        /// When the lease expires, by the store's clock.
        expires_at: std::time::SystemTime,
        /// How long it had left when the store answered.
        remaining: Duration,
    },
    /// A write or renewal carrying a lease token that is no longer the key's live lease
    /// (it expired, was released, or another holder took the key since); nothing was
    /// written.
    #[error("the lease on key {key} with token {token} is lost (expired, released or taken over); nothing was written")]
    LeaseLost {
        /// The key.
        key: KeyName,
        /// The token the write carried.
        token: crate::lease::Token,
    },
    /// Something this backend cannot do.
    #[error("the {backend} store does not support {what}")]
    Unsupported {
        /// Which backend.
        backend: &'static str,
        /// What it cannot do.
        what: &'static str,
    },
    /// A write to a read-only dict or backend ([`ReadOnlyBackend`](crate::ReadOnlyBackend));
    /// refused before any I/O, nothing written.
    #[error("the {backend} store is open read-only: {operation} refused")]
    ReadOnly {
        /// Which backend.
        backend: &'static str,
        /// The refused operation (`persist`, `apply`, ...).
        operation: &'static str,
    },
    /// A URL whose scheme is known but whose backend is not compiled in.
    #[error("the {scheme}:// backend is not compiled in: enable the `{feature}` feature of `durable`")]
    FeatureDisabled {
        /// The URL's scheme.
        scheme: String,
        /// The Cargo feature that adds it.
        feature: &'static str,
    },

    /// A URL that names no backend, or that a backend cannot use (shown redacted).
    #[error("invalid store URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A layer of overrides (a file, an environment variable) that cannot be read as the
    /// dict's values; a layered view keeps its last good content.
    #[error("override {layer}: {reason}")]
    InvalidOverride {
        /// The file or variable.
        layer: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The store answered with something this crate cannot make sense of (a counter that
    /// is not a number, a missing table, a protocol error).
    #[error("{backend} store error: {source}")]
    Store {
        /// Which backend.
        backend: &'static str,
        /// What went wrong.
        source: Source,
    },
}

impl Error {
    /// True for errors that say the store could not be reached in time: the kind that
    /// fail-open middleware and health checks treat as an outage.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::StoreUnavailable { .. } | Error::Timeout { .. })
    }

    /// The backend's own error behind this one as `T` — `durable_redis::RedisError`,
    /// `durable_sql::SqlError`, `durable_zk::ZkError` — when it is one.
    ///
    /// ```
    /// use durable_core::{Error, Source};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("disk on fire")]
    /// struct Fire;
    ///
    /// let err = Error::StoreUnavailable { backend: "custom", source: Source::new(Fire) };
    /// assert!(err.source_as::<Fire>().is_some());
    /// assert!(err.source_as::<std::io::Error>().is_none());
    /// ```
    pub fn source_as<T: StdError + 'static>(&self) -> Option<&T> {
        let source = StdError::source(self)?;
        match source.downcast_ref::<Source>() {
            Some(wrapped) => wrapped.downcast_ref::<T>(),
            None => source.downcast_ref::<T>(),
        }
    }

    /// Shorthand for [`Error::StoreUnavailable`].
    pub fn unavailable(backend: &'static str, source: impl StdError + Send + Sync + 'static) -> Self {
        Error::StoreUnavailable { backend, source: Source::new(source) }
    }

    /// Shorthand for [`Error::Store`] with a message.
    pub fn store(backend: &'static str, message: impl Into<String>) -> Self {
        Error::Store { backend, source: Source::msg(message) }
    }

    /// Shorthand for [`Error::InvalidKey`].
    pub fn invalid_key(key: &str, reason: impl Into<String>) -> Self {
        Error::InvalidKey { key: key.into(), reason: reason.into() }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_in_messages() {
        let key = "k".repeat(10_000);
        let msg = Error::invalid_key(&key, "too long").to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.contains("10000 characters"), "{msg}");
    }

    #[test]
    fn feature_disabled_names_the_feature() {
        let err = Error::FeatureDisabled { scheme: "redis".into(), feature: "redis" };
        assert_eq!(err.to_string(), "the redis:// backend is not compiled in: enable the `redis` feature of `durable`");
    }

    #[test]
    fn unavailable_and_timeout_count_as_outages() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::unavailable("redis", io).is_unavailable());
        let timeout = Error::Timeout { backend: "redis", operation: "persist", after: Duration::from_secs(1) };
        assert!(timeout.is_unavailable());
        assert!(!Error::Conflict { key: "k".into() }.is_unavailable());
    }
}
