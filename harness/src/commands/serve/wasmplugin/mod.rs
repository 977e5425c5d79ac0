//! `harness serve --wasmplugin plugin.yaml...`: Istio WasmPlugin resources
//! (extensions.istio.io/v1alpha1) as one HTTP filter chain on the quick
//! form's listener. Every document is read, every image pulled and verified
//! and every module compiled before anything binds: a bad file starts nothing.

mod fetch;
mod order;
#[cfg(feature = "oci")]
mod pull;
mod spec;

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml_ng::Value;

use harness::{ByteString, CompiledModule, FilterModule, HarnessConfig, HarnessError};

use super::bootstrap::node::{Node, Notes};
use spec::{PluginSpec, Source};

/// The chain the files describe, in Istio's order.
pub(crate) struct Loaded {
    pub chain: Vec<(FilterModule, HarnessConfig)>,
    /// Per chain entry: url, resolved digests, cache use (for `/config_dump`).
    pub origins: Vec<serde_json::Value>,
    /// The WasmPlugin files and the local modules they name (for `--watch`).
    pub watched: Vec<PathBuf>,
}

/// Reads, orders, fetches and compiles every plugin in `files`.
pub(crate) fn load(files: &[PathBuf]) -> Result<Loaded, HarnessError> {
    let refuse = |message: String| {
        HarnessError::Usage(format!(
            "{message}\n(nothing was started; fix the WasmPlugin and run serve again)"
        ))
    };
    let mut plugins = Vec::new();
    for file in files {
        let mut notes = Notes::default();
        let read = read_file(file, &mut notes);
        for warning in &notes.warnings {
            eprintln!("harness serve: warning: {warning}");
        }
        plugins.extend(read.map_err(refuse)?);
    }
    if plugins.is_empty() {
        return Err(refuse(format!(
            "no WasmPlugin (apiVersion {}) in {}",
            spec::API_VERSION,
            shown(files)
        )));
    }
    for (i, plugin) in plugins.iter().enumerate() {
        if plugins[..i]
            .iter()
            .any(|p| p.qualified_name() == plugin.qualified_name())
        {
            return Err(refuse(format!(
                "{}: a second WasmPlugin named {} in namespace {}",
                plugin.place, plugin.name, plugin.namespace
            )));
        }
    }
    order::chain_order(&mut plugins);
    let fetcher = fetch::Fetcher::new().map_err(refuse)?;
    let mut loaded = Loaded {
        chain: Vec::new(),
        origins: Vec::new(),
        watched: files.to_vec(),
    };
    for plugin in &plugins {
        let at = |e: String| {
            refuse(format!(
                "{} ({}): {e}",
                plugin.place,
                plugin.qualified_name()
            ))
        };
        let fetched = fetcher.fetch(plugin).map_err(at)?;
        let module = CompiledModule::from_bytes(&plugin.qualified_name(), &fetched.bytes)
            .map_err(|e| at(format!("the module does not load: {e}")))?;
        if let Source::File(path) = &plugin.source {
            loaded.watched.push(PathBuf::from(path));
        }
        let mut origin = fetched.origin;
        origin["phase"] = plugin.phase.name().into();
        origin["priority"] = plugin.priority.into();
        eprintln!(
            "harness serve: WasmPlugin {} ({}, priority {}): {}",
            plugin.qualified_name(),
            plugin.phase.name(),
            plugin
                .priority
                .map_or("unset".to_string(), |p| p.to_string()),
            origin["manifest_digest"].as_str().map_or_else(
                || format!("{} read", plugin.url),
                |digest| format!(
                    "{} is {digest}{}",
                    plugin.url,
                    if origin["from_cache"] == true {
                        " (from the cache)"
                    } else {
                        ""
                    }
                )
            ),
        );
        loaded
            .chain
            .push((FilterModule::Wasm(module), config(plugin)));
        loaded.origins.push(origin);
    }
    Ok(loaded)
}

/// The plugin's Envoy PluginConfig as Istio writes it: name namespace.name,
/// root id pluginName, configuration the pluginConfig JSON.
fn config(plugin: &PluginSpec) -> HarnessConfig {
    let mut config = HarnessConfig::default();
    let p = &mut config.plugin;
    p.name = plugin.qualified_name();
    p.root_id.clone_from(&plugin.root_id);
    p.configuration = ByteString(plugin.configuration.clone());
    p.fail_open = plugin.fail_open;
    p.reload_on_failure = plugin.reload_on_failure;
    p.env.clone_from(&plugin.env);
    config
}

fn read_file(file: &Path, notes: &mut Notes) -> Result<Vec<PluginSpec>, String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the WasmPlugin file {shown}: {e}"))?;
    let mut plugins = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let place = format!("{shown}[{index}]");
        let value =
            Value::deserialize(document).map_err(|e| format!("{place}: is not valid YAML: {e}"))?;
        if value.is_null() {
            continue;
        }
        let mut document_notes = Notes::default();
        let read = spec::document(&Node::root(&value), &place, &mut document_notes);
        for warning in document_notes.warnings {
            notes.warn(format!("{place}: {warning}"));
        }
        if let Some(plugin) = read.map_err(|e| format!("{place}: {e}"))? {
            plugins.push(plugin);
        }
    }
    Ok(plugins)
}

fn shown(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
