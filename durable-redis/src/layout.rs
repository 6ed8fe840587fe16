//! Where a namespace lives in Redis: its key names (see the crate docs' table), the
//! namespace rules, and the node list of a `redis+cluster://` URL.

use durable_core::{Error, Result, StoreUrl};

use crate::MAX_NAMESPACE_LEN;

/// The Redis names of one namespace; see the crate docs.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) namespace: String,
    pub(crate) hash: String,
    pub(crate) counter: String,
    pub(crate) log: String,
    pub(crate) head: String,
    pub(crate) floor: String,
    pub(crate) channel: String,
    pub(crate) journal: String,
    pub(crate) journal_trimmed: String,
    pub(crate) leases: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            hash: namespace.to_owned(),
            counter: format!("{namespace}last_updated"),
            log: format!("{namespace}:log"),
            head: format!("{namespace}:log:head"),
            floor: format!("{namespace}:log:floor"),
            channel: format!("{namespace}:changes"),
            journal: format!("{namespace}:journal"),
            journal_trimmed: format!("{namespace}:journal:trimmed"),
            leases: format!("{namespace}:leases"),
        }
    }
}

/// Refuses namespaces that break [the common rule](durable_core::validate_namespace) or are
/// over [`MAX_NAMESPACE_LEN`] bytes.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    durable_core::validate_namespace(namespace, MAX_NAMESPACE_LEN)
}

/// `redis+cluster://[user:password@]host:port,host:port[/]` → one `redis://` URL per node;
/// `None` for any other URL.
pub(crate) fn cluster_nodes(url: &str) -> Option<Result<Vec<String>>> {
    let parsed = match StoreUrl::parse(url) {
        Ok(parsed) if parsed.scheme() == "redis+cluster" => parsed,
        Ok(_) => return None,
        Err(err) => {
            return durable_core::scheme(url).is_some_and(|scheme| scheme == "redis+cluster").then_some(Err(err));
        }
    };
    let invalid = |reason: &str| Error::InvalidUrl { url: parsed.to_string(), reason: reason.to_owned() };
    if !matches!(parsed.path(), "" | "/") {
        return Some(Err(invalid("a cluster URL names no database: redis+cluster://host:port,host:port")));
    }
    if parsed.hosts().is_empty() {
        return Some(Err(invalid("no cluster nodes")));
    }
    Some(Ok(parsed.node_urls("redis")))
}

/// On a cluster every key of a namespace must hash to one slot, so that a mutation stays
/// one atomic script: the namespace must carry a hash tag, e.g. `{flags}`.
pub(crate) fn validate_cluster_namespace(namespace: &str) -> Result<()> {
    let tagged =
        namespace.find('{').and_then(|open| namespace[open + 1..].find('}').map(|close| close > 0)).unwrap_or(false);
    if tagged {
        return Ok(());
    }
    Err(Error::InvalidNamespace {
        namespace: namespace.to_owned(),
        reason: "on a Redis Cluster the namespace needs a hash tag, e.g. `{flags}`, so that its hash, \
                 counter and change log share one slot"
            .into(),
    })
}
