//! Two dicts on one store, as two instances of a service would be: one writes a flag, the
//! other hears of it through its background refresh and prints the change event.
//!
//! `cargo run --example quickstart` — no server needed: the store is a SQLite file in the
//! temporary directory. Set `DURABLE_URL` to try another store whose feature is compiled in,
//! e.g. `DURABLE_URL=postgres://postgres@127.0.0.1/test cargo run --example quickstart
//! --features postgres`.

use std::time::Duration;

use durable::{DurableDict, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flag {
    enabled: bool,
    rollout_percent: u8,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let default_file = std::env::temp_dir().join("durable-quickstart.db");
    let url = std::env::var("DURABLE_URL").unwrap_or_else(|_| format!("sqlite://{}", default_file.display()));
    println!("store: {}", durable::backend::redact_url(&url));
    let namespace = "quickstart-flags";

    // Instance A writes; it syncs by hand (autosync off), as a service does per request.
    let a = DurableDict::<Flag>::builder(durable::connect(&url, namespace).await?).autosync(false).build().await?;
    // Instance B applies changes in the background: at once where the store pushes change
    // hints (PostgreSQL, Redis, ZooKeeper), within the poll interval where it does not
    // (SQLite, MySQL).
    let b = DurableDict::<Flag>::builder(durable::connect(&url, namespace).await?)
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_millis(100))
        .build()
        .await?;
    let mut changes = b.watch_key("new-checkout");

    let version = a.insert("new-checkout", Flag { enabled: true, rollout_percent: 25 }).await?;
    println!("A wrote new-checkout at version {version}");

    match tokio::time::timeout(Duration::from_secs(10), changes.recv()).await? {
        Some(Event::Changed(change)) => {
            println!("B saw {} change at version {}: {:?} -> {:?}", change.key, change.version, change.old, change.new);
        }
        other => return Err(format!("expected a change event, got {other:?}").into()),
    }

    // B's per-request view: one consistent snapshot, read from memory.
    let view = b.snapshot();
    let flag = view.get("new-checkout").ok_or("flag missing in B")?;
    println!("B serves new-checkout: enabled={} rollout={}%", flag.enabled, flag.rollout_percent);

    a.remove("new-checkout").await?;
    Ok(())
}
