//! The Kubernetes core objects `render -o DIR` writes for kubectl (the node
//! agent's ConfigMap and DaemonSet), checked against the Kubernetes API's own
//! OpenAPI definitions: k8s-openapi generates its types, and their schemars
//! schemas, from the API's published spec (here Kubernetes 1.33). The schemas
//! are inlined into one tree per kind and walked by the in-tree checker
//! (schema.rs) as a CRD's are, so a field the API server would prune is
//! reported too.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use schemars::JsonSchema;
use serde_json::Value;

use super::schema::{self, SchemaError};

/// The Kubernetes release whose schemas k8s-openapi's enabled feature carries.
pub const KUBERNETES_VERSION: &str = "1.33";

/// Schemas of the core kinds render writes, by (apiVersion, kind).
pub struct CoreSchemas {
    by_kind: BTreeMap<(&'static str, &'static str), Value>,
}

fn inlined<T: JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::openapi3()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

impl CoreSchemas {
    pub fn new() -> Self {
        let by_kind = BTreeMap::from([
            (("v1", "ConfigMap"), inlined::<ConfigMap>()),
            (("apps/v1", "DaemonSet"), inlined::<DaemonSet>()),
            (("apps/v1", "Deployment"), inlined::<Deployment>()),
            (("apps/v1", "StatefulSet"), inlined::<StatefulSet>()),
        ]);
        CoreSchemas { by_kind }
    }

    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        self.by_kind.contains_key(&(api_version, kind))
    }

    /// Checks a whole object (apiVersion, kind and metadata are in the schema).
    pub fn check(&self, resource: &Value) -> Result<(), SchemaError> {
        let text = |pointer: &str| {
            resource
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind) = (text("/apiVersion"), text("/kind"));
        let Some(schema) = self.by_kind.get(&(api_version.as_str(), kind.as_str())) else {
            return Err(SchemaError::UnknownKind {
                known: self
                    .by_kind
                    .keys()
                    .map(|(api_version, kind)| format!("{api_version} {kind}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                api_version,
                kind,
            });
        };
        let violations = schema::validate(schema, resource);
        if violations.is_empty() {
            return Ok(());
        }
        Err(SchemaError::Invalid {
            name: text("/metadata/name"),
            kind: format!("{kind} (Kubernetes {KUBERNETES_VERSION} schema)"),
            violations,
        })
    }
}

impl Default for CoreSchemas {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn daemon_set() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "labels": {"app": "agent"}},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "sync", "image": "x/y:v1",
                        "volumeMounts": [{"name": "modules", "mountPath": "/m"}]}],
                        "volumes": [{"name": "modules", "hostPath": {"path": "/m", "type": "DirectoryOrCreate"}}]}
                }
            }
        })
    }

    #[test]
    fn a_real_daemon_set_passes() {
        CoreSchemas::new()
            .check(&daemon_set())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn misspelt_missing_and_mistyped_fields_are_named() {
        let schemas = CoreSchemas::new();
        let mut bad = daemon_set();
        let container = bad["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap();
        let mounts = container.remove("volumeMounts").unwrap();
        container.insert("volumeMount".into(), mounts);
        bad["spec"]["template"]["spec"]["volumes"][0]["hostPath"]
            .as_object_mut()
            .unwrap()
            .remove("path");
        bad["spec"]["revisionHistoryLimit"] = json!("ten");
        let Err(SchemaError::Invalid { violations, .. }) = schemas.check(&bad) else {
            panic!("accepted");
        };
        let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        for expected in [
            ".spec.template.spec.containers[0].volumeMount",
            ".spec.template.spec.volumes[0].hostPath.path",
            ".spec.revisionHistoryLimit",
        ] {
            assert!(paths.contains(&expected), "{expected} not in {paths:?}");
        }
    }

    #[test]
    fn kinds_it_has_no_schema_for_are_refused() {
        let err = CoreSchemas::new()
            .check(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}))
            .unwrap_err();
        assert!(matches!(err, SchemaError::UnknownKind { .. }), "{err}");
    }
}
