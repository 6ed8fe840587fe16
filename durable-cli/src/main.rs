//! `durable`: look at and move a durable dictionary from the command line — any store
//! `durable::connect` takes (SQLite, PostgreSQL, MySQL/MariaDB, Redis, Redis Cluster,
//! ZooKeeper, S3, Azure Blob, a local directory).
//!
//! Exit codes: 0 done; 1 failed (bad input, a store error); 2 bad usage; 3 `push` refused
//! because the store moved past `--base` (nothing written); 4 the store could not be
//! reached in time.

mod commands;
mod file;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// What a command can fail with, and the exit code each gets.
#[derive(Debug)]
pub enum CliError {
    /// The store said no or could not be reached.
    Store(durable::Error),
    /// Input that cannot be used (a file, a value, a key).
    Input(String),
    /// `push`: the store moved past `--base`; nothing was written.
    Moved(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Store(err) => write!(f, "{err}"),
            CliError::Input(message) | CliError::Moved(message) => f.write_str(message),
        }
    }
}

impl From<durable::Error> for CliError {
    fn from(err: durable::Error) -> Self {
        CliError::Store(err)
    }
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Store(err) if err.is_unavailable() => 4,
            CliError::Store(_) | CliError::Input(_) => 1,
            CliError::Moved(_) => 3,
        }
    }
}

const EXAMPLES: &str = "\
Examples:
  durable ls redis://127.0.0.1:6379 flags --values
  durable set sqlite://flags.db flags beta 'true'
  durable export postgres://app@db/app flags flags.ndjson
  durable copy redis://127.0.0.1:6379 flags postgres://app@db/app flags --mode replace
  durable push staged.ndjson postgres://app@db/app flags --base 42

Exit codes: 0 done, 1 failed, 2 bad usage, 3 push refused (the store moved past --base),
4 the store could not be reached in time.";

/// Inspect, watch, export, import, copy, diff and push a durable dictionary.
#[derive(Parser, Debug)]
#[command(name = "durable", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How an import or a copy treats keys the destination has and the source does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Keep them: write only the source's keys.
    Upsert,
    /// Remove them: the destination ends equal to the source.
    Replace,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a key's value (JSON as stored; `--raw` for the bytes).
    #[command(after_help = "Example:\n  durable get redis://127.0.0.1:6379 flags beta")]
    Get {
        url: String,
        namespace: String,
        key: String,
        /// Write the stored bytes as they are.
        #[arg(long)]
        raw: bool,
    },
    /// Store a value: JSON (`-` reads it from stdin); `--raw` stores the text as it is.
    #[command(after_help = "Examples:\n  durable set sqlite://flags.db flags beta true\n  \
                            durable set sqlite://flags.db flags motd --raw 'Hello'\n  \
                            echo '{\"pct\": 10}' | durable set sqlite://flags.db flags rollout -")]
    Set {
        url: String,
        namespace: String,
        key: String,
        value: String,
        /// Store VALUE's text as it is, not as JSON.
        #[arg(long)]
        raw: bool,
    },
    /// Remove a key.
    #[command(after_help = "Example:\n  durable rm sqlite://flags.db flags beta")]
    Rm { url: String, namespace: String, key: String },
    /// List keys (with `--values`, each with its value).
    #[command(after_help = "Example:\n  durable ls redis://127.0.0.1:6379 flags --prefix checkout. --values")]
    Ls {
        url: String,
        namespace: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Print each key's value after a tab.
        #[arg(long)]
        values: bool,
    },
    /// The namespace's version, key count, change hints and the latency of one sync.
    #[command(after_help = "Example:\n  durable status postgres://app@db/app flags")]
    Status { url: String, namespace: String },
    /// Stream change events as NDJSON until Ctrl-C or SIGTERM.
    #[command(after_help = "Example:\n  durable watch redis://127.0.0.1:6379 flags beta")]
    Watch { url: String, namespace: String, key: Option<String> },
    /// Write the whole namespace as NDJSON (to FILE, or stdout when absent or `-`).
    #[command(after_help = "Example:\n  durable export redis://127.0.0.1:6379 flags flags.ndjson")]
    Export { url: String, namespace: String, file: Option<PathBuf> },
    /// Load an export (or a file of staged changes) into a namespace.
    #[command(
        after_help = "Example:\n  durable import flags.ndjson postgres://app@db/app flags --mode replace --dry-run"
    )]
    Import {
        file: PathBuf,
        url: String,
        namespace: String,
        #[arg(long, value_enum, default_value_t = Mode::Upsert)]
        mode: Mode,
        /// Print what would change and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy a namespace from any store to any store, in atomic batches.
    #[command(
        after_help = "Example:\n  durable copy redis://127.0.0.1:6379 flags postgres://app@db/app flags --mode replace"
    )]
    Copy {
        src_url: String,
        src_namespace: String,
        dst_url: String,
        dst_namespace: String,
        #[arg(long, value_enum, default_value_t = Mode::Upsert)]
        mode: Mode,
        /// Keys per batch when the copy does not fit one.
        #[arg(long, default_value_t = 1000)]
        batch_keys: usize,
    },
    /// Compare a file (an export, or staged changes) with the store.
    #[command(after_help = "Example:\n  durable diff staged.ndjson postgres://app@db/app flags")]
    Diff { file: PathBuf, url: String, namespace: String },
    /// Apply a file's changes as one atomic batch, only if the store is still at `--base`.
    #[command(after_help = "Example:\n  durable push staged.ndjson postgres://app@db/app flags --base 42")]
    Push {
        file: PathBuf,
        url: String,
        namespace: String,
        /// The version the file was prepared against (`durable status` or the export's header).
        #[arg(long)]
        base: u64,
    },
    /// The change journal, newest first: of one key, or of the namespace.
    #[command(after_help = "Example:\n  durable history postgres://app@db/app flags beta --limit 20")]
    History {
        url: String,
        namespace: String,
        key: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Remove a namespace from its store entirely — keys, version, journal, leases — after
    /// a confirmation (or `--yes`). Stop the processes using it first.
    #[command(after_help = "Example:\n  durable drop sqlite://old.db flags --yes")]
    Drop {
        url: String,
        namespace: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Run the flags service: a JSON API, OFREP and an admin page over a namespace, with
    /// bearer tokens, Prometheus metrics, `/health` and `/ready`, until SIGTERM or Ctrl-C.
    #[command(after_help = "Examples:\n  DURABLE_ADMIN_TOKENS=$(openssl rand -hex 24) durable serve\n  \
                            durable serve --url postgres://app@db/app --addr 0.0.0.0:3000 \
                            --admin-tokens-file /run/secrets/admin-tokens --environment production")]
    Serve(serve::ServeArgs),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  durable completions bash > /etc/bash_completion.d/durable")]
    Completions { shell: clap_complete::Shell },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let message = err.to_string().replace('\n', " ");
            eprintln!("durable: {message}");
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    use commands as c;
    match command {
        Command::Get { url, namespace, key, raw } => c::get(&url, &namespace, &key, raw).await,
        Command::Set { url, namespace, key, value, raw } => c::set(&url, &namespace, &key, &value, raw).await,
        Command::Rm { url, namespace, key } => c::rm(&url, &namespace, &key).await,
        Command::Ls { url, namespace, prefix, values } => c::ls(&url, &namespace, prefix.as_deref(), values).await,
        Command::Status { url, namespace } => c::status(&url, &namespace).await,
        Command::Watch { url, namespace, key } => c::watch(&url, &namespace, key.as_deref()).await,
        Command::Export { url, namespace, file } => c::export(&url, &namespace, file.as_deref()).await,
        Command::Import { file, url, namespace, mode, dry_run } => {
            c::import(&file, &url, &namespace, mode, dry_run).await
        }
        Command::Copy { src_url, src_namespace, dst_url, dst_namespace, mode, batch_keys } => {
            c::copy(&src_url, &src_namespace, &dst_url, &dst_namespace, mode, batch_keys).await
        }
        Command::Diff { file, url, namespace } => c::diff(&file, &url, &namespace).await,
        Command::Push { file, url, namespace, base } => c::push(&file, &url, &namespace, base).await,
        Command::History { url, namespace, key, limit } => c::history(&url, &namespace, key.as_deref(), limit).await,
        Command::Drop { url, namespace, yes } => c::drop_namespace(&url, &namespace, yes).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "durable", &mut std::io::stdout());
            Ok(())
        }
    }
}
