//! The hosts `harness check` can check for: Envoy release lines and the
//! Istio releases that ship them, each with the Proxy-Wasm ABI versions it
//! accepts and the wasm features its default runtime (V8) enables.
//!
//! ABI versions: every Envoy line here loads 0.1.0, 0.2.0 and 0.2.1
//! (proxy-wasm-cpp-host `WasmBase::registerCallbacks` and
//! `getFunctions` in `src/wasm.cc` branch on all three).
//!
//! Features: proxy-wasm-cpp-host (`src/v8/v8.cc`, `engine()`) turns off
//! Liftoff and sets the memory cap, and otherwise leaves V8's defaults.
//! Which wasm proposals those defaults include depends on the V8 revision
//! each Envoy line pins, which we have not confirmed line by line. So
//! every target gets only what V8 has shipped on by default for years
//! (WebAssembly 2.0: SIMD, bulk memory, reference types, multi-value,
//! sign extension, saturating conversions, mutable globals) and refuses
//! the rest. Newer V8s do ship some later proposals (tail calls, extended
//! constant expressions, relaxed SIMD, exception handling, memory64);
//! whether a given Envoy's V8 has them on is unconfirmed, so the stricter
//! answer stands, and `--allow-feature NAME` overrides it for a module
//! you have seen load in your Envoy. Threads (shared memory, atomics) and
//! wide arithmetic are refused outright: Envoy gives a module no threads,
//! and V8 has not shipped wide arithmetic.

use super::features::{Feature, WASM2_FEATURES, set_of};
use crate::abi::AbiVersion;

/// A host a module can be checked for.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The name `--target` takes, e.g. `envoy-1.36` or `istio-1.28`.
    pub name: &'static str,
    /// The Envoy release line it runs (itself, for an Envoy target).
    pub envoy: &'static str,
    /// ABI versions it loads.
    pub abi_versions: &'static [AbiVersion],
    /// Wasm features its V8 enables by default (see the module docs).
    pub features: &'static [Feature],
}

const ALL_ABI: &[AbiVersion] = &[AbiVersion::V0_1_0, AbiVersion::V0_2_0, AbiVersion::V0_2_1];

const fn envoy(name: &'static str) -> Target {
    Target {
        name,
        envoy: name,
        abi_versions: ALL_ABI,
        features: WASM2_FEATURES,
    }
}

const fn istio(name: &'static str, envoy_line: &'static str) -> Target {
    Target {
        name,
        envoy: envoy_line,
        abi_versions: ALL_ABI,
        features: WASM2_FEATURES,
    }
}

/// Every target, newest Envoy first. Istio's proxy is built from the Envoy
/// line named beside it (Istio's release notes give the Envoy each
/// release is based on).
pub const TARGETS: &[Target] = &[
    envoy("envoy-1.36"),
    envoy("envoy-1.35"),
    envoy("envoy-1.34"),
    envoy("envoy-1.33"),
    istio("istio-1.28", "envoy-1.36"),
    istio("istio-1.27", "envoy-1.35"),
    istio("istio-1.26", "envoy-1.34"),
    istio("istio-1.25", "envoy-1.33"),
];

/// The default target: the newest Envoy in the table.
pub fn default_target() -> &'static Target {
    &TARGETS[0]
}

/// The target called `name`; the error lists the names there are.
pub fn target_named(name: &str) -> Result<&'static Target, String> {
    TARGETS.iter().find(|t| t.name == name).ok_or_else(|| {
        format!(
            "unknown target {name}; known targets: {}",
            TARGETS
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

impl Target {
    /// Its features as a wasmparser set, plus `also` (from `--allow-feature`).
    pub(crate) fn feature_set(&self, also: &[&'static Feature]) -> wasmparser::WasmFeatures {
        set_of(self.features.iter().chain(also.iter().copied()))
    }

    /// Whether it loads modules of ABI `version`.
    pub fn accepts(&self, version: AbiVersion) -> bool {
        self.abi_versions.contains(&version)
    }
}
