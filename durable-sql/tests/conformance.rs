//! The conformance suite on each SQL database: real SQLite files, the real PostgreSQL and
//! the real MariaDB/MySQL (see `tests/common` for their URLs).

mod common;

mod sqlite {
    durable_core::conformance_tests!(crate::common::Sql::sqlite());
    durable_core::conformance_tests!(@leases crate::common::Sql::sqlite());
}

mod postgres {
    durable_core::conformance_tests!(crate::common::Sql::postgres());
    durable_core::conformance_tests!(@leases crate::common::Sql::postgres());
}

mod mysql {
    durable_core::conformance_tests!(crate::common::Sql::mysql());
    durable_core::conformance_tests!(@leases crate::common::Sql::mysql());
}

/// The suite through `counting(faulty(lazy(…)))` on every database: wrappers keep every
/// guarantee of what they wrap.
mod wrapped {
    use durable_core::conformance::Wrapped;

    mod sqlite {
        durable_core::conformance_tests!(super::Wrapped(crate::common::Sql::sqlite()));
        durable_core::conformance_tests!(@leases super::Wrapped(crate::common::Sql::sqlite()));
    }

    mod postgres {
        durable_core::conformance_tests!(super::Wrapped(crate::common::Sql::postgres()));
        durable_core::conformance_tests!(@leases super::Wrapped(crate::common::Sql::postgres()));
    }

    mod mysql {
        durable_core::conformance_tests!(super::Wrapped(crate::common::Sql::mysql()));
        durable_core::conformance_tests!(@leases super::Wrapped(crate::common::Sql::mysql()));
    }
}
