//! Writes: one ZooKeeper multi per mutation, guarded by the namespace version and bumping
//! it (invariant 1), and requests pipelined in batches.

use bytes::Bytes;
use durable_core::{Result, Version};
use zookeeper_client as zk;

use crate::MAX_ATTEMPTS;
use crate::backend::ZkBackend;
use crate::error::{map_error, multi_error, to_version, unexpected};
use crate::names::PERSISTENT;

/// How many requests a write of many keys keeps in flight at once; see
/// `ZkBackend::batched`.
pub(crate) const BATCH: usize = 1_000;

pub(crate) enum Op<'a> {
    Create(&'a str, &'a [u8]),
    Set(&'a str, &'a [u8]),
    Delete(&'a str),
}

impl ZkBackend {
    /// Makes one request per item, [`BATCH`] of them in flight at a time, and returns the
    /// answers in order. The operation timeout bounds each batch, so going through a big
    /// namespace is cut off when the store stops answering, not for its size.
    pub(crate) async fn batched<'i, I, T, Fut>(
        &self,
        operation: &'static str,
        items: &'i [I],
        call: impl Fn(&'i I) -> Fut,
    ) -> Result<Vec<T>>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut answers = Vec::with_capacity(items.len());
        for batch in items.chunks(BATCH) {
            for answer in self.bounded(operation, futures::future::join_all(batch.iter().map(&call))).await? {
                answers.push(answer?);
            }
        }
        Ok(answers)
    }

    /// Commits `ops` + the namespace bump — with `guard`, only if the namespace is still at
    /// that node version; returns the new version, or which operation failed and why (the
    /// bump is the operation after the last of `ops`).
    pub(crate) async fn commit(
        &self,
        client: &zk::Client,
        ops: &[Op<'_>],
        guard: Option<i32>,
    ) -> std::result::Result<Version, (Option<usize>, zk::Error)> {
        // A request made while the session is disconnected waits in the client and is sent
        // if that session reconnects — long after this call has failed with a timeout. A
        // failed write must not land later: while disconnected, fail at once, send nothing.
        let refusal = match client.state() {
            zk::SessionState::SyncConnected => None,
            zk::SessionState::ConnectedReadOnly => Some(zk::Error::NotReadOnly),
            zk::SessionState::Expired => Some(zk::Error::SessionExpired),
            zk::SessionState::AuthFailed => Some(zk::Error::AuthFailed),
            zk::SessionState::Closed => Some(zk::Error::ClientClosed),
            _ => Some(zk::Error::ConnectionLoss),
        };
        if let Some(err) = refusal {
            return Err((None, err));
        }
        let mut writer = client.new_multi_writer();
        let ns = self.shared.config.ns_path.as_str();
        let add = |writer: &mut zk::MultiWriter<'_>, op: &Op<'_>| match op {
            Op::Create(path, data) => writer.add_create(path, data, &PERSISTENT),
            Op::Set(path, data) => writer.add_set_data(path, data, None),
            Op::Delete(path) => writer.add_delete(path, None),
        };
        for op in ops {
            add(&mut writer, op).map_err(|err| (None, err))?;
        }
        writer.add_set_data(ns, b"", guard).map_err(|err| (None, err))?;
        let results = writer.commit().await.map_err(multi_error)?;
        match results.last() {
            Some(zk::MultiWriteResult::SetData { stat }) => Ok(to_version(stat.version)),
            other => Err((None, zk::Error::UnexpectedError(format!("multi answered {other:?}")))),
        }
    }

    /// Writes `entries` as one mutation, creating or overwriting each key's znode.
    pub(crate) async fn write_all(&self, operation: &'static str, entries: &[(String, Bytes)]) -> Result<Version> {
        let client = self.shared.state.client();
        let paths: Vec<String> = entries.iter().map(|(key, _)| self.key_path(key)).collect();
        for _ in 0..MAX_ATTEMPTS {
            // Which of these keys exist: one request per key written, whatever the
            // namespace's size.
            let existing = self
                .batched(operation, &paths, |path| async { client.check_stat(path).await.map_err(map_error) })
                .await?;
            let ops: Vec<Op<'_>> = entries
                .iter()
                .zip(&paths)
                .zip(existing)
                .map(|(((_, value), path), stat)| match stat {
                    Some(_) => Op::Set(path, value),
                    None => Op::Create(path, value),
                })
                .collect();
            match self.commit(&client, &ops, None).await {
                Ok(version) => return Ok(version),
                // Created or deleted meanwhile: look again.
                Err((Some(_), zk::Error::NoNode | zk::Error::NodeExists)) => continue,
                Err((_, err)) => return Err(map_error(err)),
            }
        }
        Err(unexpected("too much contention on the namespace"))
    }
}
