//! The mutations: each one transaction that bumps the namespace version with its change
//! (invariant 1), or rolls back when it changes nothing.

use bytes::Bytes;
use durable_core::{Batch, Error, Op, Version};
use sqlx::Row;

use crate::BATCH_ROWS;
use crate::backend::SqlBackend;
use crate::dialect::Dialect;
use crate::error::Fail;
use crate::pool::{Pool, sql};

/// How a mutation ends: committed with its result, or rolled back (nothing changed).
enum Outcome<T> {
    Changed(T),
    Unchanged(T),
}

/// One mutation transaction, as an expression of type `Result<T, Fail>`: begin (SQLite:
/// `BEGIN IMMEDIATE`), bump the namespace version, run `$body` (which sees `$tx` and
/// `$version` and yields an `Outcome`), then prune tombstones, notify and commit — or roll
/// back when nothing changed. Everything runs in async blocks, so a `?` or `return Err(..)`
/// in the body ends the transaction (rolled back), never the caller. A macro rather than a
/// function because each dialect's transaction is its own type.
macro_rules! mutation {
    ($backend:expr, $key:expr, $tx:ident, $version:ident, $s:ident, $ns:ident => $body:block) => {
        mutation!($backend, None, &[($key, None)], $tx, $version, $s, $ns => $body)
    };
    ($backend:expr, $reason:expr, $leased:expr, $tx:ident, $version:ident, $s:ident, $ns:ident => $body:block) => {{
        let backend: &SqlBackend = $backend;
        let shared = &*backend.shared;
        let $s = &shared.statements;
        let $ns = backend.namespace.as_str();
        with_pool!(&shared.pool, pool => async {
            let mut $tx = match shared.dialect {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            let row = if shared.dialect == Dialect::MySql {
                sqlx::query(sql(&$s.bump)).bind($ns).execute(&mut *$tx).await?;
                sqlx::query(sql(&$s.read_bump)).bind($ns).fetch_one(&mut *$tx).await?
            } else if shared.dialect == Dialect::Sqlite {
                // SQLite's journal triggers read these from the namespace row.
                let reason: Option<&str> = $reason;
                sqlx::query(sql(&$s.bump))
                    .bind($ns)
                    .bind(i64::from(shared.journal.is_on()))
                    .bind(shared.journal.actor_name())
                    .bind(reason)
                    .fetch_one(&mut *$tx)
                    .await?
            } else {
                sqlx::query(sql(&$s.bump)).bind($ns).fetch_one(&mut *$tx).await?
            };
            let $version: i64 = row.try_get(0)?;
            let horizon: i64 = row.try_get(1)?;
            let leases_live: i64 = row.try_get(2)?;
            let leased: &[(&str, Option<durable_core::Token>)] = $leased;
            if leases_live != 0 || leased.iter().any(|(_, fence)| fence.is_some()) {
                let rows = sqlx::query(sql(&$s.leases.live)).bind($ns).fetch_all(&mut *$tx).await?;
                check_leases(leased, rows)?;
            }
            let outcome: Result<Outcome<_>, Fail> = async { Ok($body) }.await;
            match outcome? {
                Outcome::Unchanged(value) => {
                    $tx.rollback().await?;
                    Ok(value)
                }
                Outcome::Changed(value) => {
                    let slack = (shared.retention / 10).max(1);
                    if $version - horizon >= shared.retention + slack {
                        let new_horizon = $version - shared.retention;
                        sqlx::query(sql(&$s.prune)).bind($ns).bind(new_horizon).execute(&mut *$tx).await?;
                        sqlx::query(sql(&$s.set_horizon)).bind(new_horizon).bind($ns).execute(&mut *$tx).await?;
                    }
                    if shared.journal.is_on() {
                        let mut through = shared.journal.trim_through(to_version($version)?).unwrap_or(0) as i64;
                        if shared.journal.trims_by_age_at(to_version($version)?)
                            && let Some(age) = shared.journal.kept_for()
                        {
                            let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                            let aged: Option<i64> = sqlx::query_scalar(sql(&$s.journal.aged))
                                .bind($ns).bind(age).fetch_one(&mut *$tx).await?;
                            through = through.max(aged.unwrap_or(0));
                        }
                        if through > 0 {
                            sqlx::query(sql(&$s.journal.trim)).bind($ns).bind(through).execute(&mut *$tx).await?;
                            sqlx::query(sql(&$s.journal.set_trimmed))
                                .bind(through).bind($ns).bind(through).execute(&mut *$tx).await?;
                        }
                    }
                    if shared.dialect == Dialect::Postgres {
                        let payload = format!("{} {}", $version, $ns);
                        sqlx::query(sql(&$s.notify)).bind(&$s.channel).bind(payload).execute(&mut *$tx).await?;
                    }
                    $tx.commit().await?;
                    Ok(value)
                }
            }
        }
        .await)
    }};
}

/// Records the changes `$changes` (`(key, new value)` pairs, in key order) in the journal,
/// when it is on: one `INSERT ... SELECT` per chunk that reads each key's old value from
/// the live entries in the same statement, and skips a delete of an absent key. Run before
/// the write itself, inside the mutation's transaction (invariant 11). An expression of
/// type `Result<(), Fail>` to be awaited.
macro_rules! journal {
    ($tx:ident, $shared:expr, $ns:expr, $version:expr, $reason:expr, $changes:expr) => {
        async {
            let shared: &crate::pool::Shared = $shared;
            // SQLite's triggers write its journal within the entry statements themselves.
            if !shared.journal.is_on() || shared.dialect == Dialect::Sqlite {
                return Ok::<(), Fail>(());
            }
            let j = &shared.statements.journal;
            let [int, text, key_cast, blob] = j.casts;
            let reason: Option<&str> = $reason;
            let changes: &[(&str, Option<&[u8]>)] = $changes;
            if let [(key, Some(new))] = changes {
                sqlx::query(sql(&j.put_one))
                    .bind($ns)
                    .bind($version)
                    .bind(*key)
                    .bind($ns)
                    .bind(*key)
                    .bind(*new)
                    .bind(shared.journal.actor_name())
                    .bind(reason)
                    .execute(&mut *$tx)
                    .await?;
                return Ok(());
            }
            for (chunk_index, chunk) in changes.chunks(BATCH_ROWS).enumerate() {
                let mut insert = sqlx::QueryBuilder::new(j.insert_head.as_str());
                insert.push(text.0).push_bind($ns).push(text.1).push(", ");
                insert.push(int.0).push_bind($version).push(int.1).push(", b.seq, b.k, e.value, b.v, ");
                insert.push(text.0).push_bind(shared.journal.actor_name()).push(text.1).push(", ");
                insert.push(text.0).push_bind(reason).push(text.1).push(", ").push(j.now_ms).push(" FROM (");
                for (index, (key, new)) in chunk.iter().enumerate() {
                    if index > 0 {
                        insert.push(" UNION ALL ");
                    }
                    let seq = (chunk_index * BATCH_ROWS + index + 1) as i64;
                    insert.push("SELECT ").push(int.0).push_bind(seq).push(int.1).push(" AS seq, ");
                    insert.push(key_cast.0).push_bind(*key).push(key_cast.1).push(" AS k, ");
                    insert.push(blob.0).push_bind(*new).push(blob.1).push(" AS v");
                }
                insert.push(") b").push(j.insert_join.as_str()).push(text.0).push_bind($ns).push(text.1);
                insert.push(" AND e.").push(shared.statements.key_column.as_str());
                insert.push(" = b.k AND e.tombstone = FALSE WHERE b.v IS NOT NULL OR e.value IS NOT NULL");
                insert.build().execute(&mut *$tx).await?;
            }
            Ok(())
        }
    };
}

/// The lease rule ([`durable_core::lease::enforce`]) for each key a write touches, given
/// the namespace's live leases as read in the write's transaction (after the bump locked
/// the namespace row, so no lease is granted or changed until the write commits).
fn check_leases<R: Row>(leased: &[(&str, Option<durable_core::Token>)], live: Vec<R>) -> Result<(), Fail>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut now = 0;
    let mut stored = std::collections::HashMap::new();
    for row in live {
        now = row.try_get(4)?;
        let lease = durable_core::lease::StoredLease {
            token: u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or_default(),
            holder: row.try_get(2)?,
            expires_ms: row.try_get(3)?,
        };
        stored.insert(row.try_get::<String, _>(0)?, lease);
    }
    for (key, fence) in leased {
        durable_core::lease::enforce(key, *fence, stored.get(*key), now).map_err(Fail::Core)?;
    }
    Ok(())
}

pub(crate) fn to_version(raw: i64) -> Result<Version, Fail> {
    Version::try_from(raw)
        .map_err(|_| Fail::Core(crate::error::unexpected("sql", format!("negative version {raw} in the store"))))
}

impl SqlBackend {
    /// One batch (its keys unique, so no statement touches a row twice — PostgreSQL refuses
    /// that): the guard checked against the version the bump replaced, under the bump's row
    /// lock; the puts upserted in chunks; the deletes tombstoned.
    pub(crate) async fn apply_once(&self, batch: &Batch) -> Result<Option<Version>, Fail> {
        let puts: Vec<(&str, &Bytes)> = batch.puts_iter().collect();
        mutation!(self, batch.reason_text(), &batch.leased_keys(), tx, version, s, ns => {
            let current = to_version(version - 1)?;
            if let Some(expected) = batch.guard_version() && expected != current {
                return Err(Fail::Core(Error::VersionConflict { expected, current }));
            }
            let changes: Vec<(&str, Option<&[u8]>)> = batch
                .ops()
                .map(|(key, op)| (key, match op { Op::Put(value) => Some(value.as_ref()), Op::Delete => None }))
                .collect();
            journal!(tx, &self.shared, ns, version, batch.reason_text(), &changes).await?;
            for chunk in puts.chunks(BATCH_ROWS) {
                let mut insert = sqlx::QueryBuilder::new(s.upsert_head.as_str());
                insert.push_values(chunk, |mut row, (key, value)| {
                    row.push_bind(ns).push_bind(*key).push_bind(value.as_ref()).push_bind(version).push("FALSE");
                });
                insert.push(s.upsert_tail.as_str());
                insert.build().execute(&mut *tx).await?;
            }
            let mut changed = !puts.is_empty();
            for key in batch.deletes() {
                let done = sqlx::query(sql(&s.tombstone)).bind(version).bind(ns).bind(key).execute(&mut *tx).await?;
                changed |= done.rows_affected() > 0;
            }
            if changed { Outcome::Changed(Some(to_version(version)?)) } else { Outcome::Unchanged(None) }
        })
    }

    pub(crate) async fn depersist_once(&self, key: &str) -> Result<Option<Version>, Fail> {
        mutation!(self, key, tx, version, s, ns => {
            journal!(tx, &self.shared, ns, version, None, &[(key, None)]).await?;
            let done = sqlx::query(sql(&s.tombstone)).bind(version).bind(ns).bind(key).execute(&mut *tx).await?;
            if done.rows_affected() == 0 { Outcome::Unchanged(None) } else { Outcome::Changed(Some(to_version(version)?)) }
        })
    }

    pub(crate) async fn pop_once(&self, key: &str) -> Result<Option<(Bytes, Version)>, Fail> {
        mutation!(self, key, tx, version, s, ns => {
            let found: Option<Vec<u8>> =
                sqlx::query_scalar(sql(&s.live_value)).bind(ns).bind(key).fetch_optional(&mut *tx).await?;
            match found {
                None => Outcome::Unchanged(None),
                Some(value) => {
                    journal!(tx, &self.shared, ns, version, None, &[(key, None)]).await?;
                    sqlx::query(sql(&s.tombstone)).bind(version).bind(ns).bind(key).execute(&mut *tx).await?;
                    Outcome::Changed(Some((Bytes::from(value), to_version(version)?)))
                }
            }
        })
    }

    pub(crate) async fn setdefault_once(&self, key: &str, value: &Bytes) -> Result<(Bytes, Option<Version>), Fail> {
        mutation!(self, key, tx, version, s, ns => {
            let found: Option<Vec<u8>> =
                sqlx::query_scalar(sql(&s.live_value)).bind(ns).bind(key).fetch_optional(&mut *tx).await?;
            match found {
                Some(found) => Outcome::Unchanged((Bytes::from(found), None)),
                None => {
                    journal!(tx, &self.shared, ns, version, None, &[(key, Some(value.as_ref()))]).await?;
                    sqlx::query(sql(&s.upsert)).bind(ns).bind(key).bind(value.as_ref()).bind(version).execute(&mut *tx).await?;
                    Outcome::Changed((value.clone(), Some(to_version(version)?)))
                }
            }
        })
    }

    pub(crate) async fn compare_and_swap_once(
        &self,
        key: &str,
        old: &Option<Bytes>,
        new: &Option<Bytes>,
    ) -> Result<Option<Version>, Fail> {
        mutation!(self, key, tx, version, s, ns => {
            let found: Option<Vec<u8>> =
                sqlx::query_scalar(sql(&s.live_value)).bind(ns).bind(key).fetch_optional(&mut *tx).await?;
            if found.as_deref() != old.as_deref() {
                return Err(Fail::Core(Error::Conflict { key: key.into() }));
            }
            match (new, found) {
                (None, None) => Outcome::Unchanged(None),
                (None, Some(_)) => {
                    journal!(tx, &self.shared, ns, version, None, &[(key, None)]).await?;
                    sqlx::query(sql(&s.tombstone)).bind(version).bind(ns).bind(key).execute(&mut *tx).await?;
                    Outcome::Changed(Some(to_version(version)?))
                }
                (Some(value), _) => {
                    journal!(tx, &self.shared, ns, version, None, &[(key, Some(value.as_ref()))]).await?;
                    sqlx::query(sql(&s.upsert)).bind(ns).bind(key).bind(value.as_ref()).bind(version).execute(&mut *tx).await?;
                    Outcome::Changed(Some(to_version(version)?))
                }
            }
        })
    }
}
