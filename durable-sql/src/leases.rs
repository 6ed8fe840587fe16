//! Leases in SQL: one transaction per lease operation, ordered with every write by the
//! namespace row's lock, judged by the database's clock (see `dialect::LeaseStatements`).

use durable_core::lease::{self, LeaseAnswer, LeaseChange, LeaseOp, StoredLease};

use crate::backend::SqlBackend;
use crate::dialect::Dialect;
use crate::error::Fail;
use crate::pool::{Pool, sql};

impl SqlBackend {
    pub(crate) async fn lease_once(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer, Fail> {
        let shared = &*self.shared;
        let s = &shared.statements.leases;
        let ns = self.namespace.as_str();
        with_pool!(&shared.pool, pool => async {
            let mut tx = match shared.dialect {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            sqlx::query(sql(&s.lock)).bind(ns).execute(&mut *tx).await?;
            let (now, token, holder, expires): (i64, Option<i64>, Option<String>, Option<i64>) =
                sqlx::query_as(sql(&s.read)).bind(ns).bind(key).bind(ns).bind(key).bind(ns).bind(key)
                    .fetch_one(&mut *tx).await?;
            let stored = match (token, holder, expires) {
                (Some(token), Some(holder), Some(expires_ms)) => {
                    Some(StoredLease { token: u64::try_from(token).unwrap_or_default(), holder, expires_ms })
                }
                _ => None,
            };
            let last = stored.as_ref().map_or(0, |lease| lease.token);
            let actor = shared.journal.actor_name();
            let (answer, change) = lease::decide(key, op, stored.as_ref(), last, now, actor).map_err(Fail::Core)?;
            let (token, holder, expires_ms) = match change {
                LeaseChange::None => {
                    tx.rollback().await?;
                    return Ok(answer);
                }
                LeaseChange::Put(lease) => (lease.token, lease.holder, lease.expires_ms),
                // The row stays, expired, so that the key's next token is above this one.
                LeaseChange::Remove => (last, stored.map(|lease| lease.holder).unwrap_or_default(), 0),
            };
            let token = i64::try_from(token).map_err(|_| Fail::Core(crate::error::unexpected(self.shared.dialect.name(), "lease token overflow")))?;
            sqlx::query(sql(&s.upsert)).bind(ns).bind(key).bind(token).bind(&holder).bind(expires_ms)
                .execute(&mut *tx).await?;
            if expires_ms > 0 {
                sqlx::query(sql(&s.extend)).bind(expires_ms).bind(ns).execute(&mut *tx).await?;
            } else if shared.dialect == Dialect::Postgres {
                let notify = &shared.statements.notify;
                let payload = format!("lease {ns}");
                sqlx::query(sql(notify)).bind(&shared.statements.channel).bind(payload).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(answer)
        }
        .await)
    }

    /// One transaction: locks the namespace row (as a lease operation does, so that it is
    /// ordered with every write), deletes the namespace's entries, journal, leases and row,
    /// and notifies without a version.
    pub(crate) async fn remove_once(&self) -> Result<(), Fail> {
        let shared = &*self.shared;
        let s = &shared.statements;
        let ns = self.namespace.as_str();
        with_pool!(&shared.pool, pool => async {
            let mut tx = match shared.dialect {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            sqlx::query(sql(&s.leases.lock)).bind(ns).execute(&mut *tx).await?;
            for statement in &s.remove {
                sqlx::query(sql(statement)).bind(ns).execute(&mut *tx).await?;
            }
            if shared.dialect == Dialect::Postgres {
                let payload = format!("removed {ns}");
                sqlx::query(sql(&s.notify)).bind(&s.channel).bind(payload).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await)
    }
}
