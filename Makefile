# The commands users type. `make demo` and `make test` work on a fresh machine:
# both install what is missing through scripts/setup.sh first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO      ?= cargo
WASM_DIR   := target/wasm32-wasip1/release
HARNESS    := target/debug/harness
DEMO_CONFIG := {"name":"resp-header-demo","value":"added by our filter"}

.PHONY: all setup setup-wasm build build-host demo test test-unit test-scenarios lint fmt clean publish registry build-as bench bench-serve new-filter coverage

all: build

# Everything the tests need (Rust wasm target, docker-registry, skopeo, oras).
setup:
	scripts/setup.sh all

# Only what building filters needs.
setup-wasm:
	scripts/setup.sh wasm

# Every example filter as a .wasm module, plus the harness's own test filters.
build: setup-wasm
	$(CARGO) build --target wasm32-wasip1 --release
	@ls -1 $(WASM_DIR)/*.wasm

# The harness and publish CLIs (dev profile; dependencies are optimised).
build-host:
	$(CARGO) build -p harness -p publish --bins

# The Alibaba Cloud Service Mesh demo, without a cluster: the filter built for
# wasm32-wasip1, loaded into the simulated Envoy, adding its header. Builds
# only what it runs: one filter, and the harness without OCI pulls (no TLS
# stack; `make test` adds them later without compiling wasmtime again).
demo: setup-wasm
	$(CARGO) build --target wasm32-wasip1 --release -p response-header
	$(CARGO) build -p harness --bin harness --no-default-features
	$(HARNESS) run $(WASM_DIR)/response_header.wasm \
	    --config '$(DEMO_CONFIG)' \
	    --request 'GET /details/123' -H 'host: details:9080'

# `cargo test --workspace` also builds target/debug/harness and publish (the
# integration tests need them), so the scenario runs reuse those binaries
# instead of building the host tools a second time with other features.
test: setup build test-unit test-scenarios
	@echo "make test: all passed"

test-unit:
	$(CARGO) test --workspace

FILTERS := $(patsubst filters/%/,%,$(sort $(dir $(wildcard filters/*/Cargo.toml))))

# Every filter's scenario files, run through the harness on the built .wasm
# files, then the same files on the native twins (the same crates built for the
# host), which proves the twin behaves like the module it is compared with.
AS_FILTER := harness/as-filters/add-header

# The AssemblyScript filter (a toolchain other than Rust), pinned by its package-lock.json.
build-as: setup
	cd $(AS_FILTER) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent asbuild

test-scenarios: build build-as
	@test -x $(HARNESS) || $(CARGO) build -p harness --bin harness
	$(HARNESS) test filters/*/tests harness/scenarios
	$(CARGO) build --lib $(addprefix -p ,$(FILTERS))
	# harness/scenarios stays wasm-only: the WAT and AssemblyScript filters have no native twin.
	$(HARNESS) test --native target/debug filters/*/tests

# Which lines of each filter's own sources its scenarios reach: the scenarios
# run on native twins built with -C instrument-coverage (in target/coverage);
# lcov and HTML per filter in target/coverage/report/<filter>/.
coverage:
	scripts/setup.sh coverage
	$(CARGO) build --quiet -p harness --bin harness
	$(HARNESS) test --coverage filters/*/tests

# A new filter crate in filters/$(NAME) from harness/templates/filter, which
# builds, tests and runs as generated: `make new-filter NAME=add-tenant`.
new-filter:
	@test -n "$(NAME)" || { echo "usage: make new-filter NAME=my-filter" >&2; exit 2; }
	$(CARGO) build --quiet -p harness --bin harness
	$(HARNESS) new "$(NAME)"

# Wasm against its native twin for the example filters (BENCHMARKS.md; JSON in
# target/bench/report.json). Builds both sides with the same release profile.
bench: setup-wasm
	scripts/bench.sh

# harness serve on real sockets under wrk, side by side in one run: nginx
# alone and nginx proxying (the baseline), serve with a no-op filter, and
# response-header, body-redact 64 KiB and jwt-auth as wasm and native twin;
# then a 60 s soak sampling serve's RSS (scripts/bench-serve.sh [s] [conns] [soak]).
bench-serve: setup-wasm
	scripts/bench-serve.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

REGISTRY ?=
TAG      ?= latest
PUBLISH  := target/debug/publish
# The last commit's time and hash: the same sources push the same digests.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
REVISION := $(shell git rev-parse HEAD 2>/dev/null)

# Push every built filter as $(REGISTRY)/<filter>:$(TAG) in the layout Istio loads.
publish:
	@test -n "$(REGISTRY)" || { echo "usage: make publish REGISTRY=host[:port]/path TAG=v0.1" >&2; exit 1; }
	@$(MAKE) --no-print-directory build build-host
	@for dir in filters/*/; do \
	    name=$$(basename "$$dir"); \
	    wasm=$(WASM_DIR)/$$(echo "$$name" | tr - _).wasm; \
	    test -f "$$wasm" || { echo "make publish: $$wasm is missing" >&2; exit 1; }; \
	    echo "== $$name"; \
	    $(PUBLISH) push "$$wasm" "$(REGISTRY)/$$name:$(TAG)" --image-version "$(TAG)" $(if $(REVISION),--revision $(REVISION)) || exit 1; \
	done

# A local registry on 127.0.0.1:5000 for users who have none (Ctrl-C stops it).
registry:
	scripts/registry.sh 5000
