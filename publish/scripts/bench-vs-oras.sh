#!/usr/bin/env bash
# Measures (does not assert) a 2 MiB module push to a local registry with
# `publish` beside skopeo and the oras Python client, side by side in each run:
#   - a push to a new repository (every blob uploaded); skopeo copies the same
#     artifact from an OCI layout, its blob-info cache cleared first;
#   - a push to a new repository of a registry that holds the blobs in another
#     repository (publish and skopeo both mount them: no blob bytes sent);
#   - an unchanged re-push and a cached pull.
#
#   publish/scripts/bench-vs-oras.sh [RUNS]        (default 5 runs; median reported)
#
# Uses $PUBLISH when set, else target/host-release/publish when built (cargo
# build -p publish --profile host-release), else target/debug/publish. Starts
# its own registry on a free 127.0.0.1 port and stops it by PID on exit.
# skopeo (run as root) keeps its blob-info cache in
# /var/lib/containers/cache/blob-info-cache-v1.boltdb; the script deletes that
# file before each fresh skopeo copy (it holds only hints).
set -euo pipefail

runs=${1:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
publish=${PUBLISH:-target/host-release/publish}
[ -x "$publish" ] || publish=target/debug/publish
cargo build -q -p publish --example push_and_pull
[ -x "$publish" ] || cargo build -q -p publish --bins
python3 -c 'import oras.client' 2>/dev/null || { echo "bench: the oras Python package is missing (scripts/setup.sh)" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "bench: skopeo is missing (scripts/setup.sh)" >&2; exit 1; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scripts/registry.sh "$port" "$work/registry" >"$work/registry.log" 2>&1 &
registry_pid=$!
# The registry dies of the kill: its status (143) must not become the script's.
trap 'kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.05
done
host=127.0.0.1:$port

target/debug/examples/push_and_pull --write-module "$work/module.wasm" 2097152
echo '{"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":[]}}' >"$work/runtime-config.json"
export PUBLISH_CACHE_DIR=$work/cache DOCKER_CONFIG=$work/docker
skopeo_cache=/var/lib/containers/cache/blob-info-cache-v1.boltdb
[ "$(id -u)" = 0 ] || skopeo_cache=${XDG_DATA_HOME:-$HOME/.local/share}/containers/cache/blob-info-cache-v1.boltdb

# The artifact publish pushes, as an OCI layout skopeo copies from.
"$publish" push "$work/module.wasm" "$host/bench/layout-source:v1" --no-progress --json >/dev/null
"$publish" copy "$host/bench/layout-source:v1" "$work/layout:v1" --to-oci-layout >/dev/null
rm -rf "$PUBLISH_CACHE_DIR"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
elapsed() { echo "$2 - $1" | bc; }
skopeo_copy() { skopeo copy -q --dest-tls-verify=false "oci:$work/layout:v1" "docker://$host/$1" >/dev/null; }
check() { grep -q "$2" "$1" || { echo "bench: $3" >&2; cat "$1" >&2; exit 1; }; }

mount_note="  (0 blob bytes sent)"
ours=() again=() mounts=() skopeo=() skopeo_mounts=() theirs=() pulls=()
for i in $(seq "$runs"); do
    # A fresh repository each run, and no hint of the blobs: every blob is uploaded.
    rm -rf "$PUBLISH_CACHE_DIR"
    t0=$(now); "$publish" push "$work/module.wasm" "$host/bench/ours-$i:v1" --no-progress --json >"$work/push.json"; t1=$(now)
    ours+=("$(elapsed "$t0" "$t1")")
    check "$work/push.json" '"uploaded_bytes": 2' "the fresh push did not upload the module"
    rm -f "$skopeo_cache"
    t0=$(now); skopeo_copy "bench/skopeo-$i:v1"; t1=$(now)
    skopeo+=("$(elapsed "$t0" "$t1")")
    # Another new repository on the same registry: both tools mount.
    t0=$(now); "$publish" push "$work/module.wasm" "$host/bench/ours-mounted-$i:v1" --no-progress --json >"$work/mount.json"; t1=$(now)
    mounts+=("$(elapsed "$t0" "$t1")")
    grep -q '"from": "bench/ours-' "$work/mount.json" || mount_note="  (NOT mounted: uploaded again)"
    t0=$(now); skopeo_copy "bench/skopeo-mounted-$i:v1"; t1=$(now)
    skopeo_mounts+=("$(elapsed "$t0" "$t1")")
    t0=$(now); "$publish" push "$work/module.wasm" "$host/bench/ours-$i:v1" --no-progress --json >"$work/again.json"; t1=$(now)
    again+=("$(elapsed "$t0" "$t1")")
    check "$work/again.json" '"uploaded_bytes": 0' "the re-push uploaded blob bytes"
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
    check "$work/pull.json" '"downloaded_bytes": 0' "the cached pull downloaded blob bytes"
done

m() { printf '%s\n' "$@" | median; }
m_ours=$(m "${ours[@]}") m_skopeo=$(m "${skopeo[@]}")
m_mount=$(m "${mounts[@]}") m_skopeo_mount=$(m "${skopeo_mounts[@]}")
m_again=$(m "${again[@]}") m_theirs=$(m "${theirs[@]}") m_pull=$(m "${pulls[@]}")
echo "binary: $publish; 2 MiB module; median of $runs runs; wall time of whole processes"
printf '  %-52s %6.3f s\n' "publish push (new repository)" "$m_ours"
printf '  %-52s %6.3f s\n' "skopeo copy from an OCI layout (cache cleared)" "$m_skopeo"
printf '  %-52s %6.3f s%s\n' "publish push (new repository, blobs mounted)" "$m_mount" "$mount_note"
printf '  %-52s %6.3f s\n' "skopeo copy (new repository, blobs mounted)" "$m_skopeo_mount"
printf '  %-52s %6.3f s  (0 blob bytes sent)\n' "publish push (unchanged, again)" "$m_again"
printf '  %-52s %6.3f s\n' "oras-py push (python3 process)" "$m_theirs"
printf '  %-52s %6.3f s  (0 blob bytes fetched)\n' "publish pull (module in the cache)" "$m_pull"
printf '  %-52s %6.2f\n' "publish push / skopeo copy (fresh)" "$(echo "$m_ours / $m_skopeo" | bc -l)"
printf '  %-52s %6.2f\n' "publish push / skopeo copy (mounted)" "$(echo "$m_mount / $m_skopeo_mount" | bc -l)"
printf '  %-52s %6.2f\n' "publish push / oras-py push" "$(echo "$m_ours / $m_theirs" | bc -l)"
