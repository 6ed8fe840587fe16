//! Reads: one key, many keys in multi-reads sized by request and answer bytes, and settling
//! a read that raced writers.

use std::collections::HashMap;

use bytes::Bytes;
use durable_core::{Error, Result, Version};
use zookeeper_client as zk;

use crate::backend::ZkBackend;
use crate::error::{map_error, to_version, unexpected, value_of};
use crate::{MAX_ATTEMPTS, NAME};

/// The most keys one multi-read asks for.
pub(crate) const MULTI_READ_KEYS: usize = 2_000;
/// The largest multi-read request: half of ZooKeeper's default 1 MB `jute.maxbuffer` (a
/// server drops a client whose request is larger).
pub(crate) const MULTI_READ_BYTES: usize = 512 * 1024;
/// What a read of many keys aims to keep each multi-read's answer under, judged from the
/// largest value it has seen so far.
pub(crate) const MULTI_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// The value size a read of many keys assumes before its first answer.
pub(crate) const FIRST_VALUE_GUESS: usize = 16 * 1024;
/// One `getData` in a multi-read, besides its path: operation header (type, done, error)
/// 9 bytes, path length 4, watch flag 1.
pub(crate) const MULTI_OP_BYTES: usize = 14;
/// One `getData` answer in a multi-read, besides its data: operation header 9, data length
/// 4, stat 68.
pub(crate) const MULTI_ANSWER_OP_BYTES: usize = 81;

/// What [`ZkBackend::read_guarded`] read.
pub(crate) struct Guarded {
    /// The key's value.
    pub(crate) value: Option<Vec<u8>>,
    /// The namespace node's version.
    pub(crate) guard: Option<i32>,
    /// The leases node's stat.
    pub(crate) leases: Option<zk::Stat>,
}

impl ZkBackend {
    /// `key`'s value and the namespace node's version as of one moment (one multi-read),
    /// for a write that depends on the value. Guarding that write with the namespace
    /// version, not the key node's own, is what makes it safe: a key deleted and created
    /// again between the read and the write starts over at node version 0, so a write
    /// guarded by the node version could land on a value it never read (ABA).
    /// The namespace node's version, `key`'s value and the leases node's stat, in one
    /// multi-read (one request). `None` for a node that is not there.
    pub(crate) async fn read_guarded(&self, client: &zk::Client, key: &str) -> Result<Guarded> {
        use zk::MultiReadResult as Read;
        let mut reader = client.new_multi_reader();
        reader.add_get_data(self.path()).map_err(map_error)?;
        reader.add_get_data(&self.key_path(key)).map_err(map_error)?;
        reader.add_get_data(self.leases_path()).map_err(map_error)?;
        let mut answers = reader.commit().await.map_err(map_error)?.into_iter();
        let guard = match answers.next() {
            Some(Read::Data { stat, .. }) => Some(stat.version),
            Some(Read::Error { err: zk::Error::NoNode }) => None,
            other => return Err(unexpected(format!("a multi-read answered {other:?}"))),
        };
        let Some(answer) = answers.next() else { return Err(unexpected("a multi-read answered too little")) };
        let value = value_of(answer)?.map(Vec::from);
        let leases = match answers.next() {
            Some(Read::Data { stat, .. }) => Some(stat),
            Some(Read::Error { err: zk::Error::NoNode }) => None,
            other => return Err(unexpected(format!("a multi-read answered {other:?}"))),
        };
        Ok(Guarded { value, guard, leases })
    }

    /// The request bytes of a multi-read of `key`'s data.
    pub(crate) fn request_bytes(&self, key: &str) -> usize {
        self.shared.config.ns_path.len() + 1 + key.len() + MULTI_OP_BYTES
    }

    /// Whether one multi-read can ask for the namespace node and every key of `keys`.
    pub(crate) fn fits_one_request(&self, keys: &[String]) -> bool {
        keys.len() < MULTI_READ_KEYS
            && keys.iter().map(|key| self.request_bytes(key)).sum::<usize>() + self.request_bytes("")
                <= MULTI_READ_BYTES
    }

    /// Sends one multi-read of the data of `paths`; a node that does not exist reads as
    /// `None`.
    pub(crate) async fn multi_read(
        &self,
        client: &zk::Client,
        operation: &'static str,
        paths: impl Iterator<Item = String>,
    ) -> Result<Vec<Option<Bytes>>> {
        let mut reader = client.new_multi_reader();
        let mut asked = 0;
        for path in paths {
            reader.add_get_data(&path).map_err(map_error)?;
            asked += 1;
        }
        let answers = self.bounded(operation, reader.commit()).await?.map_err(map_error)?;
        if answers.len() != asked {
            return Err(unexpected(format!("a multi-read of {asked} nodes answered {}", answers.len())));
        }
        answers.into_iter().map(value_of).collect()
    }

    /// Reads the values of `keys` (`None`: no such key) in as few multi-reads as
    /// ZooKeeper's request limit and a bound on each answer allow — not as of one moment:
    /// each request is. The operation timeout bounds each request, so a read of any size
    /// finishes while the store answers.
    pub(crate) async fn read_many(
        &self,
        client: &zk::Client,
        operation: &'static str,
        keys: &[String],
    ) -> Result<Vec<Option<Bytes>>> {
        let mut values = Vec::with_capacity(keys.len());
        let mut largest: Option<usize> = None;
        let mut rest = keys;
        while !rest.is_empty() {
            let answer_per_key = largest.unwrap_or(FIRST_VALUE_GUESS) + MULTI_ANSWER_OP_BYTES;
            let (mut take, mut request, mut answer) = (0, 0, 0);
            for key in rest {
                let (more_request, more_answer) = (self.request_bytes(key), answer_per_key + key.len());
                if take > 0
                    && (take == MULTI_READ_KEYS
                        || request + more_request > MULTI_READ_BYTES
                        || answer + more_answer > MULTI_ANSWER_BYTES)
                {
                    break;
                }
                (take, request, answer) = (take + 1, request + more_request, answer + more_answer);
            }
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            for read in self.multi_read(client, operation, batch.iter().map(|key| self.key_path(key))).await? {
                let size = read.as_ref().map_or(0, Bytes::len);
                largest = Some(largest.map_or(size, |largest| largest.max(size)));
                values.push(read);
            }
        }
        Ok(values)
    }

    /// Brings `values` — keys read, each at some moment after event `from` of `epoch` was
    /// processed, plus the keys changed since — to one version of the namespace, and returns
    /// it with the number of the event up to which it covers every change; `None` when the
    /// epoch ended (events may have been lost).
    ///
    /// A key whose event came after `from` may have changed after it was read; the rest have
    /// not changed since. So the keys changed after `from` are read again, with the
    /// namespace node's version, in one multi-read, which ZooKeeper answers as of one
    /// moment. The events of every change up to that moment arrive before the answer: if
    /// the ones that came meanwhile name only keys just read, every key is at that version.
    /// Otherwise the round is made again from there, and from the second round on the
    /// multi-read also lists the namespace's children: a key that came meanwhile and is not
    /// among them did not exist at that moment, so writers that keep adding new keys cannot
    /// starve the read either. Each round reads what changed during the one before.
    pub(crate) async fn settle(
        &self,
        client: &zk::Client,
        operation: &'static str,
        epoch: u64,
        mut from: u64,
        values: &mut HashMap<String, Option<Bytes>>,
    ) -> Result<Option<(Version, u64)>> {
        use zk::MultiReadResult as Read;
        let odd = |answer: Option<Read>| unexpected(format!("a multi-read answered {answer:?}"));
        let state = &self.shared.state;
        for round in 0..MAX_ATTEMPTS {
            state.drain();
            let (keys, seen) = {
                let tracker = state.tracker();
                if tracker.epoch != epoch {
                    return Ok(None);
                }
                (tracker.changed_after(from), tracker.seq)
            };
            if !self.fits_one_request(&keys) {
                // Too many changed keys for one request: read them in several, then settle
                // what changed meanwhile.
                let read = self.read_many(client, operation, &keys).await?;
                values.extend(keys.into_iter().zip(read));
                from = seen;
                continue;
            }
            let listing = round > 0;
            let mut reader = client.new_multi_reader();
            reader.add_get_data(self.path()).map_err(map_error)?;
            if listing {
                reader.add_get_children(self.path()).map_err(map_error)?;
            }
            for key in &keys {
                reader.add_get_data(&self.key_path(key)).map_err(map_error)?;
            }
            let mut answers = self.bounded(operation, reader.commit()).await?.map_err(map_error)?.into_iter();
            let version = match answers.next() {
                Some(Read::Data { stat, .. }) => to_version(stat.version),
                // The namespace node deleted (by hand: it has no children left): version 0,
                // every key gone.
                Some(Read::Error { err: zk::Error::NoNode }) => 0,
                other => return Err(odd(other)),
            };
            let children: Option<std::collections::HashSet<String>> = match listing.then(|| answers.next()) {
                None => None,
                Some(Some(Read::Children { children })) => Some(children.into_iter().collect()),
                Some(Some(Read::Error { err: zk::Error::NoNode })) => Some(Default::default()),
                Some(other) => return Err(odd(other)),
            };
            if answers.len() != keys.len() {
                return Err(Error::store(
                    NAME,
                    format!("a multi-read of {} keys answered {}", keys.len(), answers.len()),
                ));
            }
            for (key, answer) in keys.iter().zip(answers) {
                values.insert(key.clone(), value_of(answer)?);
            }
            state.drain();
            let tracker = state.tracker();
            if tracker.epoch != epoch {
                return Ok(None);
            }
            let read: std::collections::HashSet<&String> = keys.iter().collect();
            let mut missed = false;
            for (key, _) in tracker.changed.iter().filter(|(key, seq)| **seq > seen && !read.contains(key)) {
                match &children {
                    // Not there at that moment: whatever it is now came later.
                    Some(children) if !children.contains(key) => {
                        values.insert(key.clone(), None);
                    }
                    _ => missed = true,
                }
            }
            if !missed {
                return Ok(Some((version, seen)));
            }
            from = seen;
        }
        Err(unexpected("the namespace kept changing during a read"))
    }
}
