//! Test support for durable's backend crates (not published): stores of a test's own that
//! a test may kill and restart ([`servers`]), and the scenarios every backend runs on them
//! ([`scenarios`]). The conformance suite itself lives in `durable_core::conformance`.

pub mod load;
pub mod scenarios;
pub mod servers;

pub use load::CpuHog;
pub use scenarios::{
    REFUSAL_BOUND, Recovery, backup_stands_in_for_an_unreachable_store, connecting_where_nothing_listens_fails_at_once,
    outage_and_recovery, wait_until,
};
pub use servers::{Engine, OwnCluster, OwnEnsemble, OwnServer, spare_port};
