//! The module's interface against the host's: the ABI marker, the exports
//! a host requires, each import against the functions the target provides
//! for that ABI version (proxy-abi's tables, and the harness's own import
//! policy in `backend/mod.rs`), and each export against the callbacks the
//! host calls.

use wasmparser::ValType;

use super::module_info::{ModuleInfo, Signature};
use super::targets::Target;
use super::{Finding, Severity};
use crate::abi::{
    AbiVersion, ArgKind, CALLBACKS, CallbackResult, HOSTCALLS, WASI_FUNCTIONS, WASI_MODULES,
};
use crate::backend::{missing_required_export, refused_imports};

/// Exports Envoy's host calls that the harness's callback table does not
/// (yet) drive: proxy-wasm-cpp-host `WasmBase::getFunctions`
/// (`src/wasm.cc`) looks them up too. Names already in the table are
/// skipped where this is used, so the table gaining one changes nothing.
const ALSO_CALLED_BY_ENVOY: &[&str] = &[
    "proxy_validate_configuration",
    "proxy_on_foreign_function",
    "proxy_on_request_metadata",
    "proxy_on_response_metadata",
];

/// Exports the host uses outside the callbacks: start-up and allocation
/// (cpp-host `getFunctions` looks up `__wasm_call_ctors` too).
const START_AND_ALLOCATOR: &[&str] = &[
    "_initialize",
    "_start",
    "__wasm_call_ctors",
    "main",
    "__main_void",
    "malloc",
    "proxy_on_memory_allocate",
];

/// Adds the interface findings; returns the declared ABI version.
pub(crate) fn check(
    info: &ModuleInfo,
    target: &Target,
    findings: &mut Vec<Finding>,
) -> Option<AbiVersion> {
    let abi = AbiVersion::detect(info.func_exports.iter().map(|e| e.name.as_str()));
    match abi {
        None => findings.push(Finding::new(
            Severity::Error,
            "no-abi-version",
            "it exports no proxy_abi_version_* function, so Envoy cannot tell which Proxy-Wasm ABI \
             it speaks and refuses it",
            "build it with a Proxy-Wasm SDK (proxy-wasm for Rust, proxy-wasm-go-sdk, proxy-wasm-cpp-sdk)",
        )),
        Some(version) if !target.accepts(version) => findings.push(Finding::new(
            Severity::Error,
            "abi-version",
            format!(
                "it declares ABI {}, which {} does not load",
                version.as_str(),
                target.name
            ),
            "build it with an SDK release that targets an ABI version this Envoy loads",
        )),
        Some(_) => {}
    }
    if let Some(export) = missing_required_export(|name| info.exports(name)) {
        findings.push(Finding::new(
            Severity::Error,
            "missing-export",
            format!("it does not export `{export}`, which the host needs"),
            "build it with a Proxy-Wasm SDK; a hand-written module must export it",
        ));
    }
    check_imports(info, abi, findings);
    if let Some(version) = abi {
        check_exports(info, version, findings);
    }
    abi
}

fn check_imports(info: &ModuleInfo, abi: Option<AbiVersion>, findings: &mut Vec<Finding>) {
    let pairs = || {
        info.imports
            .iter()
            .map(|i| (i.module.as_str(), i.name.as_str()))
    };
    // Without a marker only names no version offers can be blamed.
    let refused: Vec<(&str, &str)> = match abi {
        Some(version) => refused_imports(version, pairs()).collect(),
        None => AbiVersion::ALL
            .iter()
            .fold(pairs().collect::<Vec<_>>(), |left, (version, _)| {
                let refused: Vec<_> = refused_imports(*version, left.iter().copied()).collect();
                left.into_iter().filter(|p| refused.contains(p)).collect()
            }),
    };
    for (module, name) in &refused {
        findings.push(refused_import_finding(module, name, abi));
    }
    for import in &info.imports {
        if refused.contains(&(import.module.as_str(), import.name.as_str())) {
            continue;
        }
        let what = format!("{}.{}", import.module, import.name);
        let Some(signature) = &import.signature else {
            findings.push(Finding::new(
                Severity::Error,
                "unknown-import",
                format!("it imports {what} as a memory, table or global; the host provides only functions"),
                "export the memory instead of importing it (the SDKs do)",
            ));
            continue;
        };
        match host_signature(&import.module, &import.name) {
            Some(expected) if &expected != signature => findings.push(Finding::new(
                Severity::Error,
                "import-signature",
                format!("it imports {what} as {signature}, but the host defines it as {expected}"),
                "update the SDK; the module was built against another definition",
            )),
            Some(_) => {}
            None if WASI_MODULES.contains(&import.module.as_str()) => findings.push(Finding::new(
                Severity::Warning,
                "wasi-unsupported",
                format!("it imports {what}, which Envoy's WASI subset does not implement: calls answer ENOSYS"),
                "make sure the filter does not depend on it (files, sockets and threads are not available)",
            )),
            None => {}
        }
    }
}

fn refused_import_finding(module: &str, name: &str, abi: Option<AbiVersion>) -> Finding {
    let what = format!("{module}.{name}");
    let offered_by = crate::abi::hostcall_versions(name).filter(|_| module == "env");
    match (offered_by, abi) {
        (Some(versions), Some(abi)) => Finding::new(
            Severity::Error,
            "import-not-in-abi",
            format!(
                "it imports {what}, which ABI {} does not offer (only {}), and declares ABI {}",
                abi.as_str(),
                versions
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                abi.as_str()
            ),
            "use the ABI's own function (e.g. proxy_continue_stream for proxy_continue_request), \
             or declare the ABI version that has it",
        ),
        _ => Finding::new(
            Severity::Error,
            "unknown-import",
            format!("it imports {what}, which Envoy does not provide: the module would not load"),
            if module == "env" {
                "remove the call, or provide it inside the module (an SDK or libc built for \
                 another host may pull it in)"
            } else if crate::abi::WASI_MODULES.contains(&module) {
                "Envoy registers only part of WASI (no sockets but accept/recv/send/shutdown, \
                 no threads); remove the dependency that needs this function"
            } else {
                "Envoy provides only `env` (Proxy-Wasm) and WASI (wasi_snapshot_preview1) imports; \
                 remove the dependency that needs this module"
            },
        ),
    }
}

fn value_type(kind: ArgKind) -> ValType {
    match kind {
        ArgKind::I64 | ArgKind::U64 => ValType::I64,
        ArgKind::U32 | ArgKind::Ptr | ArgKind::Size | ArgKind::I32 | ArgKind::Bool => ValType::I32,
    }
}

/// The signature the host gives an import it provides (None: not one).
fn host_signature(module: &str, name: &str) -> Option<Signature> {
    let signature = |params: Vec<ValType>, results: Vec<ValType>| Signature { params, results };
    if module == "env" {
        if let Some(spec) = HOSTCALLS.iter().find(|h| h.name == name) {
            let params = spec.args.iter().copied().map(value_type).collect();
            return Some(signature(params, vec![ValType::I32]));
        }
        return match name {
            "emscripten_notify_memory_growth" => Some(signature(vec![ValType::I32], vec![])),
            "pthread_equal" => Some(signature(vec![ValType::I32; 2], vec![ValType::I32])),
            _ => None,
        };
    }
    let spec = WASI_FUNCTIONS.iter().find(|w| w.name == name)?;
    let results = if spec.returns_errno {
        vec![ValType::I32]
    } else {
        vec![]
    };
    Some(signature(
        spec.args.iter().copied().map(value_type).collect(),
        results,
    ))
}

fn check_exports(info: &ModuleInfo, abi: AbiVersion, findings: &mut Vec<Finding>) {
    for export in &info.func_exports {
        let name = export.name.as_str();
        if let Some(spec) = CALLBACKS.iter().find(|c| c.export == name) {
            let expected = Signature {
                params: vec![ValType::I32; spec.arity_in(abi)],
                results: match spec.result {
                    CallbackResult::None => vec![],
                    CallbackResult::Bool | CallbackResult::Action => vec![ValType::I32],
                },
            };
            if let Some(actual) = export.signature.as_ref().filter(|s| **s != expected) {
                findings.push(Finding::new(
                    Severity::Error,
                    "export-signature",
                    format!(
                        "it exports {name} as {actual}; for ABI {} the host calls it as {expected}",
                        abi.as_str()
                    ),
                    "declare the ABI version the callbacks were written for, or update the SDK",
                ));
            }
            continue;
        }
        let is_marker = AbiVersion::ALL.iter().any(|(_, marker)| *marker == name);
        if is_marker || START_AND_ALLOCATOR.contains(&name) || ALSO_CALLED_BY_ENVOY.contains(&name)
        {
            continue;
        }
        findings.push(Finding::new(
            Severity::Warning,
            "never-called-export",
            format!("it exports {name}, which Envoy never calls"),
            if name.starts_with("proxy_on_") {
                "check the callback's name: the host calls only the proxy_on_* callbacks of the ABI"
            } else {
                "harmless; to keep the module small, do not export it"
            },
        ));
    }
}
