//! The conformance suite on the real Redis.

mod common;

durable_core::conformance_tests!(common::Redis);
