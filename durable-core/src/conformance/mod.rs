//! The conformance suite (feature `conformance`): public async test functions that every
//! backend runs, the way object_store's `integration.rs` is run by every object store.
//!
//! A backend crate's test file is a few lines: a [`BackendFactory`] that hands out a
//! backend on a given namespace, and [`conformance_tests!`](crate::conformance_tests), which
//! expands into one `#[tokio::test]` per function here:
//!
//! ```ignore
//! struct Factory;
//! #[durable_core::async_trait]
//! impl durable_core::conformance::BackendFactory for Factory {
//!     async fn backend(&self, namespace: &str) -> std::sync::Arc<dyn durable_core::Backend> {
//!         std::sync::Arc::new(MyBackend::connect(URL, namespace).await.unwrap())
//!     }
//!     async fn with_journal(&self, namespace: &str, journal: durable_core::JournalConfig)
//!         -> std::sync::Arc<dyn durable_core::Backend> {
//!         std::sync::Arc::new(MyBackend::builder(URL).journal(journal).connect(namespace).await.unwrap())
//!     }
//! }
//! durable_core::conformance_tests!(Factory);
//! ```
//!
//! Every function makes its own unique namespace, so the tests run in parallel and never
//! depend on what an earlier run left in the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::instrument::CountingBackend;
use crate::journal::JournalConfig;

mod archive;
mod batches;
mod convergence;
mod journal;
mod leases;
mod model;
mod operations;
mod read_only;
mod removal;
mod support;

pub use archive::restore_rebuilds_the_namespace_at_any_version;
pub use batches::{
    a_batch_applies_puts_and_deletes_as_one_version, a_batch_that_changes_nothing_makes_no_version,
    a_guarded_batch_changes_nothing_once_the_namespace_moved, guarded_batches_lose_no_update,
    no_reader_sees_part_of_a_batch,
};
pub use convergence::{
    change_events_report_old_and_new, change_hints_arrive, changes_since_returns_exactly_the_changes,
    dicts_converge_manual_and_autosync, dicts_of_one_process_share_delta_fetches, garbage_value_skips_only_that_key,
    hinted_dicts_converge_through_sync, invalid_keys_are_refused_before_io, namespaces_are_isolated,
};
pub use journal::{
    a_writer_without_a_journal_shows_as_a_gap, every_write_is_journaled_with_its_old_and_new_value,
    retention_trims_old_records_and_nothing_else, the_journal_follows_new_writes,
    the_journal_replays_every_version_of_a_busy_namespace,
};
pub use leases::{
    a_lease_excludes_other_writers_and_fences_its_holder, a_lease_expires_unless_renewed, increment_under_lease,
    leases_exclude_under_contention, the_store_reports_lease_times, waiting_for_a_lease,
};
pub use model::{ModelSize, model_check, snapshots_match_the_store_history};
pub use operations::{
    a_write_that_changes_nothing_leaves_the_snapshot_alone, compare_and_swap_checks_the_stored_value,
    get_with_default_and_contains, insert_many_is_all_or_nothing, missing_key_is_absent,
    nested_non_ascii_values_round_trip, pop_returns_the_value_and_removes_it, remove_of_absent_key_is_none,
    set_overwrite_and_read_back, setdefault_inserts_only_when_absent, version_and_data_move_together,
    version_strictly_increases,
};
pub use read_only::a_read_only_dict_follows_the_store_and_refuses_writes;
pub use removal::removing_a_namespace_leaves_nothing;

/// Hands out backends for the suite.
#[async_trait]
pub trait BackendFactory: Send + Sync + 'static {
    /// A backend on `namespace`; called several times with the same namespace when a test
    /// needs several clients of one dict (each call should be a separate client/connection).
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend>;

    /// A backend on `namespace` (a separate client, as [`BackendFactory::backend`]) that
    /// keeps its change journal as `journal` says: retention, actor, or off — the journal
    /// tests use one with the journal off as a writer that keeps none.
    async fn with_journal(&self, namespace: &str, journal: JournalConfig) -> Arc<dyn Backend>;

    /// A backend on `namespace` whose change log keeps at most `mutations` mutations, or
    /// `None` when the backend keeps no configurable log (its horizon test is skipped and
    /// `changes_since` is only checked for correctness, not for deltas).
    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        let _ = (namespace, mutations);
        None
    }

    /// Whether the server this factory talks to is reachable. A test whose server is
    /// missing is skipped on a laptop and fails under `DURABLE_REQUIRE_SERVICES=1` (CI); see
    /// [`require_service`].
    async fn available(&self) -> bool {
        true
    }

    /// Whether a handle still open on a namespace sees its removal at its next sync (and
    /// the suite checks that a following dict shows it empty within [`PATIENCE`]). Object
    /// storage says no: a handle notices at its next full check (`verify_every`).
    fn removal_reaches_open_handles(&self) -> bool {
        true
    }
}

/// A factory whose backends are another factory's wrapped the standard way —
/// `counting(faulty(lazy(backend)))`, each a [`Wrap`](crate::Wrap) with no fault switched on —
/// so the whole suite proves that wrappers keep the atomic writes, deltas, hints, key rules
/// and size limit of the backend they wrap (invariant 14):
///
/// ```ignore
/// mod wrapped {
///     durable_core::conformance_tests!(durable_core::conformance::Wrapped(crate::Factory));
/// }
/// ```
pub struct Wrapped<F>(pub F);

impl<F> Wrapped<F> {
    fn wrap(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        let name = inner.name();
        let lazy = crate::lazy::LazyBackend::new(name, move || {
            let inner = Arc::clone(&inner);
            async move { Ok(inner) }
        });
        let faulty = crate::testing::FaultyBackend::new(Arc::new(lazy));
        Arc::new(CountingBackend::new(Arc::new(faulty)))
    }
}

#[async_trait]
impl<F: BackendFactory> BackendFactory for Wrapped<F> {
    async fn backend(&self, namespace: &str) -> Arc<dyn Backend> {
        Self::wrap(self.0.backend(namespace).await)
    }

    async fn with_change_log(&self, namespace: &str, mutations: usize) -> Option<Arc<dyn Backend>> {
        self.0.with_change_log(namespace, mutations).await.map(Self::wrap)
    }

    async fn with_journal(&self, namespace: &str, journal: JournalConfig) -> Arc<dyn Backend> {
        Self::wrap(self.0.with_journal(namespace, journal).await)
    }

    async fn available(&self) -> bool {
        self.0.available().await
    }

    fn removal_reaches_open_handles(&self) -> bool {
        self.0.removal_reaches_open_handles()
    }
}

/// The environment variable that turns "server missing, skipping" into a failure.
pub const REQUIRE_SERVICES_ENV: &str = "DURABLE_REQUIRE_SERVICES";

/// For tests that need a server: `true` when `reachable`; otherwise prints that the test
/// is skipped and returns `false` — or panics when `DURABLE_REQUIRE_SERVICES=1`, as CI sets
/// it, so that a missing server can never pass as a green run.
pub fn require_service(service: &str, reachable: bool) -> bool {
    if reachable {
        return true;
    }
    if std::env::var(REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1") {
        panic!("{service} is not reachable and {REQUIRE_SERVICES_ENV}=1: start it with scripts/services.sh");
    }
    eprintln!("skipping: {service} is not reachable (set {REQUIRE_SERVICES_ENV}=1 to fail instead)");
    false
}

/// A Python virtual environment at `dir` with `packages` installed from PyPI (made once,
/// then reused) and `helper` as its `helper.py`, for the interop tests against Python's
/// durabledict. Returns its `python`, or `None` — a skip, or a failure under
/// `DURABLE_REQUIRE_SERVICES=1` — when python3 or PyPI cannot be had.
///
/// Tests of one binary run in parallel and several ask for the same environment (cargo
/// runs test binaries one after another): the work is done under a process-wide lock, so
/// one test makes it while the others wait, and a half-made environment (an earlier run
/// stopped midway) is made again from scratch.
pub async fn python_venv(dir: &std::path::Path, packages: &[&str], helper: &str) -> Option<std::path::PathBuf> {
    static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let lock = MAKING.lock().await;
    let python = dir.join("bin").join("python");
    let ready = dir.join("ready");
    let wanted = packages.join(" ");
    if !std::fs::read_to_string(&ready).is_ok_and(|installed| installed.trim() == wanted) {
        let made = tokio::process::Command::new("python3").args(["-m", "venv", "--clear"]).arg(dir).status().await;
        if !require_service("python3 with venv", matches!(made, Ok(status) if status.success())) {
            return None;
        }
        let installed = tokio::process::Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages)
            .status()
            .await;
        if !require_service(
            &format!("PyPI (pip install {wanted})"),
            matches!(installed, Ok(status) if status.success()),
        ) {
            return None;
        }
        std::fs::write(&ready, &wanted).ok()?;
    }
    if std::fs::read_to_string(dir.join("helper.py")).ok().as_deref() != Some(helper) {
        std::fs::write(dir.join("helper.py"), helper).expect("write helper.py");
    }
    drop(lock);
    Some(python)
}

/// Runs `helper.py` in the virtual environment `venv` (see [`python_venv`]) with `args`;
/// panics with Python's stderr if it fails, and returns what it printed.
pub async fn run_python_helper(venv: &std::path::Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new(venv.join("bin").join("python"))
        .arg(venv.join("helper.py"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .expect("start python");
    assert!(output.status.success(), "python {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How long the suite waits for something that should happen "soon" (a hint, a
/// background refresh) before it calls it a failure. Generous: CI machines are noisy.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `done` every 5 ms until it holds, for up to [`PATIENCE`]; panics naming `what`
/// when it never does.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Namespaces every backend refuses with [`Error::InvalidNamespace`] before any I/O: empty,
/// overlong, and carrying quotes, semicolons, whitespace, control characters or a
/// backslash. Backend tests connect with each to a port where nothing listens: an error
/// other than `InvalidNamespace` would mean the backend did I/O first.
pub fn bad_namespaces() -> Vec<String> {
    let mut bad: Vec<String> = ["", "it's", "say \"hi\"", "a;b", "flags'; DROP TABLE x; --", "my flags", "tab\there"]
        .into_iter()
        .map(String::from)
        .collect();
    bad.extend(["nul\0", "new\nline", "back`tick", "back\\slash"].map(String::from));
    bad.push("n".repeat(100_000));
    bad
}

/// Asserts that `connecting` failed with [`Error::InvalidNamespace`].
pub fn assert_invalid_namespace<T>(namespace: &str, connecting: Result<T>) {
    match connecting {
        Err(Error::InvalidNamespace { .. }) => {}
        Err(other) => panic!("namespace {namespace:.40?}: want InvalidNamespace before any I/O, got {other}"),
        Ok(_) => panic!("namespace {namespace:.40?} was accepted"),
    }
}

/// A namespace no other test, process or earlier run uses: `durable-test-<pid>-<time>-<n>`.
pub fn unique_namespace(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("durable-test-{label}-{}-{nanos:x}-{n}", std::process::id())
}

/// Expands into one `#[tokio::test]` per conformance function, each calling it with the
/// factory expression (evaluated per test) when [`BackendFactory::available`] says so. Needs `tokio` (with `macros` and
/// `rt-multi-thread`) among the caller's dev-dependencies.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@without_journal $factory);
        $crate::conformance_tests!(@each $factory;
            every_write_is_journaled_with_its_old_and_new_value,
            the_journal_replays_every_version_of_a_busy_namespace,
            a_writer_without_a_journal_shows_as_a_gap,
            retention_trims_old_records_and_nothing_else,
            the_journal_follows_new_writes,
            restore_rebuilds_the_namespace_at_any_version,
            removing_a_namespace_leaves_nothing,
        );
    };
    // Everything but the change journal's tests: for a store that keeps no journal (an
    // adopted SQL table), whose `journal()` is empty by contract.
    (@without_journal $factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            set_overwrite_and_read_back,
            missing_key_is_absent,
            get_with_default_and_contains,
            pop_returns_the_value_and_removes_it,
            setdefault_inserts_only_when_absent,
            nested_non_ascii_values_round_trip,
            version_strictly_increases,
            remove_of_absent_key_is_none,
            a_write_that_changes_nothing_leaves_the_snapshot_alone,
            compare_and_swap_checks_the_stored_value,
            version_and_data_move_together,
            insert_many_is_all_or_nothing,
            a_batch_applies_puts_and_deletes_as_one_version,
            a_batch_that_changes_nothing_makes_no_version,
            a_guarded_batch_changes_nothing_once_the_namespace_moved,
            guarded_batches_lose_no_update,
            no_reader_sees_part_of_a_batch,
            a_read_only_dict_follows_the_store_and_refuses_writes,
            dicts_converge_manual_and_autosync,
            hinted_dicts_converge_through_sync,
            dicts_of_one_process_share_delta_fetches,
            namespaces_are_isolated,
            changes_since_returns_exactly_the_changes,
            change_hints_arrive,
            change_events_report_old_and_new,
            garbage_value_skips_only_that_key,
            invalid_keys_are_refused_before_io,
            snapshots_match_the_store_history,
        );
    };
    (@leases $factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            a_lease_excludes_other_writers_and_fences_its_holder,
            a_lease_expires_unless_renewed,
            waiting_for_a_lease,
            leases_exclude_under_contention,
            the_store_reports_lease_times,
        );
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory;
                let factory: &dyn $crate::conformance::BackendFactory = &factory;
                if factory.available().await {
                    $crate::conformance::$name(factory).await;
                }
            }
        )*
    };
}
