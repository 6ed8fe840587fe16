//! Fan-out as deployments run it: 1,000 dicts spread over 10 processes (this binary again,
//! `--subscribers`), each process with its own connections and hint subscription, against
//! one store and namespace.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable::{DurableDict, Event};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::backends::shared_handles;

fn unix_us() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as f64 / 1_000.0
}

/// Sorted microseconds from `writer`'s insert returning to each of `processes` ×
/// `per_process` dicts in other processes seeing the change (its wall clock when the
/// change event arrived; one machine, one clock). A dict that saw the change before the
/// write returned counts 0. On Redis, also the store's load per change (see [`RedisMeter`]).
pub(crate) async fn propagation_across_processes(
    name: &str,
    url: &str,
    ns: &str,
    processes: usize,
    per_process: usize,
    samples: usize,
) -> (Vec<f64>, Option<Load>) {
    let (got, mut heard) = mpsc::unbounded_channel::<(u64, f64)>();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    let mut children = Vec::with_capacity(processes);
    for _ in 0..processes {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--subscribers", name, url, ns, &per_process.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (got, ready_tx) = (got.clone(), ready_tx.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else if let Some((value, at)) = line.split_once(' ') {
                    let _ = got.send((value.parse().unwrap(), at.parse().unwrap()));
                }
            }
        });
        children.push(child);
    }
    for _ in 0..processes {
        tokio::time::timeout(Duration::from_secs(60), ready.recv())
            .await
            .expect("a subscriber process started")
            .unwrap();
    }
    let backend = crate::backends::connect(url, ns).await;
    let writer = DurableDict::<u64>::builder(backend).autosync(false).build().await.unwrap();
    let meter = match name {
        "redis" => Some(RedisMeter::connect(url).await),
        _ => None,
    };
    let before = match &meter {
        Some(meter) => Some(meter.read().await),
        None => None,
    };
    let expected = processes * per_process;
    let mut times = Vec::with_capacity(samples * expected);
    for i in 0..samples as u64 {
        writer.insert("p", i).await.unwrap();
        let written = unix_us();
        let mut seen = 0;
        while seen < expected {
            let (value, at) = tokio::time::timeout(Duration::from_secs(10), heard.recv())
                .await
                .expect("every subscriber saw the change within 10 s")
                .unwrap();
            assert!(value <= i, "a value not written yet: {value}");
            if value == i {
                times.push((at - written).max(0.0));
                seen += 1;
            }
        }
    }
    // Every subscriber has the last change: the commands it took are all counted.
    let load = match (&meter, before) {
        (Some(meter), Some(before)) => Some(meter.per_change(before, samples).await),
        _ => None,
    };
    for mut child in children {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times, load)
}

/// Redis's own counters (`INFO stats`): commands processed and bytes in and out, every
/// client's — the store's load measured on its side of the wire.
struct RedisMeter(redis::aio::MultiplexedConnection);

impl RedisMeter {
    async fn connect(url: &str) -> Self {
        let client = redis::Client::open(url).unwrap();
        Self(client.get_multiplexed_async_connection().await.unwrap())
    }

    /// (commands, bytes in + out) so far.
    async fn read(&self) -> (f64, f64) {
        let info: String = redis::cmd("INFO").arg("stats").query_async(&mut self.0.clone()).await.unwrap();
        let field = |name: &str| -> f64 {
            info.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()).unwrap()
        };
        (field("total_commands_processed"), field("total_net_input_bytes") + field("total_net_output_bytes"))
    }

    /// Commands (a script's inner commands counted one by one) and bytes per change since
    /// `before`, over `changes` changes, less what two readings alone cost (the `INFO`s).
    async fn per_change(&self, before: (f64, f64), changes: usize) -> Load {
        let after = self.read().await;
        let again = self.read().await;
        let (commands, bytes) =
            ((after.0 - before.0) - (again.0 - after.0), (after.1 - before.1) - (again.1 - after.1));
        Load { commands: commands / changes as f64, bytes: bytes / changes as f64 }
    }
}

/// The store's load per change: commands and bytes (in and out), every client's.
pub(crate) struct Load {
    pub(crate) commands: f64,
    pub(crate) bytes: f64,
}

/// The child: `n` dicts on handles sharing one pool (as one service's dicts would), each
/// printing `<value> <unix µs>` for every change of `p` it sees; ends when stdin closes.
pub(crate) async fn subscribers(name: &str, url: &str, ns: &str, n: usize) {
    let (tell, mut lines) = mpsc::unbounded_channel::<String>();
    let mut dicts = Vec::with_capacity(n);
    for backend in shared_handles(name, url, ns, n).await {
        let dict = DurableDict::<u64>::builder(backend).autosync(false).background_refresh(true).build().await.unwrap();
        let mut subscription = dict.watch_key("p");
        let tell = tell.clone();
        tokio::spawn(async move {
            while let Some(event) = subscription.recv().await {
                if let Event::Changed(change) = event
                    && let Some(value) = change.new.as_deref()
                {
                    let _ = tell.send(format!("{value} {}\n", unix_us()));
                }
            }
        });
        dicts.push(dict);
    }
    let mut out = tokio::io::stdout();
    out.write_all(b"ready\n").await.unwrap();
    out.flush().await.unwrap();
    let writer = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            let mut batch = line;
            while let Ok(more) = lines.try_recv() {
                batch.push_str(&more);
            }
            if out.write_all(batch.as_bytes()).await.is_err() || out.flush().await.is_err() {
                return;
            }
        }
    });
    // Until the parent closes stdin.
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
    drop(dicts);
    writer.abort();
}
