//! Where a namespace lives in ZooKeeper — one znode per key under the namespace node — and
//! the rules for key and namespace names.

use durable_core::{Error, Result};
use zookeeper_client as zk;

use crate::MAX_KEY_LEN;

pub(crate) const PERSISTENT: zk::CreateOptions<'static> = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

/// Full rights for the identity that created the node (ZooKeeper's `auth` scheme: every
/// identity the creating session authenticated as), reading for anyone.
static CREATOR_WRITES: [zk::Acl; 2] =
    [zk::Acl::new_const(zk::Permission::ALL, "auth", ""), zk::Acl::new_const(zk::Permission::READ, "world", "anyone")];

/// Nodes only their creator may change; see `ZkBackendBuilder::protect_writes`.
pub(crate) fn protected() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::new(&CREATOR_WRITES))
}

/// Why `name` cannot be a znode name, if it cannot.
pub(crate) fn validate_node_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not node names".into());
    }
    if name.contains('/') {
        return Err("contains `/`".into());
    }
    // ZooKeeper checks paths per UTF-16 unit: characters past U+FFFF (emoji) become
    // surrogates, which it forbids along with the ranges below.
    if let Some(bad) = name.chars().find(|&c| {
        matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
            || u32::from(c) > 0xffff
    }) {
        return Err(format!("contains {bad:?}, which ZooKeeper forbids in paths"));
    }
    Ok(())
}

/// The ZooKeeper key rule: a key is one znode name (no `/`, not `.` or `..`, none of the
/// characters ZooKeeper forbids in paths, nothing past U+FFFF) of at most [`MAX_KEY_LEN`]
/// bytes. `ZkBackend::validate_key` applies it.
///
/// Fuzzed by `fuzz/fuzz_targets/zk_key.rs`: it never panics, and every key it accepts is
/// one that ZooKeeper's path rules accept (TESTING.md records the runs).
pub fn validate_key(key: &str) -> Result<()> {
    durable_core::default_key_rule(key)?;
    validate_node_name(key).map_err(|reason| Error::invalid_key(key, format!("not a ZooKeeper node name: {reason}")))
}

/// Refuses namespaces that are not valid znode names.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    durable_core::validate_namespace(namespace, MAX_KEY_LEN)?;
    validate_node_name(namespace).map_err(|reason| Error::InvalidNamespace { namespace: namespace.to_owned(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_zookeepers_rules() {
        for ok in ["flag", "with space", "ünï", "a.b", "..."] {
            assert!(validate_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "nul\0", "bell\u{7}", "\u{e000}private", "\u{fff0}", "key🔑"] {
            assert!(validate_node_name(bad).is_err(), "{bad:?}");
        }
    }
}
