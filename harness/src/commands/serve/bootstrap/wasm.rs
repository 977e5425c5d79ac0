//! `envoy.filters.http.wasm`: the filter's `config` (Envoy's
//! envoy.extensions.wasm.v3.PluginConfig) as the harness's plugin
//! configuration, and its code compiled (once per distinct code, so
//! filters with the same code and VM settings share a VM as in Envoy).

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde_yaml_ng::Value;

use harness::{ByteString, CompiledModule, FilterModule, HarnessConfig};

use super::node::{Node, Notes, Parsed};

const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const BYTES_VALUE: &str = "type.googleapis.com/google.protobuf.BytesValue";
const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";

/// Modules compiled so far, by their code.
#[derive(Default)]
pub(crate) struct Modules {
    by_code: HashMap<Code, FilterModule>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Code {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl Modules {
    /// The module files loaded (what `--watch` watches).
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .by_code
            .keys()
            .filter_map(|code| match code {
                Code::File(path) => Some(path.clone()),
                Code::Inline(_) => None,
            })
            .collect();
        files.sort();
        files
    }
}

/// The wasm filter's message (`envoy.extensions.filters.http.wasm.v3.Wasm`).
pub(crate) fn filter(
    message: &Node,
    filter_name: &str,
    modules: &mut Modules,
    notes: &mut Notes,
) -> Parsed<(FilterModule, HarnessConfig)> {
    message.fields(&["config", "config_discovery"], &[], notes)?;
    if message.get("config_discovery").is_some() {
        return Err(message.error(
            "config_discovery (ECDS) needs a control plane; give the filter's config inline",
        ));
    }
    let config = message.need("config")?;
    config.fields(
        &[
            "name",
            "root_id",
            "vm_config",
            "configuration",
            "fail_open",
            "failure_policy",
        ],
        &[
            "capability_restriction_config",
            "allow_on_headers_stop_iteration",
        ],
        notes,
    )?;
    let mut harness = HarnessConfig::default();
    let plugin = &mut harness.plugin;
    // Envoy's plugin name is config.name; the filter's own name stands in
    // when it is empty so log lines still say which filter spoke.
    plugin.name = match config.str_at("name")? {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => filter_name.to_string(),
    };
    plugin.root_id = config.str_at("root_id")?.unwrap_or_default().to_string();
    if let Some(configuration) = config.get("configuration") {
        plugin.configuration = ByteString(any_bytes(&configuration, notes)?);
    }
    let fail_open = config.get("fail_open").map(|n| n.bool()).transpose()?;
    match config.str_at("failure_policy")? {
        None | Some("UNSPECIFIED") => plugin.fail_open = fail_open.unwrap_or(false),
        Some(policy) => {
            if fail_open.is_some() {
                notes.warn(format!(
                    "{}: both fail_open and failure_policy are set; failure_policy wins, as in Envoy",
                    config.path
                ));
            }
            match policy {
                "FAIL_CLOSED" => {}
                "FAIL_OPEN" => plugin.fail_open = true,
                "FAIL_RELOAD" => plugin.reload_on_failure = true,
                other => {
                    return Err(config.error(&format!(
                        "failure_policy {other} is not one of FAIL_CLOSED, FAIL_OPEN, FAIL_RELOAD"
                    )));
                }
            }
        }
    }
    let vm = config.need("vm_config")?;
    let module = vm_config(&vm, &mut harness, modules, notes)?;
    Ok((module, harness))
}

fn vm_config(
    vm: &Node,
    harness: &mut HarnessConfig,
    modules: &mut Modules,
    notes: &mut Notes,
) -> Parsed<FilterModule> {
    vm.fields(
        &[
            "vm_id",
            "runtime",
            "code",
            "configuration",
            "environment_variables",
        ],
        &["allow_precompiled", "nack_on_code_cache_miss"],
        notes,
    )?;
    let plugin = &mut harness.plugin;
    plugin.vm_id = vm.str_at("vm_id")?.unwrap_or_default().to_string();
    match vm.str_at("runtime")?.unwrap_or("envoy.wasm.runtime.v8") {
        "envoy.wasm.runtime.null" => {
            return Err(vm.error(
                "runtime envoy.wasm.runtime.null runs plugins compiled into Envoy itself; \
                 give a .wasm in code.local.filename with a wasm runtime",
            ));
        }
        "envoy.wasm.runtime.wasmtime" => {}
        runtime if runtime.starts_with("envoy.wasm.runtime.") => notes.warn(format!(
            "runtime {runtime}: harness serve runs every wasm filter on its own wasmtime engine"
        )),
        other => {
            return Err(vm.error(&format!(
                "runtime '{other}' is not an Envoy wasm runtime (envoy.wasm.runtime.v8, wamr, wasmtime, ...)"
            )));
        }
    }
    if let Some(configuration) = vm.get("configuration") {
        plugin.vm_config = ByteString(any_bytes(&configuration, notes)?);
    }
    if let Some(env) = vm.get("environment_variables") {
        env.fields(&["host_env_keys", "key_values"], &[], notes)?;
        for key in env.list_at("host_env_keys")? {
            let name = key.str()?;
            match std::env::var(name) {
                Ok(value) => {
                    plugin.env.insert(name.to_string(), value);
                }
                Err(_) => notes.warn(format!(
                    "{}: '{name}' is not set in serve's environment, so the filter does not see it",
                    key.path
                )),
            }
        }
        if let Some(pairs) = env.get("key_values") {
            let Value::Mapping(map) = pairs.value else {
                return Err(pairs.error("must be a mapping of names to values"));
            };
            for (name, value) in map {
                let (Some(name), Some(value)) = (name.as_str(), value.as_str()) else {
                    return Err(pairs.error("names and values must be strings"));
                };
                plugin.env.insert(name.to_string(), value.to_string());
            }
        }
    }
    let code = vm.need("code")?;
    modules.load(&code, &plugin.name, notes)
}

impl Modules {
    /// `code.local` (a file, or the bytes inline), compiled once per code.
    fn load(&mut self, code: &Node, name: &str, notes: &mut Notes) -> Parsed<FilterModule> {
        code.fields(&["local", "remote"], &[], notes)?;
        if code.get("remote").is_some() {
            return Err(code.error(
                "code.remote downloads the module over HTTP; download it yourself and give code.local.filename",
            ));
        }
        let local = code.need("local")?;
        local.fields(&["filename", "inline_bytes", "inline_string"], &[], notes)?;
        let key = if let Some(file) = local.str_at("filename")? {
            let path = std::fs::canonicalize(file).map_err(|e| {
                local.error(&format!(
                    "cannot open the module '{file}': {e} (a relative path is from the directory serve runs in)"
                ))
            })?;
            Code::File(path)
        } else if let Some(text) = local.str_at("inline_bytes")? {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| local.error(&format!("inline_bytes is not base64: {e}")))?;
            Code::Inline(bytes)
        } else if let Some(text) = local.str_at("inline_string")? {
            Code::Inline(text.as_bytes().to_vec())
        } else {
            return Err(local.error("give filename, inline_bytes or inline_string"));
        };
        if let Some(module) = self.by_code.get(&key) {
            return Ok(module.clone());
        }
        let compiled = match &key {
            Code::File(path) => FilterModule::from_file(path),
            Code::Inline(bytes) => CompiledModule::from_bytes(name, bytes).map(FilterModule::Wasm),
        };
        let module =
            compiled.map_err(|e| local.error(&format!("the module does not load: {e}")))?;
        self.by_code.insert(key, module.clone());
        Ok(module)
    }
}

/// A `google.protobuf.Any` as the bytes the plugin receives: a
/// StringValue's text, a BytesValue's bytes; a Struct as JSON text.
fn any_bytes(node: &Node, notes: &mut Notes) -> Parsed<Vec<u8>> {
    let Value::Mapping(_) = node.value else {
        return Err(node.error(&format!(
            "must be a google.protobuf.Any, such as {{\"@type\": \"{STRING_VALUE}\", \"value\": \"...\"}}"
        )));
    };
    node.fields(&["@type", "value"], &[], notes)?;
    let kind = node.need("@type")?.str()?;
    let value = node.get("value");
    match kind {
        STRING_VALUE => Ok(value
            .map(|v| v.str().map(|s| s.as_bytes().to_vec()))
            .transpose()?
            .unwrap_or_default()),
        BYTES_VALUE => match value {
            Some(v) => base64::engine::general_purpose::STANDARD
                .decode(v.str()?.trim())
                .map_err(|e| v.error(&format!("a BytesValue's value must be base64: {e}"))),
            None => Ok(Vec::new()),
        },
        STRUCT => {
            notes.warn(format!(
                "{}: a google.protobuf.Struct reaches the plugin as JSON text (as Istio's pluginConfig does; \
                 Envoy itself would pass the Struct's protobuf encoding)",
                node.path
            ));
            let json = match value {
                Some(v) => serde_json::to_vec(v.value)
                    .map_err(|e| v.error(&format!("cannot be written as JSON: {e}")))?,
                None => b"{}".to_vec(),
            };
            Ok(json)
        }
        other => Err(node.error(&format!(
            "configuration of type {other} is not taken; use {STRING_VALUE} (the plugin gets its text), \
             {BYTES_VALUE} or {STRUCT}"
        ))),
    }
}
