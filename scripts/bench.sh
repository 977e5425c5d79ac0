#!/usr/bin/env bash
# make bench: every example filter in harness/benches/suite.yaml, wasm against
# its native twin. Builds what it measures with honest, matching profiles:
#   - filters for wasm32-wasip1 with profile.release (opt-level 3, fat LTO,
#     one codegen unit, panic=abort);
#   - their native twins with the SAME profile for the host (cdylib);
#   - the harness with profile.host-release (thin LTO).
# Usage: scripts/bench.sh [harness bench options, e.g. --only body-redact --json]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
filters=(response-header body-redact jwt-auth request-block key-auth cors request-metrics)
pkgs=()
for f in "${filters[@]}"; do pkgs+=(-p "$f"); done
cargo build --quiet --target wasm32-wasip1 --release "${pkgs[@]}"
cargo build --quiet --release "${pkgs[@]}"
cargo build --quiet --profile host-release -p harness
mkdir -p "$target/bench"
exec "$target/host-release/harness" bench --suite harness/benches/suite.yaml \
    --json-out "$target/bench/report.json" "$@"
