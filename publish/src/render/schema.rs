//! Checks rendered resources against the structural OpenAPI v3 schemas in
//! CustomResourceDefinitions, the way the Kubernetes API server would before
//! storing them (minus the CEL rules in `x-kubernetes-validations`).
//!
//! The subset implemented is what Istio's CRDs use: type, nullable, format
//! int32/int64, enum, pattern (RE2 syntax, which the `regex` crate shares),
//! min/maxLength, minimum/maximum, min/maxItems, min/maxProperties, required,
//! properties, additionalProperties, items, allOf/anyOf/oneOf/not,
//! x-kubernetes-preserve-unknown-fields and x-kubernetes-int-or-string. A field
//! the schema does not know is reported: the API server would silently prune it,
//! which for a renderer means a bug.
//!
//! Why not the `jsonschema` crate (0.61, tried on the same inputs: the rendered
//! WasmPlugin and EnvoyFilter and the mutations in tests/render/crd.rs, against
//! the bundled CRDs as draft 4): it agreed on patterns, enums, required fields,
//! lengths, types and oneOf, but it is a JSON Schema validator and these are
//! OpenAPI v3 structural schemas, so it passed a priority beyond int32 (an
//! unknown `format` is ignored), refused `null` where the CRD says `nullable`,
//! has no `x-kubernetes-int-or-string`, and passed both misspelt fields
//! (`rootID`, `workloadselector`), the renderer bug this checker exists for.
//! Switching would keep an OpenAPI translation pass and a pruned-field walk of
//! our own while adding 36 crates (jsonschema itself 77 s of compile time on
//! the 2-core development machine, its new dependencies 140 s more) and
//! changing shared features enough to rebuild wasmtime's stack. It is faster
//! (1.4 ms against 350 ms for 1000 checks of both resources), which does not
//! matter for a handful of documents per render.

use std::fmt;

use regex::Regex;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the offending value, e.g. `.spec.sha256`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("CRD file is not valid YAML: {0}")]
    Yaml(String),
    #[error("no CustomResourceDefinition in the CRD file")]
    NoCrd,
    #[error("no schema for {api_version} {kind} in the CRD file (it has: {known})")]
    UnknownKind {
        api_version: String,
        kind: String,
        known: String,
    },
    #[error("{kind} {name} does not match its CRD schema:\n  {}", violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        kind: String,
        name: String,
        violations: Vec<Violation>,
    },
}

#[derive(Debug, Clone)]
struct CrdVersion {
    api_version: String,
    kind: String,
    schema: Value,
}

/// The schemas of every CRD version found in a YAML file (several documents,
/// or a `kind: List` as `kubectl get crd -o yaml` prints).
#[derive(Debug, Clone)]
pub struct CrdSchemas {
    versions: Vec<CrdVersion>,
}

impl CrdSchemas {
    pub fn from_yaml(text: &str) -> Result<Self, SchemaError> {
        let mut versions = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .map_err(|e: serde_yaml_ng::Error| SchemaError::Yaml(e.to_string()))?;
            collect(&value, &mut versions);
        }
        if versions.is_empty() {
            return Err(SchemaError::NoCrd);
        }
        Ok(CrdSchemas { versions })
    }

    /// The openAPIV3Schema for `group/version` + kind.
    pub fn schema_for(&self, api_version: &str, kind: &str) -> Option<&Value> {
        self.versions
            .iter()
            .find(|v| v.api_version == api_version && v.kind == kind)
            .map(|v| &v.schema)
    }

    /// Checks a whole resource: apiVersion/kind known, metadata.name valid, and
    /// everything else against the schema.
    pub fn check(&self, resource: &Value) -> Result<(), SchemaError> {
        let api_version = resource
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = resource
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = resource
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let schema =
            self.schema_for(api_version, kind)
                .ok_or_else(|| SchemaError::UnknownKind {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    known: self
                        .versions
                        .iter()
                        .map(|v| format!("{} {}", v.api_version, v.kind))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        let mut violations = Vec::new();
        check_metadata(resource.get("metadata"), &mut violations);
        // apiVersion, kind and metadata are implicit in every CRD schema.
        let mut body = resource.clone();
        if let Value::Object(map) = &mut body {
            map.remove("apiVersion");
            map.remove("kind");
            map.remove("metadata");
        }
        validate_at(schema, &body, "", &mut violations);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(SchemaError::Invalid {
                kind: kind.to_string(),
                name: name.to_string(),
                violations,
            })
        }
    }
}

fn collect(value: &Value, out: &mut Vec<CrdVersion>) {
    match value.get("kind").and_then(Value::as_str) {
        Some("List") => {
            for item in value
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                collect(item, out);
            }
        }
        Some("CustomResourceDefinition") => {
            let group = value
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = value
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            for version in value
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(name), Some(schema)) = (
                    version.get("name").and_then(Value::as_str),
                    version.pointer("/schema/openAPIV3Schema"),
                ) else {
                    continue;
                };
                out.push(CrdVersion {
                    api_version: format!("{group}/{name}"),
                    kind: kind.to_string(),
                    schema: schema.clone(),
                });
            }
        }
        _ => {}
    }
}

fn check_metadata(metadata: Option<&Value>, out: &mut Vec<Violation>) {
    let dns_subdomain =
        Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
    let Ok(dns_subdomain) = dns_subdomain else {
        return;
    };
    match metadata.and_then(|m| m.get("name")).and_then(Value::as_str) {
        None => out.push(Violation {
            path: ".metadata.name".into(),
            message: "is required".into(),
        }),
        Some(name) if name.len() > 253 || !dns_subdomain.is_match(name) => out.push(Violation {
            path: ".metadata.name".into(),
            message: format!("{name:?} is not a DNS-1123 subdomain"),
        }),
        Some(_) => {}
    }
}

/// Validates `value` against an OpenAPI v3 `schema`; returns every violation.
pub fn validate(schema: &Value, value: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    validate_at(schema, value, "", &mut out);
    out
}

fn push(out: &mut Vec<Violation>, path: &str, message: String) {
    out.push(Violation {
        path: if path.is_empty() {
            ".".into()
        } else {
            path.into()
        },
        message,
    });
}

fn validate_at(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    let flag = |key: &str| schema.get(key).and_then(Value::as_bool).unwrap_or(false);

    if value.is_null() {
        if !flag("nullable") && schema.contains_key("type") {
            push(
                out,
                path,
                "is null but the schema does not allow null".into(),
            );
        }
        return;
    }

    if flag("x-kubernetes-int-or-string") {
        if !(is_integer(value) || value.is_string()) {
            push(
                out,
                path,
                format!("must be an integer or a string, not {}", kind_of(value)),
            );
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let ok = match expected {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => is_integer(value),
            "number" => value.is_number(),
            _ => true,
        };
        if !ok {
            push(
                out,
                path,
                format!("must be of type {expected}, not {}", kind_of(value)),
            );
            // Nothing below makes sense for a value of the wrong type.
            return;
        }
    }

    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        push(
            out,
            path,
            format!("{value} is not one of [{}]", list.join(", ")),
        );
    }

    match value {
        Value::String(s) => check_string(schema, s, path, out),
        Value::Number(_) => check_number(schema, value, path, out),
        Value::Array(items) => check_array(schema, items, path, out),
        Value::Object(map) => check_object(schema, map, path, out),
        _ => {}
    }

    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate_at(sub, value, path, out);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|sub| validate(sub, value).is_empty())
    {
        push(out, path, "matches none of the anyOf alternatives".into());
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = one
            .iter()
            .filter(|sub| validate(sub, value).is_empty())
            .count();
        if matching != 1 {
            push(
                out,
                path,
                format!("must match exactly one oneOf alternative, matches {matching}"),
            );
        }
    }
    if let Some(not) = schema.get("not")
        && validate(not, value).is_empty()
    {
        push(
            out,
            path,
            "matches a schema it must not match (`not`)".into(),
        );
    }
}

fn check_string(
    schema: &serde_json::Map<String, Value>,
    s: &str,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let length = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        push(
            out,
            path,
            format!("is {length} characters, at least {min} required"),
        );
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        push(
            out,
            path,
            format!("is {length} characters, at most {max} allowed"),
        );
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => push(
                out,
                path,
                format!("{s:?} does not match the pattern {pattern}"),
            ),
            Err(e) => push(
                out,
                path,
                format!("schema pattern {pattern} does not compile: {e}"),
            ),
        }
    }
}

fn check_number(
    schema: &serde_json::Map<String, Value>,
    value: &Value,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let Some(n) = value.as_f64() else {
        return;
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        push(out, path, format!("{value} is below the minimum {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        push(out, path, format!("{value} is above the maximum {max}"));
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
        Some("int64") => Some((i64::MIN as f64, i64::MAX as f64)),
        _ => None,
    };
    if let Some((lo, hi)) = range
        && (n < lo || n > hi)
    {
        push(
            out,
            path,
            format!("{value} does not fit the format {}", schema["format"]),
        );
    }
}

fn check_array(
    schema: &serde_json::Map<String, Value>,
    items: &[Value],
    path: &str,
    out: &mut Vec<Violation>,
) {
    let len = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        push(
            out,
            path,
            format!("has {len} items, at least {min} required"),
        );
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        push(out, path, format!("has {len} items, at most {max} allowed"));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate_at(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
}

fn check_object(
    schema: &serde_json::Map<String, Value>,
    map: &serde_json::Map<String, Value>,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let len = map.len() as u64;
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && len < min
    {
        push(
            out,
            path,
            format!("has {len} properties, at least {min} required"),
        );
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && len > max
    {
        push(
            out,
            path,
            format!("has {len} properties, at most {max} allowed"),
        );
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(required) {
            push(out, &format!("{path}.{required}"), "is required".into());
        }
    }
    let preserve_unknown = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (key, child) in map {
        let child_path = format!("{path}.{key}");
        if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
            validate_at(child_schema, child, &child_path, out);
            continue;
        }
        match additional {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                push(out, &child_path, "is not allowed by the schema".into());
            }
            Some(additional_schema @ Value::Object(_)) => {
                validate_at(additional_schema, child, &child_path, out);
            }
            _ => {
                // Only a schema that lists properties defines the known fields; a
                // bare `required`-only branch (inside oneOf and friends) does not.
                if properties.is_some() && !preserve_unknown {
                    push(
                        out,
                        &child_path,
                        "is not a field of this schema (the API server would drop it)".into(),
                    );
                }
            }
        }
    }
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1},
                "sha256": {"type": "string", "pattern": "(^$|^[a-f0-9]{64}$)"},
                "phase": {"type": "string", "enum": ["AUTHN", "AUTHZ", "STATS"]},
                "priority": {"type": "integer", "format": "int32", "nullable": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "ports": {"type": "array", "items": {"type": "object", "required": ["number"],
                    "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 65535}}}},
                "match": {"type": "object",
                    "oneOf": [
                        {"not": {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}},
                        {"required": ["a"]},
                        {"required": ["b"]}
                    ],
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
            }
        })
    }

    fn paths(v: &[Violation]) -> Vec<&str> {
        let mut paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        paths.sort_unstable();
        paths
    }

    #[test]
    fn a_valid_value_has_no_violations() {
        let value = json!({
            "url": "oci://x/y:z",
            "sha256": "a".repeat(64),
            "phase": "AUTHN",
            "priority": null,
            "labels": {"app": "abc"},
            "config": {"anything": {"goes": [1, 2]}},
            "ports": [{"number": 80}],
            "match": {"a": "x"}
        });
        assert_eq!(validate(&schema(), &value), vec![]);
    }

    #[test]
    fn each_keyword_reports_its_own_violation() {
        let value = json!({
            "sha256": "ABC",
            "phase": "LATE",
            "priority": 1u64 << 40,
            "labels": {"app": "toolong"},
            "ports": [{"number": 0}, {}],
            "match": {"a": "x", "b": "y"},
            "extra": true
        });
        let v = validate(&schema(), &value);
        assert_eq!(
            paths(&v),
            [
                ".extra",
                ".labels.app",
                ".match",
                ".phase",
                ".ports[0].number",
                ".ports[1].number",
                ".priority",
                ".sha256",
                ".url",
            ],
            "{v:#?}"
        );
    }

    #[test]
    fn wrong_types_are_reported_once() {
        let v = validate(&schema(), &json!({"url": 5}));
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("type string"), "{}", v[0]);
    }
}
