#!/usr/bin/env bash
# A local OCI registry for users who have none: Debian's docker-registry
# (CNCF distribution) on 127.0.0.1 only, storage under a directory you choose.
#
#   scripts/registry.sh [PORT] [DATA_DIR]     (defaults: 5000, ./.registry)
#
# Runs in the foreground; stop it with Ctrl-C. Push to it with
#   publish push target/wasm32-wasip1/release/my_filter.wasm localhost:5000/filters/my-filter:v1
# (plain HTTP is automatic for localhost).
set -euo pipefail

port=${1:-5000}
data=${2:-.registry}
bin=${DOCKER_REGISTRY:-docker-registry}

if ! command -v "$bin" >/dev/null 2>&1 && [ -x /usr/bin/docker-registry ]; then
    bin=/usr/bin/docker-registry
fi
if ! command -v "$bin" >/dev/null 2>&1; then
    echo "registry.sh: docker-registry is not installed (run: scripts/setup.sh, or apt-get install docker-registry)" >&2
    exit 1
fi

mkdir -p "$data"
data=$(cd "$data" && pwd)
config="$data/config.yml"
# Never the packaged /etc/docker/registry/config.yml: it listens on every interface.
cat >"$config" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $data/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  relativeurls: true
YAML

echo "registry.sh: serving on http://127.0.0.1:$port (storage $data/storage); Ctrl-C stops it" >&2
exec "$bin" serve "$config"
