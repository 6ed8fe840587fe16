//! `durable serve`, run as users run it (the release binary, a process of its own): requests
//! per second of a flag read with bearer tokens and metrics on (a read token checked on every
//! request, the Prometheus recorder installed) beside the same service with both off, the
//! two alternating pair by pair. The store is Redis (hinted: a request's sync is free, so
//! what differs is the server's own work).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::middleware::load_url;
use crate::{Config, Results, median};

const ADMIN: &str = "bench-admin-token-0123456789";
const READ: &str = "bench-read-token-0123456789";

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(bin: &std::path::Path, redis: &str, namespace: &str, on: bool) -> Serve {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--url", redis, "--namespace", namespace, "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if on {
        command.env("DURABLE_ADMIN_TOKENS", ADMIN).env("DURABLE_READ_TOKENS", READ);
    } else {
        command.arg("--no-metrics");
    }
    let mut child = command.spawn().expect("run durable serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let base = first.split_whitespace().find(|word| word.starts_with("http://")).expect("an address").to_owned();
    Serve { child, base }
}

/// Waits until `GET /ready` answers 200.
async fn wait_ready(base: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    for _ in 0..200 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let request = format!("GET /ready HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
            let mut answer = String::new();
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_to_string(&mut answer).await.is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("durable serve at {base} never became ready");
}

pub(crate) async fn server_figures(config: &Config, redis: &str, out: &mut Results) {
    let Some(bin) = crate::cli::binary() else {
        eprintln!("bench: no durable binary (scripts/bench.sh builds it): the server figures are left out");
        return;
    };
    let namespace = crate::backends::unique("bench-serve");
    let dict = durable::DurableDict::<serde_json::Value>::builder(durable::connect(redis, &namespace).await.unwrap())
        .build()
        .await
        .unwrap();
    dict.insert("shout", serde_json::json!(true)).await.unwrap();
    let on = serve(&bin, redis, &namespace, true);
    let off = serve(&bin, redis, &namespace, false);
    wait_ready(&on.base).await;
    wait_ready(&off.base).await;
    let bearer = format!("Bearer {READ}");
    let (url_on, url_off) = (format!("{}/flags/shout", on.base), format!("{}/flags/shout", off.base));
    // A warm-up for both, then alternating pairs (as the middleware figure does).
    load_url(&url_on, Some(&bearer), 8, Duration::from_millis(300)).await;
    load_url(&url_off, None, 8, Duration::from_millis(300)).await;
    let (pairs, seconds) = if config.quick { (3, Duration::from_secs(1)) } else { (10, Duration::from_millis(2500)) };
    let (mut with, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (w, o) = if pair % 2 == 0 {
            let o = load_url(&url_off, None, 32, seconds).await;
            (load_url(&url_on, Some(&bearer), 32, seconds).await, o)
        } else {
            let w = load_url(&url_on, Some(&bearer), 32, seconds).await;
            (w, load_url(&url_off, None, 32, seconds).await)
        };
        with.push(w);
        without.push(o);
        ratios.push(w / o);
    }
    drop((on, off));
    dict.backend().remove_namespace().await.unwrap();
    out.put("server.rps_auth_metrics_on", median(with));
    out.put("server.rps_auth_metrics_off", median(without));
    out.put("server.on_vs_off_ratio", median(ratios));
}
