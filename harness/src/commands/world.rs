//! The world around a `harness run` filter, from flags or from a scenario
//! file: clusters with scripted answers (`--cluster`), properties
//! (`--property`), a pause on the virtual clock (`--advance`) and
//! `--world FILE`. Values are read with the scenario format's own
//! deserializers, so a flag means exactly what the same YAML means in a file.

use std::path::{Path, PathBuf};

use clap::Args;

use harness::scenario::format::Case;
use harness::scenario::{harness_config, parse, resolve_module};
use harness::{ClusterSpec, HarnessConfig, HarnessError, PropertyValue};

use super::text_or_file;

/// The world flags of `harness run`.
#[derive(Args, Debug)]
pub struct WorldArgs {
    /// A cluster the filter can call out to, with its scripted answers as
    /// in a scenario file's `clusters` entry: inline YAML/JSON or @file
    /// (repeatable), e.g. `auth='{http: [{status: 200, body: ok, delay_ms: 20}]}'`.
    #[arg(long = "cluster", value_name = "NAME=SPEC")]
    pub clusters: Vec<String>,
    /// A property: dotted path, or a JSON list of segments when one holds a
    /// dot (`'["metadata","filter_metadata","envoy.lb","k"]=v'`); the value
    /// is YAML as in a scenario file (`8080` an integer, `'"8080"'` text).
    #[arg(long = "property", value_name = "PATH=VALUE")]
    pub properties: Vec<String>,
    /// Advance the virtual clock this long after the request, or with no
    /// `--request`, alone (timers fire, callout answers arrive): 500ms, 2s, 1m.
    #[arg(long, value_name = "DURATION")]
    pub advance: Option<String>,
    /// Take the plugin, clusters, properties and host settings from a
    /// scenario file (its cases are not run); flags given as well win.
    #[arg(long, value_name = "FILE")]
    pub world: Option<PathBuf>,
}

/// A scenario file's world, ready to be overridden by flags.
pub struct World {
    /// The configuration its plugin runs with (no case overrides).
    pub config: HarnessConfig,
    /// Its `plugin.module`, resolved against the file's directory.
    pub module: Option<PathBuf>,
    /// Whether it sets `plugin.name` (else the module's name is used).
    pub named: bool,
}

impl WorldArgs {
    /// `--advance` in virtual milliseconds.
    pub fn advance_ms(&self) -> Result<Option<u64>, HarnessError> {
        self.advance.as_deref().map(parse_duration).transpose()
    }

    /// Applies `--cluster` and `--property` over `config`: a cluster
    /// replaces one of the same name, a property overrides the same path.
    pub fn apply(&self, config: &mut HarnessConfig) -> Result<(), HarnessError> {
        for arg in &self.clusters {
            let cluster = parse_cluster(arg)?;
            config.clusters.retain(|c| c.name != cluster.name);
            config.clusters.push(cluster);
        }
        for arg in &self.properties {
            let (path, value) = parse_property(arg)?;
            config.properties.insert(path, value);
        }
        Ok(())
    }
}

/// Loads `--world FILE`. `cli_module` stands in for a missing
/// `plugin.module`; a file without `cases` is accepted (none are run).
pub fn load_world(path: &Path, cli_module: Option<&Path>) -> Result<World, HarnessError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::Usage(format!("cannot read --world file {label}: {e}")))?;
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| HarnessError::Usage(format!("{label}: invalid scenario: {e}")))?;
    let serde_yaml_ng::Value::Mapping(map) = &mut doc else {
        return Err(HarnessError::Usage(format!(
            "{label}: a scenario file is a mapping (plugin, clusters, properties, cases)"
        )));
    };
    let given_module = map
        .get("plugin")
        .and_then(|p| p.get("module"))
        .is_some_and(|m| !m.is_null());
    if let (false, Some(module)) = (given_module, cli_module) {
        let plugin = map
            .entry("plugin".into())
            .or_insert_with(|| serde_yaml_ng::Mapping::new().into());
        if let serde_yaml_ng::Value::Mapping(plugin) = plugin {
            plugin.insert("module".into(), module.display().to_string().into());
        }
    }
    if !map.contains_key("cases") {
        map.insert("cases".into(), from_yaml(WORLD_ONLY_CASE)?);
    }
    let text =
        serde_yaml_ng::to_string(&doc).map_err(|e| HarnessError::Usage(format!("{label}: {e}")))?;
    let scenario = parse(&text, &label).map_err(HarnessError::Usage)?;
    if !scenario.plugins.is_empty() {
        return Err(HarnessError::Usage(format!(
            "{label} runs a `plugins` chain; `harness run` runs one plugin, \
             so use `harness test {label}` for the chain"
        )));
    }
    let blank: Case = from_yaml(BLANK_CASE)?;
    let config = harness_config(&scenario, &blank, &scenario.plugin);
    let base = path.parent().unwrap_or(Path::new("."));
    let module = match (given_module, &scenario.plugin.module) {
        (true, Some(spec)) => Some(resolve_module(spec, base).map_err(HarnessError::Usage)?),
        _ => None,
    };
    log::info!(
        "world from {label}: {} cluster(s), {} propert(ies)",
        config.clusters.len(),
        config.properties.len()
    );
    Ok(World {
        named: scenario.plugin.name.is_some(),
        config,
        module,
    })
}

/// The case a world-only file gets so that it parses as a scenario.
const WORLD_ONLY_CASE: &str = "[{name: world, startup: {}}]";
/// A case with no overrides: the file's own world, as `harness run` uses it.
const BLANK_CASE: &str = "{name: world, startup: {}}";

/// One of the constant documents above.
fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, HarnessError> {
    serde_yaml_ng::from_str(text)
        .map_err(|e| HarnessError::Usage(format!("internal scenario template {text}: {e}")))
}

/// `NAME=SPEC`: SPEC is a scenario file's cluster entry without its name
/// (inline YAML/JSON, or @file); an empty SPEC is a cluster with no answers.
pub fn parse_cluster(arg: &str) -> Result<ClusterSpec, HarnessError> {
    let usage = || {
        HarnessError::Usage(format!(
            "--cluster '{arg}' must look like NAME=SPEC, e.g. \
             auth='{{http: [{{status: 200, body: ok}}]}}' or auth=@auth.yaml"
        ))
    };
    let (name, spec) = arg.split_once('=').ok_or_else(usage)?;
    if name.is_empty() {
        return Err(usage());
    }
    let what = format!("--cluster {name}");
    let text = String::from_utf8(text_or_file(spec, &what)?)
        .map_err(|_| HarnessError::Usage(format!("{what}: the SPEC is not UTF-8 text")))?;
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| HarnessError::Usage(format!("{what}: SPEC is not YAML/JSON: {e}")))?;
    if value.is_null() {
        value = serde_yaml_ng::Mapping::new().into();
    }
    let serde_yaml_ng::Value::Mapping(map) = &mut value else {
        return Err(HarnessError::Usage(format!(
            "{what}: SPEC must be a mapping with `http` and/or `grpc` answers"
        )));
    };
    match map.get("name").and_then(serde_yaml_ng::Value::as_str) {
        Some(inner) if inner != name => {
            return Err(HarnessError::Usage(format!(
                "{what}: SPEC names another cluster ({inner}); drop its `name`"
            )));
        }
        _ => {
            map.insert("name".into(), name.into());
        }
    }
    serde_yaml_ng::from_value(value).map_err(|e| {
        HarnessError::Usage(format!(
            "{what}: {e} (a cluster takes `http` and `grpc` lists of answers; see SCENARIOS.md)"
        ))
    })
}

/// `PATH=VALUE`. A list-form path is kept as its ABI form (segments joined
/// by NUL) so the host does not split the dots inside a segment.
pub fn parse_property(arg: &str) -> Result<(String, PropertyValue), HarnessError> {
    let (path, value) = if arg.starts_with('[') {
        let mut segments = serde_json::Deserializer::from_str(arg).into_iter::<Vec<String>>();
        let parsed = segments.next().transpose().map_err(|e| {
            HarnessError::Usage(format!(
                "--property '{arg}': the path is not a JSON list of strings: {e}"
            ))
        })?;
        let rest = &arg[segments.byte_offset()..];
        let (Some(list), Some(value)) = (parsed, rest.strip_prefix('=')) else {
            return Err(property_usage(arg));
        };
        (list_path(&list, arg)?, value)
    } else {
        let (path, value) = arg.split_once('=').ok_or_else(|| property_usage(arg))?;
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(property_usage(arg));
        }
        (path.to_string(), value)
    };
    Ok((path, parse_property_value(value, arg)?))
}

fn property_usage(arg: &str) -> HarnessError {
    HarnessError::Usage(format!(
        "--property '{arg}' must look like PATH=VALUE (e.g. xds.route_name=r1, or \
         '[\"metadata\",\"filter_metadata\",\"envoy.lb\",\"k\"]=v' when a segment holds a dot)"
    ))
}

fn list_path(segments: &[String], arg: &str) -> Result<String, HarnessError> {
    harness::property_key(segments)
        .map_err(|why| HarnessError::Usage(format!("--property '{arg}': {why}")))
}

/// The value as a scenario file's `properties` entry would take it.
fn parse_property_value(text: &str, arg: &str) -> Result<PropertyValue, HarnessError> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        HarnessError::Usage(format!("--property '{arg}': the value is not YAML: {e}"))
    })?;
    if value.is_null() {
        return Ok(PropertyValue::String(text.to_string()));
    }
    serde_yaml_ng::from_value(value).map_err(|_| {
        HarnessError::Usage(format!(
            "--property '{arg}': the value must be text, an integer, true/false, a map of \
             text, or {{bytes: [..]}}"
        ))
    })
}

/// `500ms`, `2s`, `1m` (a bare `0` too) in milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, HarnessError> {
    let usage = || {
        HarnessError::Usage(format!(
            "--advance '{text}' must be a whole number with a unit: 500ms, 2s, 1m"
        ))
    };
    if text == "0" {
        return Ok(0);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(usage)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| usage())?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return Err(usage()),
    };
    number.checked_mul(scale).ok_or_else(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").ok(), Some(500));
        assert_eq!(parse_duration("2s").ok(), Some(2000));
        assert_eq!(parse_duration("1m").ok(), Some(60_000));
        assert_eq!(parse_duration("0").ok(), Some(0));
        for bad in ["", "5", "2 s", "1.5s", "ms", "3h", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn properties_take_dotted_and_list_paths_and_scenario_values() {
        let (path, value) = parse_property("source.port=8080").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (path.as_str(), value),
            ("source.port", PropertyValue::Int(8080))
        );
        let (path, value) = parse_property(r#"["metadata","filter_metadata","envoy.lb","k"]=v"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path, "metadata\0filter_metadata\0envoy.lb\0k");
        assert_eq!(value, PropertyValue::String("v".into()));
        let (_, value) = parse_property("a.b=").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value, PropertyValue::String(String::new()));
        let (_, value) = parse_property("a.b=\"8080\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value, PropertyValue::String("8080".into()));
        for bad in [
            "novalue",
            "=v",
            "a..b=v",
            r#"["a"]v"#,
            r#"["a.b"]=v"#,
            "[1]=v",
        ] {
            assert!(parse_property(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clusters_take_the_scenario_cluster_entry() {
        let c = parse_cluster("auth={http: [{status: 403, body: no, delay_ms: 20}]}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.name, "auth");
        assert_eq!(c.http.len(), 1);
        assert_eq!((c.http[0].status, c.http[0].delay_ms), (403, 20));
        assert!(parse_cluster("auth=").is_ok_and(|c| c.http.is_empty()));
        for bad in [
            "auth",
            "=x",
            "auth={htp: []}",
            "auth=[1]",
            "auth={name: other}",
        ] {
            assert!(parse_cluster(bad).is_err(), "{bad}");
        }
    }
}
