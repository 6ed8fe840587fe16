//! What can go wrong: [`FlagError`] for writing definitions, [`ErrorCode`] in a resolution.

use std::fmt;

/// A definition that cannot be written, or a store that refused it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FlagError {
    /// Not a flag in flagd's format, or one that breaks its rules: the reason says which.
    #[error("flag {key:?}: {reason}")]
    Invalid {
        /// The flag (or `$evaluators`, `(flag set)`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `{"$ref": name}` names no shared rule under `$evaluators`.
    #[error("flag {key:?}: $ref {name:?} names no rule in $evaluators")]
    UnknownRef {
        /// The flag.
        key: String,
        /// The missing rule.
        name: String,
    },
    /// The targeting rule does not compile as JsonLogic.
    #[error("flag {key:?}: targeting does not compile: {reason}")]
    Rule {
        /// The flag.
        key: String,
        /// The engine's message.
        reason: String,
    },
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(#[from] durable_core::Error),
}

/// Why a resolution carries no value of its own, as OpenFeature names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No flag with that key.
    FlagNotFound,
    /// The flag's value is not of the asked type.
    TypeMismatch,
    /// The flag's definition or its targeting could not be read or evaluated.
    ParseError,
    /// Targeting named a variant the flag does not have.
    General,
}

impl ErrorCode {
    /// OpenFeature's name: `FLAG_NOT_FOUND`, `TYPE_MISMATCH`, `PARSE_ERROR`, `GENERAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FlagNotFound => "FLAG_NOT_FOUND",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::ParseError => "PARSE_ERROR",
            Self::General => "GENERAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
