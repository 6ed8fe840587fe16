//! Store URLs: one parser for every backend ([`StoreUrl`], on the `url` crate, plus the
//! multi-host form ZooKeeper and Redis Cluster use), their scheme, and a form safe to show
//! (invariant 10: credentials never appear in `Debug`, `Display`, errors or logs).

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};

/// A store URL, parsed: `scheme://[user[:password]@]host[:port][,host[:port]...][/path][?query]`.
///
/// Each host, the credentials, the path and the query are read by the `url` crate, exactly
/// as a single-host URL of that scheme would be (percent-decoding, IPv6 brackets, port
/// ranges); the host list is the one addition. A path may not hold `.` or `..` segments:
/// a store URL's path names a place in the store and is taken literally, never resolved.
///
/// ```
/// use durable_core::StoreUrl;
/// let url = StoreUrl::parse("zk://app:p%40ss@a:2191,b,[::1]:7/flags?timeout=5s")?;
/// assert_eq!(url.scheme(), "zk");
/// assert_eq!((url.username(), url.password()), ("app", Some("p@ss")));
/// assert_eq!(url.addrs(2181), ["a:2191", "b:2181", "[::1]:7"]);
/// assert_eq!(url.path(), "/flags");
/// assert_eq!(url.query("timeout"), Some("5s"));
/// assert_eq!(url.to_string(), "zk://app:***@a:2191,b,[::1]:7/flags?timeout=5s");
/// # Ok::<(), durable_core::Error>(())
/// ```
#[derive(Clone)]
pub struct StoreUrl {
    raw: String,
    scheme: String,
    username: String,
    password: Option<String>,
    hosts: Vec<HostPort>,
    path: String,
    query: Vec<(String, String)>,
}

/// One host of a [`StoreUrl`] and its port, if the URL names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

impl HostPort {
    /// `host:port`, with `default_port` where the URL names none.
    pub fn addr(&self, default_port: u16) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(default_port))
    }
}

impl StoreUrl {
    /// Parses `url`; [`Error::InvalidUrl`] (with the URL redacted) says what is wrong.
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl { url: redact_url(url), reason };
        let pieces = Pieces::of(url);
        let Some(scheme) = pieces.scheme.filter(|scheme| valid_scheme(scheme)) else {
            return Err(invalid("expected scheme://[user[:password]@]host[:port][,host[:port]...][/path]".into()));
        };
        let scheme = scheme.to_ascii_lowercase();
        let listed: Vec<&str> = if pieces.hosts.is_empty() { Vec::new() } else { pieces.hosts.split(',').collect() };
        if listed.iter().any(|host| host.is_empty()) {
            return Err(invalid("an empty host in the host list".into()));
        }
        let path_end = pieces.tail.find(['?', '#']).unwrap_or(pieces.tail.len());
        if pieces.tail[..path_end].split('/').any(|segment| matches!(segment, "." | "..")) {
            return Err(invalid("the path may not hold `.` or `..` segments".into()));
        }
        let credentials = pieces.userinfo.map(|userinfo| format!("{userinfo}@")).unwrap_or_default();
        let first = listed.first().copied().unwrap_or_default();
        let whole = url::Url::parse(&format!("{scheme}://{credentials}{first}{}", pieces.tail))
            .map_err(|err| invalid(err.to_string()))?;
        let mut hosts = Vec::with_capacity(listed.len());
        for (index, listed) in listed.iter().enumerate() {
            let one = match index {
                0 => whole.clone(),
                _ => url::Url::parse(&format!("{scheme}://{listed}"))
                    .map_err(|err| invalid(format!("host {listed:?}: {err}")))?,
            };
            let host = one.host_str().ok_or_else(|| invalid(format!("host {listed:?}: no host")))?;
            hosts.push(HostPort { host: host.to_owned(), port: one.port() });
        }
        Ok(Self {
            raw: url.to_owned(),
            username: decode(whole.username()),
            password: whole.password().map(decode),
            path: decode(whole.path()),
            query: whole.query_pairs().map(|(name, value)| (name.into_owned(), value.into_owned())).collect(),
            scheme,
            hosts,
        })
    }

    /// The scheme, lower-cased.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The user name (percent-decoded); empty when there is none.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password (percent-decoded), if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The hosts, in the order given; none for `scheme:///path` or `scheme://`.
    pub fn hosts(&self) -> &[HostPort] {
        &self.hosts
    }

    /// Every host as `host:port`, `default_port` where the URL names none.
    pub fn addrs(&self, default_port: u16) -> Vec<String> {
        self.hosts.iter().map(|host| host.addr(default_port)).collect()
    }

    /// The path (percent-decoded): empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The first value of query parameter `name` (decoded), if present.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// What follows `scheme://` and the credentials, as written: hosts, path and query.
    pub fn location(&self) -> &str {
        let pieces = Pieces::of(&self.raw);
        let start = pieces.hosts.as_ptr() as usize - self.raw.as_ptr() as usize;
        &self.raw[start..]
    }

    /// One URL per host, each under `scheme` with this URL's credentials, path and query as
    /// written: what a driver that takes a list of single-host URLs wants.
    pub fn node_urls(&self, scheme: &str) -> Vec<String> {
        let pieces = Pieces::of(&self.raw);
        let credentials = pieces.userinfo.map(|userinfo| format!("{userinfo}@")).unwrap_or_default();
        pieces.hosts.split(',').map(|host| format!("{scheme}://{credentials}{host}{}", pieces.tail)).collect()
    }

    /// The URL as given, password included: for the driver only, never to show.
    pub fn as_secret_str(&self) -> &str {
        &self.raw
    }
}

/// Shows the URL with its password replaced by `***` ([`redact_url`]).
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.raw))
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&redact_url(&self.raw)).finish()
    }
}

/// A URL cut where the parser and the redaction both cut it, without judging it: the
/// redaction must work on URLs the parser refuses (to say what was refused).
struct Pieces<'a> {
    scheme: Option<&'a str>,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    /// The path, query and fragment.
    tail: &'a str,
}

impl<'a> Pieces<'a> {
    fn of(url: &'a str) -> Self {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, url),
        };
        let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        Self { scheme, userinfo, hosts, tail }
    }

    /// The password as written (percent-encoded, if it was).
    fn password(&self) -> Option<&'a str> {
        self.userinfo.and_then(|userinfo| userinfo.split_once(':')).map(|(_, password)| password)
    }
}

fn valid_scheme(scheme: &str) -> bool {
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The scheme of `url` (`redis` in `redis://...`), lower-cased; `None` when there is none.
pub fn scheme(url: &str) -> Option<String> {
    Pieces::of(url).scheme.filter(|scheme| valid_scheme(scheme)).map(str::to_ascii_lowercase)
}

/// `url` with any password (and any `password=` query parameter) replaced by `***`,
/// for messages and logs. Works on any text, parseable or not.
///
/// ```
/// assert_eq!(
///     durable_core::redact_url("postgres://app:s3cret@db:5432/flags?password=x&sslmode=require"),
///     "postgres://app:***@db:5432/flags?password=***&sslmode=require"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let pieces = Pieces::of(url);
    let mut shown = pieces.scheme.map(|scheme| format!("{scheme}://")).unwrap_or_default();
    if let Some(userinfo) = pieces.userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => shown.push_str(&format!("{user}:***@")),
            None => shown.push_str(&format!("{userinfo}@")),
        }
    }
    shown.push_str(pieces.hosts);
    match pieces.tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_param(name) => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            shown.push_str(&format!("{path}?{}", query.join("&")));
        }
        None => shown.push_str(pieces.tail),
    }
    shown
}

/// Knows a URL's password, to keep it out of anything shown: backends build one from their
/// URL and pass every driver message through [`Redactor::scrub`] before it reaches an error
/// or a log (a driver may echo what it was given).
#[derive(Clone)]
pub struct Redactor {
    url: String,
    /// The password as written and, when it differs, percent-decoded.
    passwords: Vec<String>,
}

impl Redactor {
    /// Remembers `url`'s password, if it has one.
    pub fn new(url: &str) -> Self {
        let mut passwords = Vec::new();
        if let Some(password) = Pieces::of(url).password().filter(|password| !password.is_empty()) {
            let decoded = decode(password);
            if decoded != password && !decoded.is_empty() {
                passwords.push(decoded);
            }
            passwords.push(password.to_owned());
        }
        Self { url: redact_url(url), passwords }
    }

    /// The URL with its password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `text` with every occurrence of the password replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        self.passwords.iter().fold(text.to_owned(), |text, password| text.replace(password.as_str(), "***"))
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Redactor").field(&self.url).finish()
    }
}

/// Whether a URL query parameter (or an environment variable) named `name` carries a
/// credential: passwords, secrets, tokens, keys (not key ids), SAS signatures. Such values
/// are shown as `***` by [`redact_url`].
///
/// ```
/// use durable_core::is_secret_param;
/// assert!(is_secret_param("secret_access_key") && is_secret_param("sas_token") && is_secret_param("AZURE_STORAGE_ACCOUNT_KEY"));
/// assert!(!is_secret_param("access_key_id") && !is_secret_param("region"));
/// ```
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "pass", "pwd", "secret", "token", "auth", "key", "sas", "sig"].iter().any(|s| name.contains(s))
        && !name.ends_with("key_id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_passwords() {
        assert_eq!(redact_url("redis://:hunter2@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(redact_url("mysql://root:pw@h/db"), "mysql://root:***@h/db");
        // An '@' inside the password.
        assert_eq!(redact_url("redis://u:p@ss@host"), "redis://u:***@host");
        assert_eq!(redact_url("u:pw@host/x"), "u:***@host/x");
    }

    #[test]
    fn leaves_urls_without_secrets_alone() {
        for url in ["sqlite://flags.db", "memory://", "zk://a:2181,b:2181/durable", "redis://user@h", "not a url"] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn redacts_secret_query_parameters() {
        assert_eq!(redact_url("rediss://h?token=abc&db=1"), "rediss://h?token=***&db=1");
    }

    #[test]
    fn the_redactor_scrubs_the_password_from_any_text() {
        let r = Redactor::new("postgres://app:pa55word@db.internal:5432/flags");
        assert_eq!(r.url(), "postgres://app:***@db.internal:5432/flags");
        assert_eq!(r.scrub("failed for pa55word at db"), "failed for *** at db");
        assert!(!format!("{r:?}").contains("pa55word"));
        assert_eq!(Redactor::new("sqlite://flags.db").scrub("text"), "text");
        // A driver may echo the password decoded or as written.
        let r = Redactor::new("redis://u:p%40ss%2Fw@h");
        assert_eq!(r.scrub("auth p@ss/w and p%40ss%2Fw"), "auth *** and ***");
    }

    #[test]
    fn finds_schemes() {
        assert_eq!(scheme("Redis://x").as_deref(), Some("redis"));
        assert_eq!(scheme("redis+cluster://x").as_deref(), Some("redis+cluster"));
        assert_eq!(scheme("no scheme"), None);
        assert_eq!(scheme("://x"), None);
        assert_eq!(scheme("1a://x"), None);
    }

    fn host(host: &str, port: Option<u16>) -> HostPort {
        HostPort { host: host.into(), port }
    }

    #[test]
    fn parses_one_host_as_the_url_crate_does() {
        let url = StoreUrl::parse("Postgres://app:s%20cret@db.internal:5433/flags?sslmode=require&x=a%26b").unwrap();
        assert_eq!(url.scheme(), "postgres");
        assert_eq!(url.username(), "app");
        assert_eq!(url.password(), Some("s cret"));
        assert_eq!(url.hosts(), [host("db.internal", Some(5433))]);
        assert_eq!(url.path(), "/flags");
        assert_eq!(url.query("sslmode"), Some("require"));
        assert_eq!(url.query("x"), Some("a&b"));
        assert_eq!(url.query("missing"), None);
        assert_eq!(url.location(), "db.internal:5433/flags?sslmode=require&x=a%26b");
        assert!(!format!("{url} {url:?}").contains("cret"));
    }

    #[test]
    fn parses_host_lists() {
        let url = StoreUrl::parse("zk://u:p@w@h:1,g,[::1]:7/a/b").unwrap();
        assert_eq!(url.hosts(), [host("h", Some(1)), host("g", None), host("[::1]", Some(7))]);
        assert_eq!(url.addrs(2181), ["h:1", "g:2181", "[::1]:7"]);
        assert_eq!((url.username(), url.password()), ("u", Some("p@w")));
        assert_eq!(url.path(), "/a/b");
        assert_eq!(url.location(), "h:1,g,[::1]:7/a/b");
        assert_eq!(
            url.node_urls("redis"),
            ["redis://u:p@w@h:1/a/b", "redis://u:p@w@g/a/b", "redis://u:p@w@[::1]:7/a/b"]
        );
    }

    #[test]
    fn urls_without_hosts() {
        for (raw, path) in [("memory://", ""), ("sqlite:///var/flags.db", "/var/flags.db"), ("zk:///x", "/x")] {
            let url = StoreUrl::parse(raw).unwrap();
            assert!(url.hosts().is_empty(), "{raw}");
            assert_eq!(url.path(), path, "{raw}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_store_url_and_says_why() {
        let reason = |raw: &str| match StoreUrl::parse(raw) {
            Err(Error::InvalidUrl { url, reason }) => {
                assert!(!url.contains("secret"), "{url}");
                reason
            }
            other => panic!("{raw}: {other:?}"),
        };
        assert!(reason("no scheme").contains("expected scheme://"));
        assert!(reason("zk://h:1,,g:2/x").contains("empty host"));
        assert!(reason("zk://h:1/a/../b").contains("`..`"));
        assert!(reason("zk://u:secret@h:1,g:99999/x").contains("\"g:99999\""));
        assert!(reason("redis://u:secret@h:port/x").contains("port"));
    }
}
