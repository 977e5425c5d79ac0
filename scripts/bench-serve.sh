#!/usr/bin/env bash
# make bench-serve: harness serve on real sockets under load. One run, side
# by side, wrk at fixed connections on loopback against:
#   - nginx answering directly (the upstream alone),
#   - nginx proxying to that upstream (proxy_pass, keepalive; the baseline
#     serve is measured against, with as many worker processes as serve has
#     workers),
#   - harness serve with no filter (the router alone), and with a native
#     filter that does next to nothing (request-block refusing only TRACE),
#   - serve with response-header, body-redact (a 64 KiB JSON response with
#     card numbers to redact) and jwt-auth (an HS256 token), each as wasm
#     and as its native twin;
# then a soak: serve with the wasm response-header filter under wrk for
# SOAK seconds, its VmRSS sampled every 10 s. Everything binds 127.0.0.1
# and is stopped by its PID when the script ends.
# Usage: scripts/bench-serve.sh [seconds] [connections] [soak-seconds]
#        (defaults: 10 16 60; soak 0 skips it). ROUNDS=n (default 3; 0
#        skips them) adds rounds of the two target ratios, loaded in turn.
# BEFORE=path/to/an/older/harness adds its no-op and response-header rows
# to the same run, for a before/after.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-16}"
soak="${3:-60}"
workers=1
target="${CARGO_TARGET_DIR:-target}"
scripts/setup.sh serve-bench
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

filters=(response-header body-redact jwt-auth request-block)
for f in "${filters[@]}"; do
    cargo build --quiet --target wasm32-wasip1 --release -p "$f"
    cargo build --quiet --release -p "$f"
done
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

# The upstream: "ok" on /, a 64 KiB JSON document with card numbers on /redact.
python3 - "$work/redact.json" <<'EOF'
import json, sys
rows, size = [], 0
while size < 64 * 1024 - 200:
    row = {"id": len(rows), "card": "4111-1111-1111-%04d" % len(rows), "note": "x" * 40}
    rows.append(row)
    size += len(json.dumps(row)) + 2
open(sys.argv[1], "w").write(json.dumps(rows).ljust(64 * 1024))
EOF
up=$(free_port)
proxy=$(free_port)
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
        location = /redact { default_type application/json; alias $work/redact.json; }
    }
}
EOF
cat > "$work/nginx-proxy.conf" <<EOF
daemon off;
worker_processes $workers;
pid $work/nginx-proxy.pid;
error_log $work/error-proxy.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work;
    upstream backend { server 127.0.0.1:$up; keepalive 64; }
    server {
        listen 127.0.0.1:$proxy;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$nginx_bin" -c "$work/nginx.conf" -p "$work" &
upstream_pid=$!
pids+=($!)
"$nginx_bin" -c "$work/nginx-proxy.conf" -p "$work" &
proxy_pid=$!
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
wait_for "$proxy"

# An HS256 token valid for an hour, signed with the key jwt-auth is given.
hs_key='wDyGaFbQ-lenXv27XQ-hTqMtVrdxpe4J-HA5tWkx-no'
token=$(python3 - "$hs_key" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = base64.urlsafe_b64decode(sys.argv[1] + "=" * (-len(sys.argv[1]) % 4))
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "hs-1"}).encode())
claims = {"iss": "https://auth.example.com", "sub": "user-42", "aud": "shop-api",
          "iat": now - 60, "nbf": now - 60, "exp": now + 3600}
body = b64(json.dumps(claims).encode())
sig = b64(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
EOF
)
jwt_config=$(printf '{"providers":[{"issuer":"https://auth.example.com","audiences":["shop-api"],"jwks":{"keys":[{"kty":"oct","kid":"hs-1","alg":"HS256","k":"%s"}]}}],"claims_to_headers":[{"claim":"sub","header":"x-jwt-sub"}]}' "$hs_key")
redact_config='{"patterns":["\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b"],"replacement":"[REDACTED]","content_types":["application/json"],"max_body_bytes":131072}'

# cpu_ticks PID: CPU time (user + system, clock ticks) of a process and
# its children (nginx's workers under its master), all threads counted.
cpu_ticks() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        # Fields 14 and 15 of /proc/PID/stat, after the command in parentheses.
        total=$((total + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$pid/stat")))
    done
    echo "$total"
}

# run_wrk NAME PORT PATH [wrk args...]: one table row. With cpu_pid set, the
# row also gives that process's CPU time per request (steadier than
# requests/s when wrk and the server share two cores).
rows=()
run_wrk() {
    local name=$1 port=$2 path=$3
    shift 3
    local out before=""
    [ -n "${cpu_pid:-}" ] && before=$(cpu_ticks "$cpu_pid")
    out=$(wrk -t 2 -c "$connections" -d "${seconds}s" --latency "$@" "http://127.0.0.1:$port$path")
    local rps p50 p99 errors requests cpu="-"
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {$1=$1; printf "%s; ", $0}' <<<"$out")
    if [ -n "$before" ] && [ "${requests:-0}" -gt 0 ]; then
        cpu=$(python3 -c "import os, sys; t = int(sys.argv[2]) - int(sys.argv[1]); print(f'{t / os.sysconf(\"SC_CLK_TCK\") * 1e6 / int(sys.argv[3]):.1f}us')" \
            "$before" "$(cpu_ticks "$cpu_pid")" "$requests")
    fi
    rows+=("$name=$rps")
    cpus+=("$name=${cpu%us}")
    printf '| %-34s | %12s | %8s | %8s | %10s |%s\n' "$name" "$rps" "$p50" "$p99" "$cpu" "${errors:+ $errors}"
}
cpus=()
# lookup ARRAY NAME: the value kept for row NAME in rows or cpus.
lookup() {
    local -n kept=$1
    local row
    for row in "${kept[@]}"; do [ "${row%%=*}" = "$2" ] && echo "${row#*=}"; done
}
rps_of() { lookup rows "$1"; }
cpu_of() { lookup cpus "$1"; }

# start_serve PORT LOG ARGS...: serve in the background until it answers.
start_serve() {
    local port=$1 log=$2
    shift 2
    "${harness_bin:-$target/host-release/harness}" serve "$@" --concurrency "$workers" >/dev/null 2>"$log" &
    serve_pid=$!
    cpu_pid=$serve_pid
    pids+=("$serve_pid")
    wait_for "$port"
}
stop_serve() { kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; }

# serve_filter NAME FILE CONFIG PATH [wrk args...]: wasm and native rows.
serve_filter() {
    local name=$1 file=$2 config=$3 path=$4
    shift 4
    local side module port
    for side in wasm native; do
        if [ "$side" = wasm ]; then
            module="$target/wasm32-wasip1/release/$file.wasm"
        else
            module="$target/release/lib$file.so"
        fi
        port=$(free_port)
        start_serve "$port" "$work/serve-$file-$side.log" "$module" --config "$config" \
            --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port"
        run_wrk "serve, $name $side" "$port" "$path" "$@"
        stop_serve
    done
}

echo "harness serve under wrk: ${seconds} s each, $connections connections, 2 wrk threads, loopback"
echo "machine: $(nproc) cores; serve --concurrency $workers, nginx proxy $workers worker(s)"
echo
printf '| %-34s | %12s | %8s | %8s | %10s |\n' "path" "requests/s" "p50" "p99" "CPU/req"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "--------------" "----------" "----------" "------------"
cpu_pid=$upstream_pid run_wrk "nginx alone (the upstream)" "$up" /
cpu_pid=$proxy_pid run_wrk "nginx proxy_pass" "$proxy" /

# No filter: serve without a module is the connection manager with the
# router alone (streams still go through the filter manager).
port=$(free_port)
start_serve "$port" "$work/serve-router.log" --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port"
run_wrk "serve, no filter" "$port" /
stop_serve

# A native filter that does next to nothing (request-block refusing only
# TRACE: one header lookup per request).
port=$(free_port)
start_serve "$port" "$work/serve-none.log" "$target/release/librequest_block.so" \
    --config '{"methods":["TRACE"]}' --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port"
run_wrk "serve, no-op filter (native)" "$port" /
stop_serve

serve_filter response-header response_header '{"name":"x-bench","value":"on"}' /
serve_filter "body-redact 64 KiB" body_redact "$redact_config" /redact
serve_filter "jwt-auth HS256" jwt_auth "$jwt_config" / -H "authorization: Bearer $token"

if [ -n "${BEFORE:-}" ]; then
    harness_bin=$BEFORE
    port=$(free_port)
    start_serve "$port" "$work/serve-before-none.log" "$target/release/librequest_block.so" \
        --config '{"methods":["TRACE"]}' --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port"
    run_wrk "before: no-op filter (native)" "$port" /
    stop_serve
    port=$(free_port)
    start_serve "$port" "$work/serve-before-rh.log" "$target/wasm32-wasip1/release/response_header.wasm" \
        --config '{"name":"x-bench","value":"on"}' --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port"
    run_wrk "before: response-header wasm" "$port" /
    stop_serve
    harness_bin=
fi

ratio() { python3 -c "import sys; a, b = float(sys.argv[1] or 0), float(sys.argv[2] or 0); print(f'{a / b:.2f}' if b else 'n/a')" "$1" "$2"; }
echo
echo "wasm response-header / no filter: $(ratio "$(rps_of 'serve, response-header wasm')" "$(rps_of 'serve, no filter')") (target >= 0.90)"
echo "serve no filter / nginx proxy_pass: $(ratio "$(rps_of 'serve, no filter')" "$(rps_of 'nginx proxy_pass')") (target >= 0.50)"
echo "CPU per request, serve no filter / wasm response-header: $(ratio "$(cpu_of 'serve, no filter')" "$(cpu_of 'serve, response-header wasm')");" \
    "nginx proxy_pass / serve no filter: $(ratio "$(cpu_of 'nginx proxy_pass')" "$(cpu_of 'serve, no filter')")"

# Rounds: nginx proxying, serve with no filter and serve with the wasm
# response-header filter, all three up at once and loaded in turn (the
# order rotating), ROUNDS times for 5 s each; each round's two ratios, then
# their medians. One machine's other load moves all three alike within a
# round, so the medians are steadier than the single rows above.
rounds=${ROUNDS:-3}
if [ "$rounds" -gt 0 ]; then
    port_none=$(free_port)
    start_serve "$port_none" "$work/serve-round-none.log" --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port_none"
    pid_none=$serve_pid
    port_rh=$(free_port)
    start_serve "$port_rh" "$work/serve-round-rh.log" "$target/wasm32-wasip1/release/response_header.wasm" \
        --config '{"name":"x-bench","value":"on"}' --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port_rh"
    pid_rh=$serve_pid
    rps_at() { wrk -t 2 -c "$connections" -d 5s "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
    echo
    echo "rounds (5 s each, order rotating): nginx proxy_pass, serve no filter, serve response-header wasm"
    nofilter_ratios=()
    rh_ratios=()
    for r in $(seq "$rounds"); do
        declare -A got=()
        order=(proxy none rh)
        for k in $(seq 0 2); do
            which=${order[$(((k + r) % 3))]}
            case $which in
                proxy) got[proxy]=$(rps_at "$proxy") ;;
                none) got[none]=$(rps_at "$port_none") ;;
                rh) got[rh]=$(rps_at "$port_rh") ;;
            esac
        done
        a=$(ratio "${got[none]}" "${got[proxy]}")
        b=$(ratio "${got[rh]}" "${got[none]}")
        nofilter_ratios+=("$a")
        rh_ratios+=("$b")
        echo "round $r: proxy ${got[proxy]}, no filter ${got[none]}, response-header wasm ${got[rh]} requests/s;" \
            "no filter / proxy $a, wasm response-header / no filter $b"
        unset got
    done
    median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
    echo "medians over $rounds rounds: serve no filter / nginx proxy_pass $(median "${nofilter_ratios[@]}") (target >= 0.50)," \
        "wasm response-header / no filter $(median "${rh_ratios[@]}") (target >= 0.90)"
    kill "$pid_none" "$pid_rh" 2>/dev/null || true
    wait "$pid_none" "$pid_rh" 2>/dev/null || true
fi

if [ "$soak" -gt 0 ]; then
    port=$(free_port)
    start_serve "$port" "$work/serve-soak.log" "$target/wasm32-wasip1/release/response_header.wasm" \
        --config '{"name":"x-bench","value":"on"}' --upstream "http://127.0.0.1:$up" --listen "127.0.0.1:$port"
    rss() { awk '/^VmRSS/ {print $2}' "/proc/$serve_pid/status"; }
    samples="start $(rss) kB"
    wrk -t 2 -c "$connections" -d "${soak}s" "http://127.0.0.1:$port/" >"$work/soak.txt" &
    soak_wrk=$!
    for t in $(seq 10 10 "$soak"); do
        sleep 10
        samples="$samples, ${t}s $(rss) kB"
    done
    wait "$soak_wrk" || true
    echo
    echo "soak: serve, response-header wasm, ${soak} s under wrk ($(awk '/Requests\/sec/ {print $2}' "$work/soak.txt") requests/s)"
    echo "VmRSS: $samples"
    stop_serve
fi
