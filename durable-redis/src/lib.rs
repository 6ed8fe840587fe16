//! `durable-redis` will hold `RedisBackend`: durabledict's Redis layout (a hash named
//! `<namespace>` and a counter `<namespace>last_updated`), a bounded change log for delta
//! sync and pub/sub change hints. It is filled by its own issue; until then it is empty.
