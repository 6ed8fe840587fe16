//! Leases: what an acquire and a release cost beside one raw round trip of the store, and
//! how soon a waiter in another process gets a lease after its holder releases it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable::DurableDict;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::Results;
use crate::backends::{connect, forget, interleaved_us, unique};
use crate::raw::Raw;

async fn dict(url: &str, ns: &str) -> DurableDict<u64> {
    DurableDict::builder(connect(url, ns).await).autosync(false).hints(false).build().await.unwrap()
}

fn unix_us() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as f64 / 1_000.0
}

/// `<backend>.lease_acquire_release_vs_raw_ratio` (one acquire and one release vs the
/// store's cheapest raw request, interleaved rounds) and `<backend>.lease_handoff_p50_us`
/// / `_p99_us` (a release in this process → the waiter in another process holds the lease).
pub(crate) async fn lease_figures(
    rounds: usize,
    ops: usize,
    handoffs: usize,
    name: &str,
    url: &str,
    out: &mut Results,
) {
    let ns = unique(&format!("bench-{name}-lease"));
    let holder = dict(url, &ns).await;
    let raw = Raw::connect(name, url, &ns).await;
    let figures = interleaved_us(
        rounds,
        ops,
        vec![
            Box::new(|| {
                Box::pin(async {
                    let lease = holder.lease("k").ttl(Duration::from_secs(30)).no_wait().await.unwrap();
                    assert!(lease.release().await.unwrap());
                })
            }),
            Box::new(|| Box::pin(raw.roundtrip())),
        ],
    )
    .await;
    let [(lease_us, _), (raw_us, ratio)] = figures[..] else { unreachable!() };
    out.put(format!("{name}.lease_acquire_release_us"), lease_us);
    if !matches!(raw, Raw::None) {
        out.put(format!("{name}.lease_raw_roundtrip_us"), raw_us);
        out.put(format!("{name}.lease_acquire_release_vs_raw_ratio"), ratio);
    }
    if name != "memory" {
        let mut handoff = handoff_us(url, &ns, &holder, handoffs).await;
        handoff.sort_by(f64::total_cmp);
        out.put(format!("{name}.lease_handoff_p50_us"), crate::percentile(&handoff, 0.50));
        out.put(format!("{name}.lease_handoff_p99_us"), crate::percentile(&handoff, 0.99));
    }
    drop(holder);
    forget(name, url, &ns).await;
}

/// Hand-offs to a waiter in another process (this binary again, `--lease-waiter`): this
/// process takes the lease and tells the waiter to ask for it (a line on its stdin), waits
/// until the waiter is waiting, notes the wall clock and releases; the waiter notes the
/// wall clock the moment it holds the lease, prints it, releases it, and waits to be told
/// again. One machine, one wall clock: the difference is the hand-off.
async fn handoff_us(url: &str, ns: &str, holder: &DurableDict<u64>, n: usize) -> Vec<f64> {
    let mut waiter = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--lease-waiter", url, ns, &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut go = waiter.stdin.take().unwrap();
    let mut lines = BufReader::new(waiter.stdout.take().unwrap()).lines();
    let mut handoffs = Vec::with_capacity(n);
    for _ in 0..n {
        // The waiter released the last one before printing: this takes it at once.
        let lease = holder.lease("handoff").ttl(Duration::from_secs(30)).wait(Duration::from_secs(30)).await.unwrap();
        go.write_all(b"go\n").await.unwrap();
        // The waiter asks, finds it held, subscribes and waits: give it time to.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let released = unix_us();
        lease.release().await.unwrap();
        let line = lines.next_line().await.unwrap().expect("the waiter ended early");
        let acquired: f64 = line.strip_prefix("got ").expect("got <us>").parse().unwrap();
        handoffs.push(acquired - released);
    }
    drop(go);
    assert!(waiter.wait().await.unwrap().success());
    handoffs
}

/// The waiter process: `n` times, when told (a line on stdin), wait for the lease, release
/// it, and print when it was got.
pub(crate) async fn waiter(url: &str, ns: &str, n: usize) {
    let dict = dict(url, ns).await;
    let mut told = BufReader::new(tokio::io::stdin()).lines();
    for _ in 0..n {
        told.next_line().await.unwrap().expect("the holder ended early");
        let lease = dict.lease("handoff").ttl(Duration::from_secs(30)).wait(Duration::from_secs(30)).await.unwrap();
        let got = unix_us();
        lease.release().await.unwrap();
        println!("got {got}");
    }
}
