//! One wasmtime build for the whole workspace: whichever packages cargo is
//! asked to build, wasmtime and everything it is compiled from get the same
//! features, so no selection compiles it again (the pins in the root Cargo.toml).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every package (with its features) wasmtime is built from, as `cargo
/// tree` resolves them for this selection.
fn wasmtime_closure(selection: &[&str], edges: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "tree", "--quiet", "-e", edges, "-f", "{p}|{f}", "--prefix", "depth",
        ])
        .args(selection)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo tree: {e}"));
    assert!(
        output.status.success(),
        "cargo tree {selection:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut path: Vec<String> = Vec::new();
    for line in text.lines() {
        let depth_digits = line.chars().take_while(char::is_ascii_digit).count();
        let Ok(depth) = line[..depth_digits].parse::<usize>() else {
            continue;
        };
        // `name vX (/local/path) (proc-macro) (*)|features`: keep name, version, features.
        let entry = line[depth_digits..].trim_end_matches(" (*)");
        let (package, features) = entry.split_once('|').unwrap_or((entry, ""));
        let mut words = package.split_whitespace();
        let key = format!(
            "{} {}|{features}",
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default()
        );
        path.truncate(depth);
        if let Some(parent) = path.last() {
            children
                .entry(parent.clone())
                .or_default()
                .insert(key.clone());
        }
        children.entry(key.clone()).or_default();
        path.push(key);
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = children
        .keys()
        .filter(|k| k.starts_with("wasmtime v"))
        .cloned()
        .collect();
    while let Some(key) = todo.pop() {
        if seen.insert(key.clone()) {
            todo.extend(children.get(&key).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn every_selection_builds_wasmtime_with_the_same_features() {
    let all = "normal,build,dev";
    let workspace = wasmtime_closure(&["--workspace"], all);
    assert!(
        workspace
            .iter()
            .any(|k| k.starts_with("cranelift-codegen ")),
        "the closure was read: {} packages",
        workspace.len()
    );
    let selections: [(&str, &[&str], &str); 6] = [
        ("cargo test -p harness", &["-p", "harness"], all),
        (
            "cargo test -p response-header",
            &["-p", "response-header"],
            all,
        ),
        ("cargo test -p request-block", &["-p", "request-block"], all),
        (
            "cargo build -p harness --bins",
            &["-p", "harness"],
            "normal,build",
        ),
        (
            "cargo build -p harness -p publish --bins (make build-host)",
            &["-p", "harness", "-p", "publish"],
            "normal,build",
        ),
        (
            "cargo build -p harness --no-default-features --bin harness (make demo)",
            &["-p", "harness", "--no-default-features"],
            "normal,build",
        ),
    ];
    for (command, selection, edges) in selections {
        let closure = wasmtime_closure(selection, edges);
        let only_here: Vec<_> = closure.difference(&workspace).collect();
        let only_in_workspace: Vec<_> = workspace.difference(&closure).collect();
        assert!(
            only_here.is_empty() && only_in_workspace.is_empty(),
            "`{command}` would compile wasmtime again with other features than \
             `cargo test --workspace`; pin the workspace's features in the root Cargo.toml.\n  only in `{command}`: {only_here:#?}\n  only in the workspace: {only_in_workspace:#?}"
        );
    }
}
