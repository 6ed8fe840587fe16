//! The SQL of an adopted table: its reads and writes, and the triggers that follow it.
//! Names are validated identifiers, quoted; column types come from the database's own
//! catalog (checked to be type names); values are bind parameters.

use std::sync::Arc;

use durable_core::Result;

use super::{TABLE_CHANNEL, TableBackendBuilder, ValueKind};
use crate::dialect::{Dialect, fnv1a, placeholders};

/// The key and value columns' types as the catalog writes them (`character varying(100)`,
/// `jsonb`, `varchar(255)` with its character set and collation on MySQL).
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    pub key_type: String,
    pub value_type: String,
}

#[derive(Debug, Clone)]
pub(crate) struct TableStatements {
    /// `(version)` of the state row.
    pub version: Arc<str>,
    /// A batch of ours begins: one version for all its rows (the triggers stamp them with
    /// it and bump nothing while `writing` is set; no other writer sees it set, since they
    /// wait for the row).
    pub begin_batch: Arc<str>,
    /// The batch ends (before its commit).
    pub end_batch: Arc<str>,
    /// `SELECT 1 FROM t WHERE k IN (`: a batch's existing rows locked, in key order, before
    /// the state row (PostgreSQL and MySQL), followed by the keys each wrapped in
    /// [`TableStatements::key_cast`], and [`TableStatements::lock_rows_tail`].
    pub lock_rows_head: String,
    pub lock_rows_tail: String,
    pub key_cast: (String, String),
    /// PostgreSQL: the advisory locks of keys — `(table id, key id)` — our writers take
    /// first, in order, so that they never deadlock on a key one of them is inserting.
    pub key_locks: Option<(Arc<str>, i32)>,
    /// `(version, key, value)` for every row, in one statement.
    pub durables: Arc<str>,
    /// `(version, horizon, key, value, key's version)` of the keys changed after `?`.
    pub changes: Arc<str>,
    /// `(value)` of one key, locking its row.
    pub read_value: Arc<str>,
    pub upsert: Arc<str>,
    pub delete: Arc<str>,
    /// Polling: `(fingerprint or NULL, key, value)` for every row.
    pub poll_all: Arc<str>,
    /// Polling on PostgreSQL and MySQL: the table's fingerprint computed by the server.
    pub fingerprint: Option<Arc<str>>,
    /// Whether the triggers are there: `(count)` of the state table's rows (fails when absent).
    pub state_rows: Arc<str>,
    /// DDL that installs the triggers, in order; each idempotent.
    pub install: Vec<String>,
    /// MySQL: `(name, CREATE TRIGGER ...)`, created only when absent.
    pub mysql_triggers: Vec<(String, String)>,
    /// DDL that removes them.
    pub uninstall: Vec<String>,
    /// The install lock: its number (PostgreSQL) and name (MySQL).
    pub lock: (i64, String),
}

impl TableStatements {
    pub(crate) fn new(dialect: Dialect, options: &TableBackendBuilder, columns: &Columns) -> Result<Self> {
        let q = |ident: &str| dialect.quote(ident);
        let name = options.table.as_str();
        let t = q(name);
        let k = q(&options.key_column);
        let v = q(&options.value_column);
        let state = q(&format!("{name}_durable_state"));
        let keys = q(&format!("{name}_durable_keys"));
        let keys_index = q(&format!("{name}_durable_keys_by_version"));
        let sql = |text: String| -> Arc<str> { placeholders(dialect, &text).into() };
        let (key_type, value_type) = (&columns.key_type, &columns.value_type);
        let text = options.kind != ValueKind::Bytes;
        // A key or value as the column wants it from a bind parameter, and as text / bytes
        // for us whatever the column is.
        let key_in = match dialect {
            Dialect::Postgres => format!("CAST(? AS {key_type})"),
            _ => "?".to_owned(),
        };
        let value_in = match dialect {
            Dialect::Postgres if text => format!("CAST(CAST(? AS TEXT) AS {value_type})"),
            _ => "?".to_owned(),
        };
        let key_out = |table: &str, column: &str| match dialect {
            Dialect::MySql => format!("CONVERT({table}.{column} USING utf8mb4)"),
            _ => format!("CAST({table}.{column} AS TEXT)"),
        };
        let value_out = match dialect {
            Dialect::Postgres if text => format!("convert_to(CAST(t.{v} AS TEXT), 'UTF8')"),
            Dialect::Postgres => format!("t.{v}"),
            Dialect::MySql => format!("CAST(t.{v} AS BINARY)"),
            Dialect::Sqlite => format!("CAST(t.{v} AS BLOB)"),
        };
        let for_update = if dialect == Dialect::Sqlite { "" } else { " FOR UPDATE" };
        let upsert = match dialect {
            Dialect::MySql => {
                format!(
                    "INSERT INTO {t} ({k}, {v}) VALUES ({key_in}, {value_in}) ON DUPLICATE KEY UPDATE {v} = VALUES({v})"
                )
            }
            _ => format!(
                "INSERT INTO {t} ({k}, {v}) VALUES ({key_in}, {value_in}) ON CONFLICT ({k}) DO UPDATE SET {v} = excluded.{v}"
            ),
        };
        let row_key = key_out("t", &k);
        let fingerprint = match dialect {
            Dialect::Postgres => Some(format!(
                "SELECT CAST(count(*) AS TEXT) || ':' || coalesce(md5(string_agg(md5({row_key}) || md5({value_out}), '' \
                 ORDER BY {row_key})), '') AS fp FROM {t} t WHERE t.{v} IS NOT NULL"
            )),
            Dialect::MySql => Some(format!(
                "SELECT CONCAT(COUNT(*), ':', COALESCE(SUM(CAST(CONV(SUBSTRING(h, 1, 15), 16, 10) AS UNSIGNED)), 0), ':', \
                 COALESCE(BIT_XOR(CAST(CONV(SUBSTRING(h, 16, 16), 16, 10) AS UNSIGNED)), 0)) AS fp \
                 FROM (SELECT MD5(CONCAT(HEX(t.{k}), ':', HEX(t.{v}))) AS h FROM {t} t WHERE t.{v} IS NOT NULL) x"
            )),
            Dialect::Sqlite => None,
        };
        let poll_all = match &fingerprint {
            Some(fingerprint) => {
                format!("SELECT f.fp, {row_key}, {value_out} FROM ({fingerprint}) f LEFT JOIN {t} t ON 1 = 1")
            }
            None => format!("SELECT CAST(NULL AS TEXT), {row_key}, {value_out} FROM {t} t"),
        };
        let (install, mysql_triggers, uninstall) = triggers(
            dialect,
            options,
            columns,
            &TriggerNames { t: t.clone(), k: k.clone(), state: state.clone(), keys: keys.clone(), keys_index },
        );
        Ok(Self {
            version: sql(format!("SELECT version FROM {state} WHERE id = 1")),
            begin_batch: sql(format!("UPDATE {state} SET version = version + 1, writing = 1 WHERE id = 1")),
            end_batch: sql(format!("UPDATE {state} SET writing = 0 WHERE id = 1")),
            lock_rows_head: format!("SELECT 1 FROM {t} WHERE {k} IN ("),
            lock_rows_tail: format!(") ORDER BY {k}{for_update}"),
            key_locks: (dialect == Dialect::Postgres).then(|| {
                (
                    sql("SELECT pg_advisory_xact_lock(?, k) FROM unnest(CAST(CAST(? AS TEXT) AS INT4[])) AS u(k)"
                        .to_owned()),
                    lock_id(name),
                )
            }),
            key_cast: match dialect {
                Dialect::Postgres => ("CAST(".to_owned(), format!(" AS {key_type})")),
                _ => (String::new(), String::new()),
            },
            durables: sql(format!(
                "SELECT s.version, {row_key}, {value_out} FROM {state} s LEFT JOIN {t} t ON 1 = 1 WHERE s.id = 1"
            )),
            changes: sql(format!(
                "SELECT s.version, s.horizon, {}, {value_out}, l.version FROM {state} s \
                 LEFT JOIN {keys} l ON l.version > ? LEFT JOIN {t} t ON t.{k} = l.k WHERE s.id = 1 ORDER BY l.version",
                key_out("l", "k")
            )),
            read_value: sql(format!("SELECT {value_out} FROM {t} t WHERE t.{k} = {key_in}{for_update}")),
            upsert: sql(upsert),
            delete: sql(format!("DELETE FROM {t} WHERE {k} = {key_in}")),
            poll_all: sql(poll_all),
            fingerprint: fingerprint.map(sql),
            state_rows: sql(format!("SELECT COUNT(*) FROM {state}")),
            install,
            mysql_triggers,
            uninstall,
            lock: (fnv1a(&format!("durable:table:{name}")) as i64, format!("durable:table:{name}")),
        })
    }
}

struct TriggerNames {
    t: String,
    k: String,
    state: String,
    keys: String,
    keys_index: String,
}

type Ddl = (Vec<String>, Vec<(String, String)>, Vec<String>);

/// The companion tables, the triggers, and what removes them. Every row change bumps the
/// state row's version and stamps the changed key (both keys of a renaming update) with it.
fn triggers(dialect: Dialect, options: &TableBackendBuilder, columns: &Columns, names: &TriggerNames) -> Ddl {
    let q = |ident: &str| dialect.quote(ident);
    let name = options.table.as_str();
    let TriggerNames { t, k, state, keys, keys_index } = names;
    let mysql = dialect == Dialect::MySql;
    let engine = if mysql { " ENGINE=InnoDB" } else { "" };
    let inline_index = if mysql { format!(", INDEX {keys_index} (version)") } else { String::new() };
    let key_type = &columns.key_type;
    let mut install = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {state} (id INTEGER NOT NULL PRIMARY KEY, version BIGINT NOT NULL, \
             horizon BIGINT NOT NULL, writing INTEGER NOT NULL DEFAULT 0){engine}"
        ),
        // Version 0 for an empty table; else version 1 and horizon 1, so that a delta from 0
        // is a full reload: the rows there before the triggers have no stamp.
        {
            let first = format!(
                "SELECT 1, v, v, 0 FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM {t}) THEN 1 ELSE 0 END AS v) x"
            );
            match dialect {
                Dialect::MySql => format!("INSERT IGNORE INTO {state} (id, version, horizon, writing) {first}"),
                _ => format!(
                    "INSERT INTO {state} (id, version, horizon, writing) {first} WHERE true ON CONFLICT (id) DO NOTHING"
                ),
            }
        },
        format!(
            "CREATE TABLE IF NOT EXISTS {keys} (k {key_type} NOT NULL PRIMARY KEY, version BIGINT NOT NULL{inline_index}){engine}"
        ),
    ];
    if !mysql {
        install.push(format!("CREATE INDEX IF NOT EXISTS {keys_index} ON {keys} (version)"));
    }
    let mut uninstall = Vec::new();
    let mut mysql_triggers = Vec::new();
    match dialect {
        Dialect::Postgres => {
            let function = q(&format!("{name}_durable_track"));
            let trigger = q(&format!("{name}_durable_track"));
            let truncate = q(&format!("{name}_durable_truncate"));
            let stamp = |row: &str| {
                format!(
                    "INSERT INTO {keys} (k, version) VALUES ({row}.{k}, v) \
                     ON CONFLICT (k) DO UPDATE SET version = excluded.version;"
                )
            };
            install.push(format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $durable$ \
                 DECLARE v BIGINT; \
                 BEGIN \
                   IF TG_OP = 'TRUNCATE' THEN \
                     UPDATE {state} SET version = version + 1, horizon = version + 1 WHERE id = 1 RETURNING version INTO v; \
                   ELSE \
                     UPDATE {state} SET version = version + 1 - writing WHERE id = 1 RETURNING version INTO v; \
                     IF TG_OP <> 'INSERT' THEN {} END IF; \
                     IF TG_OP <> 'DELETE' THEN {} END IF; \
                   END IF; \
                   PERFORM pg_notify('{TABLE_CHANNEL}', v || ' {name}'); \
                   RETURN NULL; \
                 END $durable$",
                stamp("OLD"),
                stamp("NEW"),
            ));
            install.push(format!(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {t} \
                 FOR EACH ROW EXECUTE FUNCTION {function}()"
            ));
            install.push(format!(
                "CREATE OR REPLACE TRIGGER {truncate} AFTER TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            ));
            uninstall.push(format!("DROP TRIGGER IF EXISTS {trigger} ON {t}"));
            uninstall.push(format!("DROP TRIGGER IF EXISTS {truncate} ON {t}"));
            uninstall.push(format!("DROP FUNCTION IF EXISTS {function}()"));
        }
        Dialect::MySql | Dialect::Sqlite => {
            let stamp = |row: &str| match dialect {
                Dialect::MySql => format!(
                    "INSERT INTO {keys} (k, version) SELECT {row}.{k}, version FROM {state} WHERE id = 1 \
                     ON DUPLICATE KEY UPDATE version = VALUES(version);"
                ),
                _ => format!(
                    "INSERT INTO {keys} (k, version) SELECT {row}.{k}, version FROM {state} WHERE id = 1 \
                     ON CONFLICT (k) DO UPDATE SET version = excluded.version;"
                ),
            };
            let bump = format!("UPDATE {state} SET version = version + 1 - writing WHERE id = 1;");
            for (event, rows) in [("INSERT", vec!["NEW"]), ("UPDATE", vec!["OLD", "NEW"]), ("DELETE", vec!["OLD"])] {
                let trigger_name = format!("{name}_durable_on_{}", event.to_lowercase());
                let trigger = q(&trigger_name);
                let body: String = rows.iter().map(|row| stamp(row)).collect::<Vec<_>>().join(" ");
                if mysql {
                    mysql_triggers.push((
                        trigger_name,
                        format!("CREATE TRIGGER {trigger} AFTER {event} ON {t} FOR EACH ROW BEGIN {bump} {body} END"),
                    ));
                } else {
                    install.push(format!(
                        "CREATE TRIGGER IF NOT EXISTS {trigger} AFTER {event} ON {t} FOR EACH ROW BEGIN {bump} {body} END"
                    ));
                }
                uninstall.push(format!("DROP TRIGGER IF EXISTS {trigger}"));
            }
        }
    }
    uninstall.push(format!("DROP TABLE IF EXISTS {keys}"));
    uninstall.push(format!("DROP TABLE IF EXISTS {state}"));
    (install, mysql_triggers, uninstall)
}

/// Whether a type name read from the catalog is one (letters, digits, spaces, `_`, `(`,
/// `)`, `,`, `"`): it is written into statements, so nothing else gets through.
pub(crate) fn is_type_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || " _(),\"".contains(c))
}

/// A table's or key's number for PostgreSQL's two-part advisory locks.
pub(crate) fn lock_id(text: &str) -> i32 {
    fnv1a(text) as i32
}
