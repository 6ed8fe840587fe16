//! The read path and memory: snapshot reads beside a `HashMap`, and heap bytes per entry.

use durable::backend::{Backend, Batch};
use durable::{DurableDict, MemoryBackend, MemoryStore};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::{Config, LIVE, Results, keys, time_ns};

// ---- read path ------------------------------------------------------------------------

pub(crate) async fn read_figures(config: &Config, out: &mut Results) {
    let keys = keys(10_000);
    let dict = DurableDict::<u64>::builder(Arc::new(MemoryBackend::in_store(MemoryStore::new(), "read")))
        .autosync(false)
        .build()
        .await
        .unwrap();
    dict.insert_many(keys.iter().cloned().zip(0u64..)).await.unwrap();
    let plain: HashMap<String, Arc<u64>> = keys.iter().cloned().zip((0u64..).map(Arc::new)).collect();
    let locked = RwLock::new(plain.clone());
    let lookups: Arc<Vec<String>> = Arc::new((0..4096).map(|i| keys[(i * 7919) % keys.len()].clone()).collect());
    let ops = if config.quick { 200_000 } else { 2_000_000 };
    let rounds = config.rounds();

    let snapshot = dict.snapshot();
    let snap = time_ns(rounds, ops, |i| {
        black_box(snapshot.get(black_box(lookups[i & 4095].as_str())));
    });
    let map = time_ns(rounds, ops, |i| {
        black_box(plain.get(black_box(lookups[i & 4095].as_str())));
    });
    let rw = time_ns(rounds, ops, |i| {
        black_box(locked.read().unwrap().get(black_box(lookups[i & 4095].as_str())).cloned());
    });
    out.put("read.snapshot_get_ns", snap);
    out.put("read.hashmap_get_ns", map);
    out.put("read.rwlock_hashmap_get_ns", rw);
    out.put("read.snapshot_vs_hashmap_ratio", snap / map);

    // Layered views over the same dict: a `get` reads the merged snapshot, whatever the
    // number of layers (1: the dict; 2: 100 overrides over it; 4: 10 environment-like and
    // 100 file-like overrides over it, 1,000 defaults under it).
    let fixed = |n: usize, value: u64| keys[..n].iter().map(move |key| (key.clone(), value)).collect::<Vec<_>>();
    let one = durable::Layered::builder().dict("store", dict.clone()).build().unwrap();
    let two =
        durable::Layered::builder().fixed("overrides", fixed(100, 1)).dict("store", dict.clone()).build().unwrap();
    let four = durable::Layered::builder()
        .fixed("env", fixed(10, 2))
        .fixed("file", fixed(100, 1))
        .dict("store", dict.clone())
        .defaults(fixed(1_000, 0))
        .build()
        .unwrap();
    let mut layered = Vec::new();
    for view in [&one, &two, &four] {
        let snapshot = view.layered_snapshot();
        layered.push(time_ns(rounds, ops, |i| {
            black_box(snapshot.get(black_box(lookups[i & 4095].as_str())));
        }));
    }
    // The ratio from rounds that alternate the two, so that a busy machine slows both alike:
    // the median of the per-round ratios.
    let merged = four.layered_snapshot();
    let ratios: Vec<f64> = (0..rounds * 3)
        .map(|_| {
            let plain = time_ns(1, ops, |i| {
                black_box(snapshot.get(black_box(lookups[i & 4095].as_str())));
            });
            let layered = time_ns(1, ops, |i| {
                black_box(merged.get(black_box(lookups[i & 4095].as_str())));
            });
            layered / plain
        })
        .collect();
    out.put("layered.get_ns_1layer", layered[0]);
    out.put("layered.get_ns_2layers", layered[1]);
    out.put("layered.get_ns_4layers", layered[2]);
    out.put("layered.vs_snapshot_get_ratio_4layers", crate::median(ratios));
    // What a change costs the view: the merge made again after one write to the dict.
    let merges = if config.quick { 50 } else { 500 };
    let started = std::time::Instant::now();
    for n in 0..merges {
        dict.insert(&keys[n * 13 % keys.len()], n as u64).await.unwrap();
        black_box(four.layered_snapshot());
    }
    let with_merge = started.elapsed().as_secs_f64() * 1e6 / merges as f64;
    let started = std::time::Instant::now();
    for n in 0..merges {
        dict.insert(&keys[n * 13 % keys.len()], n as u64 + 1).await.unwrap();
    }
    let write_only = started.elapsed().as_secs_f64() * 1e6 / merges as f64;
    out.put("layered.remerge_us_4layers", (with_merge - write_only).max(0.0));

    // A held snapshot right after 600 single-key writes (under a sixteenth of the map, so
    // not folded yet): lookups read the overlay of recent changes first.
    for n in 0..600 {
        dict.insert(&keys[n * 16], n as u64).await.unwrap();
    }
    let recent = dict.snapshot();
    out.put(
        "read.snapshot_get_ns_recent_changes",
        time_ns(rounds, ops, |i| {
            black_box(recent.get(black_box(lookups[i & 4095].as_str())));
        }),
    );

    // Reader threads taking the current snapshot per lookup while a writer task syncs
    // changes in: one reader (two threads with the writer's) and three (four threads).
    for (readers, name) in [(1, "2threads"), (3, "4threads")] {
        let (per_lookup, writes) = concurrent_reads(&dict, &keys, &lookups, readers, rounds, ops, None).await;
        out.put(format!("read.snapshot_get_ns_{name}"), per_lookup);
        out.put(format!("read.writes_during_{name}"), writes as f64);
    }
    // The same with the writer at 1,000 writes a second (a busy flag store's rate is far
    // below), and the per-lookup snapshot alone: what the 2-thread figure is made of.
    let paced = Some(std::time::Duration::from_millis(1));
    let (per_lookup, writes) = concurrent_reads(&dict, &keys, &lookups, 1, rounds, ops, paced).await;
    out.put("read.snapshot_get_ns_2threads_1000writes_per_s", per_lookup);
    out.put("read.writes_during_2threads_1000writes_per_s", writes as f64);
    out.put(
        "read.snapshot_get_ns_per_lookup_snapshot",
        time_ns(rounds, ops, |i| {
            black_box(dict.snapshot().get(black_box(lookups[i & 4095].as_str())).copied());
        }),
    );
}

/// ns per `dict.snapshot().get(..)` (the mean over `readers` threads, each on its own
/// blocking thread) while a writer task inserts as fast as it can (or one write per
/// `pace`); and the writes it made.
async fn concurrent_reads(
    dict: &DurableDict<u64>,
    keys: &[String],
    lookups: &Arc<Vec<String>>,
    readers: usize,
    rounds: usize,
    ops: usize,
    pace: Option<std::time::Duration>,
) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dict, stop, keys) = (dict.clone(), stop.clone(), keys.to_vec());
        tokio::spawn(async move {
            let mut ticks = pace.map(tokio::time::interval);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                dict.insert(&keys[(n as usize * 31) % keys.len()], n).await.unwrap();
                n += 1;
                match &mut ticks {
                    Some(ticks) => drop(ticks.tick().await),
                    None => tokio::task::yield_now().await,
                }
            }
            n
        })
    };
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (dict, lookups) = (dict.clone(), Arc::clone(lookups));
            tokio::task::spawn_blocking(move || {
                time_ns(rounds, ops, |i| {
                    black_box(dict.snapshot().get(black_box(lookups[i & 4095].as_str())).copied());
                })
            })
        })
        .collect();
    let mut total = 0.0;
    for thread in threads {
        total += thread.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    (total / readers as f64, writer.await.unwrap())
}

// ---- memory ---------------------------------------------------------------------------

pub(crate) async fn memory_figures(out: &mut Results) {
    let n = 100_000;
    let keys = keys(n);
    let backend = Arc::new(MemoryBackend::in_store(MemoryStore::new(), "mem"));
    backend.apply(Batch::puts(keys.iter().map(|k| (k.clone(), bytes::Bytes::from_static(b"true"))))).await.unwrap();
    let before = LIVE.load(Ordering::SeqCst);
    let dict = DurableDict::<bool>::builder(backend).autosync(false).hints(false).build().await.unwrap();
    let after = LIVE.load(Ordering::SeqCst);
    let raw: usize = keys.iter().map(|k| k.len() + 4).sum();
    assert_eq!(dict.snapshot().len(), n);
    out.put("memory.snapshot_bytes_per_entry", (after.saturating_sub(before)) as f64 / n as f64);
    out.put("memory.raw_bytes_per_entry", raw as f64 / n as f64);

    // 10,000 values of about 1 KB of JSON each (an object of settings, as users keep): the
    // dict's heap per entry beside the stored bytes (key + value), for the three ways to
    // hold them. The named figure keeps each value as its JSON text (`Box<RawValue>`,
    // checked, not parsed: a service that passes the JSON on, or parses it where it is
    // used) — what the dict itself adds to a large value. `serde_json::Value` is beside it
    // under `_json_value`: its tree (a `String` per key, a map per object) is about 4.3×
    // the text before any dict holds it.
    let n = 10_000;
    let keys = crate::keys(n);
    let values: Vec<bytes::Bytes> = (0..n).map(|i| bytes::Bytes::from(kilobyte_json(i))).collect();
    let raw: usize = keys.iter().zip(&values).map(|(k, v)| k.len() + v.len()).sum();
    out.put("memory.raw_bytes_per_entry_1kb_json", raw as f64 / n as f64);
    let (heap, dict) = loaded::<Box<serde_json::value::RawValue>>("mem-1kb-raw", &keys, &values).await;
    assert_eq!(dict.snapshot().get(&keys[3]).map(|v| v.get().len()), Some(values[3].len()));
    out.put("memory.snapshot_bytes_per_entry_1kb_json", heap);
    drop(dict);
    let (heap, dict) = loaded::<serde_json::Value>("mem-1kb", &keys, &values).await;
    assert_eq!(dict.snapshot().get(&keys[3]).and_then(|v| v["limits"]["burst"].as_u64()), Some(20));
    out.put("memory.snapshot_bytes_per_entry_1kb_json_value", heap);
    drop(dict);
    // And read into the struct a service would declare for them.
    let (heap, dict) = loaded::<Settings>("mem-1kb-typed", &keys, &values).await;
    assert_eq!(dict.snapshot().get(&keys[3]).map(|s| (s.id, s.limits.burst, s.variants.len())), Some((3, 20, 2)));
    out.put("memory.snapshot_bytes_per_entry_1kb_typed", heap);
    drop(dict);

    // Memory against value size: 10,000 `String` values of 16 B to 4 KB (JSON strings).
    for size in [16usize, 64, 256, 1024, 4096] {
        let values: Vec<bytes::Bytes> =
            (0..n).map(|i| bytes::Bytes::from(serde_json::to_vec(&format!("{i:0size$}")).unwrap())).collect();
        let raw: usize = keys.iter().zip(&values).map(|(k, v)| k.len() + v.len()).sum();
        let (heap, dict) = loaded::<String>(&format!("mem-{size}"), &keys, &values).await;
        assert_eq!(dict.snapshot().get(&keys[7]).map(String::len), Some(size));
        out.put(format!("memory.snapshot_bytes_per_entry_{size}b_string"), heap);
        out.put(format!("memory.raw_bytes_per_entry_{size}b_string"), raw as f64 / n as f64);
    }
}

/// A dict of `V` loaded from a store holding `keys` with `values`, and the heap it holds
/// per entry.
async fn loaded<V>(ns: &str, keys: &[String], values: &[bytes::Bytes]) -> (f64, DurableDict<V>)
where
    V: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let backend = Arc::new(MemoryBackend::in_store(MemoryStore::new(), ns));
    backend.apply(Batch::puts(keys.iter().cloned().zip(values.iter().cloned()))).await.unwrap();
    let before = LIVE.load(Ordering::SeqCst);
    let dict = DurableDict::<V>::builder(backend).autosync(false).hints(false).build().await.unwrap();
    let after = LIVE.load(Ordering::SeqCst);
    assert_eq!(dict.snapshot().len(), keys.len());
    ((after.saturating_sub(before)) as f64 / keys.len() as f64, dict)
}

/// What a service would declare for [`kilobyte_json`]'s objects.
#[derive(serde::Deserialize, serde::Serialize)]
#[allow(dead_code)]
struct Settings {
    id: u64,
    enabled: bool,
    rollout_percent: u8,
    owner: String,
    regions: Vec<String>,
    limits: Limits,
    variants: Vec<Variant>,
    description: String,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[allow(dead_code)]
struct Limits {
    requests_per_minute: u32,
    burst: u32,
    timeout_ms: u32,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[allow(dead_code)]
struct Variant {
    name: String,
    weight: u8,
}

/// About 1 KB of JSON: a settings object with numbers, booleans, short strings, a list and
/// a longer text, different per `i`.
fn kilobyte_json(i: usize) -> Vec<u8> {
    let value = serde_json::json!({
        "id": i,
        "enabled": i % 2 == 0,
        "rollout_percent": i % 100,
        "owner": format!("team-{}", i % 17),
        "regions": ["eu-west-1", "us-east-1", "ap-southeast-2"],
        "limits": {"requests_per_minute": 600 + i % 50, "burst": 20, "timeout_ms": 1500},
        "variants": [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
        "description": "x".repeat(700),
    });
    serde_json::to_vec(&value).unwrap()
}
