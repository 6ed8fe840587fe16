//! The backend's copy of its namespace, brought up to date by replaying the commit log:
//! what writers decide against, and what deltas are answered from.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use durable_core::lease::{self, LeaseChange, StoredLease, Token};
use durable_core::{Error, KeyChange, LeaseAnswer, LeaseOp, Result, Version};

use crate::format::{Commit, KeptLease, LeaseData, LeaseStep, LeaseTable, Val};

/// One key's stored form and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub val: Val,
    pub bytes: Bytes,
}

/// One replayed commit: its version, the keys it touched and when the store wrote it.
pub(crate) struct Logged {
    pub version: Version,
    pub keys: Vec<Arc<str>>,
    pub time: SystemTime,
}

pub(crate) struct Replica {
    /// Whether it was ever loaded (from a checkpoint or the log's start).
    pub loaded: bool,
    pub version: Version,
    /// The id of the commit that made `version`, when it was replayed (not loaded from a
    /// checkpoint): the periodic check compares it with the stored one.
    pub head_id: Option<u64>,
    pub entries: imbl::HashMap<String, Entry>,
    /// Replayed commits, oldest first; deltas after `log_floor` are answered from it.
    pub log: VecDeque<Logged>,
    pub log_floor: Version,
    log_len: usize,
    /// The journal's trim point as the log last said.
    pub trim_through: Version,
    /// When the store was last checked in full (checkpoints listed, head confirmed).
    pub verified_at: Option<Instant>,
    /// Leases not yet ended by a release or found expired by a commit, by key.
    pub leases: HashMap<String, StoredLease>,
    /// The highest token ever granted per key.
    pub last_tokens: HashMap<String, Token>,
    /// Versions whose write a lease refused (they changed nothing and are no records).
    pub void: BTreeSet<Version>,
    /// The store's clock as this handle last saw it at one of its own commits.
    pub clock: Option<ClockReading>,
}

/// One reading of the store's clock: the time (floored to the store's resolution) the store
/// gave an object this handle created, and when the create was sent and answered here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClockReading {
    pub store_ms: i64,
    pub resolution_ms: i64,
    pub sent: Instant,
    pub answered: Instant,
}

impl ClockReading {
    /// Bounds on the store's clock now, in store milliseconds: the create was stamped
    /// between its sending and its answer, within the resolution. A margin covers the
    /// two clocks running at slightly different rates.
    pub fn bounds(&self) -> (i64, i64) {
        let since_sent = lease::ms(self.sent.elapsed());
        let since_answer = lease::ms(self.answered.elapsed());
        let margin = since_sent / 1000 + 5;
        (self.store_ms + since_answer - margin, self.store_ms + self.resolution_ms + since_sent + margin)
    }
}

/// What replaying one commit decided.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Its changes were made.
    Applied,
    /// A lease refused its write: nothing changed.
    Refused(Error),
    /// A lease operation's answer.
    Lease(Result<LeaseAnswer>),
}

impl LeaseStep {
    fn op(self) -> LeaseOp {
        let ttl = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        match self {
            LeaseStep::Acquire { ttl_ms } => LeaseOp::Acquire { ttl: ttl(ttl_ms) },
            LeaseStep::Renew { token, ttl_ms } => LeaseOp::Renew { token, ttl: ttl(ttl_ms) },
            LeaseStep::Release { token } => LeaseOp::Release { token },
        }
    }
}

impl Replica {
    pub fn new(log_len: usize) -> Self {
        Self {
            loaded: false,
            version: 0,
            head_id: None,
            entries: imbl::HashMap::new(),
            log: VecDeque::new(),
            log_floor: 0,
            log_len: log_len.max(1),
            trim_through: 0,
            verified_at: None,
            leases: HashMap::new(),
            last_tokens: HashMap::new(),
            void: BTreeSet::new(),
            clock: None,
        }
    }

    /// Starts over at `version` with `entries` and the lease table (a checkpoint's, or
    /// empty at 0).
    pub fn reset(
        &mut self,
        version: Version,
        entries: imbl::HashMap<String, Entry>,
        trim_through: Version,
        table: Option<LeaseTable>,
    ) {
        self.loaded = true;
        self.version = version;
        self.head_id = None;
        self.entries = entries;
        self.log.clear();
        self.log_floor = version;
        self.trim_through = trim_through;
        let table = table.unwrap_or_default();
        self.leases = table
            .leases
            .into_iter()
            .map(|kept| (kept.key, StoredLease { token: kept.token, holder: kept.holder, expires_ms: kept.expires_ms }))
            .collect();
        self.last_tokens = table.last_tokens.into_iter().collect();
        self.void = table.void.into_iter().collect();
    }

    /// The lease table a checkpoint at this version carries; `None` when the namespace
    /// never had a lease.
    pub fn lease_table(&self) -> Option<LeaseTable> {
        if self.leases.is_empty() && self.last_tokens.is_empty() && self.void.is_empty() {
            return None;
        }
        let mut leases: Vec<KeptLease> = self
            .leases
            .iter()
            .map(|(key, lease)| KeptLease {
                key: key.clone(),
                token: lease.token,
                holder: lease.holder.clone(),
                expires_ms: lease.expires_ms,
            })
            .collect();
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        let mut last_tokens: Vec<(String, Token)> = self.last_tokens.iter().map(|(k, t)| (k.clone(), *t)).collect();
        last_tokens.sort();
        let void = self.void.range(self.trim_through + 1..).copied().collect();
        Some(LeaseTable { leases, last_tokens, void })
    }

    /// Whether replaying `commit` needs the store's time of it: a lease operation, or a
    /// write touching a key that has a lease.
    pub fn needs_time(&self, commit: &Commit) -> bool {
        match &commit.lease {
            Some(LeaseData::Op { .. }) => true,
            fences => {
                let fenced = match fences {
                    Some(LeaseData::Fences(fences)) => fences.as_slice(),
                    _ => &[],
                };
                commit
                    .changes
                    .iter()
                    .map(|c| &c.key)
                    .chain(fenced.iter().map(|(key, _)| key))
                    .any(|key| self.leases.contains_key(key))
            }
        }
    }

    /// Replays `commit` (the next version), its large values taken from `blobs`; `now_ms`
    /// is the store's time of it (floored to the store's resolution), needed when
    /// [`needs_time`](Self::needs_time) says so. A commit that could not be read is
    /// replayed as `None`: the version passes, nothing changes. Lease rules are applied
    /// here, so every reader decides every commit the same way.
    pub fn apply(
        &mut self,
        version: Version,
        commit: Option<&Commit>,
        blobs: &HashMap<String, Bytes>,
        time: SystemTime,
        now_ms: Option<i64>,
    ) -> Outcome {
        debug_assert_eq!(version, self.version + 1);
        let mut keys = Vec::new();
        let mut outcome = Outcome::Applied;
        if let Some(commit) = commit {
            let now = now_ms.unwrap_or_else(|| {
                debug_assert!(!self.needs_time(commit), "version {version} was replayed without its time");
                i64::MIN
            });
            outcome = self.judge(commit, now);
            if let Outcome::Refused(_) = outcome {
                self.void.insert(version);
            }
        }
        if let (Some(commit), Outcome::Applied) = (commit, &outcome) {
            for change in &commit.changes {
                match &change.new {
                    Some(val) => {
                        let Some(bytes) = resolve(val, blobs) else {
                            // The caller fetched every blob first; a missing one is a bug.
                            tracing::error!(key = %change.key, "a large value was not fetched before replay");
                            continue;
                        };
                        self.entries.insert(change.key.clone(), Entry { val: val.clone(), bytes });
                    }
                    None => {
                        self.entries.remove(&change.key);
                    }
                }
                keys.push(Arc::from(change.key.as_str()));
            }
            self.trim_through = self.trim_through.max(commit.trim_through);
        }
        self.version = version;
        self.head_id = commit.map(|commit| commit.id);
        self.log.push_back(Logged { version, keys, time });
        while self.log.len() > self.log_len {
            if let Some(old) = self.log.pop_front() {
                self.log_floor = old.version;
            }
        }
        outcome
    }

    /// The lease rules for `commit` at the store's time `now`: a lease operation is
    /// decided and its change made; a write is checked on every key it touches. A lease
    /// a commit finds expired is removed, so that once over it stays over whatever the
    /// times of later commits (stores stamp objects from more than one clock).
    fn judge(&mut self, commit: &Commit, now: i64) -> Outcome {
        match &commit.lease {
            Some(LeaseData::Op { key, holder, op }) => {
                let stored = self.leases.get(key);
                let expired = stored.is_some_and(|lease| !lease.is_live(now));
                let last = self.last_tokens.get(key).copied().unwrap_or(0);
                let decided = lease::decide(key, op.op(), stored, last, now, holder);
                if expired {
                    self.leases.remove(key);
                }
                match decided {
                    Ok((answer, change)) => {
                        match change {
                            LeaseChange::Put(lease) => {
                                let last = self.last_tokens.entry(key.clone()).or_default();
                                *last = (*last).max(lease.token);
                                self.leases.insert(key.clone(), lease);
                            }
                            LeaseChange::Remove => {
                                self.leases.remove(key);
                            }
                            LeaseChange::None => {}
                        }
                        Outcome::Lease(Ok(answer))
                    }
                    Err(err) => Outcome::Lease(Err(err)),
                }
            }
            lease => {
                let fences: &[(String, Token)] = match lease {
                    Some(LeaseData::Fences(fences)) => fences,
                    _ => &[],
                };
                let fence = |key: &str| fences.iter().find(|(k, _)| k == key).map(|(_, token)| *token);
                let mut refused = None;
                let keys = commit.changes.iter().map(|c| c.key.as_str()).chain(fences.iter().map(|(k, _)| k.as_str()));
                let mut expired = Vec::new();
                for key in keys {
                    let stored = self.leases.get(key);
                    if stored.is_some_and(|lease| !lease.is_live(now)) {
                        expired.push(key.to_owned());
                    }
                    if refused.is_none()
                        && let Err(err) = lease::enforce(key, fence(key), stored, now)
                    {
                        refused = Some(err);
                    }
                }
                for key in expired {
                    self.leases.remove(&key);
                }
                refused.map_or(Outcome::Applied, Outcome::Refused)
            }
        }
    }

    /// Every key changed after `since` (at least `log_floor`), once, with its value now.
    pub fn changes_since(&self, since: Version) -> Vec<KeyChange> {
        let mut seen: HashMap<&str, Version> = HashMap::new();
        for logged in self.log.iter().rev().take_while(|logged| logged.version > since) {
            for key in &logged.keys {
                seen.entry(&**key).or_insert(logged.version);
            }
        }
        seen.into_iter()
            .map(|(key, version)| KeyChange {
                key: key.to_owned(),
                value: self.entries.get(key).map(|entry| entry.bytes.clone()),
                version,
            })
            .collect()
    }

    /// The newest replayed version written before `cutoff`, if any.
    pub fn last_before(&self, cutoff: SystemTime) -> Option<Version> {
        self.log.iter().take_while(|logged| logged.time < cutoff).last().map(|logged| logged.version)
    }
}

/// A value's bytes: inline, or the fetched object (`blobs` by object name).
pub(crate) fn resolve(val: &Val, blobs: &HashMap<String, Bytes>) -> Option<Bytes> {
    match (val, val.object()) {
        (Val::Inline(bytes), _) => Some(bytes.clone()),
        (_, Some((name, _))) => blobs.get(&name).cloned(),
        (_, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Change;

    fn commit(version: Version, changes: &[&str], lease: Option<LeaseData>) -> Commit {
        Commit {
            version,
            id: version,
            journaled: true,
            actor: None,
            reason: None,
            trim_through: 0,
            changes: changes
                .iter()
                .map(|key| Change { key: (*key).into(), new: Some(Val::Inline(Bytes::from_static(b"1"))), old: None })
                .collect(),
            lease,
        }
    }

    fn op(key: &str, holder: &str, op: LeaseStep) -> Option<LeaseData> {
        Some(LeaseData::Op { key: key.into(), holder: holder.into(), op })
    }

    /// Decisions follow the store's times of the commits alone — whatever this machine's
    /// clock says (the store here is an hour ahead, in step, or an hour behind) — and a
    /// lease a commit found expired stays over even if a later commit carries an earlier
    /// time (a store stamps objects from more than one clock).
    #[test]
    fn lease_decisions_follow_the_stores_times_only() {
        let here = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
        for offset in [3_600_000, 0, -3_600_000] {
            let t0 = (here + offset) / 1000 * 1000;
            let mut replica = Replica::new(100);
            replica.reset(0, imbl::HashMap::new(), 0, None);
            let none = HashMap::new();
            let step = |replica: &mut Replica, commit: Commit, at: i64| {
                let version = commit.version;
                assert!(replica.needs_time(&commit) || commit.lease.is_none());
                replica.apply(version, Some(&commit), &none, SystemTime::now(), Some(at))
            };
            let granted = step(&mut replica, commit(1, &[], op("k", "a", LeaseStep::Acquire { ttl_ms: 1_800 })), t0);
            let Outcome::Lease(Ok(LeaseAnswer::Granted(info))) = granted else { panic!("{granted:?}") };
            assert_eq!((info.token, info.remaining), (1, Duration::from_millis(1_800)));
            let theirs = step(&mut replica, commit(2, &["k"], None), t0 + 1_000);
            assert!(matches!(theirs, Outcome::Refused(Error::Leased { .. })), "{theirs:?}");
            assert!(replica.void.contains(&2) && replica.entries.is_empty());
            let fenced = Some(LeaseData::Fences(vec![("k".into(), 1)]));
            assert!(matches!(step(&mut replica, commit(3, &["k"], fenced), t0 + 1_000), Outcome::Applied));
            assert!(matches!(step(&mut replica, commit(4, &["k"], None), t0 + 1_800), Outcome::Applied));
            assert!(replica.leases.is_empty(), "found expired, the lease is gone");
            let late =
                step(&mut replica, commit(5, &[], op("k", "a", LeaseStep::Renew { token: 1, ttl_ms: 1_800 })), t0);
            assert!(matches!(late, Outcome::Lease(Err(Error::LeaseLost { token: 1, .. }))), "{late:?}");
            let again = step(&mut replica, commit(6, &[], op("k", "b", LeaseStep::Acquire { ttl_ms: 1_000 })), t0);
            let Outcome::Lease(Ok(LeaseAnswer::Granted(info))) = again else { panic!("{again:?}") };
            assert_eq!(info.token, 2, "tokens go on from the last one granted");
            assert_eq!(replica.lease_table().map(|table| table.void), Some(vec![2]));
        }
    }
}
