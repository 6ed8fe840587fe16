//! `durable serve` over real sockets: tokens on every route, cross-site writes, read-only
//! mode, readiness from a backup file while the store is down, live events from another
//! instance, `/metrics`, and SIGTERM under load.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use durable_core::conformance::unique_namespace;
use durable_testkit::env::{postgres_url, redis_url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{ADMIN, ADMIN_2, READ, Server, Start, bearer, sqlite, tmp};

fn tokens() -> [(&'static str, String); 2] {
    [("DURABLE_ADMIN_TOKENS", format!("{ADMIN},{ADMIN_2}")), ("DURABLE_READ_TOKENS", READ.to_owned())]
}

async fn with_tokens(url: &str, namespace: &str, args: &[&str]) -> Server {
    let [(a, admin), (r, read)] = tokens();
    Server::start(Start { url, namespace, args, env: &[(a, &admin), (r, &read)] }).await
}

/// A request with an optional token; returns status and JSON body.
async fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (StatusCode, Value) {
    let client = support::client();
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn every_write_route_takes_an_admin_token_and_reads_take_a_read_token() {
    let server = with_tokens(&sqlite(), "flags", &[]).await;
    let flag = server.url("/flags/beta");
    assert_eq!(call("PUT", &flag, Some(ADMIN), Some("true")).await.0, StatusCode::OK);

    // Every write route: missing, wrong and read tokens refused, nothing written.
    for (method, body) in [("PUT", Some("false")), ("DELETE", None)] {
        let client = support::client();
        let mut request = client.request(method.parse().unwrap(), &flag);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let missing = request.send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED, "{method} without a token");
        let challenge = missing.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert_eq!(call(method, &flag, Some("wrong-token-0123456789abcdef"), body).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(method, &flag, Some(READ), body).await.0, StatusCode::FORBIDDEN, "{method} with a read token");
        let (status, value) = call("GET", &flag, Some(READ), None).await;
        assert_eq!((status, value), (StatusCode::OK, json!(true)), "a refused {method} wrote nothing");
    }
    // Both admin tokens work (rotation), and a write answers its version.
    assert_eq!(call("PUT", &flag, Some(ADMIN_2), Some("false")).await, (StatusCode::OK, json!({"version": 2})));
    assert_eq!(call("DELETE", &flag, Some(ADMIN), None).await, (StatusCode::OK, json!({"version": 3})));

    // Reads: every read route takes a read or admin token once read tokens are set.
    assert_eq!(call("PUT", &flag, Some(ADMIN), Some("true")).await.0, StatusCode::OK);
    for (method, path) in [
        ("GET", "/flags"),
        ("GET", "/flags/beta"),
        ("GET", "/hello"),
        ("GET", "/status"),
        ("GET", "/history"),
        ("POST", "/ofrep/v1/evaluate/flags/beta"),
        ("POST", "/ofrep/v1/evaluate/flags"),
    ] {
        let url = server.url(path);
        let body = (method == "POST").then_some("{}");
        assert_eq!(call(method, &url, None, body).await.0, StatusCode::UNAUTHORIZED, "{method} {path} anonymous");
        assert_eq!(call(method, &url, Some("nope-nope-nope-nope-nope"), body).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(method, &url, Some(READ), body).await.0, StatusCode::OK, "{method} {path} read token");
        assert_eq!(call(method, &url, Some(ADMIN), body).await.0, StatusCode::OK, "{method} {path} admin token");
    }
    let (_, ofrep) = call("POST", &server.url("/ofrep/v1/evaluate/flags/beta"), Some(READ), Some("{}")).await;
    assert_eq!(ofrep["value"], json!(true));
    // The page, health and readiness are open; /whoami tells a token's name, never the token.
    for path in ["/admin/", "/admin/app.js", "/health", "/ready", "/whoami"] {
        assert_eq!(call("GET", &server.url(path), None, None).await.0, StatusCode::OK, "{path}");
    }
    let (_, who) = call("GET", &server.url("/whoami"), Some(READ), None).await;
    assert_eq!((who["access"].as_str(), who["name"].as_str()), (Some("read"), Some("read-env-1")));
    assert_eq!(who["namespace"], json!("flags"));
    let (_, anonymous) = call("GET", &server.url("/whoami"), None, None).await;
    assert_eq!((anonymous["access"].as_str(), &anonymous["store"]), (Some("anonymous"), &Value::Null), "{anonymous}");
    // The page is served with a strict Content-Security-Policy and no framing.
    let page = support::client().get(server.url("/admin/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let log = server.log_text();
    for token in [ADMIN, ADMIN_2, READ] {
        assert!(!log.contains(token), "a token reached the log");
    }
    assert!(log.contains("admin-env-2"), "writes are logged with the token's name: {log}");
}

#[tokio::test]
async fn a_cross_site_write_is_refused() {
    let server = with_tokens(&sqlite(), "flags", &[]).await;
    let flag = server.url("/flags/beta");
    assert_eq!(call("PUT", &flag, Some(ADMIN), Some("true")).await.0, StatusCode::OK);
    let client = support::client();
    // A form on another site's page posting here: no token (a form cannot set one).
    let form = client
        .post(&flag)
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("value=false")
        .send()
        .await
        .unwrap();
    assert!(form.status().is_client_error(), "{}", form.status());
    // Even a request that carries an admin token is refused from another site's page.
    for (origin, site) in [("http://evil.example", Some("cross-site")), ("http://evil.example", None)] {
        let mut request = client
            .put(&flag)
            .header("authorization", bearer(ADMIN))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body("false");
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        assert_eq!(request.send().await.unwrap().status(), StatusCode::FORBIDDEN, "{origin} {site:?}");
    }
    // The page's own origin is fine.
    let same = client
        .put(&flag)
        .header("authorization", bearer(ADMIN))
        .header("origin", server.base.clone())
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/json")
        .body("\"same-origin\"")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::OK);
    assert_eq!(call("GET", &flag, Some(READ), None).await.1, json!("same-origin"));
}

#[tokio::test]
async fn read_only_mode_serves_no_write_route_and_names_its_environment() {
    let url = sqlite();
    let writer = with_tokens(&url, "flags", &[]).await;
    assert_eq!(call("PUT", &writer.url("/flags/beta"), Some(ADMIN), Some("true")).await.0, StatusCode::OK);
    let server = with_tokens(&url, "flags", &["--read-only", "--environment", "production"]).await;
    for method in ["PUT", "DELETE"] {
        let (status, _) = call(method, &server.url("/flags/beta"), Some(ADMIN), Some("false")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    assert_eq!(call("GET", &server.url("/flags/beta"), Some(READ), None).await.1, json!(true));
    let (_, who) = call("GET", &server.url("/whoami"), Some(ADMIN), None).await;
    assert_eq!(who["read_only"], json!(true));
    assert_eq!(who["writable"], json!(false));
    assert_eq!(who["environment"], json!("production"));
    // No admin token at all: writes are refused (401), reads are open.
    let open = Server::start(Start { url: &url, namespace: "flags", args: &[], env: &[] }).await;
    assert_eq!(call("PUT", &open.url("/flags/beta"), Some(ADMIN), Some("false")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call("GET", &open.url("/flags/beta"), None, None).await.1, json!(true));
}

#[tokio::test]
async fn health_is_liveness_and_ready_waits_for_the_store_or_the_backup() {
    // The store is down and there is no backup: alive, not ready, the API says 503.
    let down = "redis://127.0.0.1:1";
    let server = Server::spawn(Start { url: down, namespace: "flags", args: &[], env: &[] }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call("GET", &server.url("/health"), None, None).await.0, StatusCode::OK);
    assert_eq!(call("GET", &server.url("/ready"), None, None).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call("GET", &server.url("/flags"), None, None).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call("GET", &server.url("/admin/"), None, None).await.0, StatusCode::OK);
    drop(server);

    // A backup written while the store was up stands in when it is down.
    let backup = tmp("backup.bin");
    let backup_arg = backup.display().to_string();
    let url = sqlite();
    let up = with_tokens(&url, "flags", &["--backup-file", &backup_arg]).await;
    assert_eq!(call("PUT", &up.url("/flags/beta"), Some(ADMIN), Some("\"kept\"")).await.0, StatusCode::OK);
    let mut up = up;
    up.terminate();
    assert_eq!(up.exit_code().await, Some(0));
    assert!(backup.exists(), "the backup file was written");
    let stale = with_tokens(down, "flags", &["--backup-file", &backup_arg]).await;
    assert_eq!(call("GET", &stale.url("/flags/beta"), Some(READ), None).await.1, json!("kept"));
    let (_, status) = call("GET", &stale.url("/status"), Some(READ), None).await;
    assert_eq!(status["from_backup"], json!(true), "{status}");
}

#[tokio::test]
async fn a_change_through_another_instance_arrives_as_an_event() {
    if !durable_testkit::env::require("PostgreSQL", &postgres_url(), 5432).await {
        return;
    }
    let namespace = unique_namespace("serve-events");
    let a = with_tokens(&postgres_url(), &namespace, &[]).await;
    let b = with_tokens(&postgres_url(), &namespace, &[]).await;
    let mut events =
        support::client().get(a.url("/events")).header("authorization", bearer(READ)).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let first = events.chunk().await.unwrap().unwrap();
    seen.push_str(&String::from_utf8_lossy(&first));
    assert!(seen.contains("event: version"), "{seen}");
    let (_, written) = call("PUT", &b.url("/flags/beta"), Some(ADMIN), Some("true")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: change") {
        let chunk = tokio::time::timeout_at(deadline, events.chunk()).await.expect("the change arrives").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let data = seen.split("event: change\ndata: ").nth(1).unwrap().lines().next().unwrap();
    let change: Value = serde_json::from_str(data).unwrap();
    assert_eq!(change, json!({"key": "beta", "version": written["version"], "deleted": false}));
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move() {
    if !durable_testkit::env::require("Redis", &redis_url(), 6379).await {
        return;
    }
    let namespace = unique_namespace("serve-metrics");
    let server = with_tokens(&redis_url(), &namespace, &["--count-evaluations"]).await;
    let scrape = || async {
        let text = support::client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        prometheus_parse::Scrape::parse(lines).expect("Prometheus text")
    };
    let value = |scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref buckets) => buckets.last().map_or(0.0, |b| b.count),
                _ => 0.0,
            })
            .sum()
    };
    let before = scrape().await;
    for n in 0..3 {
        let body = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
        let body = if n == 2 { body.to_string() } else { "true".into() };
        assert_eq!(call("PUT", &server.url("/flags/beta"), Some(ADMIN), Some(&body)).await.0, StatusCode::OK);
    }
    for _ in 0..5 {
        let (_, answer) = call("POST", &server.url("/ofrep/v1/evaluate/flags/beta"), Some(READ), Some("{}")).await;
        assert_eq!(answer["variant"], json!("on"));
    }
    let after = scrape().await;
    let writes = [("operation", "persist")];
    assert!(
        value(&after, "durable_store_requests_total", &writes)
            >= value(&before, "durable_store_requests_total", &writes) + 2.0,
        "writes counted"
    );
    assert_eq!(value(&after, "durable_snapshot_version", &[]), 3.0);
    let evaluations = [("flag", "beta"), ("variant", "on"), ("reason", "STATIC")];
    assert_eq!(value(&after, "durable_flag_evaluations_total", &evaluations), 5.0);
    // A sync that goes to the store (and is timed) follows the writes' hints, which may land
    // after the evaluations above: reads of the flag go on until one has been timed.
    let synced = |scrape: &prometheus_parse::Scrape| value(scrape, "durable_sync_seconds_count", &[]);
    let mut later = after;
    for _ in 0..100 {
        if synced(&later) > synced(&before) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        call("GET", &server.url("/flags/beta"), Some(READ), None).await;
        later = scrape().await;
    }
    assert!(synced(&later) > synced(&before), "syncs timed");

    // Without --count-evaluations no series per flag; with --no-metrics no /metrics.
    let quiet = with_tokens(&redis_url(), &namespace, &[]).await;
    call("POST", &quiet.url("/ofrep/v1/evaluate/flags/beta"), Some(READ), Some("{}")).await;
    let text = support::client().get(quiet.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("durable_snapshot_version") && !text.contains("durable_flag_evaluations_total"));
    let off = with_tokens(&redis_url(), &namespace, &["--no-metrics"]).await;
    assert_eq!(support::client().get(off.url("/metrics")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_request_the_store_holds_up_is_answered_503_at_the_timeout() {
    use sqlx::Connection;
    let path = tmp("locked.db");
    let url = format!("sqlite://{}", path.display());
    let server = with_tokens(&url, "flags", &["--request-timeout", "1", "--log-format", "json"]).await;
    assert_eq!(call("PUT", &server.url("/flags/beta"), Some(ADMIN), Some("1")).await.0, StatusCode::OK);
    // Another program holds SQLite's write lock: the next write waits for it.
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
    let started = std::time::Instant::now();
    let (status, _) = call("PUT", &server.url("/flags/beta"), Some(ADMIN), Some("2")).await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "answered after {waited:?}");
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.unwrap();
    // Reads were never held up, and the service goes on.
    assert_eq!(call("PUT", &server.url("/flags/beta"), Some(ADMIN), Some("3")).await.0, StatusCode::OK);
    assert_eq!(call("GET", &server.url("/flags/beta"), Some(READ), None).await.1, json!(3));
    // `--log-format json`: every log line is a JSON object.
    let log = server.log_text();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"]["message"].is_string(), "{line}");
    }
}

/// OFREP on the service: Python's OpenFeature SDK with its OFREP provider (PyPI) evaluates
/// a plain flag and a flagd definition served by one instance, sees a change made through
/// the other, and an invalid definition is refused at the door.
#[tokio::test]
async fn an_ofrep_provider_from_python_reads_the_service() {
    use durable_testkit::ofrep::{evaluate, python_client, query};

    let Some(venv) = python_client().await else { return };
    let url = sqlite();
    let env = [("DURABLE_ADMIN_TOKENS", ADMIN)];
    let a = Server::start(Start { url: &url, namespace: "flags", args: &[], env: &env }).await;
    let b = Server::start(Start { url: &url, namespace: "flags", args: &[], env: &env }).await;
    assert_eq!(call("PUT", &a.url("/flags/shout"), Some(ADMIN), Some("true")).await.0, StatusCode::OK);
    let rollout = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", {"fractional": [["on", 50], ["off", 50]]}]}});
    let put = call("PUT", &a.url("/flags/rollout"), Some(ADMIN), Some(&rollout.to_string())).await;
    assert_eq!(put.0, StatusCode::OK);
    let bad = json!({"state": "ENABLED", "variants": {"on": true, "off": 0}, "defaultVariant": "off"});
    let (status, body) = call("PUT", &a.url("/flags/bad"), Some(ADMIN), Some(&bad.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("share one type"), "{body}");

    let users: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let mut queries = vec![
        query("boolean", "shout", None, json!({}), json!(false)),
        query("boolean", "rollout", Some("ada"), json!({"plan": "pro"}), json!(false)),
        query("boolean", "bad", None, json!({}), json!(true)),
    ];
    queries.extend(
        users.iter().map(|user| query("boolean", "rollout", Some(user), json!({"plan": "free"}), json!(false))),
    );
    let seen = evaluate(&venv, &a.base, &queries).await;
    assert_eq!((&seen[0]["value"], seen[0]["reason"].as_str()), (&json!(true), Some("STATIC")));
    assert_eq!(
        (&seen[1]["value"], seen[1]["reason"].as_str(), seen[1]["variant"].as_str()),
        (&json!(true), Some("TARGETING_MATCH"), Some("on"))
    );
    assert_eq!(
        (&seen[2]["value"], seen[2]["error"].as_str()),
        (&json!(true), Some("FLAG_NOT_FOUND")),
        "the refused flag was not written"
    );
    let on = seen[3..].iter().filter(|answer| answer["value"] == json!(true)).count();
    assert!(0 < on && on < users.len(), "a 50/50 split over 20 users: {on} on");
    // A change through the other instance is seen through this one at the next request.
    assert_eq!(call("PUT", &b.url("/flags/shout"), Some(ADMIN), Some("false")).await.0, StatusCode::OK);
    let after = evaluate(&venv, &a.base, &[query("boolean", "shout", None, json!({}), json!(true))]).await;
    assert_eq!(after[0]["value"], json!(false));
}

/// What became of one request sent while the server was stopping.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Answered 200 in full.
    Served,
    /// No connection: the server had stopped listening.
    Refused,
    /// Connected, but no byte of an answer: the server never took the request.
    NotTaken,
    /// Anything else: an answer cut short or an error status.
    Cut(String),
}

/// One `PUT` on its own connection, read to the end.
async fn put_raw(addr: &str, key: &str, value: u64) -> Outcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(_) => return Outcome::Refused,
    };
    let body = value.to_string();
    let request = format!(
        "PUT /flags/{key} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        support::ADMIN,
        body.len()
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Outcome::NotTaken;
    }
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    match (read, text.is_empty()) {
        (_, true) => Outcome::NotTaken,
        (Ok(_), false) if text.starts_with("HTTP/1.1 200") && text.contains("\"version\"") => Outcome::Served,
        (_, false) => Outcome::Cut(text),
    }
}

#[tokio::test]
async fn sigterm_under_load_cuts_no_request_and_exits_0() {
    // Three rounds: the moment SIGTERM lands differs, and so do the requests it catches.
    for _ in 0..3 {
        sigterm_under_load(&sqlite()).await;
    }
}

async fn sigterm_under_load(url: &str) {
    let mut server = with_tokens(url, "flags", &[]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for client in 0..8 {
        let (addr, stop_rx) = (addr.clone(), stop_rx.clone());
        clients.push(tokio::spawn(async move {
            let key = format!("load-{client}");
            let (mut last_served, mut outcomes) = (0, Vec::new());
            for value in 1.. {
                let outcome = put_raw(&addr, &key, value).await;
                if outcome == Outcome::Served {
                    last_served = value;
                }
                let refused = outcome == Outcome::Refused;
                outcomes.push(outcome);
                if refused || (*stop_rx.borrow() && outcomes.len() > 10_000) {
                    break;
                }
            }
            (key, last_served, outcomes)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.terminate();
    let code = server.exit_code().await;
    let _ = stop_tx.send(true);
    let mut last = HashMap::new();
    let (mut served, mut not_taken) = (0, 0);
    for client in clients {
        let (key, last_served, outcomes) = client.await.unwrap();
        for outcome in &outcomes {
            match outcome {
                Outcome::Served => served += 1,
                Outcome::NotTaken => not_taken += 1,
                Outcome::Refused => {}
                Outcome::Cut(text) => panic!("a request was cut: {text:?}"),
            }
        }
        last.insert(key, last_served);
    }
    eprintln!("SIGTERM under load: {served} writes served, {not_taken} sent as the server stopped and not taken");
    assert_eq!(code, Some(0), "{}", server.log_text());
    assert!(served > 50, "the load ran: {served} writes served");
    // A request the server took was answered: what the store holds is, for every client,
    // the last write it was told succeeded (a write taken and not answered would show).
    let after = with_tokens(url, "flags", &[]).await;
    for (key, last_served) in last {
        let (_, stored) = call("GET", &after.url(&format!("/flags/{key}")), Some(READ), None).await;
        assert_eq!(stored, json!(last_served), "{key}: stored vs last answered ({not_taken} not taken)");
    }
}
