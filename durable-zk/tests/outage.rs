//! A ZooKeeper of the test's own, killed and restarted under live dicts; a service started
//! while it is down (the shared outage suite).

mod common;

durable_testkit::outage_suite!(durable_testkit::OwnServer::zookeeper, common::ZkTarget);
