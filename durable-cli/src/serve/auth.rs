//! Bearer tokens: admin tokens for writes, optional read tokens for reads.
//!
//! A token is compared by its SHA-256 digest, in constant time, against every token of its
//! kind (no early exit: how long a check takes says nothing about which token came close).
//! Tokens are never logged; a token's *name* (`name token` in a file) is what logs and
//! `/whoami` show.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::CliError;

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

struct Token {
    name: String,
    digest: [u8; 32],
}

/// The admin and read tokens.
#[derive(Default)]
pub struct Tokens {
    admin: Vec<Token>,
    read: Vec<Token>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a token never reaches a log.
        let names = |tokens: &[Token]| tokens.iter().map(|token| token.name.clone()).collect::<Vec<_>>();
        f.debug_struct("Tokens").field("admin", &names(&self.admin)).field("read", &names(&self.read)).finish()
    }
}

/// What a request's token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token was presented.
    Anonymous,
    /// A token was presented and is none of ours.
    Invalid,
    /// A read token (its name).
    Read(String),
    /// An admin token (its name).
    Admin(String),
}

impl Tokens {
    /// Reads tokens from the environment's comma-separated lists and from files.
    pub fn load(
        admin_env: Option<&str>,
        admin_file: Option<&std::path::Path>,
        read_env: Option<&str>,
        read_file: Option<&std::path::Path>,
    ) -> Result<Self, CliError> {
        let mut tokens = Tokens::default();
        for (env, file, list, kind) in
            [(admin_env, admin_file, &mut tokens.admin, "admin"), (read_env, read_file, &mut tokens.read, "read")]
        {
            let env_var = format!("DURABLE_{}_TOKENS", kind.to_uppercase());
            for (n, token) in env.unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()).enumerate() {
                list.push(Token::new(format!("{kind}-env-{}", n + 1), token, &env_var)?);
            }
            if let Some(path) = file {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| CliError::Input(format!("{kind} tokens file {}: {err}", path.display())))?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.is_empty() {
                        continue;
                    }
                    let (name, token) = match line.split_once(char::is_whitespace) {
                        Some((name, token)) => (name.to_owned(), token.trim()),
                        None => (format!("{kind}-file-line-{}", n + 1), line),
                    };
                    let place = format!("{} line {}", path.display(), n + 1);
                    list.push(Token::new(name, token, &place)?);
                }
            }
        }
        Ok(tokens)
    }

    /// Whether any admin token is set (without one, nothing can be written).
    pub fn has_admin(&self) -> bool {
        !self.admin.is_empty()
    }

    /// Whether reads take a token.
    pub fn reads_need_token(&self) -> bool {
        !self.read.is_empty()
    }

    /// What the request's `Authorization: Bearer …` allows.
    pub fn access(&self, headers: &HeaderMap) -> Access {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Access::Anonymous;
        };
        let presented = value.to_str().ok().and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(presented) = presented else {
            return Access::Invalid;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some(name) = find(&self.admin, &digest) {
            return Access::Admin(name);
        }
        find(&self.read, &digest).map_or(Access::Invalid, Access::Read)
    }
}

/// The token matching `digest`, checking every one in constant time.
fn find(tokens: &[Token], digest: &[u8; 32]) -> Option<String> {
    let mut found: Option<&Token> = None;
    for token in tokens {
        let equal: Choice = token.digest.ct_eq(digest);
        if bool::from(equal) {
            found = Some(token);
        }
    }
    found.map(|token| token.name.clone())
}

impl Token {
    fn new(name: String, token: &str, place: &str) -> Result<Self, CliError> {
        if token.chars().count() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CliError::Input(format!(
                "a token in {place} is too short or has spaces: tokens are at least {MIN_TOKEN_LEN} characters \
                 without spaces (e.g. `openssl rand -hex 24`)"
            )));
        }
        Ok(Self { name, digest: Sha256::digest(token.as_bytes()).into() })
    }
}

/// Who may do what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Admin,
}

/// 401 with the `WWW-Authenticate` challenge RFC 6750 asks for.
fn unauthorized(error: &str, message: &str) -> Response {
    let challenge = format!("Bearer realm=\"durable\", error=\"{error}\"");
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({ "error": message }))).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("an ASCII challenge"));
    response
}

fn forbidden(message: &str) -> Response {
    (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// What a request needs: reads are `GET`/`HEAD` and OFREP's evaluations (`POST`s that
/// change nothing); everything else writes.
pub fn need_of(method: &Method, path: &str) -> Need {
    if method == Method::GET || method == Method::HEAD || path.starts_with("/ofrep/") {
        Need::Read
    } else {
        Need::Admin
    }
}

/// The guard in front of the API: admin tokens for writes, read tokens (when set) for reads.
pub async fn guard(State(tokens): State<std::sync::Arc<Tokens>>, request: Request, next: Next) -> Response {
    let need = need_of(request.method(), request.uri().path());
    let access = tokens.access(request.headers());
    let writes = need == Need::Admin;
    let allowed = match (need, &access) {
        (_, Access::Admin(_)) => true,
        (Need::Read, Access::Read(_)) => true,
        (Need::Read, Access::Anonymous) => !tokens.reads_need_token(),
        (Need::Admin, Access::Read(_)) => return forbidden("a read token cannot write: use an admin token"),
        _ => false,
    };
    if !allowed {
        return match access {
            Access::Invalid => unauthorized("invalid_token", "the token is not valid"),
            _ if need == Need::Admin => unauthorized("invalid_request", "writing takes an admin token"),
            _ => unauthorized("invalid_request", "reading takes a read or admin token"),
        };
    }
    if let Access::Admin(name) = &access {
        if writes {
            tracing::info!(token = %name, method = %request.method(), path = %request.uri().path(), "write");
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        headers
    }

    #[test]
    fn tokens_from_the_environment_and_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin");
        std::fs::write(&file, "# rotation\nalice aaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbb # old\n").unwrap();
        let tokens = Tokens::load(
            Some("cccccccccccccccccccc, dddddddddddddddddddd"),
            Some(&file),
            Some("rrrrrrrrrrrrrrrr"),
            None,
        )
        .unwrap();
        assert_eq!(tokens.access(&bearer("aaaaaaaaaaaaaaaaaaaa")), Access::Admin("alice".into()));
        assert_eq!(tokens.access(&bearer("bbbbbbbbbbbbbbbbbbbb")), Access::Admin("admin-file-line-3".into()));
        assert_eq!(tokens.access(&bearer("dddddddddddddddddddd")), Access::Admin("admin-env-2".into()));
        assert_eq!(tokens.access(&bearer("rrrrrrrrrrrrrrrr")), Access::Read("read-env-1".into()));
        assert_eq!(tokens.access(&bearer("rrrrrrrrrrrrrrrx")), Access::Invalid);
        assert_eq!(tokens.access(&HeaderMap::new()), Access::Anonymous);
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        assert_eq!(tokens.access(&basic), Access::Invalid);
        assert!(!format!("{tokens:?}").contains("aaaa"), "Debug shows names, never tokens");

        let err = Tokens::load(Some("short"), None, None, None).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
    }
}
