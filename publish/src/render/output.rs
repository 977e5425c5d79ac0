//! Turns a rendered bundle into YAML files, each with a short header that
//! says how to apply it.

use std::fmt::Write as _;

use serde::Serialize;

use super::plugin_settings::FilterType;
use super::{Bundle, MODULE_DIR, workload_patch};

/// The four outputs; `--only` picks some of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Part {
    #[value(name = "envoyfilter")]
    EnvoyFilter,
    #[value(name = "workload-patch")]
    WorkloadPatch,
    #[value(name = "node-agent")]
    NodeAgent,
    #[value(name = "wasmplugin")]
    WasmPlugin,
}

impl Part {
    pub const ALL: [Part; 4] = [
        Part::EnvoyFilter,
        Part::WorkloadPatch,
        Part::NodeAgent,
        Part::WasmPlugin,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Part::EnvoyFilter => "envoyfilter.yaml",
            Part::WorkloadPatch => "workload-patch.yaml",
            Part::NodeAgent => "node-agent.yaml",
            Part::WasmPlugin => "wasmplugin.yaml",
        }
    }
}

/// One output file: comment header plus one or more YAML documents.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFile {
    pub part: Part,
    pub text: String,
}

/// Renders the chosen parts (all when `parts` is empty), in a fixed order.
pub fn files(bundle: &Bundle, parts: &[Part]) -> Result<Vec<OutputFile>, serde_yaml_ng::Error> {
    let mut chosen: Vec<Part> = if parts.is_empty() {
        Part::ALL.to_vec()
    } else {
        parts.to_vec()
    };
    chosen.sort_unstable();
    chosen.dedup();
    chosen
        .into_iter()
        .map(|part| {
            Ok(OutputFile {
                part,
                text: file_text(bundle, part)?,
            })
        })
        .collect()
}

/// Where the EnvoyFilter header says the filters go.
fn insertion_points(bundle: &Bundle) -> &'static str {
    let network = |f: &super::RenderedFilter| f.filter_type == FilterType::Network;
    if bundle.filters.iter().all(network) {
        "tcp_proxy (a network filter)"
    } else if bundle.filters.iter().any(network) {
        "the router (HTTP filters) or tcp_proxy (network filters)"
    } else {
        "the router"
    }
}

fn names(bundle: &Bundle) -> String {
    bundle
        .filters
        .iter()
        .map(|f| f.source.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn documents<T: Serialize>(
    items: impl IntoIterator<Item = T>,
) -> Result<String, serde_yaml_ng::Error> {
    let docs = items
        .into_iter()
        .map(|item| super::yaml::to_string(&item))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

fn file_text(bundle: &Bundle, part: Part) -> Result<String, serde_yaml_ng::Error> {
    let mut header = String::new();
    let body = match part {
        Part::EnvoyFilter => {
            let _ = writeln!(
                header,
                "# Istio EnvoyFilter rendered by `publish render` from ASMFilterDeployment {}.\n\
                 # Inserts the Wasm filter before {}; Envoy loads the module from\n\
                 # {MODULE_DIR} (mounted by workload-patch.yaml, filled by `publish sync`).\n\
                 #   kubectl apply -f {}\n\
                 # Apply this or wasmplugin.yaml, not both: the filter would run twice.",
                names(bundle),
                insertion_points(bundle),
                part.file_name()
            );
            documents(bundle.filters.iter().map(|f| &f.envoy_filter))?
        }
        Part::WorkloadPatch => {
            let _ = writeln!(
                header,
                "# Strategic-merge patch for the pod template of the selected workloads: Istio's\n\
                 # injector mounts the node's {MODULE_DIR} into istio-proxy, read-only.\n\
                 # Applying it restarts the pods. For ASMFilterDeployment {}:",
                names(bundle)
            );
            let mut seen = Vec::new();
            for filter in &bundle.filters {
                let command = workload_patch::apply_command(
                    &filter.source.workload_kind,
                    filter.source.namespace.as_deref(),
                    &filter.source.labels,
                    part.file_name(),
                );
                if !seen.contains(&command) {
                    let _ = writeln!(header, "#   {command}");
                    seen.push(command);
                }
            }
            documents([&bundle.workload_patch])?
        }
        Part::NodeAgent => {
            let _ = writeln!(
                header,
                "# Modules the node agent keeps in {MODULE_DIR} on every node:\n\
                 #   publish sync {} --dir {MODULE_DIR}",
                part.file_name()
            );
            let secrets: Vec<&str> = bundle
                .node_list
                .modules
                .iter()
                .filter_map(|m| m.pull_secret.as_deref())
                .collect();
            if !secrets.is_empty() {
                let _ = writeln!(
                    header,
                    "# Pull secrets ({}): add --secrets-dir DIR, DIR holding <name>/.dockerconfigjson\n\
                     # (a docker-registry Secret mounted into the agent's pod).",
                    secrets.join(", ")
                );
            }
            documents([&bundle.node_list])?
        }
        Part::WasmPlugin => {
            let _ = writeln!(
                header,
                "# Istio WasmPlugin for ASMFilterDeployment {}: istio-agent pulls the image\n\
                 # itself, so it replaces envoyfilter.yaml, workload-patch.yaml and the node agent.\n\
                 #   kubectl apply -f {}",
                names(bundle),
                part.file_name()
            );
            let secrets: Vec<&str> = bundle
                .filters
                .iter()
                .filter_map(|f| f.wasm_plugin.spec.image_pull_secret.as_deref())
                .collect();
            if !secrets.is_empty() {
                let _ = writeln!(
                    header,
                    "# imagePullSecret must name a docker-registry Secret in the WasmPlugin's namespace ({}).",
                    secrets.join(", ")
                );
            }
            if bundle
                .filters
                .iter()
                .any(|f| f.wasm_plugin.spec.sha256.is_none())
            {
                let _ = writeln!(
                    header,
                    "# No sha256 pin: render with --resolve to pin the manifest digest."
                );
            }
            documents(bundle.filters.iter().map(|f| &f.wasm_plugin))?
        }
    };
    Ok(format!("{header}{body}"))
}
