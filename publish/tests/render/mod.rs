//! `publish render`: golden files, field-by-field checks of the parsed output,
//! Istio CRD schema checks, Kubernetes core schema checks (kubernetes-validate),
//! input errors, and the CLI.

mod cli;
mod crd;
mod errors;
mod fields;
mod golden;
mod kubernetes;
mod resolve;
mod sync;
mod validate;

use std::path::{Path, PathBuf};

use publish::render::output::{self, OutputFile, Part};
use publish::render::{self, Bundle, RenderOptions};
use serde_json::Value;

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    crate_dir().join("tests/fixtures/render")
}

pub fn article_example() -> PathBuf {
    crate_dir().join("examples/asm-filter-deployment.yaml")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn render_file(path: &Path, options: &RenderOptions) -> Bundle {
    let deployments = render::input::parse_documents(&read(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    render::render(&deployments, options).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn files(bundle: &Bundle) -> Vec<OutputFile> {
    output::files(bundle, &[]).expect("serialising")
}

pub fn file(files: &[OutputFile], part: Part) -> &str {
    &files
        .iter()
        .find(|f| f.part == part)
        .unwrap_or_else(|| panic!("no {part:?} output"))
        .text
}

/// Parses a rendered YAML text back into its documents, as `kubectl` would read them.
pub fn parse_yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("rendered YAML parses back"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The value at a JSON pointer, with a readable failure.
pub fn at<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer).unwrap_or_else(|| {
        panic!(
            "no {pointer} in {}",
            serde_json::to_string_pretty(doc).unwrap()
        )
    })
}

pub fn str_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    at(doc, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string"))
}
