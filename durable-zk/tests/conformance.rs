//! The conformance suite on the real ZooKeeper.

mod common;

durable_core::conformance_tests!(common::ZooKeeper);
