//! Warns when a module is older than its crate's sources, so nobody tests
//! yesterday's build by accident. The crate is the workspace member whose
//! package name, with `-` as `_`, is the module's file name
//! (`target/wasm32-wasip1/release/response_header.wasm`, or a native twin
//! `lib<name>.so`); its sources are `src/**` and its Cargo.toml.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Prints a warning on stderr naming the stale module, the newer source
/// and the command that rebuilds it; silent when any of it is unknown.
pub fn warn_if_stale(module: &Path) {
    if let Some(stale) = check(module) {
        eprintln!(
            "harness: warning: {} is older than its sources ({} changed after it was built); \
             rebuild it: {}",
            module.display(),
            stale.newer.display(),
            stale.rebuild
        );
    }
}

struct Stale {
    newer: PathBuf,
    rebuild: String,
}

fn check(module: &Path) -> Option<Stale> {
    let module = std::fs::canonicalize(module).ok()?;
    let built = modified(&module)?;
    let crate_name = crate_file_name(&module)?;
    let root = module.ancestors().find(|dir| is_workspace(dir))?;
    let (member, package) = member_building(root, &crate_name)?;
    let (newer, changed) = newest_source(&member)?;
    log::debug!(
        "{}: newest source of package {package} is {}",
        module.display(),
        newer.display()
    );
    if changed <= built {
        return None;
    }
    Some(Stale {
        newer: newer.strip_prefix(root).unwrap_or(&newer).to_path_buf(),
        rebuild: rebuild_command(&module, root, &package),
    })
}

/// `response_header` from `response_header.wasm` or `libresponse_header.so`.
fn crate_file_name(module: &Path) -> Option<String> {
    let stem = module.file_stem()?.to_str()?;
    match module.extension()?.to_str()? {
        "wasm" => Some(stem.to_string()),
        "so" | "dylib" => stem.strip_prefix("lib").map(str::to_string),
        _ => None,
    }
}

/// The member of the workspace at `root` whose package builds the module
/// `crate_name` (`response_header`): its directory and package name.
pub(super) fn member_building(root: &Path, crate_name: &str) -> Option<(PathBuf, String)> {
    workspace_members(root)
        .into_iter()
        .filter_map(|dir| package_name(&dir).map(|name| (dir, name)))
        .find(|(_, name)| name.replace('-', "_") == crate_name)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

pub(super) fn is_workspace(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|text| text.lines().any(|l| l.trim() == "[workspace]"))
}

/// The member directories the root Cargo.toml's `members` list names,
/// `dir/*` globs expanded.
fn workspace_members(root: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(root.join("Cargo.toml")) else {
        return Vec::new();
    };
    let Some(start) = text.find("\nmembers") else {
        return Vec::new();
    };
    let list = &text[start..];
    let Some(end) = list.find(']') else {
        return Vec::new();
    };
    let mut members = Vec::new();
    for entry in list[..end].split('"').skip(1).step_by(2) {
        match entry.strip_suffix("/*") {
            Some(parent) => {
                let Ok(dirs) = std::fs::read_dir(root.join(parent)) else {
                    continue;
                };
                members.extend(dirs.flatten().map(|d| d.path()).filter(|p| p.is_dir()));
            }
            None => members.push(root.join(entry)),
        }
    }
    members
}

/// The `name` of a Cargo.toml's `[package]` section.
fn package_name(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let package = &text[text.find("[package]")?..];
    package
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("name")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
}

/// The most recently changed file of `src/**` and Cargo.toml.
fn newest_source(member: &Path) -> Option<(PathBuf, SystemTime)> {
    let manifest = member.join("Cargo.toml");
    let mut newest = (manifest.clone(), modified(&manifest)?);
    let mut pending = vec![member.join("src")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if let Some(time) = modified(&path)
                && time > newest.1
            {
                newest = (path, time);
            }
        }
    }
    Some(newest)
}

/// The cargo command that rebuilds the module where it is, read off its
/// path: `target/[<triple>/]<profile>/<file>`.
fn rebuild_command(module: &Path, root: &Path, package: &str) -> String {
    let mut command = format!("cargo build -p {package}");
    let parts: Vec<&str> = module
        .strip_prefix(root.join("target"))
        .ok()
        .and_then(Path::parent)
        .map(|dir| dir.iter().filter_map(|p| p.to_str()).collect())
        .unwrap_or_default();
    let (triple, profile) = match parts.as_slice() {
        [triple, profile] => (Some(*triple), Some(*profile)),
        [profile] => (None, Some(*profile)),
        _ => (None, None),
    };
    if let Some(triple) = triple {
        command.push_str(&format!(" --target {triple}"));
    }
    match profile {
        Some("release") => command.push_str(" --release"),
        Some("debug") | None => {}
        Some(other) => command.push_str(&format!(" --profile {other}")),
    }
    command
}
