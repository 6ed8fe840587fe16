//! Failing fast, with the real cause, when a server refuses connections.
//!
//! Client libraries retry a refused connection until their own deadline and then report
//! only that time ran out — sqlx's pool says `pool timed out while waiting for an open
//! connection` after the whole acquire timeout, a Redis connection manager makes a call
//! that arrives while it reconnects wait out its retries, a ZooKeeper client keeps trying
//! every host of its list. A service whose store is down then pays the full timeout on
//! every write and every sync, and its logs never say why.
//!
//! [`RefusalProbe::bound`] runs a store operation under the operation timeout, and once it
//! has taken longer than a healthy operation does ([`PROBE_AFTER`]) it checks, every
//! [`PROBE_EVERY`] while the operation lasts, whether the server still accepts TCP
//! connections. When every address of the server refuses, the operation is abandoned at
//! once with [`Error::StoreUnavailable`] saying so. A server that accepts connections but
//! answers slowly still gets the whole timeout, and an operation that answers in time never
//! costs a probe. An operation abandoned this way has the outcome of one that timed out: a
//! write in flight when the server went away may or may not have landed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result, Source};
use crate::store_url::StoreUrl;

/// How long an operation runs before its server is first probed: well above what a store
/// operation takes on a healthy network, well below any timeout worth setting.
pub const PROBE_AFTER: Duration = Duration::from_millis(15);
/// How often the probe is repeated while the operation lasts.
pub const PROBE_EVERY: Duration = Duration::from_millis(25);
/// How long one probe connection may take: a refusal is answered at once; a server that is
/// merely unreachable (a dropped packet, a partition) is left to the operation's timeout.
const PROBE_CONNECT: Duration = Duration::from_millis(200);

/// The TCP addresses of a store's server(s), and the operation bound that probes them; see
/// the module docs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RefusalProbe {
    backend: &'static str,
    addrs: Arc<[String]>,
}

impl RefusalProbe {
    /// A probe of `addrs` (`host:port` each; all of them must refuse). With no address —
    /// a Unix socket, a file — [`RefusalProbe::bound`] is a plain timeout.
    pub fn new(backend: &'static str, addrs: impl IntoIterator<Item = String>) -> Self {
        Self { backend, addrs: addrs.into_iter().collect() }
    }

    /// A probe of the hosts of `url` ([`StoreUrl`]: `scheme://[user[:password]@]host[:port][,host[:port]...]/...`),
    /// `default_port` where a host names none; a URL that does not parse names no host.
    ///
    /// ```
    /// use durable_core::RefusalProbe;
    /// let probe = RefusalProbe::from_url("zookeeper", "zk://u:p@a:2191,b,[::1]:7/app", 2181);
    /// assert_eq!(probe.addrs(), ["a:2191", "b:2181", "[::1]:7"]);
    /// ```
    pub fn from_url(backend: &'static str, url: &str, default_port: u16) -> Self {
        Self::new(backend, StoreUrl::parse(url).map(|url| url.addrs(default_port)).unwrap_or_default())
    }

    /// The addresses probed.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Runs `work` within `timeout` ([`Error::Timeout`] past it), abandoning it with
    /// [`Error::StoreUnavailable`] as soon as every address refuses connections.
    pub async fn bound<T>(
        &self,
        operation: &'static str,
        timeout: Duration,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let timed = async {
            tokio::time::timeout(timeout, work).await.unwrap_or(Err(Error::Timeout {
                backend: self.backend,
                operation,
                after: timeout,
            }))
        };
        if self.addrs.is_empty() {
            return timed.await;
        }
        let probing = async {
            tokio::time::sleep(PROBE_AFTER).await;
            loop {
                if let Some(refusal) = self.refused().await {
                    return refusal;
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
        };
        tokio::select! {
            biased;
            result = timed => result,
            refusal = probing => Err(Error::StoreUnavailable {
                backend: self.backend,
                source: Source::msg(format!("{operation}: {refusal}")),
            }),
        }
    }

    /// `Some(what happened)` when every address refuses a TCP connection now.
    pub async fn refused(&self) -> Option<String> {
        let attempts = self.addrs.iter().map(|addr| async move {
            let connecting = tokio::time::timeout(PROBE_CONNECT, tokio::net::TcpStream::connect(addr.as_str()));
            matches!(connecting.await, Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused)
        });
        let refused = futures::future::join_all(attempts).await;
        refused.iter().all(|refused| *refused).then(|| format!("connection refused by {}", self.addrs.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_url() {
        let addrs = |url: &str, port| RefusalProbe::from_url("t", url, port).addrs().to_vec();
        assert_eq!(addrs("redis://127.0.0.1:6379/2", 6379), ["127.0.0.1:6379"]);
        assert_eq!(addrs("redis://:secret@cache/0", 6379), ["cache:6379"]);
        assert_eq!(addrs("redis+cluster://a:7001,b:7002", 6379), ["a:7001", "b:7002"]);
        assert_eq!(addrs("zk://h:1,g/x", 2181), ["h:1", "g:2181"]);
        assert_eq!(addrs("zk://[::1]/x", 2181), ["[::1]:2181"]);
        assert!(addrs("unix:///tmp/redis.sock", 6379).is_empty());
    }

    #[tokio::test]
    async fn a_refused_operation_fails_at_once_with_the_cause() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let probe = RefusalProbe::new("test", [format!("127.0.0.1:{port}")]);
        let started = std::time::Instant::now();
        let err = probe.bound("sync", Duration::from_secs(30), std::future::pending::<Result<()>>()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
    }

    #[tokio::test]
    async fn a_slow_operation_on_a_listening_server_gets_its_whole_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let probe = RefusalProbe::new("test", [listener.local_addr().unwrap().to_string()]);
        let slow = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(7)
        };
        assert_eq!(probe.bound("get", Duration::from_secs(5), slow).await.unwrap(), 7);
        let err = probe.bound("get", Duration::from_millis(100), std::future::pending::<Result<()>>()).await;
        assert!(matches!(err, Err(Error::Timeout { .. })), "{err:?}");
    }
}
