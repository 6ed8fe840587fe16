//! The benchmark suite: every speed claim of `durable` measured beside its reference, in one
//! run, written as one flat JSON object (`target/bench/results.json`) plus a table.
//!
//! `scripts/bench.sh [--quick]` runs it against the real servers. A custom harness rather
//! than criterion: the figures are ratios of things measured side by side in the same
//! process, several need a second party (a listener, a concurrent writer, a load generator),
//! and the output is one flat object that CI and BENCHMARKS.md read.
//!
//! Timing: each figure is the median of several rounds, each round many operations long.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

mod backends;
mod cli;
mod durabledict;
mod fanout;
mod flags;
mod journal;
mod leases;
mod middleware;
mod plots;
mod raw;
mod reads;
mod server;

use backends::{backend_figures, propagation_figures, url_of};
use durabledict::durabledict_figures;
use middleware::middleware_figures;
use reads::{memory_figures, read_figures};

/// Counts live heap bytes, for the memory figures.
struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

struct Config {
    quick: bool,
    backends: Vec<String>,
}

impl Config {
    fn rounds(&self) -> usize {
        if self.quick { 3 } else { 7 }
    }
    fn sizes(&self) -> &'static [(usize, &'static str)] {
        if self.quick {
            &[(1_000, "1k"), (10_000, "10k")]
        } else {
            &[(1_000, "1k"), (10_000, "10k"), (100_000, "100k")]
        }
    }
    /// Object stores' figures are named at 100k keys: their quick run goes that far too.
    fn sizes_for(&self, backend: &str) -> &'static [(usize, &'static str)] {
        match backend {
            "s3" | "azure" | "localfs" if self.quick => &[(10_000, "10k"), (100_000, "100k")],
            "s3" | "azure" | "localfs" => &[(1_000, "1k"), (10_000, "10k"), (100_000, "100k")],
            _ => self.sizes(),
        }
    }
    /// Writes per figure for the per-backend write, journal and lease figures. The object
    /// stores over HTTP take a fifth of them in the full run: each write there is a PUT and
    /// a HEAD of 10-20 ms, so 2,000 per round made the complete run last over an hour, and
    /// their figures are ratios of interleaved rounds, which fewer writes per round keep.
    fn write_ops(&self, backend: &str) -> usize {
        match (self.quick, backend) {
            (true, _) => 200,
            (false, "s3" | "azure") => 400,
            (false, _) => 2_000,
        }
    }
    /// Lease acquire+release pairs and hand-offs per lease figure (see [`Self::write_ops`]).
    fn lease_ops(&self, backend: &str) -> (usize, usize) {
        match (self.quick, backend) {
            (true, _) => (50, 20),
            (false, "s3" | "azure") => (100, 100),
            (false, _) => (500, 200),
        }
    }
    fn samples(&self) -> usize {
        if self.quick { 100 } else { 1_000 }
    }
}

/// The figures, and the samples behind some of them for the plots.
#[derive(Default)]
struct Results(BTreeMap<String, f64>, BTreeMap<String, Vec<f64>>);

impl Results {
    fn put(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        println!("{name:<48} {value:>14.2}");
        self.0.insert(name, value);
    }

    /// Keeps `samples` (sorted) for the plots under `name`.
    fn keep(&mut self, name: impl Into<String>, samples: &[f64]) {
        self.1.insert(name.into(), samples.to_vec());
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Median over `rounds` of the mean time of `ops` calls of `op`, in nanoseconds.
fn time_ns(rounds: usize, ops: usize, mut op: impl FnMut(usize)) -> f64 {
    median(
        (0..rounds)
            .map(|_| {
                let started = Instant::now();
                for i in 0..ops {
                    op(i);
                }
                started.elapsed().as_nanos() as f64 / ops as f64
            })
            .collect(),
    )
}

/// The async version of [`time_ns`].
async fn time_ns_async<F, Fut>(rounds: usize, ops: usize, mut op: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut per_round = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for i in 0..ops {
            op(i).await;
        }
        per_round.push(started.elapsed().as_nanos() as f64 / ops as f64);
    }
    median(per_round)
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("flag-{i:06}")).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--lease-waiter") {
        let [url, ns, n] = [1, 2, 3].map(|i| args.get(at + i).expect("--lease-waiter <url> <ns> <n>").as_str());
        return leases::waiter(url, ns, n.parse().unwrap()).await;
    }
    if let Some(at) = args.iter().position(|a| a == "--subscribers") {
        let [name, url, ns, n] =
            [1, 2, 3, 4].map(|i| args.get(at + i).expect("--subscribers <backend> <url> <ns> <n>").as_str());
        return fanout::subscribers(name, url, ns, n.parse().unwrap()).await;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let backends = args.iter().position(|a| a == "--backends").and_then(|i| args.get(i + 1)).map_or_else(
        || {
            ["memory", "sqlite", "postgres", "mysql", "redis", "zk", "s3", "azure", "localfs"]
                .map(String::from)
                .to_vec()
        },
        |list| list.split(',').map(String::from).collect(),
    );
    let out_path = std::path::PathBuf::from(
        std::env::var("DURABLE_BENCH_OUT").unwrap_or_else(|_| "target/bench/results.json".into()),
    );
    let config = Config { quick, backends };
    let dir = std::env::temp_dir().join(format!("durable-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("{:<48} {:>14}", "figure", "value");
    // `--only read,memory,middleware,backends,journal,leases,oracle,cli,server,flags,durabledict` runs some groups (default: all).
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let wanted = |group: &str| only.as_deref().is_none_or(|only| only.split(',').any(|g| g == group));
    // Every group runs through `group`: a group that fails (a store resetting a connection
    // mid-figure) runs once more from its start; its figures count only from a run that
    // finished, and the others' are written whatever happens.
    let mut run = Run { results: Results::default(), failed: Vec::new(), out_path };
    let config = &config;
    if wanted("read") {
        run.group("read", |mut out| async move {
            read_figures(config, &mut out).await;
            out
        })
        .await;
    }
    if wanted("memory") {
        run.group("memory", |mut out| async move {
            memory_figures(&mut out).await;
            out
        })
        .await;
    }
    if wanted("middleware") {
        run.group("middleware", |mut out| async move {
            middleware_figures(config, &mut out).await;
            out
        })
        .await;
    }
    for backend in config.backends.iter().filter(|_| wanted("backends")) {
        let url = &url_of(backend, &dir);
        run.group(backend, |mut out| async move {
            backend_figures(config, backend, url, &mut out).await;
            out
        })
        .await;
    }
    // `--only propagation`: the propagation figures alone (`backends` includes them).
    for backend in
        config.backends.iter().filter(|_| only.as_deref().is_some_and(|o| o.split(',').any(|g| g == "propagation")))
    {
        let url = &url_of(backend, &dir);
        run.group(&format!("{backend} propagation"), |mut out| async move {
            propagation_figures(config, backend, url, &mut out).await;
            out
        })
        .await;
    }
    // `--only journal`: a write with the journal vs without, per backend, and the archive
    // and restore figures (on SQLite).
    if wanted("journal") {
        for backend in &config.backends {
            let url = &url_of(backend, &dir);
            let ops = config.write_ops(backend);
            run.group(&format!("{backend} journal"), |mut out| async move {
                journal::journal_figures(config.rounds(), ops, backend, url, &mut out).await;
                out
            })
            .await;
        }
        let url = &url_of("sqlite", &dir);
        run.group("archive", |mut out| async move {
            journal::archive_figures(url, &mut out).await;
            out
        })
        .await;
    }
    // `--only leases`: acquire + release vs a raw round trip, and the hand-off to a waiter
    // in another process, per backend.
    if wanted("leases") {
        for backend in &config.backends {
            let url = &url_of(backend, &dir);
            let (ops, handoffs) = config.lease_ops(backend);
            run.group(&format!("{backend} leases"), |mut out| async move {
                leases::lease_figures(config.rounds(), ops, handoffs, backend, url, &mut out).await;
                out
            })
            .await;
        }
    }
    // `--only oracle`: the version oracle (Redis) in front of MySQL and SQLite.
    let has = |name: &str| config.backends.iter().any(|b| b == name);
    if wanted("oracle") && has("redis") && has("mysql") && has("sqlite") {
        let dir = &dir;
        run.group("oracle", |mut out| async move {
            backends::oracle_figures(config, dir, &mut out).await;
            out
        })
        .await;
    }
    // `--only cli`: the `durable` binary's copy from Redis to PostgreSQL beside PostgreSQL's COPY.
    if wanted("cli") && has("redis") && has("postgres") {
        let (redis, postgres) = (&url_of("redis", &dir), &url_of("postgres", &dir));
        run.group("cli", |mut out| async move {
            cli::cli_figures(config, redis, postgres, &mut out).await;
            out
        })
        .await;
    }
    // `--only server`: `durable serve` with tokens and metrics on vs off (on Redis).
    if wanted("server") && has("redis") {
        let redis = &url_of("redis", &dir);
        run.group("server", |mut out| async move {
            server::server_figures(config, redis, &mut out).await;
            out
        })
        .await;
    }
    // `--only flags`: flag evaluation beside a snapshot get and flagd's engine.
    if wanted("flags") {
        run.group("flags", |mut out| async move {
            flags::flag_figures(config, &mut out).await;
            out
        })
        .await;
    }
    if wanted("durabledict") && has("redis") {
        run.group("durabledict", |mut out| async move {
            durabledict_figures(config, &mut out).await;
            out
        })
        .await;
    }
    run.save();
    println!("wrote {} figures to {}", run.results.0.len(), run.out_path.display());
    let plots = run.out_path.with_file_name("plots");
    match plots::draw(&run.results, &plots) {
        Ok(drawn) => println!("drew {drawn} plots in {}", plots.display()),
        Err(err) => println!("no plots: {err}"),
    }
    let _ = std::fs::remove_dir_all(dir);
    if !run.failed.is_empty() {
        eprintln!("bench: these groups failed twice, their figures are missing: {}", run.failed.join(", "));
        std::process::exit(1);
    }
}

/// The figures so far, where they are written, and the groups that failed.
struct Run {
    results: Results,
    failed: Vec<String>,
    out_path: std::path::PathBuf,
}

impl Run {
    /// Runs one group of figures into a `Results` of its own and keeps them when it
    /// finished, writing every figure so far to `results.json` (a run stopped midway keeps
    /// the groups it finished). A group that panics (a store's error mid-figure: a reset
    /// connection) runs once more from its start; one that fails twice is named in `failed`.
    async fn group<F, Fut>(&mut self, name: &str, mut figures: F)
    where
        F: FnMut(Results) -> Fut,
        Fut: std::future::Future<Output = Results>,
    {
        use futures::FutureExt;
        for attempt in 1..=2 {
            match std::panic::AssertUnwindSafe(figures(Results::default())).catch_unwind().await {
                Ok(out) => {
                    self.results.0.extend(out.0);
                    self.results.1.extend(out.1);
                    self.save();
                    return;
                }
                Err(_) => eprintln!("bench: the {name} figures failed (try {attempt} of 2)"),
            }
        }
        self.failed.push(name.to_string());
    }

    fn save(&self) {
        if let Some(parent) = self.out_path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&self.out_path, serde_json::to_string_pretty(&self.results.0).unwrap()).unwrap();
    }
}
