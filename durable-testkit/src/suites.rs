//! Suites every server backend runs, each with one macro call in its tests:
//! [`connection_suite!`](crate::connection_suite) (a silent server, a refused connection, a
//! port where nothing listens, bad namespaces — none of them needs a running store) and
//! [`outage_suite!`](crate::outage_suite) (a store of the test's own killed under live dicts,
//! and a service started while it is down). A backend describes itself once, as a
//! [`Target`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use durable_core::conformance::{assert_invalid_namespace, bad_namespaces};
use durable_core::{Backend, Result};

use crate::scenarios::{backup_stands_in_for_an_unreachable_store, outage_and_recovery};
use crate::servers::OwnServer;

/// The password every [`Target::url`] carries where its scheme has credentials; no error,
/// `Debug` or log may show it.
pub const PASSWORD: &str = "s3cr3tpw";

/// The operation timeout the suites give: short, so that a test that waits it out shows.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// How a backend's suites reach it.
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// The backend's name in messages.
    fn name(&self) -> &'static str;

    /// A URL for a server at `127.0.0.1:port`, carrying the user `app` and [`PASSWORD`] where
    /// the scheme has credentials.
    fn url(&self, port: u16) -> String;

    /// Connects to `url` on `namespace` with `timeout` as the operation timeout.
    async fn connect(&self, url: &str, namespace: &str, timeout: Duration) -> Result<Arc<dyn Backend>>;

    /// Namespaces this backend refuses besides [`bad_namespaces`].
    fn bad_namespaces(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A server that accepts TCP connections but never speaks: connecting fails within the
/// timeout (with some slack), as unavailable, showing no password.
pub async fn a_server_that_never_answers_fails_within_the_timeout(target: &dyn Target) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a silent port");
    let url = target.url(silent.local_addr().expect("its address").port());
    let started = Instant::now();
    let err = target.connect(&url, "ns", TIMEOUT).await.map(|_| ()).expect_err("a silent server");
    assert!(started.elapsed() < TIMEOUT * 6, "{}: took {:?}", target.name(), started.elapsed());
    assert!(err.is_unavailable(), "{}: {err}", target.name());
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{}: {err:?}", target.name());
}

/// A refused connection fails within [`REFUSAL_BOUND`](crate::REFUSAL_BOUND) whatever the
/// timeout, as unavailable, naming the refusal and showing no password.
pub async fn a_refused_connection_fails_at_once_showing_no_password(target: &dyn Target) {
    let url = target.url(crate::spare_port());
    let started = Instant::now();
    let err = target.connect(&url, "flags", Duration::from_secs(5)).await.map(|_| ()).expect_err("nothing listens");
    let took = started.elapsed();
    assert!(err.is_unavailable(), "{}: want unavailable, got {err}", target.name());
    assert!(err.to_string().contains("refused"), "{}: the error names the refusal: {err}", target.name());
    assert!(took <= crate::REFUSAL_BOUND, "{}: a refused connect took {took:?}: {err}", target.name());
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{}: {err:?}", target.name());
}

/// Bad namespaces are refused with `InvalidNamespace` before any I/O (nothing listens at the
/// URL, so any I/O would fail otherwise).
pub async fn bad_namespaces_are_refused_before_any_io(target: &dyn Target) {
    let url = target.url(crate::spare_port());
    let mut bad = bad_namespaces();
    bad.extend(target.bad_namespaces());
    for ns in bad {
        assert_invalid_namespace(&ns, target.connect(&url, &ns, TIMEOUT).await);
    }
}

/// A store of the test's own killed and restarted under live dicts: see
/// [`outage_and_recovery`].
pub async fn a_killed_store_is_survived_and_recovered_from(mut server: OwnServer, target: Arc<dyn Target>) {
    let name = target.name();
    let recovery = outage_and_recovery(&mut server, TIMEOUT, move |url, ns| {
        let target = Arc::clone(&target);
        async move { target.connect(&url, &ns, TIMEOUT).await }
    })
    .await;
    eprintln!("{name}: {recovery:?}");
}

/// A service started while its store is down: see [`backup_stands_in_for_an_unreachable_store`].
pub async fn a_service_started_while_the_store_is_down_serves_its_backup(
    mut server: OwnServer,
    target: Arc<dyn Target>,
) {
    let name = target.name();
    let caught_up = backup_stands_in_for_an_unreachable_store(&mut server, move |url, ns| {
        let target = Arc::clone(&target);
        async move { target.connect(&url, &ns, TIMEOUT).await }
    })
    .await;
    eprintln!("{name}: caught up {caught_up:?} after the store came back");
}

/// Expands into one `#[tokio::test]` per connection check, each on the [`Target`] the
/// expression makes. Needs no running store.
#[macro_export]
macro_rules! connection_suite {
    ($target:expr) => {
        $crate::connection_suite!(@each $target;
            a_server_that_never_answers_fails_within_the_timeout,
            a_refused_connection_fails_at_once_showing_no_password,
            bad_namespaces_are_refused_before_any_io,
        );
    };
    (@each $target:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::suites::$name(&$target).await;
            }
        )*
    };
}

/// Expands into the outage tests on a store of the test's own: `$server` is an
/// `async fn() -> Option<OwnServer>` (`OwnServer::redis`, ...), `$target` the [`Target`].
/// Skipped where the server cannot be started (a failure under `DURABLE_REQUIRE_SERVICES`).
#[macro_export]
macro_rules! outage_suite {
    ($server:path, $target:expr) => {
        $crate::outage_suite!(@each $server, $target;
            a_killed_store_is_survived_and_recovered_from,
            a_service_started_while_the_store_is_down_serves_its_backup,
        );
    };
    (@each $server:path, $target:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(server) = $server().await else { return };
                $crate::suites::$name(server, ::std::sync::Arc::new($target)).await;
            }
        )*
    };
}
