//! The conformance suite on each SQL database: real SQLite files, the real PostgreSQL and
//! the real MariaDB/MySQL (see `tests/common` for their URLs).

mod common;

mod sqlite {
    durable_core::conformance_tests!(crate::common::Sql::sqlite());
}

mod postgres {
    durable_core::conformance_tests!(crate::common::Sql::postgres());
}

mod mysql {
    durable_core::conformance_tests!(crate::common::Sql::mysql());
}
