//! The middleware: requests per second through `SyncLayer` beside the same app without it.

use durable::{DurableDict, MemoryBackend, MemoryStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Config, Results, median};

// ---- middleware -----------------------------------------------------------------------

/// Requests per second a service answers over loopback with `concurrency` clients for
/// `seconds`, measured with hyper's client in this process.
pub(crate) async fn load(app: axum::Router, concurrency: usize, duration: Duration) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/flag", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let rps = load_url(&url, None, concurrency, duration).await;
    server.abort();
    rps
}

/// Requests per second `GET url` (with an `authorization` header, when given) is answered
/// 200 with `concurrency` clients for `duration`.
pub(crate) async fn load_url(url: &str, authorization: Option<&str>, concurrency: usize, duration: Duration) -> f64 {
    let url: http::Uri = url.parse().unwrap();
    let authorization = authorization.map(|value| http::HeaderValue::from_str(value).unwrap());
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, done, authorization) = (client.clone(), url.clone(), done.clone(), authorization.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut request = http::Request::get(url.clone());
                    if let Some(value) = &authorization {
                        request = request.header(http::header::AUTHORIZATION, value.clone());
                    }
                    let response = client.request(request.body(http_body_util::Empty::new()).unwrap()).await.unwrap();
                    assert_eq!(response.status(), 200);
                    let _ = http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    for worker in workers {
        worker.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

pub(crate) async fn middleware_figures(config: &Config, out: &mut Results) {
    use axum::routing::get;
    let backend = Arc::new(MemoryBackend::in_store(MemoryStore::new(), "mw"));
    let dict = DurableDict::<bool>::builder(backend).autosync(false).build().await.unwrap();
    dict.insert("flag", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let with_layer =
        axum::Router::new()
            .route(
                "/flag",
                get(|flags: durable::Flags<bool>| async move {
                    if flags.get("flag") == Some(&true) { "on" } else { "off" }
                }),
            )
            .layer(durable::SyncLayer::new(dict.clone()));
    let plain_dict = dict.clone();
    let without = axum::Router::new().route(
        "/flag",
        get(move || {
            let dict = plain_dict.clone();
            async move { if dict.snapshot().get("flag") == Some(&true) { "on" } else { "off" } }
        }),
    );
    // Many short pairs rather than a few long runs: the two services alternate, each pair in
    // the other order than the last, so that machine noise (which moves throughput by 30 %
    // here from one ten-second stretch to the next) falls on both alike; the ratio is the
    // median of the pairs' own ratios.
    let (pairs, seconds) = if config.quick { (3, Duration::from_secs(1)) } else { (12, Duration::from_millis(2500)) };
    let (mut with, mut plain, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (w, p) = if pair % 2 == 0 {
            let p = load(without.clone(), 32, seconds).await;
            (load(with_layer.clone(), 32, seconds).await, p)
        } else {
            let w = load(with_layer.clone(), 32, seconds).await;
            (w, load(without.clone(), 32, seconds).await)
        };
        with.push(w);
        plain.push(p);
        ratios.push(w / p);
    }
    out.put("middleware.rps_with_sync", median(with));
    out.put("middleware.rps_without", median(plain));
    out.put("middleware.with_vs_without_ratio", median(ratios));
}
