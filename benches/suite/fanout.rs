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
/// write returned counts 0. On Redis and PostgreSQL, also the store's load per change (see
/// [`Meter`]).
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
    let meter = Meter::connect(name, url).await;
    let before = match &meter {
        Some(meter) => Some(meter.before().await),
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
    // Every subscriber has the last change: the requests it took are all counted.
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

/// The store's load, counted on its side of the wire.
enum Meter {
    /// Redis's own counters (`INFO stats`): commands processed and bytes in and out, every
    /// client's.
    Redis(redis::aio::MultiplexedConnection),
    /// PostgreSQL keeps no byte counters: its transactions (`pg_stat_database`, every
    /// client's in the database; each of our queries is one, the writer's is one), and the
    /// kernel's byte counters of every TCP connection to its port (`ss`), both ways.
    Postgres(sqlx::PgPool, u16),
}

/// PostgreSQL flushes a backend's statistics when it has been idle for up to 10 s
/// (`PGSTAT_IDLE_INTERVAL`): a reading of `pg_stat_database` waits that long after the
/// clients' last work so that all of it is counted.
const PG_STATS_SETTLE: Duration = Duration::from_secs(11);

impl Meter {
    async fn connect(name: &str, url: &str) -> Option<Self> {
        match name {
            "redis" => {
                let client = redis::Client::open(url).unwrap();
                Some(Self::Redis(client.get_multiplexed_async_connection().await.unwrap()))
            }
            "postgres" => {
                let port = url::Url::parse(url).unwrap().port().unwrap_or(5432);
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
                Some(Self::Postgres(pool, port))
            }
            _ => None,
        }
    }

    /// (requests, bytes in + out) so far.
    async fn read(&self) -> (f64, f64) {
        match self {
            Self::Redis(connection) => {
                let info: String = redis::cmd("INFO").arg("stats").query_async(&mut connection.clone()).await.unwrap();
                let field = |name: &str| -> f64 {
                    info.lines()
                        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
                        .unwrap()
                };
                (field("total_commands_processed"), field("total_net_input_bytes") + field("total_net_output_bytes"))
            }
            Self::Postgres(pool, port) => {
                let (transactions,): (i64,) = sqlx::query_as(
                    "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database WHERE datname = current_database()",
                )
                .fetch_one(pool)
                .await
                .unwrap();
                (transactions as f64, tcp_bytes_to(*port).await)
            }
        }
    }

    /// The reading the samples start from, once the setup's work is all counted.
    async fn before(&self) -> (f64, f64) {
        if matches!(self, Self::Postgres(..)) {
            tokio::time::sleep(PG_STATS_SETTLE).await;
        }
        self.read().await
    }

    /// Requests (Redis: a script's inner commands counted one by one; PostgreSQL:
    /// transactions) and bytes per change since `before`, over `changes` changes, less what
    /// the readings alone cost.
    async fn per_change(&self, before: (f64, f64), changes: usize) -> Load {
        let postgres = matches!(self, Self::Postgres(..));
        if postgres {
            tokio::time::sleep(PG_STATS_SETTLE).await;
        }
        let after = self.read().await;
        let again = self.read().await;
        // A reading's requests: on Redis the `INFO` (counted at once); on PostgreSQL the
        // first reading's one transaction (the second's is not flushed yet).
        let reading = if postgres { 1.0 } else { again.0 - after.0 };
        let (requests, bytes) = ((after.0 - before.0) - reading, (after.1 - before.1) - (again.1 - after.1));
        Load { requests: requests / changes as f64, bytes: bytes / changes as f64 }
    }
}

/// Bytes sent and received so far over the established TCP connections to `port` on this
/// machine (their client ends: `ss`'s `bytes_sent` and `bytes_received`, from the kernel).
async fn tcp_bytes_to(port: u16) -> f64 {
    let output = tokio::process::Command::new("ss")
        .args(["-tinH", "state", "established", &format!("( dport = :{port} )")])
        .output()
        .await
        .expect("ss (iproute2) to read the connections' byte counters");
    assert!(output.status.success(), "ss: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|field| field.strip_prefix("bytes_sent:").or_else(|| field.strip_prefix("bytes_received:")))
        .map(|count| count.parse::<f64>().unwrap())
        .sum()
}

/// The store's load per change: requests (Redis's commands, PostgreSQL's transactions) and
/// bytes (in and out), every client's.
pub(crate) struct Load {
    pub(crate) requests: f64,
    pub(crate) bytes: f64,
}

/// The child: `n` dicts on handles sharing one pool (as one service's dicts would), with
/// background refresh (no safety poll during the figure), each printing `<value> <unix µs>`
/// for every change of `p` it sees; ends when stdin closes.
pub(crate) async fn subscribers(name: &str, url: &str, ns: &str, n: usize) {
    let (tell, mut lines) = mpsc::unbounded_channel::<String>();
    let mut dicts = Vec::with_capacity(n);
    for backend in shared_handles(name, url, ns, n).await {
        // No safety poll during the figure: the load per change counts what a change costs,
        // not the version reads every dict makes each `poll_interval` whether anything
        // changed or not (docs/SCALING.md counts those apart).
        let dict = DurableDict::<u64>::builder(backend)
            .autosync(false)
            .background_refresh(true)
            .poll_interval(Duration::from_secs(3_600))
            .build()
            .await
            .unwrap();
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
