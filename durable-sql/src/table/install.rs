//! Reading an adopted table's columns from the catalog, and installing and removing the
//! triggers that follow it.

use sqlx::AssertSqlSafe;

use super::statements::{Columns, TableStatements, is_type_name};
use super::{TableBackendBuilder, ValueKind};
use crate::dialect::Dialect;
use crate::error::{Fail, unexpected};
use crate::pool::{Pool, Shared, is_missing_table, sql};

/// The key and value columns' types; fails naming what is missing or does not fit the
/// value kind.
pub(crate) async fn read_columns(shared: &Shared, options: &TableBackendBuilder) -> Result<Columns, Fail> {
    let backend = shared.dialect.name();
    let table = options.table.as_str();
    let mut types = Vec::new();
    for column in [&options.key_column, &options.value_column] {
        let found: Option<String> = match &shared.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                )
                .bind(shared.dialect.quote(table))
                .bind(column)
                .fetch_optional(pool)
                .await?
            }
            #[cfg(feature = "mysql")]
            Pool::MySql(pool) => {
                let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT CONVERT(COLUMN_TYPE USING utf8mb4), CONVERT(CHARACTER_SET_NAME USING utf8mb4), \
                     CONVERT(COLLATION_NAME USING utf8mb4) FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                )
                .bind(table)
                .bind(column)
                .fetch_optional(pool)
                .await?;
                row.map(|(kind, charset, collation)| match (charset, collation) {
                    (Some(charset), Some(collation)) => format!("{kind} CHARACTER SET {charset} COLLATE {collation}"),
                    _ => kind,
                })
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                let row: Option<Option<String>> =
                    sqlx::query_scalar("SELECT type FROM pragma_table_info(?) WHERE name = ?")
                        .bind(table)
                        .bind(column)
                        .fetch_optional(pool)
                        .await?;
                // SQLite columns may have no declared type at all.
                row.map(|kind| kind.filter(|kind| !kind.is_empty()).unwrap_or_else(|| "BLOB".to_owned()))
            }
        };
        let Some(found) = found else {
            return Err(Fail::Core(unexpected(backend, format!("the table {table} has no column {column}"))));
        };
        if !is_type_name(&found) {
            return Err(Fail::Core(unexpected(backend, format!("column {column} has a type we cannot name: {found}"))));
        }
        types.push(found);
    }
    let value_type = types.pop().unwrap_or_default();
    let key_type = types.pop().unwrap_or_default();
    check_kind(shared.dialect, options.kind, &value_type).map_err(|what| {
        Fail::Core(unexpected(backend, format!("the value column {}: {what}", options.value_column)))
    })?;
    Ok(Columns { key_type, value_type })
}

/// Whether a value column of this type can hold values of this kind.
fn check_kind(dialect: Dialect, kind: ValueKind, value_type: &str) -> Result<(), String> {
    let lower = value_type.to_ascii_lowercase();
    let binary = match dialect {
        Dialect::Postgres => lower == "bytea",
        Dialect::MySql => lower.contains("blob") || lower.contains("binary"),
        Dialect::Sqlite => return Ok(()),
    };
    let json = lower.starts_with("json");
    match kind {
        ValueKind::Bytes if !binary => Err(format!("is {value_type}, not bytes: use ValueKind::Text or Json")),
        ValueKind::Text | ValueKind::Json if binary => Err(format!("is {value_type}: use ValueKind::Bytes")),
        ValueKind::Json if dialect == Dialect::Postgres && !json => {
            Err(format!("is {value_type}, not json or jsonb: use ValueKind::Text"))
        }
        _ => Ok(()),
    }
}

/// Creates what is missing of the companion tables and the triggers, under a lock so that
/// instances starting at once install one after the other.
pub(crate) async fn install(shared: &Shared, s: &TableStatements) -> Result<(), Fail> {
    under_schema_lock!(shared, s.lock.clone(), tx => async {
        for statement in &s.install {
            sqlx::raw_sql(AssertSqlSafe(statement.clone())).execute(&mut *tx).await?;
        }
        for (name, create) in &s.mysql_triggers {
            let there: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME = ?",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if there == 0 {
                sqlx::raw_sql(AssertSqlSafe(create.clone())).execute(&mut *tx).await?;
            }
        }
        Ok(())
    })
}

/// Whether the triggers' state table is there (and holds its row).
pub(crate) async fn has_triggers(shared: &Shared, s: &TableStatements) -> Result<bool, Fail> {
    let rows: Result<i64, sqlx::Error> = with_pool!(&shared.pool, pool => {
        sqlx::query_scalar(sql(&s.state_rows)).fetch_one(pool).await
    });
    match rows {
        Ok(rows) => Ok(rows == 1),
        Err(sqlx::Error::Database(err)) if is_missing_table(&*err) => Ok(false),
        Err(err) => Err(Fail::Sql(err)),
    }
}

/// Drops the triggers, the function and the companion tables.
pub(crate) async fn uninstall(shared: &Shared, s: &TableStatements) -> Result<(), Fail> {
    with_pool!(&shared.pool, pool => {
        for statement in &s.uninstall {
            sqlx::raw_sql(AssertSqlSafe(statement.clone())).execute(pool).await?;
        }
        Ok::<(), Fail>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_kinds_must_fit_the_column() {
        assert!(check_kind(Dialect::Postgres, ValueKind::Json, "jsonb").is_ok());
        assert!(check_kind(Dialect::Postgres, ValueKind::Json, "text").is_err());
        assert!(check_kind(Dialect::Postgres, ValueKind::Bytes, "bytea").is_ok());
        assert!(check_kind(Dialect::Postgres, ValueKind::Text, "bytea").is_err());
        assert!(check_kind(Dialect::MySql, ValueKind::Bytes, "longblob").is_ok());
        assert!(check_kind(Dialect::MySql, ValueKind::Bytes, "varchar(20)").is_err());
        assert!(check_kind(Dialect::Sqlite, ValueKind::Bytes, "TEXT").is_ok());
    }

    #[test]
    fn type_names_are_only_type_names() {
        assert!(is_type_name("character varying(100)"));
        assert!(is_type_name("varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"));
        assert!(!is_type_name("text; DROP TABLE x"));
        assert!(!is_type_name("text'"));
    }
}
