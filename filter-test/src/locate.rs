//! Finding a filter crate's two builds: the .wasm (built here, once per
//! test process) and the native twin (built by the `cargo test` that runs
//! us, next to the test executable).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// What `cargo metadata` says about the filter crate at a manifest directory.
#[derive(Clone)]
pub(crate) struct Crate {
    /// The package name (`response-header`), for `cargo build -p`.
    pub package: String,
    /// The library's file stem (`response_header`).
    pub lib: String,
    /// The workspace's target directory (honours `CARGO_TARGET_DIR`).
    pub target_dir: PathBuf,
    pub manifest: PathBuf,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `command` and returns its stdout, or a message with its stderr.
fn run(mut command: Command, what: &str) -> Result<Vec<u8>, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo to {what}: {e}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(format!(
            "cargo could not {what}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Memoises `f` per key for the life of the test process (tests run in
/// threads; the first to ask does the work, the others wait for it).
fn once_per_process<T: Clone>(
    cache: &'static OnceLock<Mutex<HashMap<PathBuf, Result<T, String>>>>,
    key: &Path,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let map = cache.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key.to_path_buf()).or_insert_with(f).clone()
}

impl Crate {
    /// The crate whose `Cargo.toml` is in `manifest_dir`.
    pub fn at(manifest_dir: &Path) -> Result<Crate, String> {
        static CRATES: OnceLock<Mutex<HashMap<PathBuf, Result<Crate, String>>>> = OnceLock::new();
        once_per_process(&CRATES, manifest_dir, || Self::read(manifest_dir))
    }

    fn read(manifest_dir: &Path) -> Result<Crate, String> {
        let manifest = manifest_dir.join("Cargo.toml");
        let mut command = cargo();
        command
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(&manifest);
        let stdout = run(command, &format!("read {}", manifest.display()))?;
        let metadata: Value = serde_json::from_slice(&stdout)
            .map_err(|e| format!("cargo metadata printed something that is not JSON: {e}"))?;
        let same_file = |p: &Value| {
            p.as_str().is_some_and(|p| {
                Path::new(p) == manifest || same_canonical(Path::new(p), &manifest)
            })
        };
        let package = metadata["packages"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| same_file(&p["manifest_path"])))
            .ok_or_else(|| format!("{} is not a package of its workspace", manifest.display()))?;
        let name = package["name"].as_str().unwrap_or_default().to_string();
        let lib = package["targets"]
            .as_array()
            .and_then(|ts| {
                ts.iter().find(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
                })
            })
            .and_then(|t| t["name"].as_str())
            .ok_or_else(|| {
                format!(
                    "{name} has no cdylib library: a filter crate needs \
                     `[lib] crate-type = [\"cdylib\", \"rlib\"]` in its Cargo.toml"
                )
            })?
            .replace('-', "_");
        let target_dir = metadata["target_directory"]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| "cargo metadata names no target directory".to_string())?;
        Ok(Crate {
            package: name,
            lib,
            target_dir,
            manifest,
        })
    }

    /// Builds the crate for wasm32-wasip1 (release, the profile filters
    /// ship from) once per process and returns the module's path. It uses
    /// target/wasm32-wasip1 and target/release, which the running `cargo
    /// test` (target/debug) does not lock.
    pub fn wasm(&self) -> Result<PathBuf, String> {
        static BUILT: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, String>>>> = OnceLock::new();
        once_per_process(&BUILT, &self.manifest, || {
            let mut command = cargo();
            command
                .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1"])
                .arg("--manifest-path")
                .arg(&self.manifest);
            run(
                command,
                &format!("build {} for wasm32-wasip1", self.package),
            )
            .map_err(|e| {
                format!("{e}\n(is the target installed? `rustup target add wasm32-wasip1`)")
            })?;
            Ok(self
                .target_dir
                .join("wasm32-wasip1/release")
                .join(format!("{}.wasm", self.lib)))
        })
    }

    /// The native twin. In the crate's own `cargo test`, cargo has just
    /// built `lib<name>.so` next to the test executable (a cdylib is built
    /// with the rlib the tests link); elsewhere it is built once per
    /// process in a target directory of its own (off the running build's lock).
    pub fn native(&self) -> Result<PathBuf, String> {
        let file = format!("lib{}.so", self.lib);
        let beside_us = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(&file)));
        if let Some(path) = beside_us.filter(|p| p.is_file()) {
            return Ok(path);
        }
        static BUILT: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, String>>>> = OnceLock::new();
        once_per_process(&BUILT, &self.manifest, || {
            let target = self.target_dir.join("filter-test-native");
            let mut command = cargo();
            command
                .args(["build", "--quiet", "--lib", "--manifest-path"])
                .arg(&self.manifest)
                .arg("--target-dir")
                .arg(&target);
            run(command, &format!("build {} for the host", self.package))?;
            Ok(target.join("debug").join(&file))
        })
    }
}

fn same_canonical(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
