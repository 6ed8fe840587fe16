//! [`SqlError`]: sqlx errors turned into `durable_core::Error` at the crate boundary, with
//! the password of the URL scrubbed from every message (invariant 10).

use durable_core::{Error, Redactor, Source};

/// What went wrong talking to the database: the source of the `durable_core::Error` this
/// crate returns (`std::error::Error::source` downcasts to it). Its messages carry no
/// password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// sqlx reported an error: its message with any password removed, and the database's
    /// own code (SQLSTATE, or MySQL's and SQLite's numbers) when it gave one. (sqlx's own
    /// error is not kept: its text may hold the URL's password.)
    #[error("{message}")]
    Driver {
        /// The message, password removed.
        message: String,
        /// The database's error code, if it gave one.
        code: Option<String>,
    },
    /// The database held something this crate did not expect.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// Something in the store this crate did not expect, as the core's error.
pub(crate) fn unexpected(backend: &'static str, message: impl Into<String>) -> Error {
    Error::Store { backend, source: Source::new(SqlError::Unexpected(message.into())) }
}

/// What one attempt of an operation can fail with.
pub(crate) enum Fail {
    Sql(sqlx::Error),
    Core(Error),
}

impl From<sqlx::Error> for Fail {
    fn from(err: sqlx::Error) -> Self {
        Fail::Sql(err)
    }
}

impl Fail {
    /// Deadlocks, serialization failures, lock timeouts and a busy SQLite file: worth
    /// another attempt.
    pub(crate) fn is_retryable(&self) -> bool {
        let Fail::Sql(sqlx::Error::Database(db)) = self else { return false };
        let Some(code) = db.code() else { return false };
        matches!(
            &*code,
            // PostgreSQL: serialization_failure, deadlock_detected.
            "40001" | "40P01"
            // MySQL/MariaDB: deadlock, lock wait timeout (SQLSTATE and native codes).
            | "1213" | "1205"
            // SQLite: BUSY, LOCKED (and their extended codes).
            | "5" | "6" | "261" | "262" | "517"
        )
    }
}

/// Turns one attempt's failure into the crate's error, passwords scrubbed.
pub(crate) fn map(secrets: &Redactor, backend: &'static str, fail: Fail) -> Error {
    let err = match fail {
        Fail::Core(err) => return err,
        Fail::Sql(err) => err,
    };
    let message = secrets.scrub(&err.to_string());
    let code = match &err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    };
    let driver = |message: String| Source::new(SqlError::Driver { message, code: code.clone() });
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Error::StoreUnavailable { backend, source: driver(message) },
        sqlx::Error::Configuration(_) => Error::InvalidUrl { url: secrets.url().to_owned(), reason: message },
        sqlx::Error::Database(db) if db.code().is_some_and(|code| is_connection_loss(&code)) => {
            Error::StoreUnavailable { backend, source: driver(message) }
        }
        _ => Error::Store { backend, source: driver(message) },
    }
}

/// Server-side codes that mean "this connection or server is going away".
fn is_connection_loss(code: &str) -> bool {
    // PostgreSQL: connection exceptions (08xxx), admin/crash shutdown, cannot connect now.
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "1053" | "2006" | "2013")
}
