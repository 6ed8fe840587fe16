#!/usr/bin/env bash
# The benchmark suite against the real servers: writes target/bench/results.json (a flat
# JSON object) and prints a table. Usage: scripts/bench.sh [--quick] [--backends a,b,...]
# [--only read,memory,middleware,backends,propagation,journal,leases,oracle,cli,server,flags,durabledict]
# (backends: memory, sqlite, postgres, mysql, redis, zk).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
# `ss` reads the kernel's byte counters of PostgreSQL's connections for its load figures.
command -v ss >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2; } >&2
# Azure's figures go to an Azurite of the suite's own, stopped (with all it holds, in memory)
# when the run ends, so the namespaces a run leaves never slow the tests' Azurite.
scripts/services.sh azure-bench
trap 'scripts/services.sh stop-azure-bench' EXIT
export AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:10100
# durabledict 0.9.4 beside us, when Python and PyPI are at hand: a venv of its own.
venv=target/bench/venv
if command -v python3 >/dev/null && [[ ! -x $venv/bin/python ]]; then
  mkdir -p target/bench
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q durabledict==0.9.4 redis; } >&2; then
    echo "bench: could not install durabledict; its figures are left out" >&2
    rm -rf "$venv"
  fi
fi
# One release build of the suite and of the `durable` binary it runs as users run it (for
# the command line's and the service's figures), with one feature set, so that no crate is
# compiled twice.
suite=$(cargo build --release --quiet --all-features -p durable -p durable-cli --bench suite --bin durable \
  --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "suite" and message.get("executable"):
        print(message["executable"])')
[[ -x $suite ]] || { echo "bench: the suite was not built" >&2; exit 1; }
DURABLE_CLI_BIN="$PWD/target/release/durable" "$suite" --bench "$@"
