#!/usr/bin/env bash
# The benchmark suite against the real servers: writes target/bench/results.json (a flat
# JSON object) and prints a table. Usage: scripts/bench.sh [--quick] [--backends a,b,...]
# (backends: memory, sqlite, postgres, mysql, redis, zk).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo bench --all-features --bench suite -- "$@"
