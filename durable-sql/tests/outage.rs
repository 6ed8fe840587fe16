//! A PostgreSQL cluster of the test's own, killed and restarted under live dicts; a service
//! started while it is down (the shared outage suite).

#![cfg(feature = "postgres")]

mod common;

durable_testkit::outage_suite!(durable_testkit::OwnServer::postgres, common::SqlTarget("postgres"));
