#!/usr/bin/env bash
# Measures (does not assert) a 2 MiB module push to a local registry with
# `publish` beside the oras Python client, an unchanged re-push, and a cached pull.
#
#   publish/scripts/bench-vs-oras.sh [RUNS]        (default 5 runs; median reported)
#
# Uses target/host-release/publish when built (cargo build -p publish --profile
# host-release), else target/debug/publish. Starts its own registry on a free
# 127.0.0.1 port and stops it by PID on exit.
set -euo pipefail

runs=${1:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
publish=target/host-release/publish
[ -x "$publish" ] || publish=target/debug/publish
cargo build -q -p publish --example push_and_pull
[ -x "$publish" ] || cargo build -q -p publish --bins
python3 -c 'import oras.client' 2>/dev/null || { echo "bench: the oras Python package is missing (scripts/setup.sh)" >&2; exit 1; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scripts/registry.sh "$port" "$work/registry" >"$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.05
done
host=127.0.0.1:$port

target/debug/examples/push_and_pull --write-module "$work/module.wasm" 2097152
echo '{"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":[]}}' >"$work/runtime-config.json"
export PUBLISH_CACHE_DIR=$work/cache DOCKER_CONFIG=$work/docker

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
elapsed() { echo "$2 - $1" | bc; }

ours=() again=() theirs=() pulls=()
for i in $(seq "$runs"); do
    # A fresh repository each run: every blob is uploaded.
    t0=$(now); "$publish" push "$work/module.wasm" "$host/bench/ours-$i:v1" --no-progress --json >"$work/push.json"; t1=$(now)
    ours+=("$(elapsed "$t0" "$t1")")
    t0=$(now); "$publish" push "$work/module.wasm" "$host/bench/ours-$i:v1" --no-progress --json >"$work/again.json"; t1=$(now)
    again+=("$(elapsed "$t0" "$t1")")
    grep -q '"uploaded_bytes": 0' "$work/again.json" || { echo "bench: the re-push uploaded blob bytes" >&2; exit 1; }
    t0=$(now)
    (cd "$work" && python3 -c "
import oras.client
c = oras.client.OrasClient(hostname='$host', insecure=True)
c.push(target='$host/bench/oras-$i:v1',
       manifest_config='runtime-config.json:application/vnd.module.wasm.config.v1+json',
       files=['runtime-config.json:application/vnd.module.wasm.config.v1+json',
              'module.wasm:application/vnd.module.wasm.content.layer.v1+wasm'], quiet=True)" >/dev/null)
    t1=$(now)
    theirs+=("$(elapsed "$t0" "$t1")")
    "$publish" pull "$host/bench/ours-$i:v1" -o "$work/pulled.wasm" --json >/dev/null
    t0=$(now); "$publish" pull "$host/bench/ours-$i:v1" -o "$work/pulled.wasm" --json >"$work/pull.json"; t1=$(now)
    pulls+=("$(elapsed "$t0" "$t1")")
    grep -q '"downloaded_bytes": 0' "$work/pull.json" || { echo "bench: the cached pull downloaded blob bytes" >&2; exit 1; }
done

m_ours=$(printf '%s\n' "${ours[@]}" | median)
m_again=$(printf '%s\n' "${again[@]}" | median)
m_theirs=$(printf '%s\n' "${theirs[@]}" | median)
m_pull=$(printf '%s\n' "${pulls[@]}" | median)
echo "binary: $publish; 2 MiB module; median of $runs runs; wall time of whole processes"
printf '  %-40s %6.3f s\n' "publish push (new repository)" "$m_ours"
printf '  %-40s %6.3f s  (0 blob bytes sent)\n' "publish push (unchanged, again)" "$m_again"
printf '  %-40s %6.3f s\n' "oras-py push (python3 process)" "$m_theirs"
printf '  %-40s %6.3f s  (0 blob bytes fetched)\n' "publish pull (module in the cache)" "$m_pull"
printf '  %-40s %6.2f\n' "publish push / oras-py push" "$(echo "$m_ours / $m_theirs" | bc -l)"
