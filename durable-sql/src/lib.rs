//! `durable-sql` will hold `SqlBackend`: SQLite, PostgreSQL and MySQL/MariaDB through sqlx,
//! with an entries table, a namespaces table, tombstones for delta sync and LISTEN/NOTIFY
//! hints on PostgreSQL. It is filled by its own issue; until then it is empty.
