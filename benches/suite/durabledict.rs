//! Beside Python's durabledict on the same Redis.

use durable::DurableDict;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use crate::backends::{connect, unique, url_of};
use crate::{Config, Results, time_ns_async};

// ---- durabledict ----------------------------------------------------------------------

/// durabledict 0.9.4's Redis figures (benches/durabledict_bench.py, with the interpreter
/// scripts/bench.sh installs it into) beside ours on the same Redis, and their ratios.
pub(crate) async fn durabledict_figures(config: &Config, out: &mut Results) {
    let root = env!("CARGO_MANIFEST_DIR");
    let python =
        std::env::var("DURABLE_BENCH_PYTHON").unwrap_or_else(|_| format!("{root}/target/bench/venv/bin/python"));
    let importable = std::process::Command::new(&python)
        .args(["-c", "import durabledict, redis"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !importable {
        println!("durabledict: skipped ({python} cannot import durabledict; scripts/bench.sh installs it)");
        return;
    }
    let url = url_of("redis", std::path::Path::new(""));
    let mut command = std::process::Command::new(&python);
    command.arg(format!("{root}/benches/durabledict_bench.py")).arg(&url);
    if config.quick {
        command.arg("--quick");
    }
    let output = command.output().expect("running the durabledict benchmark");
    assert!(output.status.success(), "durabledict_bench.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let figures: BTreeMap<String, f64> = serde_json::from_slice(&output.stdout).expect("one JSON object of figures");
    for (name, value) in figures {
        out.put(name, value);
    }

    // Ours, on the same Redis: a read with autosync on (the default), hints healthy.
    let ns = unique("bench-durabledict-ours");
    let dict = DurableDict::<bool>::builder(connect(&url, &ns).await).build().await.unwrap();
    dict.insert("flag", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ops = if config.quick { 20_000 } else { 200_000 };
    let get_ns = time_ns_async(config.rounds(), ops, |_| {
        let dict = &dict;
        async move {
            black_box(dict.get("flag").await);
        }
    })
    .await;
    out.put("redis.get_autosync_hinted_ns", get_ns);
    let theirs = |name: &str| out.0.get(name).copied();
    let ratios = [
        ("durabledict.get_autosync_vs_durable_ratio", theirs("durabledict.get_autosync_us"), Some(get_ns / 1_000.0)),
        (
            "durabledict.sync_nochange_vs_durable_polled_ratio",
            theirs("durabledict.sync_nochange_us"),
            theirs("redis.sync_nochange_polled_us"),
        ),
        (
            "durabledict.sync_after_1_change_100k_vs_durable_delta_ratio",
            theirs("durabledict.sync_after_1_change_100k_ms").map(|ms| ms * 1_000.0),
            theirs("redis.sync_delta_us_100k"),
        ),
    ];
    for (name, theirs, ours) in ratios {
        if let (Some(theirs), Some(ours)) = (theirs, ours) {
            out.put(name, theirs / ours);
        }
    }
}
