#!/usr/bin/env bash
# The project's test command: starts the stores the tests talk to (installing what is
# missing), then runs the same checks CI runs. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo test (all features)"
cargo test --workspace --all-features
echo "== facade without default features (the 'enable this feature' errors)"
cargo test -p durable --no-default-features --test facade
echo "== fuzz targets: they build (running them is by hand: see fuzz/README.md)"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo build --quiet --manifest-path fuzz/Cargo.toml --bins
echo "== quickstart example"
cargo run --quiet --example quickstart
echo "== flags service: the README's commands against the real binary"
scripts/try-flags-service.sh
echo "== benchmark suite, quick smoke run (no thresholds: CI machines are noisy)"
scripts/bench.sh --quick
