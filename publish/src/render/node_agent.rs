//! The node agent as Kubernetes objects: the module list in a ConfigMap (what
//! a controller can watch and kubectl can apply; no cluster serves our own
//! WasmModuleList kind) and a DaemonSet that runs `publish sync` on every node
//! from an image the user names, writing into the hostPath the workload patch
//! mounts into the sidecars.

use serde_json::{Value, json};

use super::node_list::NodeList;
use super::{MODULE_DIR, workload_patch};

/// The ConfigMap and DaemonSet name, and their `app.kubernetes.io/name` label.
pub const NAME: &str = "publish-node-agent";
/// The key of the list inside the ConfigMap (the file name in the mounted volume).
pub const LIST_KEY: &str = "node-agent.yaml";
const LIST_MOUNT: &str = "/etc/publish/list";
const SECRETS_MOUNT: &str = "/etc/publish/secrets";

/// Where the agent runs and from what.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOptions {
    pub namespace: String,
    /// An image with `publish` on its PATH; without one no DaemonSet is written.
    pub image: Option<String>,
}

fn metadata(namespace: &str) -> Value {
    json!({
        "name": NAME,
        "namespace": namespace,
        "labels": { "app.kubernetes.io/name": NAME },
    })
}

/// The ConfigMap holding the list `publish sync` reads, as YAML text.
pub fn config_map(list: &NodeList, namespace: &str) -> Result<Value, serde_yaml_ng::Error> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(namespace),
        "data": { LIST_KEY: super::yaml::to_string(list)? },
    }))
}

/// The DaemonSet running `publish sync --watch --prune` on every node. Each
/// pull secret named in the list is mounted as `<name>/.dockerconfigjson`, the
/// layout `--secrets-dir` reads; the Secrets must live in the agent's namespace.
pub fn daemon_set(list: &NodeList, namespace: &str, image: &str) -> Value {
    let mut secrets: Vec<&str> = list
        .modules
        .iter()
        .filter_map(|m| m.pull_secret.as_deref())
        .collect();
    secrets.sort_unstable();
    secrets.dedup();
    let mut args = vec![
        "sync".to_string(),
        format!("{LIST_MOUNT}/{LIST_KEY}"),
        "--dir".into(),
        MODULE_DIR.into(),
        "--watch".into(),
        "--prune".into(),
    ];
    if !secrets.is_empty() {
        args.extend(["--secrets-dir".into(), SECRETS_MOUNT.into()]);
    }
    let mut mounts = vec![
        json!({ "name": "module-list", "mountPath": LIST_MOUNT, "readOnly": true }),
        json!({ "name": workload_patch::VOLUME_NAME, "mountPath": MODULE_DIR }),
    ];
    let mut volumes = vec![
        json!({ "name": "module-list", "configMap": { "name": NAME } }),
        json!({
            "name": workload_patch::VOLUME_NAME,
            "hostPath": { "path": MODULE_DIR, "type": "DirectoryOrCreate" },
        }),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        let volume = format!("pull-secret-{i}");
        mounts.push(json!({
            "name": volume,
            "mountPath": format!("{SECRETS_MOUNT}/{secret}"),
            "readOnly": true,
        }));
        volumes.push(json!({
            "name": volume,
            "secret": {
                "secretName": secret,
                "items": [{ "key": ".dockerconfigjson", "path": ".dockerconfigjson" }],
            },
        }));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata(namespace),
        "spec": {
            "selector": { "matchLabels": { "app.kubernetes.io/name": NAME } },
            "template": {
                "metadata": { "labels": { "app.kubernetes.io/name": NAME } },
                "spec": {
                    "containers": [{
                        "name": "sync",
                        "image": image,
                        "command": ["publish"],
                        "args": args,
                        "volumeMounts": mounts,
                        "resources": {
                            "requests": { "cpu": "10m", "memory": "32Mi" },
                            "limits": { "memory": "256Mi" },
                        },
                    }],
                    "volumes": volumes,
                },
            },
        },
    })
}

/// `value` as YAML with `apiVersion`, `kind`, `metadata` and `name` first, as
/// Kubernetes manifests are read (serde_json's maps would sort them).
pub fn to_yaml(value: &Value) -> Result<String, serde_yaml_ng::Error> {
    super::yaml::to_string(&ordered(value))
}

fn ordered(value: &Value) -> serde_yaml_ng::Value {
    const FIRST: [&str; 4] = ["apiVersion", "kind", "metadata", "name"];
    match value {
        Value::Object(map) => {
            let mut out = serde_yaml_ng::Mapping::new();
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| (FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()), *k));
            for key in keys {
                out.insert(key.as_str().into(), ordered(&map[key]));
            }
            serde_yaml_ng::Value::Mapping(out)
        }
        Value::Array(items) => serde_yaml_ng::Value::Sequence(items.iter().map(ordered).collect()),
        Value::String(s) => serde_yaml_ng::Value::String(s.clone()),
        Value::Bool(b) => serde_yaml_ng::Value::Bool(*b),
        Value::Number(n) => serde_yaml_ng::to_value(n).unwrap_or(serde_yaml_ng::Value::Null),
        Value::Null => serde_yaml_ng::Value::Null,
    }
}
