//! A PostgreSQL cluster and a MariaDB of the test's own, each killed and restarted under
//! live dicts; a service started while its store is down (the shared outage suite).

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    durable_testkit::outage_suite!(durable_testkit::OwnServer::postgres, crate::common::SqlTarget("postgres"));
}

#[cfg(feature = "mysql")]
mod mysql {
    durable_testkit::outage_suite!(durable_testkit::OwnServer::mariadb, crate::common::SqlTarget("mysql"));
}
