#!/usr/bin/env bash
# Starts `durable serve` as a newcomer would (cargo run, SQLite file, an admin token from
# the environment), runs the README's curl commands against it (OFREP and the admin page
# too), checks their answers, and stops it with Ctrl-C (SIGINT), then with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl; } >&2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
base="http://127.0.0.1:$port"
cargo build --quiet -p durable-cli
# As the README: `export DURABLE_ADMIN_TOKENS=$(openssl rand -hex 24)`.
if command -v openssl >/dev/null; then token=$(openssl rand -hex 24); else token=$(python3 -c 'import secrets; print(secrets.token_hex(24))'); fi
export DURABLE_ADMIN_TOKENS=$token
start() { (cd "$dir" && DURABLE_ADDR="127.0.0.1:$port" exec "$OLDPWD/target/debug/durable" serve) >"$dir/log" 2>&1 & pid=$!; }
start
trap 'kill -INT $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "$base/ready" >/dev/null && break; sleep 0.1; done

expect() { # expect WHAT ACTUAL WANTED
  if [ "$2" != "$3" ]; then echo "flags service: $1 answered '$2', expected '$3'" >&2; cat "$dir/log" >&2; exit 1; fi
}
# The README's commands, with localhost:3000 replaced by the port this run got.
auth="authorization: Bearer $DURABLE_ADMIN_TOKENS"
expect "PUT /flags/shout" "$(curl -s -X PUT "$base/flags/shout" -H "$auth" -H 'content-type: application/json' -d 'true')" '{"version":1}'
expect "GET /hello" "$(curl -s "$base/hello")" 'HELLO, WORLD!'
expect "GET /flags" "$(curl -s "$base/flags")" '{"flags":{"shout":true},"version":1}'
expect "DELETE /flags/shout" "$(curl -s -X DELETE "$base/flags/shout" -H "$auth")" '{"version":2}'
expect "GET /hello" "$(curl -s "$base/hello")" 'Hello, world.'
expect "GET /flags/shout" "$(curl -s -o /dev/null -w '%{http_code}' "$base/flags/shout")" '404'
expect "PUT without a token" "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$base/flags/shout" -d 'true')" '401'
expect "PUT /flags/beta" "$(curl -s -X PUT "$base/flags/beta" -H "$auth" -H 'content-type: application/json' -d \
  '{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
    "targeting":{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"on"]}}')" '{"version":3}'
expect "POST /ofrep/v1/evaluate/flags/beta" \
  "$(curl -s -X POST "$base/ofrep/v1/evaluate/flags/beta" -d '{"context":{"email":"ada@example.com"}}')" \
  '{"key":"beta","value":true,"reason":"TARGETING_MATCH","variant":"on","metadata":{}}'
expect "GET /health" "$(curl -s "$base/health")" '{"status":"alive"}'
expect "GET /ready" "$(curl -s "$base/ready")" '{"ready":true}'
expect "GET /admin/" "$(curl -s -o /dev/null -w '%{http_code}' "$base/admin/")" '200'
curl -s "$base/metrics" | grep -q '^durable_snapshot_version' || { echo "flags service: no metrics" >&2; exit 1; }
[ -f "$dir/durable-flags.db" ] || { echo "flags service: no durable-flags.db in the working directory" >&2; exit 1; }

kill -INT $pid
status=0; wait $pid || status=$?
trap - EXIT
expect "exit status on Ctrl-C" "$status" '0'
grep -q "shutting down" "$dir/log" || { echo "flags service: no graceful shutdown on Ctrl-C" >&2; exit 1; }

# SIGTERM, as an orchestrator stops it: it exits 0 after a graceful shutdown.
start
trap 'kill -INT $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "$base/ready" >/dev/null && break; sleep 0.1; done
expect "GET /hello after a restart" "$(curl -s "$base/hello")" 'Hello, world.'
kill -TERM $pid
status=0; wait $pid || status=$?
trap - EXIT
expect "exit status on SIGTERM" "$status" '0'
grep -q "shutting down" "$dir/log" || { echo "flags service: no graceful shutdown on SIGTERM" >&2; exit 1; }
echo "flags service: README commands ok, graceful shutdown on Ctrl-C and SIGTERM ok"
