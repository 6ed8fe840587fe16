//! The reads: the version, every entry with its version, and the delta since a version —
//! each consistent with the version it reports (invariant 2).

use bytes::Bytes;
use durable_core::journal::{time_from_millis, whole_versions};
use durable_core::{Changes, Durables, JournalPage, JournalRecord, KeyChange, Version};

use crate::backend::SqlBackend;
use crate::error::Fail;
use crate::pool::{Pool, sql};
use crate::writes::to_version;

impl SqlBackend {
    pub(crate) async fn last_updated_once(&self) -> Result<Version, Fail> {
        let s = &self.shared.statements;
        let raw: Option<i64> = with_pool!(&self.shared.pool, pool => {
            sqlx::query_scalar(sql(&s.last_updated)).bind(&self.namespace).fetch_optional(pool).await?
        });
        to_version(raw.unwrap_or(0))
    }

    pub(crate) async fn durables_once(&self) -> Result<Durables, Fail> {
        let s = &self.shared.statements;
        let rows: Vec<(i64, Option<String>, Option<Vec<u8>>)> = with_pool!(&self.shared.pool, pool => {
            sqlx::query_as(sql(&s.durables)).bind(&self.namespace).fetch_all(pool).await?
        });
        let version = to_version(rows.first().map_or(0, |row| row.0))?;
        let entries = rows
            .into_iter()
            .filter_map(|(_, key, value)| Some((key?, Bytes::from(value.unwrap_or_default()))))
            .collect();
        Ok(Durables { entries, version })
    }

    pub(crate) async fn changes_once(&self, since: Version) -> Result<Changes, Fail> {
        let s = &self.shared.statements;
        let Ok(since_raw) = i64::try_from(since) else { return Ok(Changes::TooOld) };
        type ChangeRow = (i64, i64, Option<String>, Option<Vec<u8>>, Option<i64>, Option<bool>);
        let rows: Vec<ChangeRow> = with_pool!(&self.shared.pool, pool => {
            sqlx::query_as(sql(&s.changes)).bind(since_raw).bind(&self.namespace).fetch_all(pool).await?
        });
        let (version, horizon) = rows.first().map_or((0, 0), |row| (row.0, row.1));
        if since_raw > version || since_raw < horizon {
            return Ok(Changes::TooOld);
        }
        let mut changes = Vec::with_capacity(rows.len());
        for (_, _, key, value, row_version, tombstone) in rows {
            let (Some(key), Some(row_version)) = (key, row_version) else { continue };
            let value = if tombstone.unwrap_or(false) { None } else { Some(Bytes::from(value.unwrap_or_default())) };
            changes.push(KeyChange { key, value, version: to_version(row_version)? });
        }
        Ok(Changes::Delta { changes, version: to_version(version)? })
    }
}

/// A journal row: version, seq, key, old value, new value, actor, reason, time (ms).
type JournalRow = (i64, i64, String, Option<Vec<u8>>, Option<Vec<u8>>, String, Option<String>, i64);

fn record((version, _, key, old, new, actor, reason, at): JournalRow) -> Result<JournalRecord, Fail> {
    Ok(JournalRecord {
        version: to_version(version)?,
        key,
        old: old.map(Bytes::from),
        new: new.map(Bytes::from),
        actor,
        reason,
        time: time_from_millis(at),
    })
}

impl SqlBackend {
    /// The namespace version and trimmed-through version first, then the rows after `after`
    /// up to that version (so the version covers them), completing a version cut by the
    /// limit when it is the only one.
    pub(crate) async fn journal_once(&self, after: Version, limit: usize) -> Result<JournalPage, Fail> {
        let j = &self.shared.statements.journal;
        let ns = self.namespace.as_str();
        let after_raw = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = limit.max(1);
        let limit_raw = i64::try_from(limit).unwrap_or(i64::MAX);
        let (rows, version, trimmed) = with_pool!(&self.shared.pool, pool => {
            let state: Option<(i64, i64)> = sqlx::query_as(sql(&j.state)).bind(ns).fetch_optional(pool).await?;
            let (version, trimmed) = state.unwrap_or((0, 0));
            let mut rows: Vec<JournalRow> = sqlx::query_as(sql(&j.page))
                .bind(ns).bind(after_raw).bind(version).bind(limit_raw).fetch_all(pool).await?;
            if rows.len() >= limit
                && let (Some(first), Some(last)) = (rows.first(), rows.last())
                && first.0 == last.0
            {
                // Continued after the last row's position within its version: its key on
                // SQLite, its seq elsewhere (see the page's order).
                let query = sqlx::query_as(sql(&j.rest_of_version)).bind(ns).bind(last.0);
                let query = if self.shared.dialect == crate::dialect::Dialect::Sqlite {
                    query.bind(last.2.clone())
                } else {
                    query.bind(last.1)
                };
                let rest: Vec<JournalRow> = query.fetch_all(pool).await?;
                rows.extend(rest);
            }
            (rows, version, trimmed)
        });
        let records = rows.into_iter().map(record).collect::<Result<Vec<_>, _>>()?;
        let (records, more) = whole_versions(records, limit);
        Ok(JournalPage {
            records,
            version: to_version(version)?,
            trimmed_through: to_version(trimmed)?,
            more,
            unchanged: Vec::new(),
        })
    }

    pub(crate) async fn history_once(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>, Fail> {
        let j = &self.shared.statements.journal;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<JournalRow> = with_pool!(&self.shared.pool, pool => {
            sqlx::query_as(sql(&j.history)).bind(&self.namespace).bind(key).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(record).collect()
    }
}
