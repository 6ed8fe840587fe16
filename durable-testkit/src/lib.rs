//! Test support for durable's backend crates (not published), in one home: stores of a
//! test's own that a test may kill and restart ([`servers`]), the scenarios every backend
//! runs on them ([`scenarios`]) and the parts of a failover test ([`failover`]), the suites a backend runs with one macro call each
//! ([`suites`]), where the shared test stores are ([`env`]), load ([`load`]), and a real OFREP
//! client ([`ofrep`]). The
//! conformance suite itself lives in `durable_core::conformance`, beside the contract it
//! checks; `wait_until` and `PATIENCE` come from there too.

#![warn(missing_docs)]

pub mod env;
pub mod failover;
pub mod load;
pub mod ofrep;
pub mod scenarios;
pub mod servers;
pub mod suites;
pub mod tls;

pub use failover::LiveDicts;
pub use load::CpuHog;
pub use scenarios::{
    REFUSAL_BOUND, Recovery, backup_stands_in_for_an_unreachable_store, connecting_where_nothing_listens_fails_at_once,
    outage_and_recovery,
};
pub use servers::{Engine, OwnCluster, OwnEnsemble, OwnServer, spare_port};
pub use suites::Target;

pub use durable_core::conformance::{PATIENCE, wait_until};

/// A journal as lines a test can compare: `v3 key` per record, a gap's own words per gap.
pub fn journal_outline(items: &[durable_core::JournalItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            durable_core::JournalItem::Record(record) => format!("v{} {}", record.version, record.key),
            durable_core::JournalItem::Gap(gap) => gap.to_string(),
        })
        .collect()
}
