//! Change hints: PostgreSQL's LISTEN/NOTIFY (`listen.rs`); SQLite and MySQL push nothing,
//! and their dicts poll.

use durable_core::{HintStream, Result};

use crate::backend::SqlBackend;
#[cfg(feature = "postgres")]
use crate::{error, error::Fail, pool::Pool};

impl SqlBackend {
    /// What [`Backend::watch`](durable_core::Backend::watch) answers.
    pub(crate) async fn hints(&self) -> Result<Option<HintStream>> {
        match &self.shared.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                let listening = async {
                    crate::listen::subscribe(pool, &self.shared.url, &self.shared.statements.channel, &self.namespace)
                        .await
                        .map_err(|err| error::map(&self.shared.secrets, "postgres", Fail::Sql(err)))
                };
                self.shared.probe.bound("watch", self.shared.timeout, listening).await.map(Some)
            }
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }
}
