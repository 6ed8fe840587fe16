//! The reads: the version, every entry with its version, and the delta since a version —
//! each consistent with the version it reports (invariant 2).

use bytes::Bytes;
use durable_core::{Changes, Durables, KeyChange, Version};

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
