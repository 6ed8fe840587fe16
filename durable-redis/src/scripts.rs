//! The Lua scripts behind every mutation and delta read: each runs atomically in Redis, in
//! one round trip.
//!
//! KEYS are always, in this order: the hash `<ns>`, the counter `<ns>last_updated`, the
//! change log `<ns>:log` (a sorted set: member = key, score = version of its latest change),
//! the log head `<ns>:log:head` (the counter value our last logged mutation left) and the
//! log floor `<ns>:log:floor` (deltas are only valid from this version on), the journal
//! `<ns>:journal` and its trim mark `<ns>:journal:trimmed`, and the leases `<ns>:leases`.
//! ARGV[1] is the log length and ARGV[2] the pub/sub channel (see `lua/commit.lua` for the
//! rest), then the keys whose leases are checked (`lua/fence.lua`); an operation's own
//! arguments follow.
//!
//! Each script is a file under `lua/`. A mutation is `publish.lua` (one server) or
//! `spublish.lua` (a cluster: sharded pub/sub), then `commit.lua`, then `lease_record.lua` and
//! `fence.lua` (the lease checks, run before anything is written), then its own body; the
//! forms are put together from whole files, never by rewriting text.

use redis::Script;

macro_rules! mutation {
    ($publish:literal, $body:literal) => {
        concat!(
            include_str!($publish),
            include_str!("lua/commit.lua"),
            include_str!("lua/lease_record.lua"),
            include_str!("lua/fence.lua"),
            include_str!($body)
        )
    };
}

macro_rules! mutations {
    ($publish:literal) => {
        Scripts {
            persist: Script::new(mutation!($publish, "lua/persist.lua")),
            apply: Script::new(mutation!($publish, "lua/apply.lua")),
            depersist: Script::new(mutation!($publish, "lua/depersist.lua")),
            pop: Script::new(mutation!($publish, "lua/pop.lua")),
            setdefault: Script::new(mutation!($publish, "lua/setdefault.lua")),
            compare_and_swap: Script::new(mutation!($publish, "lua/compare_and_swap.lua")),
            changes: Script::new(include_str!("lua/changes.lua")),
            lease: Script::new(concat!(
                include_str!($publish),
                include_str!("lua/lease_record.lua"),
                include_str!("lua/lease.lua")
            )),
            remove: Script::new(concat!(include_str!($publish), include_str!("lua/remove.lua"))),
        }
    };
}

/// Every script, loaded once per connection.
pub(crate) struct Scripts {
    /// `lua/persist.lua`: ARGV[3..] key, value, ... → the new version.
    pub(crate) persist: Script,
    /// `lua/apply.lua`: ARGV[3] guard or '', ARGV[4..] op, key, value, ... → the new version,
    /// nil when nothing changed, or {-1, current} when the guard does not hold.
    pub(crate) apply: Script,
    /// `lua/depersist.lua`: ARGV[3] key → the new version, or nil when absent.
    pub(crate) depersist: Script,
    /// `lua/pop.lua`: ARGV[3] key → {value, version}, or nil when absent.
    pub(crate) pop: Script,
    /// `lua/setdefault.lua`: ARGV[3] key, ARGV[4] default → {found} or {default, version}.
    pub(crate) setdefault: Script,
    /// `lua/compare_and_swap.lua`: see the file.
    pub(crate) compare_and_swap: Script,
    /// `lua/changes.lua`: ARGV[1] since → the delta, or {-1} when too old.
    pub(crate) changes: Script,
    /// `lua/lease.lua`: acquire, renew or release one key's lease.
    pub(crate) lease: Script,
    /// `lua/remove.lua`: ARGV[1] the channel → how many keys it deleted.
    pub(crate) remove: Script,
}

impl Scripts {
    /// The scripts for one server, or for a cluster (hints through `SPUBLISH`).
    pub(crate) fn new(cluster: bool) -> Self {
        if cluster { mutations!("lua/spublish.lua") } else { mutations!("lua/publish.lua") }
    }
}
