#!/usr/bin/env bash
# make bench-serve: harness serve on real sockets under load. One run, side
# by side: wrk against nginx directly (the upstream alone), then through
# `harness serve` with the response-header filter as wasm and as its native
# twin, each for the same duration and connections. Everything binds
# 127.0.0.1 and is stopped by its PID when the script ends.
# Usage: scripts/bench-serve.sh [seconds] [connections]   (defaults: 10 16)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-16}"
target="${CARGO_TARGET_DIR:-target}"
scripts/setup.sh serve-bench
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --quiet --target wasm32-wasip1 --release -p response-header
cargo build --quiet --release -p response-header
cargo build --quiet --profile host-release -p harness

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

up=$(free_port)
cat > "$work/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work;
    server {
        listen 127.0.0.1:$up;
        location / { return 200 "ok"; }
    }
}
EOF
"$nginx_bin" -c "$work/nginx.conf" -p "$work" &
pids+=($!)

# Waits until something answers on the port.
wait_for() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "bench-serve: nothing answered on 127.0.0.1:$1" >&2
    exit 1
}
wait_for "$up"

config='{"name":"x-bench","value":"on"}'
run_wrk() {
    local name=$1 port=$2
    local out
    out=$(wrk -t 2 -c "$connections" -d "${seconds}s" --latency "http://127.0.0.1:$port/")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '| %-30s | %12s | %8s | %8s |\n' "$name" "$rps" "$p50" "$p99"
}

echo "harness serve under wrk: ${seconds} s each, $connections connections, 2 wrk threads, loopback"
echo "machine: $(nproc) cores; serve --concurrency 1 (one worker), nginx 1 worker"
echo
printf '| %-30s | %12s | %8s | %8s |\n' "path" "requests/s" "p50" "p99"
printf '|%s|%s|%s|%s|\n' "--------------------------------" "--------------" "----------" "----------"
run_wrk "nginx alone" "$up"
for side in wasm native; do
    if [ "$side" = wasm ]; then
        module="$target/wasm32-wasip1/release/response_header.wasm"
    else
        module="$target/release/libresponse_header.so"
    fi
    port=$(free_port)
    "$target/host-release/harness" serve "$module" --config "$config" \
        --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port" \
        --concurrency 1 >/dev/null 2>"$work/serve-$side.log" &
    pids+=($!)
    wait_for "$port"
    run_wrk "serve, response-header $side" "$port"
done
