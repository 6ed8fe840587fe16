//! The conformance suite on the real ZooKeeper.

mod common;

durable_core::conformance_tests!(common::ZooKeeper);

/// The suite through `counting(faulty(lazy(…)))`: wrappers keep every guarantee of what they
/// wrap.
mod wrapped {
    durable_core::conformance_tests!(durable_core::conformance::Wrapped(crate::common::ZooKeeper));
}
