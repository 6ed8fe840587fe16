//! `zk://` and `zookeeper://` URLs: the host list, credentials and a base path.

use durable_core::{Error, Result, StoreUrl};

use crate::names::validate_node_name;

/// ZooKeeper's client port, where a host names none.
const DEFAULT_PORT: u16 = 2181;

/// The parts of a ZooKeeper URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ZkUrl {
    /// `h1:p1,h2:p2`, every host with its port.
    pub(crate) cluster: String,
    /// `/base/path`, or empty.
    pub(crate) base: String,
    /// `user:password` from `zk://user:password@hosts/...`, sent as digest auth.
    pub(crate) auth: Option<String>,
}

/// `zk://[user:password@]h1:p1,h2:p2/base/path`, read by [`StoreUrl`].
pub(crate) fn parse_url(url: &str) -> Result<ZkUrl> {
    let invalid = |reason: &str| Error::InvalidUrl { url: durable_core::redact_url(url), reason: reason.to_owned() };
    let parsed = StoreUrl::parse(url)?;
    if !matches!(parsed.scheme(), "zk" | "zookeeper") {
        return Err(invalid("expected zk://host:port[,host:port...]/path"));
    }
    if parsed.hosts().is_empty() {
        return Err(invalid("no hosts"));
    }
    let auth = match (parsed.username(), parsed.password()) {
        ("", None) => None,
        (user, Some(password)) => Some(format!("{user}:{password}")),
        (_, None) => return Err(invalid("credentials must be user:password")),
    };
    let base = parsed.path().trim_end_matches('/');
    for part in base.split('/').skip(1) {
        validate_node_name(part).map_err(|reason| invalid(&format!("bad path element {part:?}: {reason}")))?;
    }
    Ok(ZkUrl { cluster: parsed.addrs(DEFAULT_PORT).join(","), base: base.to_owned(), auth })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_hosts_and_a_base_path() {
        let url = |cluster: &str, base: &str, auth: Option<&str>| ZkUrl {
            cluster: cluster.into(),
            base: base.into(),
            auth: auth.map(Into::into),
        };
        assert_eq!(parse_url("zk://a:2181,b:2181/durable/app").unwrap(), url("a:2181,b:2181", "/durable/app", None));
        assert_eq!(parse_url("zookeeper://127.0.0.1:2181").unwrap(), url("127.0.0.1:2181", "", None));
        assert_eq!(parse_url("zk://h:1/").unwrap(), url("h:1", "", None));
        assert_eq!(parse_url("zk://u:p@w@h:1,g/x").unwrap(), url("h:1,g:2181", "/x", Some("u:p@w")));
        assert_eq!(parse_url("zk://u:p%2Fw@h:1/x").unwrap(), url("h:1", "/x", Some("u:p/w")));
        assert!(parse_url("zk://justuser@h:1/x").is_err());
        assert!(parse_url("zk:///x").is_err());
        assert!(parse_url("redis://h").is_err());
        assert!(parse_url("zk://h:1/a/../b").is_err());
        assert!(parse_url("zk://h:1,,g:2/x").is_err());
        assert!(parse_url("zk://h:1/a//b").is_err());
    }
}
