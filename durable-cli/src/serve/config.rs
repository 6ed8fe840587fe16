//! `durable serve`'s settings: from its flags, else the environment (clap reads both),
//! else a TOML config file, else the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::auth::Tokens;
use crate::CliError;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for a log collector).
    Json,
}

/// `durable serve`'s flags. Each also reads an environment variable; tokens are read from
/// the environment or files only, never from flags (a command line is visible to every
/// user of the machine).
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// The store (default: the SQLite file `durable-flags.db` in the working directory).
    #[arg(long, env = "DURABLE_URL")]
    pub url: Option<String>,
    /// The namespace holding the flags [default: flags].
    #[arg(long, env = "DURABLE_NAMESPACE")]
    pub namespace: Option<String>,
    /// The address to listen on [default: 127.0.0.1:3000].
    #[arg(long, env = "DURABLE_ADDR")]
    pub addr: Option<SocketAddr>,
    /// A local copy of the flags: the service starts from it (stale, and says so) while
    /// the store is down, and keeps it current.
    #[arg(long, env = "DURABLE_BACKUP_FILE")]
    pub backup_file: Option<PathBuf>,
    /// A file of admin tokens, one per line (`token`, or `name token`); `#` starts a
    /// comment. Also `DURABLE_ADMIN_TOKENS`: tokens separated by commas.
    #[arg(long, env = "DURABLE_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<PathBuf>,
    /// A file of read tokens (as `--admin-tokens-file`): when any read token is set, reading
    /// flags (OFREP too) takes a read or an admin token. Also `DURABLE_READ_TOKENS`.
    #[arg(long, env = "DURABLE_READ_TOKENS_FILE")]
    pub read_tokens_file: Option<PathBuf>,
    /// Serve no write route at all (the page shows the flags and cannot change them).
    #[arg(long, env = "DURABLE_READ_ONLY")]
    pub read_only: bool,
    /// The environment's name, shown as a banner on the page ("production" in red).
    #[arg(long, env = "DURABLE_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Seconds a request may take before it is answered 503 [default: 10].
    #[arg(long, env = "DURABLE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
    /// Seconds a shutdown waits for requests in flight before it gives up [default: 30].
    #[arg(long, env = "DURABLE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<f64>,
    /// Log lines as text or JSON [default: text].
    #[arg(long, value_enum, env = "DURABLE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Do not record or serve metrics (`/metrics` answers 404).
    #[arg(long, env = "DURABLE_NO_METRICS")]
    pub no_metrics: bool,
    /// Count flag evaluations by flag, variant and reason on `/metrics` (one series per
    /// flag and variant: off by default).
    #[arg(long, env = "DURABLE_COUNT_EVALUATIONS")]
    pub count_evaluations: bool,
    /// A TOML file with any of these settings (`url = "…"`, `read_only = true`, …); flags
    /// and environment variables win over it.
    #[arg(long, env = "DURABLE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The config file: the flags' names with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    url: Option<String>,
    namespace: Option<String>,
    addr: Option<SocketAddr>,
    backup_file: Option<PathBuf>,
    admin_tokens_file: Option<PathBuf>,
    read_tokens_file: Option<PathBuf>,
    read_only: Option<bool>,
    environment: Option<String>,
    request_timeout: Option<f64>,
    shutdown_timeout: Option<f64>,
    log_format: Option<LogFormat>,
    metrics: Option<bool>,
    count_evaluations: Option<bool>,
}

/// Everything `durable serve` runs with.
#[derive(Debug)]
pub struct Config {
    pub url: String,
    pub namespace: String,
    pub addr: SocketAddr,
    pub backup_file: Option<PathBuf>,
    pub tokens: Tokens,
    pub read_only: bool,
    pub environment: Option<String>,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub metrics: bool,
    pub count_evaluations: bool,
}

impl Config {
    /// Merges flags (and environment) over the config file over the defaults, and reads the
    /// tokens.
    pub fn load(args: ServeArgs) -> Result<Self, CliError> {
        let file = match &args.config {
            Some(path) => read_file_settings(path)?,
            None => FileSettings::default(),
        };
        let url = match args.url.or(file.url) {
            Some(url) => url,
            None => {
                let here =
                    std::env::current_dir().map_err(|err| CliError::Input(format!("working directory: {err}")))?;
                format!("sqlite://{}", here.join("durable-flags.db").display())
            }
        };
        let admin_file = args.admin_tokens_file.or(file.admin_tokens_file);
        let read_file = args.read_tokens_file.or(file.read_tokens_file);
        let tokens = Tokens::load(
            std::env::var("DURABLE_ADMIN_TOKENS").ok().as_deref(),
            admin_file.as_deref(),
            std::env::var("DURABLE_READ_TOKENS").ok().as_deref(),
            read_file.as_deref(),
        )?;
        Ok(Self {
            url,
            namespace: args.namespace.or(file.namespace).unwrap_or_else(|| "flags".into()),
            addr: args.addr.or(file.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
            backup_file: args.backup_file.or(file.backup_file),
            tokens,
            read_only: args.read_only || file.read_only.unwrap_or(false),
            environment: args.environment.or(file.environment).filter(|name| !name.trim().is_empty()),
            request_timeout: seconds("request_timeout", args.request_timeout.or(file.request_timeout), 10.0)?,
            shutdown_timeout: seconds("shutdown_timeout", args.shutdown_timeout.or(file.shutdown_timeout), 30.0)?,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            metrics: !args.no_metrics && file.metrics.unwrap_or(true),
            count_evaluations: args.count_evaluations || file.count_evaluations.unwrap_or(false),
        })
    }
}

fn read_file_settings(path: &Path) -> Result<FileSettings, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| CliError::Input(format!("config file {}: {err}", path.display())))?;
    toml::from_str(&text).map_err(|err| CliError::Input(format!("config file {}: {err}", path.display())))
}

fn seconds(name: &str, given: Option<f64>, default: f64) -> Result<Duration, CliError> {
    let value = given.unwrap_or(default);
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| CliError::Input(format!("{name} is a positive number of seconds, not {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "namespace = \"from-file\"\nread_only = true\nrequest_timeout = 2.5\nmetrics = false\n")
            .unwrap();
        let args = ServeArgs {
            url: Some("sqlite://x.db".into()),
            namespace: Some("from-flag".into()),
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let config = Config::load(args).unwrap();
        assert_eq!(config.namespace, "from-flag");
        assert!(config.read_only);
        assert!(!config.metrics);
        assert_eq!(config.request_timeout, Duration::from_millis(2500));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.addr.to_string(), "127.0.0.1:3000");

        std::fs::write(&path, "nmespace = \"typo\"\n").unwrap();
        let err = Config::load(ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap_err();
        assert!(err.to_string().contains("unknown field `nmespace`"), "{err}");
        let err = Config::load(ServeArgs { request_timeout: Some(-1.0), ..ServeArgs::default() }).unwrap_err();
        assert!(err.to_string().contains("request_timeout"), "{err}");
    }
}
