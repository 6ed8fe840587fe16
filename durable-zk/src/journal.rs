//! The change journal in ZooKeeper: the node `<namespace node>;journal` (`;` cannot appear
//! in a namespace, so no dict's node can be named so) holds one child per version, named
//! by the version in 20 digits, created in the same multi as the change; its data is the
//! version's records (MessagePack: actor, reason, and key, old value, new value per changed
//! key) and its creation time (`ctime`) is the store's clock. The journal node's own data
//! is the version retention trimmed through.

use std::time::SystemTime;

use bytes::Bytes;
use durable_core::journal::time_from_millis;
use durable_core::{JournalPage, JournalRecord, Result, Version};
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::backend::ZkBackend;
use crate::error::{map_error, unexpected};

/// How many journal nodes are read per round trip.
const NODES_PER_READ: usize = 100;

/// How many journal nodes one trimming multi deletes (about 40 bytes a path: far under
/// ZooKeeper's 1 MB request).
const TRIM_CHUNK: usize = 1_000;

/// One version's records as a journal node holds them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Node {
    /// The actor.
    a: String,
    /// The reason, if any.
    r: Option<String>,
    /// Key, old value, new value — per changed key, in key order.
    c: Vec<(String, Option<Bytes>, Option<Bytes>)>,
}

/// The changes of one mutation, to be journaled by [`ZkBackend::commit`].
pub(crate) struct Journaled<'a> {
    pub(crate) changes: Vec<(&'a str, Option<Bytes>, Option<Bytes>)>,
    pub(crate) reason: Option<&'a str>,
}

impl Journaled<'_> {
    /// The node's data.
    pub(crate) fn encode(&self, actor: &str) -> Vec<u8> {
        let node = Node {
            a: actor.to_owned(),
            r: self.reason.map(str::to_owned),
            c: self.changes.iter().map(|(key, old, new)| ((*key).to_owned(), old.clone(), new.clone())).collect(),
        };
        rmp_serde::to_vec_named(&node).unwrap_or_default()
    }
}

/// The name of the journal node of `version`.
pub(crate) fn node_name(version: Version) -> String {
    format!("{version:020}")
}

impl ZkBackend {
    pub(crate) fn journal_node(&self, version: Version) -> String {
        format!("{}/{}", self.shared.config.journal_path, node_name(version))
    }

    /// The journaled versions (sorted) and the trimmed-through version.
    async fn journal_listing(&self, client: &zk::Client) -> Result<(Vec<Version>, Version)> {
        let (versions, trimmed, _) = self.journal_listing_versioned(client).await?;
        Ok((versions, trimmed))
    }

    /// [`ZkBackend::journal_listing`], and the journal node's data version (to update the
    /// trimmed-through version only over what was read).
    async fn journal_listing_versioned(&self, client: &zk::Client) -> Result<(Vec<Version>, Version, i32)> {
        let path = &self.shared.config.journal_path;
        let (listed, data) = futures::join!(client.get_children(path), client.get_data(path));
        let children = match listed {
            Ok((children, _)) => children,
            Err(zk::Error::NoNode) => return Ok((Vec::new(), 0, -1)),
            Err(err) => return Err(map_error(err)),
        };
        let (trimmed, data_version) = match data {
            Ok((data, stat)) => {
                (std::str::from_utf8(&data).ok().and_then(|text| text.parse().ok()).unwrap_or(0), stat.version)
            }
            Err(zk::Error::NoNode) => (0, -1),
            Err(err) => return Err(map_error(err)),
        };
        let mut versions: Vec<Version> = children.iter().filter_map(|name| name.parse().ok()).collect();
        versions.sort_unstable();
        Ok((versions, trimmed, data_version))
    }

    /// The records of `versions`, read [`NODES_PER_READ`] nodes per round trip.
    async fn read_journal_nodes(&self, client: &zk::Client, versions: &[Version]) -> Result<Vec<JournalRecord>> {
        let mut records = Vec::new();
        for chunk in versions.chunks(NODES_PER_READ) {
            let reads = chunk.iter().map(|version| {
                let path = self.journal_node(*version);
                async move { client.get_data(&path).await }
            });
            let answers = self.bounded("journal", futures::future::join_all(reads)).await?;
            for (version, answer) in chunk.iter().zip(answers) {
                let (data, stat) = match answer {
                    Ok(found) => found,
                    Err(zk::Error::NoNode) => continue, // trimmed meanwhile
                    Err(err) => return Err(map_error(err)),
                };
                let node: Node = rmp_serde::from_slice(&data)
                    .map_err(|err| unexpected(format!("journal node {version} cannot be read: {err}")))?;
                let time = time_from_millis(stat.ctime);
                for (key, old, new) in node.c {
                    records.push(JournalRecord {
                        version: *version,
                        key,
                        old,
                        new,
                        actor: node.a.clone(),
                        reason: node.r.clone(),
                        time,
                    });
                }
            }
        }
        Ok(records)
    }

    /// The namespace version first (after a `sync` on an ensemble, as `last_updated`), then
    /// the journal nodes after `after` up to it, whole nodes until `limit` records.
    pub(crate) async fn journal_page(&self, after: Version, limit: usize) -> Result<JournalPage> {
        use durable_core::Backend;
        let version = self.last_updated().await?;
        let client = self.shared.state.client();
        let (versions, trimmed_through) = self.bounded("journal", self.journal_listing(&client)).await??;
        let wanted: Vec<Version> = versions.into_iter().filter(|v| *v > after && *v <= version).collect();
        let mut records = Vec::new();
        let mut read = 0;
        while read < wanted.len() && records.len() < limit.max(1) {
            let end = (read + NODES_PER_READ).min(wanted.len());
            records.extend(self.read_journal_nodes(&client, &wanted[read..end]).await?);
            read = end;
        }
        Ok(JournalPage { records, version, trimmed_through, more: read < wanted.len(), unchanged: Vec::new() })
    }

    /// The records of `key`, newest first: the nodes read from the newest back.
    pub(crate) async fn key_history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        let client = self.shared.state.client();
        let (versions, _) = self.bounded("history", self.journal_listing(&client)).await??;
        let mut found = Vec::new();
        for chunk in versions.rchunks(NODES_PER_READ) {
            let mut records = self.read_journal_nodes(&client, chunk).await?;
            records.retain(|record| record.key == key);
            found.extend(records.into_iter().rev());
            if found.len() >= limit {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// After a write made `version` (its journal node created at `created`, ms): removes
    /// the nodes retention no longer keeps and records how far it went. Best effort — a
    /// failure is logged and the next trimming point tries again.
    pub(crate) async fn trim_journal(&self, version: Version, created: i64) {
        let journal = &self.shared.config.journal;
        let by_count = journal.trim_through(version);
        let by_age = journal.trims_by_age_at(version);
        if by_count.is_none() && !by_age {
            return;
        }
        let work = async {
            let client = &self.shared.state.client();
            let (versions, trimmed, data_version) = self.journal_listing_versioned(client).await?;
            let mut through = by_count.unwrap_or(0);
            if by_age && let Some(age) = journal.kept_for() {
                // A multi's create answers no valid stat on some servers (ZOOKEEPER-4026):
                // read the new node's creation time then.
                let created = match created {
                    0 => match client.check_stat(&self.journal_node(version)).await {
                        Ok(Some(stat)) => stat.ctime,
                        Ok(None) => 0,
                        Err(err) => return Err(map_error(err)),
                    },
                    known => known,
                };
                let cutoff =
                    time_from_millis(created).and_then(|now| now.checked_sub(age)).unwrap_or(SystemTime::UNIX_EPOCH);
                for chunk in versions.chunks(NODES_PER_READ) {
                    let stats = futures::future::join_all(chunk.iter().map(|v| {
                        let path = self.journal_node(*v);
                        async move { client.check_stat(&path).await }
                    }))
                    .await;
                    let mut young = false;
                    for (v, stat) in chunk.iter().zip(stats) {
                        match stat {
                            Ok(Some(stat)) if time_from_millis(stat.ctime).is_some_and(|at| at < cutoff) => {
                                through = through.max(*v);
                            }
                            Ok(None) => {}
                            Ok(Some(_)) => {
                                young = true;
                                break;
                            }
                            Err(err) => return Err(map_error(err)),
                        }
                    }
                    if young {
                        break;
                    }
                }
            }
            if through <= trimmed {
                return Ok(());
            }
            let doomed: Vec<String> =
                versions.iter().filter(|v| **v <= through).map(|v| self.journal_node(*v)).collect();
            // One multi per chunk: one transaction (one log write on the server) deletes a
            // chunk, where a delete each would cost a transaction each. A chunk a concurrent
            // trimmer got to first fails as a whole (NoNode): it is deleted node by node.
            for chunk in doomed.chunks(TRIM_CHUNK) {
                let mut writer = client.new_multi_writer();
                for path in chunk {
                    writer.add_delete(path, None).map_err(map_error)?;
                }
                match writer.commit().await.map_err(crate::error::multi_error) {
                    Ok(_) => continue,
                    Err((Some(_), zk::Error::NoNode)) => {}
                    Err((_, err)) => return Err(map_error(err)),
                }
                let deletes = chunk.iter().map(|path| async move { client.delete(path, None).await });
                for answer in futures::future::join_all(deletes).await {
                    match answer {
                        Ok(()) | Err(zk::Error::NoNode) => {}
                        Err(err) => return Err(map_error(err)),
                    }
                }
            }
            let path = &self.shared.config.journal_path;
            // Only over the value read: a concurrent trimmer that went further wins.
            match client.set_data(path, through.to_string().as_bytes(), Some(data_version)).await {
                Ok(_) | Err(zk::Error::BadVersion) => {}
                Err(err) => return Err(map_error(err)),
            }
            Ok::<(), durable_core::Error>(())
        };
        match tokio::time::timeout(self.shared.config.timeout * 4, work).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "durable-zk: trimming the journal failed; the next trim retries")
            }
            Err(_) => tracing::warn!("durable-zk: trimming the journal timed out; the next trim retries"),
        }
    }
}
