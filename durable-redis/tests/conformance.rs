//! The conformance suite on the real Redis.

mod common;

durable_core::conformance_tests!(common::Redis);
durable_core::conformance_tests!(@leases common::Redis);

/// The suite through `counting(faulty(lazy(…)))`: wrappers keep every guarantee of what they
/// wrap.
mod wrapped {
    durable_core::conformance_tests!(durable_core::conformance::Wrapped(crate::common::Redis));
    durable_core::conformance_tests!(@leases durable_core::conformance::Wrapped(crate::common::Redis));
}
