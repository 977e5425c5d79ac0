#!/usr/bin/env bash
# One place that installs what the build and the tests need on a fresh machine:
# the wasm32-wasip1 Rust target, rustfmt and clippy, rustup's llvm-tools
# (`harness test --coverage`), a real OCI registry
# (Debian's docker-registry), skopeo, htpasswd, the oras Python client and
# kubernetes-validate. Safe to run again: it only installs what is missing,
# and it says clearly what it could not install.
#
#   scripts/setup.sh            everything
#   scripts/setup.sh wasm       only the Rust target (enough for build/demo)
#   scripts/setup.sh coverage   the Rust target and llvm-tools (make coverage)
#   scripts/setup.sh serve-bench  nginx and wrk (make bench-serve)
set -u

want=${1:-all}
missing=()

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else return 1
    fi
}

ensure_wasm_target() {
    if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        return 0
    fi
    say "installing the Rust target wasm32-wasip1"
    rustup target add wasm32-wasip1 >&2 || missing+=("rust target wasm32-wasip1 (run: rustup target add wasm32-wasip1)")
}

# rustfmt and clippy: `make lint`, and the harness test that checks the crate
# `harness new` generates is formatted and lint-clean.
ensure_rust_components() {
    local need=()
    cargo fmt --version >/dev/null 2>&1 || need+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || need+=(clippy)
    [ ${#need[@]} -eq 0 ] && return 0
    say "installing the Rust components ${need[*]}"
    rustup component add "${need[@]}" >&2 ||
        missing+=("rust components ${need[*]} (run: rustup component add ${need[*]})")
}

# llvm-profdata and llvm-cov of the LLVM rustc is built on, in its sysroot:
# they turn the profiles of `harness test --coverage` into lcov and HTML.
ensure_llvm_tools() {
    local bin
    bin="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')/bin"
    [ -x "$bin/llvm-profdata" ] && [ -x "$bin/llvm-cov" ] && return 0
    say "installing the Rust component llvm-tools (harness test --coverage)"
    rustup component add llvm-tools >&2 ||
        missing+=("rust component llvm-tools, needed by harness test --coverage (run: rustup component add llvm-tools)")
}

# Installs these Debian packages (none given: nothing to do), or records why not.
apt_install() {
    [ $# -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        missing+=("$* (no apt-get here: install them with your package manager)")
        return 0
    fi
    say "installing Debian packages: $*"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
       ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; then
        missing+=("$* (apt-get install failed: run it as root)")
    fi
}

ensure_apt_packages() {
    local need=()
    command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
    command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
    command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    # harness serve's tests: real clients and servers.
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    apt_install "${need[@]}"
}

ensure_oras_python() {
    python3 -c 'import oras.client' >/dev/null 2>&1 && return 0
    say "installing the oras Python client (pip install oras)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore oras >&2 ||
        python3 -m pip install --quiet --user oras >&2 ||
        missing+=("python package oras (run: python3 -m pip install oras)")
}

# The real Kubernetes OpenAPI schemas, offline: the publish tests check the
# ConfigMap, DaemonSet and workload snippet `publish render` writes with it.
ensure_kubernetes_validate() {
    python3 -c 'import kubernetes_validate' >/dev/null 2>&1 && return 0
    say "installing kubernetes-validate (pip install kubernetes-validate)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate >&2 ||
        python3 -m pip install --quiet --user kubernetes-validate >&2 ||
        missing+=("python package kubernetes-validate (run: python3 -m pip install kubernetes-validate)")
}

ensure_node() {
    command -v npm >/dev/null 2>&1 && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        missing+=("node.js and npm (they build harness/as-filters: install Node 18+)")
        return 0
    fi
    say "installing Node.js and npm (the AssemblyScript test filter)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2 ||
        missing+=("nodejs npm (apt-get install failed: run it as root)")
}

# make bench-serve: a fast real upstream (nginx) and a load generator (wrk).
ensure_serve_bench() {
    local need=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    apt_install "${need[@]}"
}

ensure_wasm_target
if [ "$want" = all ] || [ "$want" = coverage ]; then
    ensure_llvm_tools
fi
if [ "$want" = all ]; then
    ensure_rust_components
    ensure_node
    ensure_apt_packages
    ensure_oras_python
    ensure_kubernetes_validate
fi

if [ "$want" = serve-bench ]; then
    ensure_serve_bench
fi

if [ ${#missing[@]} -gt 0 ]; then
    say "could NOT install:"
    for m in "${missing[@]}"; do say "  - $m"; done
    exit 1
fi
exit 0
