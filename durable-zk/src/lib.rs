//! `durable-zk` will hold `ZkBackend`: durabledict's ZookeeperDict layout (one znode per key
//! under the namespace path), the dict version on the namespace node, and a persistent
//! recursive watch for hints. It is filled by its own issue; until then it is empty.
