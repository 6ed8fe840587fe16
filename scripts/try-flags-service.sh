#!/usr/bin/env bash
# Starts examples/flags_service.rs as a newcomer would (cargo run, SQLite file), runs the
# README's curl commands against it (OFREP too), checks their answers, and stops it with Ctrl-C (SIGINT).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl; } >&2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
db=$(mktemp -d)/flags.db
base="http://127.0.0.1:$port"
cargo build --quiet --example flags_service
DURABLE_ADDR="127.0.0.1:$port" DURABLE_URL="sqlite://$db" target/debug/examples/flags_service >"$db.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

expect() { # expect WHAT ACTUAL WANTED
  if [ "$2" != "$3" ]; then echo "flags service: $1 answered '$2', expected '$3'" >&2; cat "$db.log" >&2; exit 1; fi
}
expect "PUT /flags/shout" "$(curl -s -X PUT "$base/flags/shout" -H 'content-type: application/json' -d 'true')" '{"version":1}'
expect "GET /hello" "$(curl -s "$base/hello")" 'HELLO, WORLD!'
expect "GET /flags" "$(curl -s "$base/flags")" '{"flags":{"shout":true},"version":1}'
expect "DELETE /flags/shout" "$(curl -s -X DELETE "$base/flags/shout")" '{"version":2}'
expect "GET /hello" "$(curl -s "$base/hello")" 'Hello, world.'
expect "GET /flags/shout" "$(curl -s -o /dev/null -w '%{http_code}' "$base/flags/shout")" '404'
expect "PUT /flags/beta" "$(curl -s -X PUT "$base/flags/beta" -H 'content-type: application/json' -d \
  '{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
    "targeting":{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"on"]}}')" '{"version":3}'
expect "POST /ofrep/v1/evaluate/flags/beta" \
  "$(curl -s -X POST "$base/ofrep/v1/evaluate/flags/beta" -d '{"context":{"email":"ada@example.com"}}')" \
  '{"key":"beta","value":true,"reason":"TARGETING_MATCH","variant":"on","metadata":{}}'

kill -INT $pid
wait $pid
trap - EXIT
grep -q "shutting down" "$db.log" || { echo "flags service: no graceful shutdown on Ctrl-C" >&2; exit 1; }

# SIGTERM, as an orchestrator stops it: it exits 0 after a graceful shutdown.
DURABLE_ADDR="127.0.0.1:$port" DURABLE_URL="sqlite://$db" target/debug/examples/flags_service >"$db.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
expect "GET /hello after a restart" "$(curl -s "$base/hello")" 'Hello, world.'
kill -TERM $pid
status=0; wait $pid || status=$?
trap - EXIT
expect "exit status on SIGTERM" "$status" '0'
grep -q "shutting down" "$db.log" || { echo "flags service: no graceful shutdown on SIGTERM" >&2; exit 1; }
echo "flags service: README commands ok, graceful shutdown on Ctrl-C and SIGTERM ok"
