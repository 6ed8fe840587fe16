//! Passwords in backend URLs never reach the logs: every backend, failing in every way a
//! service would log (first load, hint subscription, background retries, writes).

#![cfg(all(feature = "redis", feature = "postgres", feature = "mysql", feature = "zookeeper"))]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable::DurableDict;
use serde_json::{Value, json};

const PASSWORD: &str = "hunter2-sekrit";

/// Every log line, at every level, into one buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_show_passwords() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Global, so the dicts' background tasks on other threads are heard too (this binary
    // has this one test).
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let port = durable_testkit::spare_port();
    let urls = [
        format!("redis://user:{PASSWORD}@127.0.0.1:{port}/"),
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/test"),
        format!("mysql://root:{PASSWORD}@127.0.0.1:{port}/test"),
        format!("zk://super:{PASSWORD}@127.0.0.1:{port}/durable-test"),
    ];
    let dir = tempfile::tempdir().unwrap();
    // The four at once: each waits out its backend's connect timeout several times.
    let each = urls.iter().enumerate().map(|(i, url)| {
        let dir = &dir;
        async move {
            // Eager: the connection error.
            let Err(err) = durable::connect(url, "flags").await else { panic!("nothing listens there") };
            assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err:?}");
            // Lazy, with a backup file standing in: the failed first load, the hint
            // subscription, the listener's retries and a failed write are all logged.
            let backup = dir.path().join(format!("{i}.backup"));
            let seeded = DurableDict::<Value>::builder(durable::connect("memory://logs", "flags").await.unwrap())
                .backup_file(&backup)
                .build()
                .await
                .unwrap();
            seeded.insert("on", json!(true)).await.unwrap();
            durable_testkit::wait_until("the backup", || durable::read_backup(&backup).is_ok()).await;
            let lazy = durable::connect_lazy(url, "flags").unwrap();
            let dict = DurableDict::<Value>::builder(lazy)
                .autosync(false)
                .background_refresh(true)
                .backup_file(&backup)
                .build()
                .await
                .expect("starts from the backup");
            let err = dict.insert("x", json!(1)).await.unwrap_err();
            assert!(!format!("{err} {err:?} {dict:?} {:?}", dict.status()).contains(PASSWORD));
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    });
    futures::future::join_all(each).await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("serving the backup file"), "the failures were logged:\n{logs}");
    assert!(logs.lines().count() > 8, "the failures were logged:\n{logs}");
    assert!(!logs.contains(PASSWORD), "a password reached the logs:\n{logs}");
}
