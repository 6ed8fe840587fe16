//! The `durable` command line: `copy` of a namespace from Redis to PostgreSQL, run as a
//! user runs it (the release binary, a process of its own, wall-clock time), beside
//! PostgreSQL's own fastest bulk path for the same rows (`COPY ... FROM STDIN` into a
//! plain table), alternating round by round.

use std::time::Instant;

use durable::backend::{Backend, Batch, Bytes};
use sqlx::Connection;

use crate::{Config, Results, median};

pub(crate) fn binary() -> Option<std::path::PathBuf> {
    let path = std::env::var("DURABLE_CLI_BIN").map_or_else(|_| "target/release/durable".into(), Into::into);
    std::path::Path::new(&path).exists().then_some(path)
}

pub(crate) async fn cli_figures(config: &Config, redis: &str, postgres: &str, out: &mut Results) {
    let Some(bin) = binary() else {
        eprintln!("bench: no durable binary (scripts/bench.sh builds it): the cli figures are left out");
        return;
    };
    let keys = if config.quick { 20_000 } else { 100_000 };
    let rounds = if config.quick { 1 } else { 3 };
    let ns = crate::backends::unique("bench-cli");
    let source = durable::connect(redis, &ns).await.unwrap();
    let rows: Vec<(String, Bytes)> = (0..keys)
        .map(|i| (format!("flag-{i:06}"), Bytes::from(format!(r#"{{"on": {}, "pct": {}}}"#, i % 2 == 0, i % 100))))
        .collect();
    for chunk in rows.chunks(1_000) {
        source.apply(Batch::puts(chunk.iter().cloned())).await.unwrap();
    }
    let mut pg = sqlx::PgConnection::connect(postgres).await.unwrap();
    let table = format!("durable_bench_bulk_{}", std::process::id());
    let mut text = String::with_capacity(keys * 48);
    for (key, value) in &rows {
        text.push_str(key);
        text.push_str("\t\\\\x");
        for byte in value.iter() {
            text.push_str(&format!("{byte:02x}"));
        }
        text.push('\n');
    }
    let (mut copies, mut bulks) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let dst = format!("{ns}-to-{round}");
        let started = Instant::now();
        let copied = std::process::Command::new(&bin).args(["copy", redis, &ns, postgres, &dst]).output().unwrap();
        copies.push(started.elapsed().as_secs_f64());
        assert!(copied.status.success(), "durable copy: {}", String::from_utf8_lossy(&copied.stderr));
        // The copy is the benchmark's, not a user's: gone, so runs do not pile up.
        durable::connect(postgres, &dst).await.unwrap().remove_namespace().await.unwrap();

        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}"))).execute(&mut pg).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE {table} (k TEXT PRIMARY KEY, v BYTEA NOT NULL)")))
            .execute(&mut pg)
            .await
            .unwrap();
        let started = Instant::now();
        let mut copy_in = pg.copy_in_raw(&format!("COPY {table} (k, v) FROM STDIN")).await.unwrap();
        copy_in.send(text.as_bytes()).await.unwrap();
        let loaded = copy_in.finish().await.unwrap();
        bulks.push(started.elapsed().as_secs_f64());
        assert_eq!(loaded, keys as u64);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}"))).execute(&mut pg).await.unwrap();
    source.remove_namespace().await.unwrap();
    let (copy, bulk) = (median(copies), median(bulks));
    out.put("cli.copy_keys_per_s_redis_to_postgres", keys as f64 / copy);
    out.put("cli.bulk_load_keys_per_s_postgres", keys as f64 / bulk);
    out.put("cli.copy_vs_bulk_load_ratio", copy / bulk);
}
