//! Where the shared test stores are — the URLs tests read from the environment, with the
//! defaults `scripts/services.sh` starts — and one reachability probe for them.

use std::time::Duration;

use durable_core::RefusalProbe;
use durable_core::conformance::require_service;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `DURABLE_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    var("DURABLE_REDIS_URL", "redis://127.0.0.1:6379")
}

/// `DURABLE_REDIS_CLUSTER_URL`, default the cluster on 127.0.0.1:7001-7006.
pub fn redis_cluster_url() -> String {
    var("DURABLE_REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
}

/// `DURABLE_POSTGRES_URL`, default the `test` database on 127.0.0.1:5432.
pub fn postgres_url() -> String {
    var("DURABLE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

/// `DURABLE_MYSQL_URL`, default the `test` database on 127.0.0.1:3306.
pub fn mysql_url() -> String {
    var("DURABLE_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
}

/// `DURABLE_ZK_URL`, default 127.0.0.1:2181 under `/durable-test`.
pub fn zk_url() -> String {
    var("DURABLE_ZK_URL", "zk://127.0.0.1:2181/durable-test")
}

/// `DURABLE_ZK_ENSEMBLE_URL`, default the ensemble on 127.0.0.1:2191-2193.
pub fn zk_ensemble_url() -> String {
    var("DURABLE_ZK_ENSEMBLE_URL", "zk://127.0.0.1:2191,127.0.0.1:2192,127.0.0.1:2193/durable-test")
}

/// `DURABLE_S3_URL`, default bucket `durable-test` of moto's S3 server on 127.0.0.1:9000
/// (moto takes any credentials; these are its documented test ones).
pub fn s3_url() -> String {
    var(
        "DURABLE_S3_URL",
        "s3://durable-test/t?endpoint=http://127.0.0.1:9000&region=us-east-1&allow_http=true\
         &access_key_id=testing&secret_access_key=s3cr3tpw-testing",
    )
}

/// `DURABLE_AZURE_URL`, default container `durable-test` of Azurite's blob service on
/// 127.0.0.1:10000 (its well-known development account).
pub fn azure_url() -> String {
    var("DURABLE_AZURE_URL", "az://durable-test/t?use_emulator=true")
}

/// Whether the first host of `url` accepts TCP connections (within 2 s); `default_port`
/// where the URL names none. A URL that names no TCP host (a file, a Unix socket) counts as
/// reachable.
pub async fn reachable(url: &str, default_port: u16) -> bool {
    let probe = RefusalProbe::from_url("test", url, default_port);
    let Some(first) = probe.addrs().first() else { return true };
    matches!(tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(first)).await, Ok(Ok(_)))
}

/// [`reachable`], and when it is not: skipped on a laptop, a failure in CI (see
/// `durable_core::conformance::require_service`).
pub async fn require(service: &str, url: &str, default_port: u16) -> bool {
    require_service(service, reachable(url, default_port).await)
}
