//! Wasm features: the names `harness check` uses for them, and which of
//! them a module needs beyond what a target's runtime enables, found by
//! validating with wasmparser.

use wasmparser::{Validator, WasmFeatures};

/// A wasm feature (a standardised proposal) by the name its proposal uses.
#[derive(Clone, Copy, Debug)]
pub struct Feature {
    /// The proposal's name, e.g. `memory64`.
    pub name: &'static str,
    /// wasmparser's flags for it.
    pub flags: WasmFeatures,
}

const fn feature(name: &'static str, flags: WasmFeatures) -> Feature {
    Feature { name, flags }
}

/// The features of WebAssembly 2.0 beyond the MVP, in V8 by default for
/// years (SIMD, the newest of them, since V8 9.1): every target enables them.
pub(crate) const WASM2_FEATURES: &[Feature] = &[
    feature("mutable-global", WasmFeatures::MUTABLE_GLOBAL),
    feature(
        "saturating-float-to-int",
        WasmFeatures::SATURATING_FLOAT_TO_INT,
    ),
    feature("sign-extension", WasmFeatures::SIGN_EXTENSION),
    feature("reference-types", WasmFeatures::REFERENCE_TYPES),
    feature("multi-value", WasmFeatures::MULTI_VALUE),
    feature("bulk-memory", WasmFeatures::BULK_MEMORY),
    feature("simd", WasmFeatures::SIMD),
];

/// Every later core-module feature wasmparser knows. Proposals that build
/// on another come before it (gc before function-references, ...), so
/// that [`needed_features`] drops the larger one first.
pub(crate) const LATER_FEATURES: &[Feature] = &[
    feature("stack-switching", WasmFeatures::STACK_SWITCHING),
    feature("gc", WasmFeatures::GC),
    feature("function-references", WasmFeatures::FUNCTION_REFERENCES),
    feature(
        "shared-everything-threads",
        WasmFeatures::SHARED_EVERYTHING_THREADS,
    ),
    feature("threads", WasmFeatures::THREADS),
    feature("memory64", WasmFeatures::MEMORY64),
    feature("multi-memory", WasmFeatures::MULTI_MEMORY),
    feature("wide-arithmetic", WasmFeatures::WIDE_ARITHMETIC),
    feature("tail-call", WasmFeatures::TAIL_CALL),
    feature("extended-const", WasmFeatures::EXTENDED_CONST),
    feature("relaxed-simd", WasmFeatures::RELAXED_SIMD),
    feature("exceptions", WasmFeatures::EXCEPTIONS),
    feature("legacy-exceptions", WasmFeatures::LEGACY_EXCEPTIONS),
    feature("custom-page-sizes", WasmFeatures::CUSTOM_PAGE_SIZES),
    feature("memory-control", WasmFeatures::MEMORY_CONTROL),
    feature("custom-descriptors", WasmFeatures::CUSTOM_DESCRIPTORS),
    feature("compact-imports", WasmFeatures::COMPACT_IMPORTS),
];

/// Every feature by name, 2.0's first.
pub fn all_features() -> impl Iterator<Item = &'static Feature> {
    WASM2_FEATURES.iter().chain(LATER_FEATURES)
}

/// The feature called `name`, if wasmparser knows it.
pub fn feature_named(name: &str) -> Option<&'static Feature> {
    all_features().find(|f| f.name == name)
}

/// What every target has, named or not: the MVP with floats and mutable
/// globals (wasmparser's WebAssembly 1.0).
pub(crate) fn mvp() -> WasmFeatures {
    WasmFeatures::WASM1
}

/// The set `features` enable, over the MVP.
pub(crate) fn set_of<'a>(features: impl Iterator<Item = &'a Feature>) -> WasmFeatures {
    features.fold(mvp(), |set, f| set | f.flags)
}

/// Every core-module feature at once.
fn everything() -> WasmFeatures {
    set_of(all_features())
}

/// Validates `bytes` with `features`; the validator's message when invalid.
pub(crate) fn validate(bytes: &[u8], features: WasmFeatures) -> Result<(), String> {
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What validating against a runtime's features found.
#[derive(Debug)]
pub(crate) enum FeatureVerdict {
    /// Valid with the runtime's features.
    Fits,
    /// Valid only with these further features; the runtime's validator
    /// message is kept to show where the first use is.
    Needs {
        features: Vec<&'static str>,
        first_error: String,
    },
    /// Not valid WebAssembly with any feature set.
    Invalid(String),
}

/// Which features beyond `enabled` the module needs: starting from every
/// feature on, each one not enabled is switched off in turn and kept off
/// when the module still validates. What stays on is needed.
pub(crate) fn needed_features(bytes: &[u8], enabled: WasmFeatures) -> FeatureVerdict {
    let first_error = match validate(bytes, enabled) {
        Ok(()) => return FeatureVerdict::Fits,
        Err(e) => e,
    };
    let mut set = everything() | enabled;
    if let Err(e) = validate(bytes, set) {
        return FeatureVerdict::Invalid(e);
    }
    let mut needed = Vec::new();
    for feature in all_features().filter(|f| !enabled.contains(f.flags)) {
        let without = set.difference(feature.flags) | enabled;
        if validate(bytes, without).is_ok() {
            set = without;
        } else {
            needed.push(feature.name);
        }
    }
    FeatureVerdict::Needs {
        features: needed,
        first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn names_are_distinct_and_known() {
        let mut names: Vec<&str> = all_features().map(|f| f.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(feature_named("memory64").is_some());
        assert!(feature_named("not-a-feature").is_none());
    }

    #[test]
    fn the_features_a_module_uses_are_named() {
        let wasm2 = set_of(WASM2_FEATURES.iter());
        let plain = wat("(module (func (result i32) i32.const 1))");
        assert!(matches!(
            needed_features(&plain, wasm2),
            FeatureVerdict::Fits
        ));
        let memory64 = wat("(module (memory i64 1))");
        match needed_features(&memory64, wasm2) {
            FeatureVerdict::Needs { features, .. } => assert_eq!(features, ["memory64"]),
            other => panic!("{other:?}"),
        }
        let both = wat("(module (memory 1 1 shared)
               (func (param i64 i64 i64 i64) (result i64 i64)
                 local.get 0 local.get 1 local.get 2 local.get 3 i64.add128))");
        match needed_features(&both, wasm2) {
            FeatureVerdict::Needs { features, .. } => {
                assert_eq!(features, ["threads", "wide-arithmetic"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_wasm_is_not_blamed_on_a_feature() {
        // A function whose body leaves the wrong type: invalid everywhere.
        let mut bytes = wat("(module (func (result i32) i32.const 1))");
        let at = bytes.iter().rposition(|b| *b == 0x41).unwrap();
        bytes[at] = 0x42; // i64.const
        assert!(matches!(
            needed_features(&bytes, set_of(WASM2_FEATURES.iter())),
            FeatureVerdict::Invalid(_)
        ));
    }
}
