//! Store URLs: their scheme, and a form safe to show (invariant 10: credentials never
//! appear in `Debug`, `Display`, errors or logs).

/// The scheme of `url` (`redis` in `redis://...`), lower-cased; `None` when there is none.
pub fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let valid = !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// `url` with any password (and any `password=` query parameter) replaced by `***`,
/// for messages and logs.
///
/// ```
/// assert_eq!(
///     durable_core::redact_url("postgres://app:s3cret@db:5432/flags?password=x&sslmode=require"),
///     "postgres://app:***@db:5432/flags?password=***&sslmode=require"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret(name) => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{head}{authority}{tail}")
}

/// Knows a URL's password, to keep it out of anything shown: backends build one from their
/// URL and pass every driver message through [`Redactor::scrub`] before it reaches an error
/// or a log (a driver may echo what it was given).
#[derive(Clone)]
pub struct Redactor {
    url: String,
    password: Option<String>,
}

impl Redactor {
    /// Remembers `url`'s password, if it has one.
    pub fn new(url: &str) -> Self {
        let password = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
            .and_then(|authority| authority.rsplit_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, password)| password.to_owned())
            .filter(|password| !password.is_empty());
        Self { url: redact_url(url), password }
    }

    /// The URL with its password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `text` with every occurrence of the password replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(password) => text.replace(password.as_str(), "***"),
            None => text.to_owned(),
        }
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Redactor").field(&self.url).finish()
    }
}

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "pass", "pwd", "secret", "token", "auth"].iter().any(|s| name.contains(s))
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
    }

    #[test]
    fn leaves_urls_without_secrets_alone() {
        for url in ["sqlite://flags.db", "memory://", "zk://a:2181,b:2181/durable", "redis://user@h"] {
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
    }

    #[test]
    fn finds_schemes() {
        assert_eq!(scheme("Redis://x").as_deref(), Some("redis"));
        assert_eq!(scheme("redis+cluster://x").as_deref(), Some("redis+cluster"));
        assert_eq!(scheme("no scheme"), None);
        assert_eq!(scheme("://x"), None);
    }
}
