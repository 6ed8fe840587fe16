//! [`ZkError`]: what went wrong talking to ZooKeeper, turned into `durable_core::Error` at
//! the crate boundary with itself as the source.

use bytes::Bytes;
use durable_core::{Error, Result, Source, Version};
use zookeeper_client as zk;

use crate::NAME;

/// What went wrong talking to ZooKeeper: the source of the `durable_core::Error` this crate
/// returns (`std::error::Error::source` downcasts to it). Its messages carry no credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZkError {
    /// The client reported an error (a lost connection, an expired session, a refused
    /// request, ...).
    #[error(transparent)]
    Client(#[from] zk::Error),
    /// An answer of a shape this crate did not expect, or an operation it gave up on
    /// (a key contended past the retry limit).
    #[error("{0}")]
    Other(String),
}

impl From<ZkError> for Error {
    fn from(err: ZkError) -> Self {
        use zk::Error as E;
        let unavailable = matches!(
            &err,
            ZkError::Client(
                E::NoHosts | E::Timeout | E::SessionExpired | E::ConnectionLoss | E::ClientClosed | E::SessionMoved
            )
        );
        let source = Source::new(err);
        if unavailable {
            Error::StoreUnavailable { backend: NAME, source }
        } else {
            Error::Store { backend: NAME, source }
        }
    }
}

pub(crate) fn map_error(err: zk::Error) -> Error {
    ZkError::Client(err).into()
}

/// An unexpected answer or an operation given up on, as the core's error.
pub(crate) fn unexpected(message: impl Into<String>) -> Error {
    ZkError::Other(message.into()).into()
}

pub(crate) fn multi_error(err: zk::MultiWriteError) -> (Option<usize>, zk::Error) {
    match err {
        zk::MultiWriteError::OperationFailed { index, source } => (Some(index), source),
        zk::MultiWriteError::RequestFailed { source } => (None, source),
    }
}

/// A key's value from its `getData` in a multi-read: `None` when there is no such key.
pub(crate) fn value_of(answer: zk::MultiReadResult) -> Result<Option<Bytes>> {
    match answer {
        zk::MultiReadResult::Data { data, .. } => Ok(Some(Bytes::from(data))),
        zk::MultiReadResult::Error { err: zk::Error::NoNode } => Ok(None),
        zk::MultiReadResult::Error { err } => Err(map_error(err)),
        other => Err(unexpected(format!("a multi-read answered {other:?}"))),
    }
}

pub(crate) fn to_version(version: i32) -> Version {
    Version::try_from(version).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_error_is_the_source_and_decides_unavailable() {
        let err = map_error(zk::Error::ConnectionLoss);
        assert!(err.is_unavailable(), "{err}");
        let source = err.source_as::<ZkError>();
        assert!(matches!(source, Some(ZkError::Client(zk::Error::ConnectionLoss))), "{source:?}");
        let refused = map_error(zk::Error::NoAuth);
        assert!(!refused.is_unavailable(), "{refused}");
        let odd = unexpected("a multi-read answered too little");
        let source = odd.source_as::<ZkError>();
        assert!(matches!(source, Some(ZkError::Other(_))), "{source:?}");
    }
}
