//! The admin page in a real browser: Debian's Chromium driven through chromedriver
//! (WebDriver, with fantoccini), against two `durable serve` instances on PostgreSQL.
//! Screenshots of every step go to `target/screenshots/`.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use durable_core::conformance::{require_service, unique_namespace};
use durable_testkit::env::postgres_url;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{ADMIN, READ, Server, Start, bearer};

/// chromedriver on a free port; killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

async fn chromedriver() -> Option<Driver> {
    let (chromium, driver) = (PathBuf::from("/usr/bin/chromium"), PathBuf::from("/usr/bin/chromedriver"));
    if !require_service("Chromium and chromedriver (scripts/services.sh browser)", chromium.exists() && driver.exists())
    {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(response) = support::client().get(format!("{url}/status")).send().await {
            if response.status().is_success() {
                return Some(Driver { _child: child, url });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer");
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,860"]
        }),
    );
    // chromedriver speaks plain HTTP on loopback: no TLS in the WebDriver client.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a browser session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("admin-{name}.png")), png).unwrap();
}

/// Waits until the element's text satisfies `ok`; returns the text.
async fn wait_text(client: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..150 {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css}: text never matched; last {last:?}");
}

/// Clicks the element, finding it again when the page re-rendered it meanwhile (a live
/// update replaces the table's rows).
async fn click(client: &Client, css: &str) {
    let mut last = None;
    for _ in 0..50 {
        let element = client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap();
        match element.click().await {
            Ok(()) => return,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css}: could not click: {last:?}");
}

async fn type_into(client: &Client, css: &str, text: &str) {
    let element = client.find(Locator::Css(css)).await.unwrap();
    element.clear().await.unwrap();
    element.send_keys(text).await.unwrap();
}

async fn api_get(server: &Server, key: &str) -> Value {
    let response = support::client().get(server.url(&format!("/flags/{key}"))).header("authorization", bearer(READ));
    let response = response.send().await.unwrap();
    if response.status() == 404 {
        return Value::Null;
    }
    response.json().await.unwrap()
}

async fn api_put(server: &Server, key: &str, value: &Value) {
    let response = support::client()
        .put(server.url(&format!("/flags/{key}")))
        .header("authorization", bearer(ADMIN))
        .header("content-type", "application/json")
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn the_admin_page_in_a_real_browser() {
    let Some(driver) = chromedriver().await else { return };
    if !durable_testkit::env::require("PostgreSQL", &postgres_url(), 5432).await {
        return;
    }
    let namespace = unique_namespace("admin-page");
    let env = [("DURABLE_ADMIN_TOKENS", ADMIN), ("DURABLE_READ_TOKENS", READ)];
    let pg = postgres_url();
    let a = Server::start(Start { url: &pg, namespace: &namespace, args: &["--environment", "production"], env: &env })
        .await;
    let b = Server::start(Start { url: &pg, namespace: &namespace, args: &[], env: &env }).await;
    let beta = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on"]}});
    api_put(&a, "shout", &json!(true)).await;
    api_put(&a, "beta", &beta).await;
    api_put(&a, "checkout.limit", &json!(3)).await;

    let client = browser(&driver).await;
    client.goto(&a.url("/admin/")).await.unwrap();
    // Signed out: the environment banner, a prompt to sign in, no flags (reads take a token).
    assert_eq!(wait_text(&client, "#banner", |t| !t.is_empty()).await.to_lowercase(), "production");
    wait_text(&client, "#notice", |t| t.contains("Sign in")).await;
    assert!(client.find(Locator::Css("tr[data-key]")).await.is_err(), "no flag is shown before signing in");
    shot(&client, "01-signed-out").await;

    // Sign in with the admin token.
    type_into(&client, "#token", ADMIN).await;
    click(&client, "#login-button").await;
    wait_text(&client, "#whoami", |t| t.contains("admin")).await;
    wait_text(&client, "tr[data-key=\"beta\"] td:nth-child(2)", |t| t.contains("on=true") && t.contains("default off"))
        .await;
    wait_text(&client, "tr[data-key=\"shout\"] .state", |t| t == "on").await;
    shot(&client, "02-flags").await;

    // Search narrows the list.
    type_into(&client, "#search", "checkout").await;
    wait_text(&client, "#flags tbody", |t| t.contains("checkout.limit") && !t.contains("shout")).await;
    // Clearing the box does not fire `input`: say it did.
    let clear = "const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input'));";
    client.execute(clear, vec![]).await.unwrap();
    wait_text(&client, "#flags tbody", |t| t.contains("shout")).await;

    // Toggle a boolean flag, through the confirmation.
    click(&client, "tr[data-key=\"shout\"] button.toggle").await;
    wait_text(&client, "#confirm-text", |t| t.contains("Turn off")).await;
    shot(&client, "03-confirm").await;
    click(&client, "#confirm-ok").await;
    wait_text(&client, "tr[data-key=\"shout\"] .state", |t| t == "off").await;
    assert_eq!(api_get(&b, "shout").await, json!(false), "the toggle reached the store");
    // Cancelling the confirmation changes nothing.
    click(&client, "tr[data-key=\"shout\"] button.toggle").await;
    click(&client, "#confirm-cancel").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api_get(&a, "shout").await, json!(false));

    // An invalid edit: the server's reason shows inline and nothing is written.
    click(&client, "tr[data-key=\"beta\"] button.edit").await;
    let mut broken = beta.clone();
    broken["defaultVariant"] = json!("maybe");
    type_into(&client, "#editor-value", &broken.to_string()).await;
    click(&client, "#editor-save").await;
    let error = wait_text(&client, "#editor-error", |t| !t.is_empty()).await;
    assert!(error.contains("maybe"), "the reason names the bad variant: {error}");
    shot(&client, "04-invalid-edit").await;
    assert_eq!(api_get(&a, "beta").await, beta, "nothing written");
    // Not JSON at all: said before anything is sent.
    type_into(&client, "#editor-value", "{\"state\": ").await;
    click(&client, "#editor-save").await;
    wait_text(&client, "#editor-error", |t| t.starts_with("Not JSON")).await;
    // Fixed: saved, the dialog closes, the row shows it.
    let mut fixed = beta.clone();
    fixed["defaultVariant"] = json!("on");
    type_into(&client, "#editor-value", &fixed.to_string()).await;
    click(&client, "#editor-save").await;
    wait_text(&client, "tr[data-key=\"beta\"] td:nth-child(2)", |t| t.contains("default on")).await;
    assert_eq!(api_get(&b, "beta").await, fixed);

    // A change made through the other instance appears without a reload.
    api_put(&b, "checkout.limit", &json!(7)).await;
    wait_text(&client, "tr[data-key=\"checkout.limit\"] td:nth-child(2)", |t| t == "7").await;
    api_put(&b, "made.elsewhere", &json!("hello")).await;
    wait_text(&client, "tr[data-key=\"made.elsewhere\"] td:nth-child(2)", |t| t.contains("hello")).await;
    assert!(client.find(Locator::Css("#live:not(.off)")).await.is_ok(), "the live indicator is on");

    // Add a flag, then delete another.
    click(&client, "#add").await;
    type_into(&client, "#editor-key", "new.flag").await;
    click(&client, "#editor-save").await;
    wait_text(&client, "tr[data-key=\"new.flag\"] .state", |t| t == "enabled").await;
    assert_eq!(api_get(&b, "new.flag").await["defaultVariant"], json!("off"));
    click(&client, "tr[data-key=\"made.elsewhere\"] button.delete").await;
    click(&client, "#confirm-ok").await;
    wait_text(&client, "#flags tbody", |t| !t.contains("made.elsewhere")).await;
    assert_eq!(api_get(&b, "made.elsewhere").await, Value::Null);
    shot(&client, "05-after-changes").await;

    // History of one flag, from its row.
    click(&client, "tr[data-key=\"shout\"] button.history").await;
    let history = wait_text(&client, "#history tbody", |t| t.contains("true → false")).await;
    assert!(history.contains("created: true"), "{history}");
    shot(&client, "06-history").await;

    // Evaluate a flag for a context.
    click(&client, "#tab-evaluate").await;
    type_into(&client, "#eval-flag", "beta").await;
    type_into(&client, "#eval-context", r#"{"targetingKey": "u1", "email": "ada@example.com"}"#).await;
    click(&client, "#eval-run").await;
    let result = wait_text(&client, "#eval-result", |t| t.contains("TARGETING_MATCH")).await;
    let result: Value = serde_json::from_str(&result).unwrap();
    assert_eq!((result["value"].clone(), result["variant"].clone()), (json!(true), json!("on")));
    shot(&client, "07-evaluate").await;

    // The status panel.
    click(&client, "#tab-status").await;
    let status = wait_text(&client, "#status", |t| t.contains("Change hints")).await;
    assert!(status.contains("Started from backup\nno") || status.contains("Started from backup no"), "{status}");
    shot(&client, "08-status").await;

    // A form on another origin's page posting to the service changes nothing: it can carry
    // no token, and the browser marks it cross-site.
    let form = format!(
        "data:text/html,<form id=f method=post action='{}'><input name=v value=1></form><script>f.submit()</script>",
        a.url("/flags/shout")
    );
    client.goto(&form).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api_get(&a, "shout").await, json!(false), "a cross-site form changed a flag");

    // Back on the page, with the front page shot for the README.
    client.goto(&a.url("/admin/")).await.unwrap();
    wait_text(&client, "tr[data-key=\"beta\"] td:nth-child(2)", |t| t.contains("default on")).await;
    shot(&client, "00-overview").await;
    if std::env::var_os("DURABLE_UPDATE_DOCS_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-page.png");
        std::fs::copy(screenshots().join("admin-00-overview.png"), docs).unwrap();
    }
    client.close().await.unwrap();
}
