//! The conformance suite on real object stores: moto's S3 server, Azurite's blob service
//! and a local directory.

mod common;

mod s3 {
    durable_core::conformance_tests!(crate::common::Store::S3);
    durable_core::conformance_tests!(@leases crate::common::Store::S3);
}

mod azure {
    durable_core::conformance_tests!(crate::common::Store::Azure);
    durable_core::conformance_tests!(@leases crate::common::Store::Azure);
}

mod localfs {
    durable_core::conformance_tests!(crate::common::Store::LocalFs);
    durable_core::conformance_tests!(@leases crate::common::Store::LocalFs);
}

/// The suite through `counting(faulty(lazy(…)))`: wrappers keep every guarantee of what they
/// wrap.
mod wrapped {
    durable_core::conformance_tests!(durable_core::conformance::Wrapped(crate::common::Store::LocalFs));
    durable_core::conformance_tests!(@leases durable_core::conformance::Wrapped(crate::common::Store::LocalFs));
}
