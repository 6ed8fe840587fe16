//! Writes: one ZooKeeper multi per mutation, guarded by the namespace version and bumping
//! it (invariant 1), and requests pipelined in batches.

use durable_core::{Batch, Error, Op as BatchOp, Result, Version};
use zookeeper_client as zk;

use crate::MAX_ATTEMPTS;
use crate::backend::ZkBackend;
use crate::error::{map_error, multi_error, to_version, unexpected};
use crate::journal::Journaled;

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
    /// that node version, and only if the leases node is still at version `leases` (no
    /// lease operation since the write's lease check, [`ZkBackend::lease_fence`]); returns
    /// the new version, or which operation failed and why (the bump is the operation after
    /// the last of `ops`).
    pub(crate) async fn commit(
        &self,
        client: &zk::Client,
        ops: &[Op<'_>],
        guard: Option<i32>,
        leases: i32,
        journal: Option<&Journaled<'_>>,
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
            Op::Create(path, data) => writer.add_create(path, data, &self.shared.config.create),
            Op::Set(path, data) => writer.add_set_data(path, data, None),
            Op::Delete(path) => writer.add_delete(path, None),
        };
        for op in ops {
            add(&mut writer, op).map_err(|err| (None, err))?;
        }
        writer.add_check_version(self.leases_path(), leases).map_err(|err| (None, err))?;
        writer.add_set_data(ns, b"", guard).map_err(|err| (None, err))?;
        // The journal node of the version this multi makes: named from the guard, which the
        // multi checks, so the name is right whenever the multi succeeds.
        let journal = match (journal, guard) {
            (Some(journal), Some(guard)) if self.shared.config.journal.is_on() => {
                let version = to_version(guard) + 1;
                let data = journal.encode(self.shared.config.journal.actor_name());
                writer
                    .add_create(&self.journal_node(version), &data, &self.shared.config.create)
                    .map_err(|err| (None, err))?;
                Some(version)
            }
            _ => None,
        };
        let results = writer.commit().await.map_err(multi_error)?;
        let bump = if journal.is_some() { results.len().checked_sub(2) } else { results.len().checked_sub(1) };
        let version = match bump.and_then(|index| results.get(index)) {
            Some(zk::MultiWriteResult::SetData { stat }) => to_version(stat.version),
            other => return Err((None, zk::Error::UnexpectedError(format!("multi answered {other:?}")))),
        };
        if journal.is_some() {
            let created = match results.last() {
                Some(zk::MultiWriteResult::Create { stat, .. }) if !stat.is_invalid() => stat.ctime,
                _ => 0,
            };
            self.trim_journal(version, created).await;
        }
        Ok(version)
    }

    /// Removes the namespace: every key's znode, the journal's and the leases' nodes with
    /// their children, then the namespace node (children first: ZooKeeper deletes only
    /// leaves). A key another writer creates meanwhile leaves the namespace node not empty:
    /// the removal goes round again.
    pub(crate) async fn remove(&self) -> Result<()> {
        const OPERATION: &str = "remove_namespace";
        let config = &self.shared.config;
        let parents = [config.ns_path.as_str(), config.journal_path.as_str(), config.leases_path.as_str()];
        for _ in 0..MAX_ATTEMPTS {
            let client = self.shared.state.client();
            let mut doomed = Vec::new();
            for parent in parents {
                match self.bounded(OPERATION, client.get_children(parent)).await? {
                    Ok((children, _)) => doomed.extend(children.into_iter().map(|child| format!("{parent}/{child}"))),
                    Err(zk::Error::NoNode) => {}
                    Err(err) => return Err(map_error(err)),
                }
            }
            let gone = |answer: std::result::Result<(), zk::Error>| match answer {
                Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                Err(err) => Err(map_error(err)),
            };
            self.batched(OPERATION, &doomed, |path| async { gone(client.delete(path, None).await) }).await?;
            let mut emptied = true;
            for parent in [config.journal_path.as_str(), config.leases_path.as_str(), config.ns_path.as_str()] {
                match self.bounded(OPERATION, client.delete(parent, None)).await? {
                    Err(zk::Error::NotEmpty) => emptied = false,
                    answer => gone(answer)?,
                }
            }
            if emptied {
                return Ok(());
            }
        }
        Err(unexpected("other writers kept adding keys while the namespace was being removed"))
    }

    /// Applies `batch` as one multi: a put creates or overwrites its key's znode, a delete
    /// removes the znode when it exists; with a guard, the multi also requires the
    /// namespace node at that version (its node version is the dict version). `None` when
    /// nothing was there to change.
    pub(crate) async fn apply_batch(&self, operation: &'static str, batch: &Batch) -> Result<Option<Version>> {
        if self.shared.config.journal.is_on() {
            return self.apply_journaled(operation, batch).await;
        }
        let client = self.shared.state.client();
        let ops: Vec<(&str, &BatchOp)> = batch.ops().collect();
        let mut paths: Vec<String> = ops.iter().map(|(key, _)| self.key_path(key)).collect();
        // A version past what a node version can hold is never the current one.
        let guard = batch.guard_version().map(|expected| (expected, i32::try_from(expected).unwrap_or(i32::MAX)));
        // With a guard, the namespace node rides along with the keys: one round trip tells
        // its current version and which keys exist. (Without one, no request is added: a
        // plain write costs what it did before batches.)
        if guard.is_some() {
            paths.push(self.path().to_owned());
        }
        // The leases node rides along too, last (see `leases.rs`).
        paths.push(self.leases_path().to_owned());
        let leased = batch.leased_keys();
        for _ in 0..MAX_ATTEMPTS {
            // One request per key written, whatever the namespace's size.
            let mut existing = self
                .batched(operation, &paths, |path| async { client.check_stat(path).await.map_err(map_error) })
                .await?;
            let leases = existing.pop().flatten();
            let leases = self.lease_fence(&client, leases, &leased).await?;
            if let Some((expected, _)) = guard {
                let namespace = existing.pop().flatten();
                let current = namespace.map_or(0, |stat| to_version(stat.version));
                if current != expected {
                    return Err(Error::VersionConflict { expected, current });
                }
            }
            let changes =
                ops.iter().zip(&existing).any(|((_, op), stat)| matches!(op, BatchOp::Put(_)) || stat.is_some());
            if !changes {
                // Only removes of keys that were absent when read: nothing to write.
                return Ok(None);
            }
            let writes: Vec<Op<'_>> = ops
                .iter()
                .zip(&paths)
                .zip(existing)
                .flat_map(|(((_, op), path), stat)| match (op, stat) {
                    (BatchOp::Put(value), Some(_)) => vec![Op::Set(path, value)],
                    (BatchOp::Put(value), None) => vec![Op::Create(path, value)],
                    (BatchOp::Delete, Some(_)) => vec![Op::Delete(path)],
                    // A multi has no "is absent" check: creating and deleting the node in
                    // the same multi fails (NodeExists) if another writer created it since
                    // it was read, and leaves nothing otherwise.
                    (BatchOp::Delete, None) => vec![Op::Create(path, &[]), Op::Delete(path)],
                })
                .collect();
            match self.commit(&client, &writes, guard.map(|(_, node_version)| node_version), leases, None).await {
                Ok(version) => return Ok(Some(version)),
                // Created or deleted meanwhile, or (guarded) the namespace moved: look again.
                Err((Some(_), zk::Error::NoNode | zk::Error::NodeExists | zk::Error::BadVersion)) => continue,
                Err((_, err)) => return Err(map_error(err)),
            }
        }
        Err(unexpected("too much contention on the namespace"))
    }

    /// [`ZkBackend::apply_batch`] with the journal on: the namespace node and every key are
    /// read (the namespace node first, in one pipeline, so its version is from before the
    /// keys' values), and the multi is conditional on that namespace version — a write of
    /// ours in between fails it and the batch is read again — so the journal node is named
    /// by the right version and holds the old values the change replaced.
    async fn apply_journaled(&self, operation: &'static str, batch: &Batch) -> Result<Option<Version>> {
        let client = self.shared.state.client();
        let ops: Vec<(&str, &BatchOp)> = batch.ops().collect();
        let mut paths: Vec<String> = vec![self.path().to_owned()];
        paths.extend(ops.iter().map(|(key, _)| self.key_path(key)));
        paths.push(self.leases_path().to_owned());
        let leased = batch.leased_keys();
        for _ in 0..MAX_ATTEMPTS {
            let (current, old, leases) = if let [(key, _)] = ops[..] {
                // One key (the common write): the namespace node, the key and the leases
                // node in one multi-read, one request.
                let read = self.read_guarded(&client, key).await?;
                let Some(guard) = read.guard else { return Err(unexpected("the namespace node is gone")) };
                (to_version(guard), vec![read.value], read.leases)
            } else {
                let mut answers = self
                    .batched(operation, &paths, |path| async {
                        match client.get_data(path).await {
                            Ok(found) => Ok(Some(found)),
                            Err(zk::Error::NoNode) => Ok(None),
                            Err(err) => Err(map_error(err)),
                        }
                    })
                    .await?;
                let leases = answers.pop().flatten().map(|(_, stat)| stat);
                let old: Vec<Option<Vec<u8>>> =
                    answers.split_off(1).into_iter().map(|found| found.map(|(data, _)| data)).collect();
                let Some(Some((_, stat))) = answers.pop() else {
                    return Err(unexpected("the namespace node is gone"));
                };
                (to_version(stat.version), old, leases)
            };
            let leases = self.lease_fence(&client, leases, &leased).await?;
            if let Some(expected) = batch.guard_version()
                && expected != current
            {
                return Err(Error::VersionConflict { expected, current });
            }
            let mut changes = Vec::new();
            let mut writes = Vec::new();
            for (((key, op), path), old) in ops.iter().zip(&paths[1..]).zip(&old) {
                match (op, old) {
                    (BatchOp::Put(value), Some(_)) => writes.push(Op::Set(path, value)),
                    (BatchOp::Put(value), None) => writes.push(Op::Create(path, value)),
                    (BatchOp::Delete, Some(_)) => writes.push(Op::Delete(path)),
                    (BatchOp::Delete, None) => {
                        writes.extend([Op::Create(path, &[]), Op::Delete(path)]);
                        continue;
                    }
                }
                let new = match op {
                    BatchOp::Put(value) => Some(value.clone()),
                    BatchOp::Delete => None,
                };
                changes.push((*key, old.as_deref().map(bytes::Bytes::copy_from_slice), new));
            }
            if changes.is_empty() {
                return Ok(None);
            }
            let journaled = Journaled { changes, reason: batch.reason_text() };
            let size = batch.payload_size() + journaled.encode(self.shared.config.journal.actor_name()).len();
            if size > self.shared.config.max_value_size {
                return Err(Error::ValueTooLarge {
                    key: ops.first().map_or("", |(key, _)| key).into(),
                    size,
                    max: self.shared.config.max_value_size,
                    backend: crate::NAME,
                });
            }
            let guard = i32::try_from(current).unwrap_or(i32::MAX);
            match self.commit(&client, &writes, Some(guard), leases, Some(&journaled)).await {
                Ok(version) => return Ok(Some(version)),
                Err((Some(_), zk::Error::NoNode | zk::Error::NodeExists | zk::Error::BadVersion)) => continue,
                Err((_, err)) => return Err(map_error(err)),
            }
        }
        Err(unexpected("too much contention on the namespace"))
    }
}
