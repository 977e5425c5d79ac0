//! The list the node agent (`publish sync`) reads: which images to keep in the
//! module directory, with which pull secret, under which file name. YAML (or
//! JSON, which is YAML too).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::RenderError;
use super::input::FilterSpec;

pub const API_VERSION: &str = "publish.proxy-wasm-toolkit/v1alpha1";
pub const KIND: &str = "WasmModuleList";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeList {
    pub api_version: String,
    pub kind: String,
    pub modules: Vec<ModuleEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModuleEntry {
    /// The file under the module directory, as the EnvoyFilter names it.
    pub file_name: String,
    pub image: String,
    /// Name of the credentials to pull with (a Kubernetes docker-registry secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
    /// Manifest digest hex the image must have (set by `publish render --resolve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The list text inside a ConfigMap document of `text`, if it has one.
fn in_config_map(text: &str) -> Option<String> {
    serde_yaml_ng::Deserializer::from_str(text).find_map(|document| {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document).ok()?;
        if value.get("kind")?.as_str()? != "ConfigMap" {
            return None;
        }
        Some(
            value
                .get("data")?
                .get(super::node_agent::LIST_KEY)?
                .as_str()?
                .to_string(),
        )
    })
}

/// `<filter id>.wasm`: the id is unique per filter and already checked to be a safe file name.
pub fn file_name_for(filter_id: &str) -> String {
    format!("{filter_id}.wasm")
}

impl ModuleEntry {
    pub fn for_filter(filter: &FilterSpec, manifest_digest: Option<&str>) -> Self {
        ModuleEntry {
            file_name: file_name_for(&filter.id),
            image: filter.image.clone(),
            pull_secret: filter.pull_secret.clone(),
            sha256: manifest_digest.map(|d| d.trim_start_matches("sha256:").to_string()),
        }
    }
}

impl NodeList {
    pub fn new(modules: Vec<ModuleEntry>) -> Self {
        NodeList {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            modules,
        }
    }

    /// Reads and checks a list; errors name the entry and field. The list may
    /// also come inside the node agent's ConfigMap (the `-o DIR` file holding
    /// ConfigMap and DaemonSet), under the `node-agent.yaml` key.
    pub fn from_yaml(text: &str) -> Result<Self, RenderError> {
        let text = in_config_map(text).unwrap_or_else(|| text.to_string());
        let list: NodeList = serde_yaml_ng::from_str(&text).map_err(|e| RenderError::Yaml {
            document: 1,
            detail: e.to_string(),
        })?;
        if list.api_version != API_VERSION {
            return Err(RenderError::field(
                "apiVersion",
                format!(
                    "{:?} is not supported; use {API_VERSION:?}",
                    list.api_version
                ),
            ));
        }
        if list.kind != KIND {
            return Err(RenderError::field(
                "kind",
                format!("{:?} is not a {KIND}", list.kind),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in list.modules.iter().enumerate() {
            let at = |field: &str| format!("modules[{i}].{field}");
            let stem = entry.file_name.strip_suffix(".wasm").unwrap_or("");
            let safe = !stem.is_empty()
                && stem.len() <= 200
                && stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !stem.starts_with('.');
            if !safe {
                return Err(RenderError::field(
                    &at("fileName"),
                    format!(
                        "{:?} must be a plain file name ending in .wasm (letters, digits, '-', '_', '.')",
                        entry.file_name
                    ),
                ));
            }
            if !seen.insert(entry.file_name.as_str()) {
                return Err(RenderError::field(
                    &at("fileName"),
                    format!("{:?} is listed twice", entry.file_name),
                ));
            }
            crate::reference::parse(&entry.image)
                .map_err(|e| RenderError::field(&at("image"), e.to_string()))?;
            if let Some(hex) = &entry.sha256 {
                let ok = hex.len() == 64
                    && hex
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
                if !ok {
                    return Err(RenderError::field(
                        &at("sha256"),
                        "must be 64 lowercase hex digits (the manifest digest without `sha256:`)",
                    ));
                }
            }
        }
        Ok(list)
    }
}
