//! The conformance suite on the real ZooKeeper.

mod common;

durable_core::conformance_tests!(common::ZooKeeper);
durable_core::conformance_tests!(@leases common::ZooKeeper);

/// The suite through `counting(faulty(lazy(…)))`: wrappers keep every guarantee of what they
/// wrap.
mod wrapped {
    durable_core::conformance_tests!(durable_core::conformance::Wrapped(crate::common::ZooKeeper));
    durable_core::conformance_tests!(@leases durable_core::conformance::Wrapped(crate::common::ZooKeeper));
}
