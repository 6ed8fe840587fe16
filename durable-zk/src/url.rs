//! `zk://` and `zookeeper://` URLs: the host list, credentials and a base path.

use durable_core::{Error, Result};

use crate::names::validate_node_name;

/// The parts of a ZooKeeper URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ZkUrl {
    /// `h1:p1,h2:p2`
    pub(crate) cluster: String,
    /// `/base/path`, or empty.
    pub(crate) base: String,
    /// `user:password` from `zk://user:password@hosts/...`, sent as digest auth.
    pub(crate) auth: Option<String>,
}

/// `zk://[user:password@]h1:p1,h2:p2/base/path`.
pub(crate) fn parse_url(url: &str) -> Result<ZkUrl> {
    let invalid = |reason: &str| Error::InvalidUrl { url: durable_core::redact_url(url), reason: reason.to_owned() };
    let rest = match url.split_once("://") {
        Some(("zk" | "zookeeper", rest)) => rest,
        _ => return Err(invalid("expected zk://host:port[,host:port...]/path")),
    };
    let (hosts, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (auth, hosts) = match hosts.rsplit_once('@') {
        Some((userinfo, hosts)) if userinfo.contains(':') => (Some(userinfo.to_owned()), hosts),
        Some(_) => return Err(invalid("credentials must be user:password")),
        None => (None, hosts),
    };
    if hosts.is_empty() {
        return Err(invalid("no hosts"));
    }
    let base = path.trim_end_matches('/');
    for part in base.split('/').skip(1) {
        validate_node_name(part).map_err(|reason| invalid(&format!("bad path element {part:?}: {reason}")))?;
    }
    Ok(ZkUrl { cluster: hosts.to_owned(), base: base.to_owned(), auth })
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
        assert_eq!(parse_url("zk://u:p@w@h:1,g:2/x").unwrap(), url("h:1,g:2", "/x", Some("u:p@w")));
        assert!(parse_url("zk://justuser@h:1/x").is_err());
        assert!(parse_url("zk:///x").is_err());
        assert!(parse_url("redis://h").is_err());
        assert!(parse_url("zk://h:1/a/../b").is_err());
    }
}
