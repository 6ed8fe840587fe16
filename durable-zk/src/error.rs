//! ZooKeeper's errors and answers mapped to the core's.

use bytes::Bytes;
use durable_core::{Error, Result, Source, Version};
use zookeeper_client as zk;

use crate::NAME;

pub(crate) fn map_error(err: zk::Error) -> Error {
    use zk::Error as E;
    let source = Source::msg(err.to_string());
    match err {
        E::NoHosts | E::Timeout | E::SessionExpired | E::ConnectionLoss | E::ClientClosed | E::SessionMoved => {
            Error::StoreUnavailable { backend: NAME, source }
        }
        _ => Error::Store { backend: NAME, source },
    }
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
        other => Err(Error::store(NAME, format!("a multi-read answered {other:?}"))),
    }
}

pub(crate) fn to_version(version: i32) -> Version {
    Version::try_from(version).unwrap_or(0)
}
