//! The SQL each dialect speaks: quoted table and column names, statements, and the
//! versioned schema migrations. Statements are built once per backend from a validated
//! table prefix with every identifier quoted; values always travel as bind parameters.

use std::sync::Arc;

use durable_core::{Error, Result};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (a file).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Dialect {
    /// The dialect of a URL's scheme.
    pub fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            _ => None,
        }
    }

    /// The backend name used in errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    pub(crate) fn quote(self, ident: &str) -> String {
        match self {
            Dialect::MySql => format!("`{ident}`"),
            Dialect::Sqlite | Dialect::Postgres => format!("\"{ident}\""),
        }
    }
}

/// Longest table prefix accepted; the longest table name it makes stays under
/// PostgreSQL's 63-byte identifier limit.
pub const MAX_PREFIX_LEN: usize = 32;

/// Refuses a table prefix that is not a plain identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most
/// [`MAX_PREFIX_LEN`] bytes). The empty prefix is allowed.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let plain =
        prefix.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if !plain || prefix.len() > MAX_PREFIX_LEN {
        return Err(Error::InvalidNamespace {
            namespace: prefix.to_owned(),
            reason: format!(
                "a table prefix must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*) of at most {MAX_PREFIX_LEN} bytes"
            ),
        });
    }
    Ok(())
}

/// Every statement a backend runs, with its dialect's quoting and placeholders.
#[derive(Debug, Clone)]
pub struct Statements {
    pub last_updated: Arc<str>,
    pub durables: Arc<str>,
    pub changes: Arc<str>,
    /// Bumps the namespace version; on PostgreSQL and SQLite it also returns
    /// `(version, horizon)`.
    pub bump: Arc<str>,
    /// MySQL only: reads `(version, horizon)` after [`Statements::bump`].
    pub read_bump: Arc<str>,
    pub live_value: Arc<str>,
    /// `INSERT INTO entries (namespace, key, value, version, tombstone) VALUES `, for
    /// single and multi-row upserts; [`Statements::upsert_tail`] follows the values.
    pub upsert_head: String,
    pub upsert_tail: String,
    pub upsert: Arc<str>,
    pub tombstone: Arc<str>,
    pub prune: Arc<str>,
    pub set_horizon: Arc<str>,
    pub notify: Arc<str>,
    /// Removing a namespace: deletes its entries, journal, leases, and last its row.
    pub remove: [Arc<str>; 4],
    /// The LISTEN/NOTIFY channel (PostgreSQL).
    pub channel: String,
    /// The journal's statements.
    pub journal: JournalStatements,
    /// The leases' statements.
    pub leases: LeaseStatements,
    /// The key column's name, quoted.
    pub key_column: String,
    /// Table names, for messages and tests.
    pub entries_table: String,
    pub journal_table: String,
    pub leases_table: String,
    pub namespaces_table: String,
    schema_table: String,
    index: String,
    journal_index: String,
    dialect: Dialect,
}

/// The journal's statements: its table `<prefix>durable_journal` (one row per changed key,
/// primary key namespace, version, seq) and the `journal_trimmed` column of the namespaces
/// table.
#[derive(Debug, Clone)]
pub struct JournalStatements {
    /// `INSERT INTO journal (...) SELECT `: the insert that reads each key's old value from
    /// the entries table in the same statement; see `writes.rs`.
    pub insert_head: String,
    /// What follows the derived table of new values: the join on the live entries.
    pub insert_join: String,
    /// The record of one put, its old value read by a subquery (the common write: a
    /// simpler statement than the general insert).
    pub put_one: Arc<str>,
    /// How each bound parameter of the insert is typed (`CAST(? AS ...)` on PostgreSQL,
    /// which cannot infer types inside a `UNION ALL`): int, text, key, blob.
    pub casts: [(&'static str, &'static str); 4],
    /// The store's clock in milliseconds since the epoch, as an SQL expression.
    pub now_ms: &'static str,
    pub state: Arc<str>,
    pub page: Arc<str>,
    pub rest_of_version: Arc<str>,
    pub history: Arc<str>,
    pub trim: Arc<str>,
    pub set_trimmed: Arc<str>,
    pub aged: Arc<str>,
}

/// The leases' statements: the table `<prefix>durable_leases` (one row per key that ever
/// had a lease: its last token, holder and expiry in store milliseconds, 0 once released)
/// and the `leases_until` column of the namespaces table (no lease of the namespace is live
/// past it, so a write checks leases only while it is ahead of the clock).
#[derive(Debug, Clone)]
pub struct LeaseStatements {
    /// Locks the namespace row (making it at version 0 when absent): a lease operation
    /// is ordered with every write, which bumps that row.
    pub lock: Arc<str>,
    /// The store's clock and the key's row: `(now, token, holder, expires)`.
    pub read: Arc<str>,
    /// Stores the key's lease (insert or update).
    pub upsert: Arc<str>,
    /// Moves `leases_until` to at least the given expiry.
    pub extend: Arc<str>,
    /// The namespace's live leases: `(key, token, holder, expires, now)`.
    pub live: Arc<str>,
}

impl Statements {
    /// The statements for `dialect` with tables named `<prefix>durable_entries`,
    /// `<prefix>durable_namespaces` and `<prefix>durable_schema`.
    pub fn new(dialect: Dialect, prefix: &str) -> Result<Self> {
        validate_prefix(prefix)?;
        let q = |ident: &str| dialect.quote(ident);
        let entries_table = format!("{prefix}durable_entries");
        let namespaces_table = format!("{prefix}durable_namespaces");
        let e = q(&entries_table);
        let n = q(&namespaces_table);
        let key = q("key");
        // MySQL keeps keys as VARBINARY (exact, case- and space-sensitive); read them as text.
        let key_out = match dialect {
            Dialect::MySql => format!("CONVERT(e.{key} USING utf8mb4)"),
            _ => format!("e.{key}"),
        };
        let sql = |text: String| -> Arc<str> { placeholders(dialect, &text).into() };
        let now_ms = match dialect {
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        };
        // Not 0 while a lease of the namespace may be live: the write then checks its keys.
        let leases_live = format!("CASE WHEN leases_until > {now_ms} THEN leases_until ELSE 0 END");
        let bump = match dialect {
            Dialect::MySql => format!(
                "INSERT INTO {n} (namespace, version, horizon) VALUES (?, 1, 0) ON DUPLICATE KEY UPDATE version = version + 1"
            ),
            Dialect::Postgres => format!(
                "INSERT INTO {n} AS n (namespace, version, horizon) VALUES (?, 1, 0) \
                 ON CONFLICT (namespace) DO UPDATE SET version = n.version + 1 RETURNING version, horizon, {leases_live}"
            ),
            // SQLite's journal is written by triggers (see `migrations`), which read whether
            // to, and the actor and reason, from the namespace row this statement sets.
            Dialect::Sqlite => format!(
                "INSERT INTO {n} (namespace, version, horizon, journal_on, journal_actor, journal_reason) \
                 VALUES (?, 1, 0, ?, ?, ?) ON CONFLICT (namespace) DO UPDATE SET version = version + 1, \
                 journal_on = excluded.journal_on, journal_actor = excluded.journal_actor, \
                 journal_reason = excluded.journal_reason RETURNING version, horizon, {leases_live}"
            ),
        };
        let upsert_tail = match dialect {
            Dialect::MySql => {
                " ON DUPLICATE KEY UPDATE value = VALUES(value), version = VALUES(version), tombstone = FALSE"
                    .to_owned()
            }
            _ => format!(
                " ON CONFLICT (namespace, {key}) DO UPDATE SET value = excluded.value, version = excluded.version, tombstone = FALSE"
            ),
        };
        let upsert_head = format!("INSERT INTO {e} (namespace, {key}, value, version, tombstone) ");
        let journal_table = format!("{prefix}durable_journal");
        let j = q(&journal_table);
        let casts = match dialect {
            Dialect::Postgres => {
                [("CAST(", " AS BIGINT)"), ("CAST(", " AS TEXT)"), ("CAST(", " AS TEXT)"), ("CAST(", " AS BYTEA)")]
            }
            _ => [("", ""); 4],
        };
        let journal_key = match dialect {
            Dialect::MySql => format!("CONVERT({key} USING utf8mb4)"),
            _ => key.clone(),
        };
        // A version's records in key order: our inserts number them so (`seq`); SQLite's
        // triggers number them in statement order, so there the key (byte order) orders.
        let within = if dialect == Dialect::Sqlite { key.clone() } else { "seq".to_owned() };
        let journal_columns = format!("version, seq, {journal_key}, old_value, new_value, actor, reason, at");
        let journal = JournalStatements {
            insert_head: format!(
                "INSERT INTO {j} (namespace, version, seq, {key}, old_value, new_value, actor, reason, at) SELECT "
            ),
            insert_join: format!(" LEFT JOIN {e} e ON e.namespace = "),
            put_one: sql(format!(
                "INSERT INTO {j} (namespace, version, seq, {key}, old_value, new_value, actor, reason, at) \
                 VALUES (?, ?, 1, ?, (SELECT value FROM {e} WHERE namespace = ? AND {key} = ? AND tombstone = FALSE), \
                 ?, ?, ?, {now_ms})"
            )),
            casts,
            now_ms,
            state: sql(format!("SELECT version, journal_trimmed FROM {n} WHERE namespace = ?")),
            page: sql(format!(
                "SELECT {journal_columns} FROM {j} WHERE namespace = ? AND version > ? AND version <= ? \
                 ORDER BY version, {within} LIMIT ?"
            )),
            rest_of_version: sql(format!(
                "SELECT {journal_columns} FROM {j} WHERE namespace = ? AND version = ? AND {within} > ? ORDER BY {within}"
            )),
            history: sql(format!(
                "SELECT {journal_columns} FROM {j} WHERE namespace = ? AND {key} = ? ORDER BY version DESC LIMIT ?"
            )),
            trim: sql(format!("DELETE FROM {j} WHERE namespace = ? AND version <= ?")),
            set_trimmed: sql(format!("UPDATE {n} SET journal_trimmed = ? WHERE namespace = ? AND journal_trimmed < ?")),
            aged: sql(format!("SELECT MAX(version) FROM {j} WHERE namespace = ? AND at < {now_ms} - ?")),
        };
        let leases_table = format!("{prefix}durable_leases");
        let l = q(&leases_table);
        let (lock, upsert_lease, greatest) = match dialect {
            Dialect::Postgres => (
                format!(
                    "INSERT INTO {n} AS n (namespace, version, horizon) VALUES (?, 0, 0) \
                     ON CONFLICT (namespace) DO UPDATE SET leases_until = n.leases_until"
                ),
                format!(
                    "INSERT INTO {l} (namespace, {key}, token, holder, expires_at) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (namespace, {key}) DO UPDATE SET token = excluded.token, holder = excluded.holder, \
                     expires_at = excluded.expires_at"
                ),
                "GREATEST",
            ),
            Dialect::MySql => (
                format!(
                    "INSERT INTO {n} (namespace, version, horizon) VALUES (?, 0, 0) \
                     ON DUPLICATE KEY UPDATE leases_until = leases_until"
                ),
                format!(
                    "INSERT INTO {l} (namespace, {key}, token, holder, expires_at) VALUES (?, ?, ?, ?, ?) \
                     ON DUPLICATE KEY UPDATE token = VALUES(token), holder = VALUES(holder), expires_at = VALUES(expires_at)"
                ),
                "GREATEST",
            ),
            // BEGIN IMMEDIATE already holds SQLite's one write lock.
            Dialect::Sqlite => (
                format!(
                    "INSERT INTO {n} (namespace, version, horizon) VALUES (?, 0, 0) ON CONFLICT (namespace) DO NOTHING"
                ),
                format!(
                    "INSERT INTO {l} (namespace, {key}, token, holder, expires_at) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (namespace, {key}) DO UPDATE SET token = excluded.token, holder = excluded.holder, \
                     expires_at = excluded.expires_at"
                ),
                "MAX",
            ),
        };
        let lease_key = match dialect {
            Dialect::MySql => format!("CONVERT({key} USING utf8mb4)"),
            _ => key.clone(),
        };
        let leases = LeaseStatements {
            lock: sql(lock),
            read: sql(format!(
                "SELECT {now_ms}, (SELECT token FROM {l} WHERE namespace = ? AND {key} = ?), \
                 (SELECT holder FROM {l} WHERE namespace = ? AND {key} = ?), \
                 (SELECT expires_at FROM {l} WHERE namespace = ? AND {key} = ?)"
            )),
            upsert: sql(upsert_lease),
            extend: sql(format!("UPDATE {n} SET leases_until = {greatest}(leases_until, ?) WHERE namespace = ?")),
            live: sql(format!(
                "SELECT {lease_key}, token, holder, expires_at, {now_ms} FROM {l} WHERE namespace = ? AND expires_at > {now_ms}"
            )),
        };
        Ok(Self {
            key_column: key.clone(),
            leases,
            leases_table,
            journal,
            journal_index: format!("{prefix}durable_journal_by_key"),
            journal_table,
            last_updated: sql(format!("SELECT version FROM {n} WHERE namespace = ?")),
            durables: sql(format!(
                "SELECT n.version, {key_out}, e.value FROM {n} n \
                 LEFT JOIN {e} e ON e.namespace = n.namespace AND e.tombstone = FALSE WHERE n.namespace = ?"
            )),
            changes: sql(format!(
                "SELECT n.version, n.horizon, {key_out}, e.value, e.version, e.tombstone FROM {n} n \
                 LEFT JOIN {e} e ON e.namespace = n.namespace AND e.version > ? WHERE n.namespace = ? \
                 ORDER BY e.version"
            )),
            bump: sql(bump),
            read_bump: sql(format!("SELECT version, horizon, {leases_live} FROM {n} WHERE namespace = ?")),
            live_value: sql(format!("SELECT value FROM {e} WHERE namespace = ? AND {key} = ? AND tombstone = FALSE")),
            upsert: sql(format!("{upsert_head}VALUES (?, ?, ?, ?, FALSE){upsert_tail}")),
            upsert_head,
            upsert_tail,
            tombstone: sql(format!(
                "UPDATE {e} SET value = NULL, version = ?, tombstone = TRUE \
                 WHERE namespace = ? AND {key} = ? AND tombstone = FALSE"
            )),
            prune: sql(format!("DELETE FROM {e} WHERE namespace = ? AND tombstone = TRUE AND version <= ?")),
            set_horizon: sql(format!("UPDATE {n} SET horizon = ? WHERE namespace = ?")),
            notify: sql("SELECT pg_notify(?, ?)".to_owned()),
            remove: [e.as_str(), j.as_str(), l.as_str(), n.as_str()]
                .map(|table| sql(format!("DELETE FROM {table} WHERE namespace = ?"))),
            channel: format!("{prefix}durable_changes"),
            schema_table: format!("{prefix}durable_schema"),
            index: format!("{prefix}durable_entries_by_version"),
            entries_table,
            namespaces_table,
            dialect,
        })
    }

    /// The schema-version table, quoted.
    pub fn schema_table(&self) -> String {
        self.dialect.quote(&self.schema_table)
    }

    pub fn read_schema_version(&self) -> String {
        format!("SELECT version FROM {} WHERE id = 1", self.schema_table())
    }

    pub fn create_schema_table(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id INTEGER NOT NULL PRIMARY KEY, version BIGINT NOT NULL)",
            self.schema_table()
        )
    }

    pub fn write_schema_version(&self) -> Arc<str> {
        let table = self.schema_table();
        let text = match self.dialect {
            Dialect::MySql => {
                format!(
                    "INSERT INTO {table} (id, version) VALUES (1, ?) ON DUPLICATE KEY UPDATE version = VALUES(version)"
                )
            }
            _ => format!(
                "INSERT INTO {table} (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version"
            ),
        };
        placeholders(self.dialect, &text).into()
    }

    /// The migrations, oldest first: `migrations()[i]` brings the schema to version `i + 1`.
    pub fn migrations(&self) -> Vec<Vec<String>> {
        let q = |ident: &str| self.dialect.quote(ident);
        let e = q(&self.entries_table);
        let n = q(&self.namespaces_table);
        let index = q(&self.index);
        let key = q("key");
        let (namespace, key_type, int, blob) = match self.dialect {
            Dialect::Postgres => ("TEXT", "TEXT", "BIGINT", "BYTEA"),
            Dialect::Sqlite => ("TEXT", "TEXT", "INTEGER", "BLOB"),
            Dialect::MySql => ("VARBINARY(255)", "VARBINARY(1024)", "BIGINT", "LONGBLOB NULL"),
        };
        // MySQL has no `CREATE INDEX IF NOT EXISTS`: its index is declared with the table.
        let mysql = self.dialect == Dialect::MySql;
        let (inline_index, engine) = if mysql {
            (format!(", INDEX {index} (namespace, version)"), " ENGINE=InnoDB")
        } else {
            (String::new(), "")
        };
        let mut v1 = vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {n} (namespace {namespace} NOT NULL PRIMARY KEY, \
                 version {int} NOT NULL, horizon {int} NOT NULL DEFAULT 0){engine}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {e} (namespace {namespace} NOT NULL, {key} {key_type} NOT NULL, \
                 value {blob}, version {int} NOT NULL, tombstone BOOLEAN NOT NULL DEFAULT FALSE, \
                 PRIMARY KEY (namespace, {key}){inline_index}){engine}"
            ),
        ];
        if !mysql {
            v1.push(format!("CREATE INDEX IF NOT EXISTS {index} ON {e} (namespace, version)"));
        }
        // 2: the change journal.
        let j = q(&self.journal_table);
        let journal_index = q(&self.journal_index);
        let without_rowid = if self.dialect == Dialect::Sqlite { " WITHOUT ROWID" } else { "" };
        let inline_journal_index =
            if mysql { format!(", INDEX {journal_index} (namespace, {key}, version)") } else { String::new() };
        let mut v2 = vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {j} (namespace {namespace} NOT NULL, version {int} NOT NULL, \
                 seq {int} NOT NULL, {key} {key_type} NOT NULL, old_value {blob}, new_value {blob}, \
                 actor TEXT NOT NULL, reason TEXT, at {int} NOT NULL, \
                 PRIMARY KEY (namespace, version, seq){inline_journal_index}){engine}{without_rowid}"
            ),
            format!("ALTER TABLE {n} ADD COLUMN journal_trimmed {int} NOT NULL DEFAULT 0"),
        ];
        // 3: SQLite journals through triggers (a separate version: databases made while
        // version 2 was being written have its table but not these).
        let mut v3 = Vec::new();
        if self.dialect == Dialect::Sqlite {
            let e = &e;
            let now = self.journal.now_ms;
            for column in ["journal_on INTEGER NOT NULL DEFAULT 0", "journal_actor TEXT", "journal_reason TEXT"] {
                v3.push(format!("ALTER TABLE {n} ADD COLUMN {column}"));
            }
            let record = |old: &str, new: &str| {
                format!(
                    "INSERT INTO {j} (namespace, version, seq, {key}, old_value, new_value, actor, reason, at) \
                     SELECT NEW.namespace, NEW.version, \
                     COALESCE((SELECT MAX(seq) FROM {j} WHERE namespace = NEW.namespace AND version = NEW.version), 0) + 1, \
                     NEW.{key}, {old}, {new}, n.journal_actor, n.journal_reason, {now} \
                     FROM {n} n WHERE n.namespace = NEW.namespace AND n.journal_on = 1;"
                )
            };
            v3.push(format!(
                "CREATE TRIGGER IF NOT EXISTS {insert_trigger} AFTER INSERT ON {e} WHEN NEW.tombstone = 0 BEGIN {} END",
                record("NULL", "NEW.value"),
                insert_trigger = q(&format!("{}_on_insert", self.journal_table)),
            ));
            v3.push(format!(
                "CREATE TRIGGER IF NOT EXISTS {update_trigger} AFTER UPDATE ON {e} \
                 WHEN NOT (OLD.tombstone = 1 AND NEW.tombstone = 1) BEGIN {} END",
                record(
                    "CASE WHEN OLD.tombstone = 1 THEN NULL ELSE OLD.value END",
                    "CASE WHEN NEW.tombstone = 1 THEN NULL ELSE NEW.value END"
                ),
                update_trigger = q(&format!("{}_on_update", self.journal_table)),
            ));
        }
        // PostgreSQL indexes a key's history; MySQL declares it with the table. SQLite keeps
        // the journal in one b-tree (its primary key, no rowid) and no second index: each
        // index is one more page a commit writes to the WAL, and a key's history is read
        // from the namespace's slice of the journal instead.
        if self.dialect == Dialect::Postgres {
            v2.push(format!("CREATE INDEX IF NOT EXISTS {journal_index} ON {j} (namespace, {key}, version)"));
        }
        // 4: leases.
        let l = q(&self.leases_table);
        let v4 = vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {l} (namespace {namespace} NOT NULL, {key} {key_type} NOT NULL, \
                 token {int} NOT NULL, holder TEXT NOT NULL, expires_at {int} NOT NULL, \
                 PRIMARY KEY (namespace, {key})){engine}"
            ),
            format!("ALTER TABLE {n} ADD COLUMN leases_until {int} NOT NULL DEFAULT 0"),
        ];
        vec![v1, v2, v3, v4]
    }

    /// A number naming this schema for PostgreSQL's advisory lock and MySQL's `GET_LOCK`,
    /// so that instances starting at once migrate one after the other.
    pub fn migration_lock(&self) -> (i64, String) {
        (fnv1a(&self.schema_table) as i64, format!("durable:{}", self.schema_table))
    }
}

/// FNV-1a (64-bit) of `text`: a name's number for PostgreSQL's advisory locks, stable
/// across processes and versions.
pub(crate) fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// `?` placeholders as the dialect wants them (`$1, $2, ...` on PostgreSQL). The statements
/// here contain no other `?`.
pub(crate) fn placeholders(dialect: Dialect, text: &str) -> String {
    if dialect != Dialect::Postgres {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_be_plain_identifiers() {
        for ok in ["", "app_", "A1", "_x"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["1a", "a-b", "a;drop table x", "a\"b", "a b", "ü", &"a".repeat(33)] {
            assert!(matches!(validate_prefix(bad), Err(Error::InvalidNamespace { .. })), "{bad}");
        }
    }

    #[test]
    fn postgres_gets_numbered_placeholders_and_quoted_names() {
        let s = Statements::new(Dialect::Postgres, "app_").unwrap();
        assert_eq!(
            &*s.live_value,
            "SELECT value FROM \"app_durable_entries\" WHERE namespace = $1 AND \"key\" = $2 AND tombstone = FALSE"
        );
        let m = Statements::new(Dialect::MySql, "").unwrap();
        assert!(m.live_value.contains("`durable_entries`") && m.live_value.contains("`key` = ?"));
    }
}
