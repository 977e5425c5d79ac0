//! `publish render -o DIR`: a directory kubectl cannot misuse. Each of
//! `DIR/wasmplugin/` and `DIR/envoyfilter/` is applyable alone
//! (`kubectl apply -f DIR/wasmplugin/`); applying both would run the filter
//! twice, so they are never in one directory. The workload patch is not a
//! resource (it has no apiVersion/kind), so it sits in `DIR/patches/` for
//! `kubectl patch --patch-file`, beside a Deployment snippet showing the result.

use std::path::PathBuf;

use serde_json::Value;

use super::node_agent::{self, AgentOptions};
use super::output::{self, Part};
use super::{Bundle, MODULE_DIR, workload_patch};

/// One file of the directory: its path under DIR, its text, and the resources
/// kubectl would receive from it (empty for patches).
#[derive(Debug, Clone)]
pub struct DirectoryFile {
    /// Which `--only` part it belongs to.
    pub part: Part,
    pub path: PathBuf,
    pub text: String,
    pub resources: Vec<Value>,
}

pub const WASMPLUGIN_DIR: &str = "wasmplugin";
pub const ENVOYFILTER_DIR: &str = "envoyfilter";
pub const PATCHES_DIR: &str = "patches";

fn part_text(bundle: &Bundle, part: Part) -> anyhow::Result<String> {
    let files = output::files(bundle, &[part])?;
    Ok(files.into_iter().map(|f| f.text).collect())
}

/// Every file `-o DIR` writes, relative to DIR.
pub fn files(bundle: &Bundle, agent: &AgentOptions) -> anyhow::Result<Vec<DirectoryFile>> {
    let plugins: Vec<Value> = bundle
        .filters
        .iter()
        .map(|f| serde_json::to_value(&f.wasm_plugin))
        .collect::<Result<_, _>>()?;
    let envoy_filters: Vec<Value> = bundle
        .filters
        .iter()
        .map(|f| serde_json::to_value(&f.envoy_filter))
        .collect::<Result<_, _>>()?;
    let mut agent_resources = vec![node_agent::config_map(&bundle.node_list, &agent.namespace)?];
    if let Some(image) = &agent.image {
        agent_resources.push(node_agent::daemon_set(
            &bundle.node_list,
            &agent.namespace,
            image,
        ));
    }
    let mut agent_text = format!(
        "# The node agent, in namespace {}: the module list as a ConfigMap{}.\n\
         # The agent runs `publish sync` on every node, keeping {MODULE_DIR} (a hostPath) in step.\n",
        agent.namespace,
        if agent.image.is_some() {
            ", and the DaemonSet that reads it"
        } else {
            " (render with --agent-image IMAGE for the DaemonSet that reads it)"
        },
    );
    if bundle
        .node_list
        .modules
        .iter()
        .any(|m| m.pull_secret.is_some())
    {
        agent_text.push_str(&format!(
            "# Pull secrets are mounted from namespace {}: create them there.\n",
            agent.namespace
        ));
    }
    let agent_docs = agent_resources
        .iter()
        .map(node_agent::to_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    agent_text.push_str(&agent_docs.join("---\n"));

    let patch_text = part_text(bundle, Part::WorkloadPatch)?;
    Ok(vec![
        DirectoryFile {
            part: Part::WasmPlugin,
            path: PathBuf::from(WASMPLUGIN_DIR).join(Part::WasmPlugin.file_name()),
            text: part_text(bundle, Part::WasmPlugin)?,
            resources: plugins,
        },
        DirectoryFile {
            part: Part::EnvoyFilter,
            path: PathBuf::from(ENVOYFILTER_DIR).join(Part::EnvoyFilter.file_name()),
            text: part_text(bundle, Part::EnvoyFilter)?,
            resources: envoy_filters,
        },
        DirectoryFile {
            part: Part::NodeAgent,
            path: PathBuf::from(ENVOYFILTER_DIR).join(Part::NodeAgent.file_name()),
            text: agent_text,
            resources: agent_resources,
        },
        DirectoryFile {
            part: Part::WorkloadPatch,
            path: PathBuf::from(PATCHES_DIR).join(Part::WorkloadPatch.file_name()),
            text: patch_text,
            resources: Vec::new(),
        },
        DirectoryFile {
            part: Part::WorkloadPatch,
            path: PathBuf::from(PATCHES_DIR).join("deployment-snippet.yaml"),
            text: deployment_snippet(bundle)?,
            resources: Vec::new(),
        },
    ])
}

/// The patch applied to a workload of the first filter's kind, for reading or
/// pasting into a manifest kept in git (the name is a placeholder).
fn deployment_snippet(bundle: &Bundle) -> anyhow::Result<String> {
    let kind = bundle
        .filters
        .first()
        .map(|f| f.source.workload_kind.as_str())
        .unwrap_or("Deployment");
    let labels = bundle
        .filters
        .first()
        .map(|f| f.source.labels.clone())
        .unwrap_or_default();
    let mut snippet = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": { "name": "YOUR-WORKLOAD" },
        "spec": {
            "selector": { "matchLabels": labels },
            "template": { "metadata": { "labels": labels } },
        },
    });
    // apps/v1 StatefulSetSpec requires serviceName up to Kubernetes 1.32; the
    // snippet stays a complete object in the schema's eyes.
    if kind == "StatefulSet"
        && let Some(spec) = snippet
            .get_mut("spec")
            .and_then(serde_json::Value::as_object_mut)
    {
        spec.insert("serviceName".into(), "YOUR-HEADLESS-SERVICE".into());
    }
    let patch = serde_json::to_value(&bundle.workload_patch)?;
    if let (Some(template), Some(annotations)) = (
        snippet.pointer_mut("/spec/template/metadata"),
        patch.pointer("/spec/template/metadata/annotations"),
    ) && let Some(object) = template.as_object_mut()
    {
        object.insert("annotations".into(), annotations.clone());
    }
    Ok(format!(
        "# What {} looks like in a {kind} (only the parts the patch touches; merge into your own).\n\
         # The {} and {} annotations make Istio's injector mount the node's {MODULE_DIR}.\n{}",
        Part::WorkloadPatch.file_name(),
        workload_patch::USER_VOLUME,
        workload_patch::USER_VOLUME_MOUNT,
        node_agent::to_yaml(&snippet)?
    ))
}
