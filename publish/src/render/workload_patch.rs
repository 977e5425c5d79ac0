//! The strategic-merge patch for the workload's pod template: Istio's injector
//! reads the `sidecar.istio.io/userVolume*` annotations and mounts the node's
//! module directory into the istio-proxy container, read-only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MODULE_DIR;

pub const USER_VOLUME: &str = "sidecar.istio.io/userVolume";
pub const USER_VOLUME_MOUNT: &str = "sidecar.istio.io/userVolumeMount";
pub const VOLUME_NAME: &str = "wasmfilters-dir";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadPatch {
    pub spec: PatchSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchSpec {
    pub template: PatchTemplate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchTemplate {
    pub metadata: PatchMetadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchMetadata {
    pub annotations: BTreeMap<String, String>,
}

/// The Kubernetes volume inside the annotation (a JSON array, the form every
/// Istio release's injection template accepts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserVolume {
    pub name: String,
    pub host_path: HostPath,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPath {
    pub path: String,
    /// DirectoryOrCreate: pods start even before the node agent's first run
    /// (Envoy then reports the missing module instead of the pod failing to start).
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserVolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
}

impl WorkloadPatch {
    pub fn new() -> Self {
        let volume = [UserVolume {
            name: VOLUME_NAME.into(),
            host_path: HostPath {
                path: MODULE_DIR.into(),
                kind: "DirectoryOrCreate".into(),
            },
        }];
        let mount = [UserVolumeMount {
            name: VOLUME_NAME.into(),
            mount_path: MODULE_DIR.into(),
            read_only: true,
        }];
        let mut annotations = BTreeMap::new();
        // Serialising these plain structs cannot fail; fall back to "" only to keep unwrap out.
        annotations.insert(
            USER_VOLUME.to_string(),
            serde_json::to_string(&volume).unwrap_or_default(),
        );
        annotations.insert(
            USER_VOLUME_MOUNT.to_string(),
            serde_json::to_string(&mount).unwrap_or_default(),
        );
        WorkloadPatch {
            spec: PatchSpec {
                template: PatchTemplate {
                    metadata: PatchMetadata { annotations },
                },
            },
        }
    }
}

impl Default for WorkloadPatch {
    fn default() -> Self {
        Self::new()
    }
}

/// The command that applies the patch to the workloads a deployment selects.
/// The labels select pods; the workload object usually carries the same labels
/// (as in Bookinfo), which is what `-l` matches.
pub fn apply_command(
    kind: &str,
    namespace: Option<&str>,
    labels: &BTreeMap<String, String>,
    patch_file: &str,
) -> String {
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let ns = namespace.map(|n| format!(" -n {n}")).unwrap_or_default();
    format!(
        "kubectl get {}{ns} -l {} -o name | xargs -r -I{{}} kubectl patch{ns} {{}} --type strategic --patch-file {patch_file}",
        kind.to_lowercase(),
        selector.join(",")
    )
}
