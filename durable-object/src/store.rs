//! Opening an object store from a URL, and turning its errors into `durable`'s with every
//! credential removed.

use std::sync::Arc;
use std::time::Duration;

use durable_core::{Error, Source};
use object_store::ObjectStore;
use object_store::path::Path;

/// An opened store: where the namespace's objects live and how to speak of it.
pub(crate) struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// The URL's prefix inside the bucket, container or directory.
    pub prefix: Path,
    /// `s3`, `azure` or `localfs`.
    pub kind: &'static str,
    pub secrets: Secrets,
    /// The server's address where the URL names one (an `endpoint`, the emulator): an
    /// operation is given up as soon as it refuses connections.
    pub probe: durable_core::RefusalProbe,
}

/// The credentials a URL or the environment carried, to scrub from every message.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub fn scrub(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }

    fn add(&mut self, secret: &str) {
        // Short values (a region, `true`) are no secrets and would scrub too much.
        if secret.len() >= 4 && !self.0.iter().any(|known| known == secret) {
            self.0.push(secret.to_owned());
        }
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl { url: redact(url), reason: reason.into() }
}

/// The URL with every credential in its query (and any password) replaced by `***`.
pub(crate) use durable_core::redact_url as redact;

/// Opens `url`: `file:///dir[/prefix]`, `s3://bucket[/prefix][?option=value...]` or
/// `az://container[/prefix][?...]` (also `azure://`). Options are object_store's
/// configuration keys (`endpoint`, `region`, `access_key_id`, `secret_access_key`,
/// `allow_http`, `account_name`, `access_key`, `sas_token`, `use_emulator`, ...), read after
/// the environment (`AWS_*`, `AZURE_*`), so a URL option wins.
pub(crate) fn open(url: &str, timeout: Duration) -> Result<Location, Error> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
    let options: Vec<(String, String)> = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut secrets = Secrets::default();
    for (name, value) in &options {
        if durable_core::is_secret_param(name) {
            secrets.add(value);
        }
    }
    for (name, value) in std::env::vars() {
        if (name.starts_with("AWS_") || name.starts_with("AZURE_")) && durable_core::is_secret_param(&name) {
            secrets.add(&value);
        }
    }
    let prefix = Path::from(parsed.path().trim_matches('/'));
    match parsed.scheme() {
        "file" => {
            if parsed.query().is_some() {
                return Err(invalid(url, "file:// URLs take no options"));
            }
            let dir = parsed.to_file_path().map_err(|()| invalid(url, "not an absolute local path"))?;
            std::fs::create_dir_all(&dir).map_err(|e| invalid(url, format!("cannot make the directory: {e}")))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| invalid(url, e.to_string()))?
                .with_automatic_cleanup(true);
            let probe = durable_core::RefusalProbe::new("localfs", []);
            Ok(Location { store: Arc::new(store), prefix: Path::default(), kind: "localfs", secrets, probe })
        }
        #[cfg(feature = "s3")]
        "s3" => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| invalid(url, "no bucket"))?;
            ensure_crypto_provider();
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry(timeout));
            for (key, value) in client(timeout) {
                builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
            }
            for (name, value) in &options {
                let key: AmazonS3ConfigKey =
                    name.parse().map_err(|_| invalid(url, format!("unknown S3 option {name:?}")))?;
                builder = builder.with_config(key, value);
            }
            let store = builder.build().map_err(|e| invalid(url, secrets.scrub(&e.to_string())))?;
            let probe = durable_core::RefusalProbe::new(
                "s3",
                endpoint_addr(
                    &options,
                    &["endpoint", "aws_endpoint", "aws_endpoint_url", "endpoint_url"],
                    "AWS_ENDPOINT_URL",
                    None,
                ),
            );
            Ok(Location { store: Arc::new(store), prefix, kind: "s3", secrets, probe })
        }
        #[cfg(feature = "azure")]
        "az" | "azure" => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let container = parsed.host_str().filter(|c| !c.is_empty()).ok_or_else(|| invalid(url, "no container"))?;
            ensure_crypto_provider();
            let mut builder =
                MicrosoftAzureBuilder::from_env().with_container_name(container).with_retry(retry(timeout));
            for (key, value) in client(timeout) {
                builder = builder.with_config(AzureConfigKey::Client(key), value);
            }
            for (name, value) in &options {
                let key: AzureConfigKey =
                    name.parse().map_err(|_| invalid(url, format!("unknown Azure option {name:?}")))?;
                builder = builder.with_config(key, value);
            }
            let store = builder.build().map_err(|e| invalid(url, secrets.scrub(&e.to_string())))?;
            let emulator = options.iter().any(|(k, v)| k.ends_with("use_emulator") && v == "true")
                || std::env::var("AZURE_STORAGE_USE_EMULATOR").is_ok_and(|v| v == "true");
            let keys = ["endpoint", "azure_endpoint", "azure_storage_endpoint"];
            // object_store reaches the emulator at `AZURITE_BLOB_STORAGE_URL` (else
            // 127.0.0.1:10000) whatever an endpoint option says: the probe looks there too.
            let addr = if emulator {
                endpoint_addr(&[], &[], "AZURITE_BLOB_STORAGE_URL", Some("127.0.0.1:10000"))
            } else {
                endpoint_addr(&options, &keys, "AZURE_STORAGE_ENDPOINT", None)
            };
            let probe = durable_core::RefusalProbe::new("azure", addr);
            Ok(Location { store: Arc::new(store), prefix, kind: "azure", secrets, probe })
        }
        other => Err(invalid(url, format!("the object-storage backend does not serve {other}:// URLs"))),
    }
}

/// object_store's HTTP client takes rustls's process-wide provider: unless the application
/// installed one, ring is installed (the provider the rest of the workspace's TLS uses).
#[cfg(any(feature = "s3", feature = "azure"))]
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one meanwhile: then that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// `host:port` of the endpoint the options (or the environment variable `env`) name, else
/// `default`; nothing when neither says (the cloud's own endpoints are not probed).
#[cfg(any(feature = "s3", feature = "azure"))]
fn endpoint_addr(options: &[(String, String)], keys: &[&str], env: &str, default: Option<&str>) -> Option<String> {
    let named = options
        .iter()
        .find(|(k, _)| keys.contains(&k.as_str()))
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(env).ok());
    match named {
        Some(endpoint) => {
            let url = url::Url::parse(&endpoint).ok()?;
            Some(format!("{}:{}", url.host_str()?, url.port_or_known_default()?))
        }
        None => default.map(str::to_owned),
    }
}

/// Few, quick retries: the dict keeps serving its snapshot through an outage, so a request
/// should fail within the operation timeout rather than retry for minutes.
#[cfg(any(feature = "s3", feature = "azure"))]
fn retry(timeout: Duration) -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: timeout,
    }
}

/// Request and connect timeouts, as configuration a URL option may still override.
#[cfg(any(feature = "s3", feature = "azure"))]
fn client(timeout: Duration) -> [(object_store::ClientConfigKey, String); 2] {
    let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
    [
        (object_store::ClientConfigKey::Timeout, ms(timeout)),
        (object_store::ClientConfigKey::ConnectTimeout, ms(timeout.min(Duration::from_secs(5)))),
    ]
}

/// What an object-store error means to the dict: gone (`NotFound`), taken (`AlreadyExists`)
/// are answered by the caller; credentials refused are a store error; anything else (a
/// connection refused, a timeout, a 5xx) is an outage. Messages are scrubbed.
pub(crate) fn map(kind: &'static str, secrets: &Secrets, err: object_store::Error) -> Error {
    let message = secrets.scrub(&error_chain(&err));
    match err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::NotSupported { .. }
        | object_store::Error::NotImplemented { .. }
        | object_store::Error::InvalidPath { .. }
        | object_store::Error::UnknownConfigurationKey { .. } => {
            Error::Store { backend: kind, source: Source::msg(message) }
        }
        _ => Error::StoreUnavailable { backend: kind, source: Source::msg(message) },
    }
}

/// An error and its sources in one line (the connection error behind a retry shows).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_options_are_redacted() {
        let url = "s3://b/p?endpoint=http://h:9&access_key_id=AKID&secret_access_key=SeCrEt&sas_token=sv%3D1";
        let shown = redact(url);
        assert!(!shown.contains("SeCrEt") && !shown.contains("sv%3D1"), "{shown}");
        assert!(shown.contains("access_key_id=AKID"), "a key id is no secret: {shown}");
    }

    #[test]
    fn unknown_schemes_and_options_are_refused() {
        let err = open("gs://b/p", Duration::from_secs(1)).err().unwrap();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");
        #[cfg(feature = "s3")]
        {
            let err = open("s3://b/p?no_such_option=1&secret_access_key=SeCrEt", Duration::from_secs(1)).err().unwrap();
            assert!(err.to_string().contains("no_such_option") && !err.to_string().contains("SeCrEt"), "{err}");
        }
    }
}
