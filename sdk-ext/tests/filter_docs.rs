//! The example filters' READMEs show the configuration their scenario files
//! run: a ```json example and the `pluginConfig` of the Istio WasmPlugin snippet
//! must both equal the `plugin.config` of one of `tests/*.yaml`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};

fn filters_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters")
}

/// The bodies of the fenced blocks of `language` in a Markdown text.
fn fenced_blocks<'a>(markdown: &'a str, language: &str) -> Vec<&'a str> {
    let fence = format!("```{language}\n");
    markdown
        .split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(body, _)| body))
        .collect()
}

/// Network filters whose scenarios wait for the harness's TCP support
/// (issue 12); each must still have no scenario, so it leaves this list as
/// soon as its scenarios land.
const AWAITING_TCP_SCENARIOS: &[&str] = &[];

fn scenario_configs(filter: &Path) -> Vec<Value> {
    let mut configs = Vec::new();
    let Ok(entries) = std::fs::read_dir(filter.join("tests")) else {
        return configs;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: Value = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(config) = doc.pointer("/plugin/config") {
                configs.push(config.clone());
            }
        }
    }
    configs
}

#[test]
fn every_filter_readme_shows_a_configuration_its_scenarios_run() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(filters_dir()).unwrap() {
        let filter = entry.unwrap().path();
        if !filter.join("Cargo.toml").exists() {
            continue;
        }
        let name = filter.file_name().unwrap().to_string_lossy().into_owned();
        let readme = std::fs::read_to_string(filter.join("README.md"))
            .unwrap_or_else(|_| panic!("{name}: README.md is missing"));
        let configs = scenario_configs(&filter);
        if AWAITING_TCP_SCENARIOS.contains(&name.as_str()) {
            if !configs.is_empty() {
                problems.push(format!(
                    "{name}: has scenarios now; take it off AWAITING_TCP_SCENARIOS"
                ));
            }
            continue;
        }
        if configs.is_empty() {
            problems.push(format!(
                "{name}: no scenario file under tests/ sets plugin.config"
            ));
            continue;
        }
        let json_matches = fenced_blocks(&readme, "json")
            .into_iter()
            .filter_map(|block| serde_json::from_str::<Value>(block).ok())
            .any(|example| configs.contains(&example));
        if !json_matches {
            problems.push(format!(
                "{name}: no ```json example equals a scenario's plugin.config"
            ));
        }
        let wasm_plugins: Vec<Value> = fenced_blocks(&readme, "yaml")
            .into_iter()
            .filter(|block| block.contains("kind: WasmPlugin"))
            .map(|block| {
                serde_yaml_ng::from_str(block)
                    .unwrap_or_else(|e| panic!("{name}: WasmPlugin snippet: {e}"))
            })
            .collect();
        if wasm_plugins.is_empty() {
            problems.push(format!("{name}: no Istio WasmPlugin snippet"));
        }
        for plugin in &wasm_plugins {
            let config = plugin.pointer("/spec/pluginConfig");
            if !config.is_some_and(|c| configs.contains(c)) {
                problems.push(format!(
                    "{name}: the WasmPlugin pluginConfig is not a scenario's plugin.config"
                ));
            }
            if plugin
                .pointer("/spec/url")
                .and_then(Value::as_str)
                .is_none()
            {
                problems.push(format!("{name}: the WasmPlugin snippet has no spec.url"));
            }
        }
        checked += 1;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked >= 11,
        "only {checked} filters found under {}",
        filters_dir().display()
    );
}

#[test]
fn fenced_blocks_are_found_by_language() {
    let text = "a\n```json\n{\"a\":1}\n```\nb\n```yaml\nx: 1\n```\n```json\n[]\n```\n";
    assert_eq!(fenced_blocks(text, "json"), vec!["{\"a\":1}\n", "[]\n"]);
    assert_eq!(fenced_blocks(text, "yaml"), vec!["x: 1\n"]);
}
