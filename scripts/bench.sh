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
suite=harness/benches/suite.yaml
# The packages to build are the suite's modules (release/foo_bar.wasm is
# package foo-bar): one list, so a case added to the suite is built too.
pkgs=()
for f in $(sed -n 's|.*module: .*/release/\([a-z0-9_]*\)\.wasm.*|\1|p' "$suite" | sort -u); do
    pkgs+=(-p "${f//_/-}")
done
cargo build --quiet --target wasm32-wasip1 --release "${pkgs[@]}"
cargo build --quiet --release "${pkgs[@]}"
cargo build --quiet --profile host-release -p harness
mkdir -p "$target/bench"
exec "$target/host-release/harness" bench --suite "$suite" \
    --json-out "$target/bench/report.json" "$@"
