//! Checks a Proxy-Wasm module before anything is uploaded, and derives the
//! runtime-config.json that the Wasm image spec stores beside it.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::errors::{Error, Result};

/// Istio's fetcher refuses modules larger than this; refusing them here saves a push.
pub const DEFAULT_SIZE_CAP: u64 = 256 * 1024 * 1024;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const ABI_EXPORT_PREFIX: &str = "proxy_abi_version_";

/// What validation learned about a module.
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    /// ABI versions the module exports, as runtime-config.json spells them ("v0.2.1").
    pub abi_versions: Vec<String>,
    pub size: u64,
    /// `sha256:<hex>` of the module bytes (WasmPlugin.sha256 for http(s) URLs).
    pub digest: String,
}

/// Validates `bytes` as a Proxy-Wasm module: magic, full Wasm validation, at
/// least one `proxy_abi_version_*` export, size at most `size_cap`.
pub fn validate(path: &Path, bytes: &[u8], size_cap: u64) -> Result<ModuleInfo> {
    let refuse = |reason: String| Error::InvalidModule {
        path: path.to_path_buf(),
        reason,
    };
    let size = bytes.len() as u64;
    if size > size_cap {
        return Err(refuse(format!(
            "{size} bytes is over the size cap of {size_cap} bytes (Istio loads at most 256 MiB; \
             raise with --max-size if your runtime allows more)"
        )));
    }
    if !bytes.starts_with(WASM_MAGIC) {
        return Err(refuse(
            "it does not start with the Wasm magic \\0asm (is this a .wasm file? \
             text .wat and component files are not accepted)"
                .into(),
        ));
    }
    let mut validator = wasmparser::Validator::new();
    validator
        .validate_all(bytes)
        .map_err(|e| refuse(format!("Wasm validation failed: {e}")))?;

    let mut abi_versions = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| refuse(format!("cannot parse: {e}")))?;
        if let wasmparser::Payload::ExportSection(exports) = payload {
            for export in exports {
                let export = export.map_err(|e| refuse(format!("bad export section: {e}")))?;
                if export.kind != wasmparser::ExternalKind::Func {
                    continue;
                }
                if let Some(version) = export.name.strip_prefix(ABI_EXPORT_PREFIX) {
                    abi_versions.push(format!("v{}", version.replace('_', ".")));
                }
            }
        }
    }
    if abi_versions.is_empty() {
        return Err(refuse(
            "it exports no proxy_abi_version_* function, so Envoy cannot tell which Proxy-Wasm \
             ABI it speaks (build it with the proxy-wasm SDK)"
                .into(),
        ));
    }
    abi_versions.sort();
    Ok(ModuleInfo {
        abi_versions,
        size,
        digest: sha256_digest(bytes),
    })
}

/// Reads and validates a module file.
pub fn load(path: &Path, size_cap: u64) -> Result<(Vec<u8>, ModuleInfo)> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let info = validate(path, &bytes, size_cap)?;
    Ok((bytes, info))
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// runtime-config.json as wasme and Istio users write it (camelCase keys).
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeConfig {
    #[serde(rename = "type")]
    pub runtime_type: String,
    #[serde(rename = "abiVersions")]
    pub abi_versions: Vec<String>,
    pub config: RuntimeConfigRoots,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeConfigRoots {
    #[serde(rename = "rootIds")]
    pub root_ids: Vec<String>,
}

pub const RUNTIME_TYPE_ENVOY: &str = "envoy_proxy";

impl RuntimeConfig {
    pub fn for_module(info: &ModuleInfo, root_ids: &[String]) -> Self {
        RuntimeConfig {
            runtime_type: RUNTIME_TYPE_ENVOY.into(),
            abi_versions: info.abi_versions.clone(),
            config: RuntimeConfigRoots {
                root_ids: root_ids.to_vec(),
            },
        }
    }

    /// Canonical bytes: identical inputs give identical digests.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Reads the runtime type and ABI versions from a user-supplied runtime-config.json,
/// accepting both spellings in use (abiVersions / abi_version(s)).
pub fn runtime_config_summary(bytes: &[u8]) -> Option<(String, Vec<String>)> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let runtime_type = value.get("type")?.as_str()?.to_string();
    let abi = ["abiVersions", "abi_versions", "abi_version", "abiVersion"]
        .iter()
        .find_map(|key| value.get(*key))
        .map(|v| match v {
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        })
        .unwrap_or_default();
    Some((runtime_type, abi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(exports: &str) -> Vec<u8> {
        wat::parse_str(format!("(module (memory 1) {exports})")).unwrap()
    }

    #[test]
    fn abi_versions_come_from_the_exports() {
        let bytes = module(
            r#"(func (export "proxy_abi_version_0_2_1")) (func (export "proxy_abi_version_0_1_0"))"#,
        );
        let info = validate(Path::new("m.wasm"), &bytes, DEFAULT_SIZE_CAP).unwrap();
        assert_eq!(info.abi_versions, ["v0.1.0", "v0.2.1"]);
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(info.digest, sha256_digest(&bytes));
        let config = RuntimeConfig::for_module(&info, &["root".into()]);
        assert_eq!(
            String::from_utf8(config.to_bytes()).unwrap(),
            r#"{"type":"envoy_proxy","abiVersions":["v0.1.0","v0.2.1"],"config":{"rootIds":["root"]}}"#
        );
    }

    #[test]
    fn refusals_name_the_reason() {
        let reason = |bytes: &[u8], cap| match validate(Path::new("m.wasm"), bytes, cap) {
            Err(Error::InvalidModule { reason, .. }) => reason,
            other => panic!("accepted: {other:?}"),
        };
        assert!(reason(b"not wasm", DEFAULT_SIZE_CAP).contains("magic"));
        assert!(reason(b"\0asm\x01\0\0\0\x05", DEFAULT_SIZE_CAP).contains("validation"));
        let no_abi = module(r#"(func (export "_start"))"#);
        assert!(reason(&no_abi, DEFAULT_SIZE_CAP).contains("proxy_abi_version"));
        // An ABI name on a global is not the function Envoy looks for.
        let global = module(r#"(global (export "proxy_abi_version_0_2_1") i32 (i32.const 0))"#);
        assert!(reason(&global, DEFAULT_SIZE_CAP).contains("proxy_abi_version"));
        let ok = module(r#"(func (export "proxy_abi_version_0_2_1"))"#);
        assert!(reason(&ok, 10).contains("size cap"));
    }

    #[test]
    fn user_runtime_configs_in_either_spelling() {
        let camel = br#"{"type":"envoy_proxy","abiVersions":["v0.2.1"]}"#;
        let snake = br#"{"type":"envoy_proxy","abi_version":"v0.2.0"}"#;
        assert_eq!(
            runtime_config_summary(camel),
            Some(("envoy_proxy".into(), vec!["v0.2.1".into()]))
        );
        assert_eq!(
            runtime_config_summary(snake),
            Some(("envoy_proxy".into(), vec!["v0.2.0".into()]))
        );
        assert_eq!(runtime_config_summary(b"[]"), None);
    }
}
