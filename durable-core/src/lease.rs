//! Leases: exclusive write access to one key for a time, with a **fencing token**, granted
//! and enforced by the store itself.
//!
//! This module is the protocol between the dict and a backend ([`LeaseOp`] in,
//! [`LeaseAnswer`] out, through [`Backend::lease`](crate::Backend::lease)) and the rules a
//! store applies, written once: [`decide`] grants, renews and releases, [`enforce`] checks a
//! write. A store that runs them in Rust (memory, SQL) calls these inside its atomic step; a
//! store that runs them inside the server (Redis's Lua) follows the same rules, and the
//! conformance suite holds every backend to them.
//!
//! The rules:
//! - A lease on a key is **live** while the store's clock is before its expiry. Expiry is
//!   always judged by the store's clock, never the client's: a client only learns how long
//!   a lease has left ([`LeaseInfo::remaining`]), measured by the store at its answer.
//! - Acquiring a key whose lease is live fails (the answer names the holder); otherwise the
//!   store grants a new lease with a token above every token it granted for that key.
//! - Renewing needs the live lease's token; releasing with a token that is no longer
//!   current does nothing.
//! - While a lease is live, a write to its key fails with [`Error::Leased`] unless it
//!   carries the lease's token ([`Batch::fence`](crate::Batch::fence)); a write carrying a
//!   token that is not the live lease's fails with [`Error::LeaseLost`]. Either way nothing
//!   is written — the check and the write are one atomic step in the store.

use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// A fencing token: strictly increasing with every grant on a key, across every holder and
/// every process.
pub type Token = u64;

/// The lease time used when none is given: 30 seconds.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// What a dict asks of the store about one key's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseOp {
    /// Grant a lease for `ttl` if the key has no live lease. The holder is the backend's
    /// actor name (the journal's, [`JournalConfig::actor`](crate::JournalConfig::actor)).
    Acquire {
        /// How long the lease lasts, by the store's clock.
        ttl: Duration,
    },
    /// Extend the live lease with this token to `ttl` from now (the store's now).
    Renew {
        /// The lease's token.
        token: Token,
        /// The new lease time, from now.
        ttl: Duration,
    },
    /// End the lease with this token, if it is still the live one.
    Release {
        /// The lease's token.
        token: Token,
    },
}

/// A lease as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease's fencing token.
    pub token: Token,
    /// Who holds it (the holder's actor name).
    pub holder: String,
    /// When it expires, by the store's clock.
    pub expires_at: SystemTime,
    /// How long it had left when the store answered, by the store's clock.
    pub remaining: Duration,
}

/// The store's answer to a [`LeaseOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// Acquired or renewed: the lease as it now stands.
    Granted(LeaseInfo),
    /// Not acquired: another lease is live.
    Held(LeaseInfo),
    /// Released; `held` is false when the token was no longer the live lease's (expired,
    /// released before, or taken over), so there was nothing to release.
    Released {
        /// Whether this call ended a live lease.
        held: bool,
    },
}

/// A lease as a store keeps it: token, holder and expiry in milliseconds since the Unix
/// epoch by the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    /// The fencing token.
    pub token: Token,
    /// The holder's actor name.
    pub holder: String,
    /// The expiry, in store milliseconds.
    pub expires_ms: i64,
}

impl StoredLease {
    /// Whether it is live at `now_ms` (store milliseconds).
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms
    }

    /// As reported to a client at `now_ms`.
    pub fn info(&self, now_ms: i64) -> LeaseInfo {
        LeaseInfo {
            token: self.token,
            holder: self.holder.clone(),
            expires_at: time_from_ms(self.expires_ms),
            remaining: Duration::from_millis(u64::try_from(self.expires_ms - now_ms).unwrap_or(0)),
        }
    }
}

/// What [`decide`] tells a store to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// Nothing to write.
    None,
    /// Store this lease for the key (a grant or a renewal).
    Put(StoredLease),
    /// Remove the key's lease (a release); the key's last token stays recorded.
    Remove,
}

/// The one place the lease rules are written: given the key's stored lease (live or not),
/// the highest token ever granted on the key, the store's clock and the holder's name,
/// returns the answer and the change the store makes in the same atomic step.
/// A renewal of a lease that is no longer live fails with [`Error::LeaseLost`].
pub fn decide(
    key: &str,
    op: LeaseOp,
    stored: Option<&StoredLease>,
    last_token: Token,
    now_ms: i64,
    holder: &str,
) -> Result<(LeaseAnswer, LeaseChange)> {
    let live = stored.filter(|lease| lease.is_live(now_ms));
    match op {
        LeaseOp::Acquire { ttl } => match live {
            Some(lease) => Ok((LeaseAnswer::Held(lease.info(now_ms)), LeaseChange::None)),
            None => {
                let token = last_token.max(stored.map_or(0, |lease| lease.token)) + 1;
                let lease = StoredLease { token, holder: holder.to_owned(), expires_ms: now_ms + ms(ttl) };
                Ok((LeaseAnswer::Granted(lease.info(now_ms)), LeaseChange::Put(lease)))
            }
        },
        LeaseOp::Renew { token, ttl } => match live {
            Some(lease) if lease.token == token => {
                let renewed = StoredLease { expires_ms: now_ms + ms(ttl), ..lease.clone() };
                Ok((LeaseAnswer::Granted(renewed.info(now_ms)), LeaseChange::Put(renewed)))
            }
            _ => Err(Error::LeaseLost { key: key.into(), token }),
        },
        LeaseOp::Release { token } => match live {
            Some(lease) if lease.token == token => Ok((LeaseAnswer::Released { held: true }, LeaseChange::Remove)),
            _ => Ok((LeaseAnswer::Released { held: false }, LeaseChange::None)),
        },
    }
}

/// The write rule, for one key a write touches: `fence` is the token the write carries for
/// it, `stored` the key's stored lease, `now_ms` the store's clock. Ok when the key has no
/// live lease and the write carries no token, or when the write carries the live lease's
/// token; [`Error::Leased`] when a live lease is another's; [`Error::LeaseLost`] when the
/// token is not the live lease's.
pub fn enforce(key: &str, fence: Option<Token>, stored: Option<&StoredLease>, now_ms: i64) -> Result<()> {
    let live = stored.filter(|lease| lease.is_live(now_ms));
    match (fence, live) {
        (None, None) => Ok(()),
        (Some(token), Some(lease)) if lease.token == token => Ok(()),
        (Some(token), _) => Err(Error::LeaseLost { key: key.into(), token }),
        (None, Some(lease)) => Err(leased(key, &lease.info(now_ms))),
    }
}

/// [`Error::Leased`] for `key`, held as `lease` says.
pub fn leased(key: &str, lease: &LeaseInfo) -> Error {
    Error::Leased {
        key: key.into(),
        holder: lease.holder.clone(),
        token: lease.token,
        expires_at: lease.expires_at,
        remaining: lease.remaining,
    }
}

/// A duration in whole milliseconds (at least 1, so a lease always lasts).
pub fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4).max(1)
}

/// Store milliseconds since the Unix epoch as a time.
pub fn time_from_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(100);

    fn granted(answer: LeaseAnswer) -> LeaseInfo {
        match answer {
            LeaseAnswer::Granted(info) => info,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    #[test]
    fn a_live_lease_is_held_and_an_expired_one_is_granted_anew_with_a_higher_token() {
        let (answer, change) = decide("k", LeaseOp::Acquire { ttl: TTL }, None, 0, 1_000, "a").unwrap();
        let first = granted(answer);
        assert_eq!((first.token, first.remaining), (1, TTL));
        let LeaseChange::Put(stored) = change else { panic!("a grant stores the lease") };
        let (answer, change) = decide("k", LeaseOp::Acquire { ttl: TTL }, Some(&stored), 1, 1_050, "b").unwrap();
        assert_eq!(answer, LeaseAnswer::Held(stored.info(1_050)));
        assert_eq!(change, LeaseChange::None);
        // At the expiry instant the lease is over.
        let (answer, _) = decide("k", LeaseOp::Acquire { ttl: TTL }, Some(&stored), 1, 1_100, "b").unwrap();
        let second = granted(answer);
        assert_eq!((second.token, second.holder.as_str()), (2, "b"));
        // A released key's last token still counts.
        let (answer, _) = decide("k", LeaseOp::Acquire { ttl: TTL }, None, 7, 2_000, "c").unwrap();
        assert_eq!(granted(answer).token, 8);
    }

    #[test]
    fn renewal_and_release_need_the_live_token() {
        let stored = StoredLease { token: 3, holder: "a".into(), expires_ms: 1_100 };
        let (answer, _) = decide("k", LeaseOp::Renew { token: 3, ttl: TTL }, Some(&stored), 3, 1_090, "a").unwrap();
        assert_eq!(granted(answer).expires_at, time_from_ms(1_190));
        let lost = decide("k", LeaseOp::Renew { token: 2, ttl: TTL }, Some(&stored), 3, 1_090, "a").unwrap_err();
        assert!(matches!(lost, Error::LeaseLost { token: 2, .. }), "{lost}");
        let late = decide("k", LeaseOp::Renew { token: 3, ttl: TTL }, Some(&stored), 3, 1_100, "a").unwrap_err();
        assert!(matches!(late, Error::LeaseLost { token: 3, .. }), "{late}");
        let (answer, change) = decide("k", LeaseOp::Release { token: 2 }, Some(&stored), 3, 1_000, "a").unwrap();
        assert_eq!((answer, change), (LeaseAnswer::Released { held: false }, LeaseChange::None));
        let (answer, change) = decide("k", LeaseOp::Release { token: 3 }, Some(&stored), 3, 1_000, "a").unwrap();
        assert_eq!((answer, change), (LeaseAnswer::Released { held: true }, LeaseChange::Remove));
    }

    #[test]
    fn writes_need_the_live_token_or_no_live_lease() {
        let stored = StoredLease { token: 5, holder: "host:1".into(), expires_ms: 2_000 };
        assert!(enforce("k", None, None, 1_000).is_ok());
        assert!(enforce("k", None, Some(&stored), 2_000).is_ok());
        assert!(enforce("k", Some(5), Some(&stored), 1_999).is_ok());
        let refused = enforce("k", None, Some(&stored), 1_000).unwrap_err();
        assert!(matches!(&refused, Error::Leased { holder, token: 5, .. } if holder == "host:1"), "{refused}");
        assert!(refused.to_string().contains("host:1"), "{refused}");
        for (fence, lease) in [(Some(4), Some(&stored)), (Some(5), None)] {
            let lost = enforce("k", fence, lease, 1_000).unwrap_err();
            assert!(matches!(lost, Error::LeaseLost { .. }), "{lost}");
        }
        // An expired lease's token is lost too.
        assert!(matches!(enforce("k", Some(5), Some(&stored), 2_000), Err(Error::LeaseLost { .. })));
    }
}
