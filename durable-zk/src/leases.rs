//! Leases in ZooKeeper: the node `<namespace node>;leases`, whose data version orders every
//! lease operation with every write, and under it one node per leased key.
//!
//! - A lease is the node `<namespace node>;leases/<key>` holding `token|ttl ms|holder`. It
//!   expires at its `mtime` (the server's clock when it was granted or last renewed) plus
//!   its ttl. A release deletes it.
//! - Every lease operation sets the `;leases` node's data in the same multi, so that node's
//!   data version counts lease operations; a grant's token is the version that multi makes:
//!   strictly increasing across every key, holder and process.
//! - Every write reads the `;leases` node with its other reads (same request) and commits
//!   only if its version did not move (a `check` in the write's multi). When the node has
//!   children, the write also reads the leases of the keys it touches and, when one is
//!   there, the server's clock: the `mtime` a data write to `<namespace node>;clock` gets.
//!   So expiry is judged by the ensemble leader's clock, which stamps every `mtime`.
//! - Lease nodes are persistent, not ephemeral: a holder that dies loses its lease when the
//!   ttl runs out, and a session replaced after a disconnection keeps its leases.

use durable_core::lease::{self, LeaseAnswer, LeaseOp, StoredLease, Token};
use durable_core::{Error, Result};
use zookeeper_client as zk;

use crate::MAX_ATTEMPTS;
use crate::backend::ZkBackend;
use crate::error::{map_error, multi_error, unexpected};

/// A lease node as read: the lease, and its node version.
struct Found {
    lease: StoredLease,
    version: i32,
}

fn parse(data: &[u8], stat: &zk::Stat) -> Option<Found> {
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.splitn(3, '|');
    let token: Token = parts.next()?.parse().ok()?;
    let ttl_ms: i64 = parts.next()?.parse().ok()?;
    let holder = parts.next()?.to_owned();
    Some(Found { lease: StoredLease { token, holder, expires_ms: stat.mtime + ttl_ms }, version: stat.version })
}

fn encode(token: Token, ttl_ms: i64, holder: &str) -> Vec<u8> {
    format!("{token}|{ttl_ms}|{holder}").into_bytes()
}

impl ZkBackend {
    pub(crate) fn leases_path(&self) -> &str {
        &self.shared.config.leases_path
    }

    fn lease_path(&self, key: &str) -> String {
        format!("{}/{key}", self.shared.config.leases_path)
    }

    /// The server's clock, in ms: the `mtime` of a data write to `<namespace node>;clock`.
    async fn server_now(&self, client: &zk::Client) -> Result<i64> {
        let clock = format!("{};clock", self.shared.config.ns_path);
        match client.set_data(&clock, b"", None).await {
            Ok(stat) => Ok(stat.mtime),
            Err(zk::Error::NoNode) => match client.create(&clock, b"", &self.shared.config.create).await {
                Ok((stat, _)) => Ok(stat.mtime),
                Err(zk::Error::NodeExists) => {
                    client.set_data(&clock, b"", None).await.map(|stat| stat.mtime).map_err(map_error)
                }
                Err(err) => Err(map_error(err)),
            },
            Err(err) => Err(map_error(err)),
        }
    }

    /// The lease node of `key` and its version, if there is one.
    async fn read_lease(&self, client: &zk::Client, key: &str) -> Result<Option<Found>> {
        match client.get_data(&self.lease_path(key)).await {
            Ok((data, stat)) => match parse(&data, &stat) {
                Some(found) => Ok(Some(found)),
                None => {
                    Err(unexpected(format!("the lease node of {key:?} holds {:?}", String::from_utf8_lossy(&data))))
                }
            },
            Err(zk::Error::NoNode) => Ok(None),
            Err(err) => Err(map_error(err)),
        }
    }

    /// The lease rule for a write touching `leased` (keys with the token it carries for
    /// each), given the `;leases` node's stat as read with the write's other reads
    /// (`None`: the node is missing — made here, for a namespace made before leases).
    /// Returns the `;leases` version the write's multi must check.
    pub(crate) async fn lease_fence(
        &self,
        client: &zk::Client,
        leases: Option<zk::Stat>,
        leased: &[(&str, Option<Token>)],
    ) -> Result<i32> {
        let stat = match leases {
            Some(stat) => stat,
            None => {
                match client.create(self.leases_path(), b"", &self.shared.config.create).await {
                    Ok(_) | Err(zk::Error::NodeExists) => {}
                    Err(err) => return Err(map_error(err)),
                }
                client
                    .check_stat(self.leases_path())
                    .await
                    .map_err(map_error)?
                    .ok_or_else(|| unexpected("the leases node is gone"))?
            }
        };
        let fenced = leased.iter().any(|(_, fence)| fence.is_some());
        if stat.num_children == 0 && !fenced {
            return Ok(stat.version);
        }
        let found = futures::future::try_join_all(leased.iter().map(|(key, _)| self.read_lease(client, key))).await?;
        let now = if found.iter().any(Option::is_some) { self.server_now(client).await? } else { 0 };
        for ((key, fence), found) in leased.iter().zip(&found) {
            lease::enforce(key, *fence, found.as_ref().map(|found| &found.lease), now)?;
        }
        Ok(stat.version)
    }

    /// One lease operation: read the key's lease and the `;leases` node, judge by the
    /// server's clock, and commit the change in one multi with the `;leases` node's bump
    /// (conditional on both versions read); read again when another operation came first.
    pub(crate) async fn lease_op(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        let client = self.shared.state.client();
        let path = self.lease_path(key);
        let holder = self.shared.config.journal.actor_name().to_owned();
        for _ in 0..MAX_ATTEMPTS {
            let (found, leases) = futures::join!(self.read_lease(&client, key), client.check_stat(self.leases_path()));
            let found = found?;
            let leases = match leases.map_err(map_error)? {
                Some(stat) => stat,
                None => {
                    self.lease_fence(&client, None, &[]).await?;
                    continue;
                }
            };
            let now = if found.is_some() { self.server_now(&client).await? } else { 0 };
            let live = found.as_ref().filter(|found| found.lease.is_live(now));
            let token = match op {
                LeaseOp::Acquire { .. } => leases.version as Token + 1,
                LeaseOp::Renew { token, .. } | LeaseOp::Release { token } => token,
                other => return Err(unexpected(format!("unknown lease operation {other:?}"))),
            };
            let mut writer = client.new_multi_writer();
            writer.add_set_data(self.leases_path(), b"", Some(leases.version)).map_err(map_error)?;
            let change = match (op, live) {
                (LeaseOp::Acquire { .. }, Some(live)) => return Ok(LeaseAnswer::Held(live.lease.info(now))),
                (LeaseOp::Acquire { ttl } | LeaseOp::Renew { ttl, .. }, _) => {
                    if matches!(op, LeaseOp::Renew { .. }) && live.is_none_or(|live| live.lease.token != token) {
                        return Err(Error::LeaseLost { key: key.into(), token });
                    }
                    let data = encode(token, lease::ms(ttl), &holder_of(op, live, &holder));
                    match &found {
                        Some(found) => writer.add_set_data(&path, &data, Some(found.version)),
                        None => writer.add_create(&path, &data, &self.shared.config.create),
                    }
                    .map_err(map_error)?;
                    Some(ttl)
                }
                (LeaseOp::Release { .. }, Some(live)) if live.lease.token == token => {
                    writer.add_delete(&path, Some(live.version)).map_err(map_error)?;
                    None
                }
                (LeaseOp::Release { .. }, _) => return Ok(LeaseAnswer::Released { held: false }),
                (other, _) => return Err(unexpected(format!("unknown lease operation {other:?}"))),
            };
            let results = match writer.commit().await.map_err(multi_error) {
                Ok(results) => results,
                Err((Some(_), zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode)) => continue,
                Err((_, err)) => return Err(map_error(err)),
            };
            let Some(ttl) = change else { return Ok(LeaseAnswer::Released { held: true }) };
            let mtime = match results.last() {
                Some(zk::MultiWriteResult::SetData { stat }) => stat.mtime,
                Some(zk::MultiWriteResult::Create { stat, .. }) => stat.mtime,
                other => return Err(unexpected(format!("a lease multi answered {other:?}"))),
            };
            let granted =
                StoredLease { token, holder: holder_of(op, live, &holder), expires_ms: mtime + lease::ms(ttl) };
            return Ok(LeaseAnswer::Granted(granted.info(mtime)));
        }
        Err(unexpected("too much contention on the lease"))
    }
}

/// Who holds the lease after `op`: the acquirer, or on a renewal the lease's holder.
fn holder_of(op: LeaseOp, live: Option<&Found>, acquirer: &str) -> String {
    match (op, live) {
        (LeaseOp::Renew { .. }, Some(live)) => live.lease.holder.clone(),
        _ => acquirer.to_owned(),
    }
}
