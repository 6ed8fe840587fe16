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
    fn finds_schemes() {
        assert_eq!(scheme("Redis://x").as_deref(), Some("redis"));
        assert_eq!(scheme("redis+cluster://x").as_deref(), Some("redis+cluster"));
        assert_eq!(scheme("no scheme"), None);
        assert_eq!(scheme("://x"), None);
    }
}
