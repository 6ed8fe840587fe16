#!/usr/bin/env bash
# The benchmark suite against the real servers: writes target/bench/results.json (a flat
# JSON object) and prints a table. Usage: scripts/bench.sh [--quick] [--backends a,b,...]
# [--only read,memory,middleware,backends,propagation,journal,leases,oracle,cli,server,flags,durabledict]
# (backends: memory, sqlite, postgres, mysql, redis, zk).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
# durabledict 0.9.4 beside us, when Python and PyPI are at hand: a venv of its own.
venv=target/bench/venv
if command -v python3 >/dev/null && [[ ! -x $venv/bin/python ]]; then
  mkdir -p target/bench
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q durabledict==0.9.4 redis; } >&2; then
    echo "bench: could not install durabledict; its figures are left out" >&2
    rm -rf "$venv"
  fi
fi
# The `durable` binary, as users run it, for the command line's figures.
cargo build --release --quiet -p durable-cli
DURABLE_CLI_BIN="$PWD/target/release/durable" cargo bench --all-features --bench suite -- "$@"
