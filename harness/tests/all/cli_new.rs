//! `harness new` from the outside: the generated crate, in a throwaway
//! workspace of its own, is fmt- and clippy-clean, builds for wasm32-wasip1,
//! passes its unit tests and its scenario file (on the module and on its
//! native twin); bad names and existing directories are refused with
//! nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::cli::{stderr, stdout};
use crate::support::workspace_root;

/// A directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("harness-new-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn harness_new(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(cwd)
        .arg("new")
        .args(args)
        .output()
        .expect("run the harness binary")
}

/// The `[header]` sections of a Cargo.toml, each with its lines.
fn sections(toml: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in toml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            sections.push((trimmed.to_string(), Vec::new()));
        } else if let Some((_, lines)) = sections.last_mut()
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
        {
            lines.push(line.to_string());
        }
    }
    sections
}

/// A workspace manifest for the generated crate: `filters/*` as members,
/// this repo's package fields, lints and profiles, and the workspace
/// dependencies the crate names (`x.workspace = true`), in-tree ones by
/// absolute path.
fn throwaway_manifest(crate_manifest: &str) -> String {
    let root = workspace_root();
    let root_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let root_sections = sections(&root_toml);
    let root_dependencies = &root_sections
        .iter()
        .find(|(header, _)| header == "[workspace.dependencies]")
        .expect("the root Cargo.toml has [workspace.dependencies]")
        .1;
    let mut out = String::from("[workspace]\nresolver = \"3\"\nmembers = [\"filters/*\"]\n");
    out.push_str("\n[workspace.dependencies]\n");
    for (header, lines) in sections(crate_manifest) {
        if !header.ends_with("dependencies]") {
            continue;
        }
        for line in lines {
            let key = line
                .trim()
                .strip_suffix(".workspace = true")
                .unwrap_or_else(|| {
                    panic!("the template's dependency `{line}` does not use `workspace = true`")
                });
            let entry = root_dependencies
                .iter()
                .find(|l| l.split('=').next().map(str::trim) == Some(key))
                .unwrap_or_else(|| panic!("{key} is not a workspace dependency of this repo"));
            let absolute = format!("path = \"{}/", root.display());
            out.push_str(&entry.replace("path = \"", &absolute));
            out.push('\n');
        }
    }
    for (header, lines) in &root_sections {
        if header == "[workspace.package]"
            || header.starts_with("[workspace.lints")
            || header.starts_with("[profile")
        {
            out.push_str(&format!("\n{header}\n{}\n", lines.join("\n")));
        }
    }
    out
}

/// Runs cargo in `dir` with the shared scaffold target directory; panics with
/// its output unless it succeeds.
fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(args)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo {} failed in {}:\n{}",
        args.join(" "),
        dir.display(),
        stderr(&output)
    );
    output
}

/// `harness test` on one scenario file, from the workspace `dir`.
fn harness_test(dir: &Path, target_dir: &Path, scenario: &Path, flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .arg("test")
        .arg(scenario)
        .args(flags)
        .output()
        .expect("run the harness binary")
}

/// How many tests cargo test reported passed and failed.
fn test_counts(output: &Output) -> (usize, usize) {
    let mut counts = (0, 0);
    for line in stdout(output).lines() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            let number = |label: &str| {
                rest.split("; ")
                    .find_map(|part| part.trim_start_matches("ok. ").strip_suffix(label))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("no `{label}` count in {line}"))
            };
            counts.0 += number(" passed");
            counts.1 += number(" failed");
        }
    }
    counts
}

#[test]
fn a_generated_filter_builds_for_wasm_passes_its_unit_tests_and_its_scenarios() {
    generated_crate_passes("scaffold-probe", &[], 5, 5);
}

#[test]
fn a_generated_tcp_filter_builds_for_wasm_passes_its_unit_tests_and_its_scenarios() {
    generated_crate_passes("scaffold-tcp", &["--tcp"], 6, 4);
}

/// `harness new name FLAGS` in a throwaway workspace; the crate is fmt and
/// clippy clean, builds for wasm, passes at least `unit_tests` unit tests
/// and its `cases` scenario cases on the module and on its native twin.
fn generated_crate_passes(name: &'static str, flags: &[&str], unit_tests: usize, cases: usize) {
    let started = Instant::now();
    let workspace = Scratch::new("workspace");
    let ws = &workspace.0;
    // Dependency builds stay in this repo's target/ between runs.
    let target_dir = workspace_root().join("target/scaffold-test");

    // The workspace manifest must exist before `harness new` looks for it.
    std::fs::write(
        ws.join("Cargo.toml"),
        "[workspace]\nmembers = [\"filters/*\"]\n",
    )
    .unwrap();
    let mut args = flags.to_vec();
    args.push(name);
    let created = harness_new(ws, &args);
    assert!(created.status.success(), "{}", stderr(&created));
    let printed = stdout(&created);
    assert!(!printed.contains("note:"), "{printed}");
    let crate_dir = ws.join("filters").join(name);
    for file in [
        "Cargo.toml",
        "README.md",
        "src/lib.rs",
        "src/config.rs",
        "src/policy.rs",
        &format!("tests/{name}.yaml"),
    ] {
        let text = std::fs::read_to_string(crate_dir.join(file))
            .unwrap_or_else(|e| panic!("{file} was not written: {e}"));
        assert!(!text.contains("{{"), "{file} keeps a placeholder");
        assert!(
            printed.contains(&format!("filters/{name}/{file}")),
            "{printed}"
        );
    }
    for next in [
        format!("cargo build --target wasm32-wasip1 --release -p {name}"),
        format!("cargo test -p {name}"),
        format!("harness test filters/{name}/tests/{name}.yaml"),
    ] {
        assert!(
            printed.contains(&next),
            "`{next}` not suggested:\n{printed}"
        );
    }

    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    std::fs::write(ws.join("Cargo.toml"), throwaway_manifest(&manifest)).unwrap();
    // This repo's lock file (the same dependency versions: the builds in
    // target/scaffold-test are reused and nothing needs resolving) and its
    // lint and format settings (the checks below are this repo's own).
    for file in ["Cargo.lock", "clippy.toml", "rustfmt.toml"] {
        std::fs::copy(workspace_root().join(file), ws.join(file)).unwrap();
    }

    // The generated code meets this workspace's own bar.
    cargo(ws, &target_dir, &["fmt", "-p", name, "--", "--check"]);
    let lint = [
        "clippy",
        "-p",
        name,
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ];
    cargo(ws, &target_dir, &lint);
    let wasm_args = [
        "build",
        "--target",
        "wasm32-wasip1",
        "--release",
        "-p",
        name,
    ];
    cargo(ws, &target_dir, &wasm_args);
    let wasm = target_dir.join(format!(
        "wasm32-wasip1/release/{}.wasm",
        name.replace('-', "_")
    ));
    assert!(wasm.is_file(), "{} was not built", wasm.display());

    let tested = cargo(ws, &target_dir, &["test", "-p", name]);
    let (passed, failed) = test_counts(&tested);
    assert_eq!(failed, 0, "{}", stdout(&tested));
    assert!(
        passed >= unit_tests,
        "only {passed} unit tests ran:\n{}",
        stdout(&tested)
    );

    // The scenario names `target/...`: the harness follows CARGO_TARGET_DIR
    // to the built module. Then the same file on the native twin, as
    // `make test-scenarios` runs every filter's scenarios.
    let scenario = crate_dir.join(format!("tests/{name}.yaml"));
    let wasm_run = harness_test(ws, &target_dir, &scenario, &[]);
    cargo(ws, &target_dir, &["build", "--lib", "-p", name]);
    let native_dir = target_dir.join("debug");
    let native = native_dir.to_str().unwrap();
    let native_run = harness_test(ws, &target_dir, &scenario, &["--native", native]);
    for (backend, run) in [("wasm", wasm_run), ("native", native_run)] {
        let report = stdout(&run);
        assert!(run.status.success(), "{backend}: {report}{}", stderr(&run));
        assert_eq!(
            report.lines().last(),
            Some(format!("{cases} passed, 0 failed").as_str()),
            "{backend}: {report}"
        );
    }
    eprintln!(
        "harness new {name}: generated crate built, tested and run in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn names_cargo_or_the_workspace_would_refuse_are_refused_before_anything_is_written() {
    let scratch = Scratch::new("names");
    for (name, reason) in [
        ("My-Filter", "`M` is not allowed"),
        ("my_filter", "like `my-filter`"),
        ("9lives", "must start with a letter"),
        ("my--filter", "doubled hyphen"),
        ("sdk-ext", "already the name of a crate"),
        ("", "empty"),
    ] {
        let dir = scratch.0.join("out");
        let refused = harness_new(&scratch.0, &[name, "--dir", dir.to_str().unwrap()]);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{name}: {}",
            stderr(&refused)
        );
        let message = stderr(&refused);
        assert!(message.starts_with("harness new: "), "{message}");
        assert!(message.contains(reason), "{name}: {message}");
        assert!(!dir.exists(), "{name}: {} was created", dir.display());
    }
}

#[test]
fn an_existing_directory_is_refused_and_left_as_it_was() {
    let scratch = Scratch::new("exists");
    let dir = scratch.0.join("filters/taken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine\n").unwrap();
    std::fs::write(scratch.0.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    for args in [vec!["taken"], vec!["taken", "--dir", dir.to_str().unwrap()]] {
        let refused = harness_new(&scratch.0, &args);
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("already exists; nothing was written"),
            "{}",
            stderr(&refused)
        );
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "files appeared in {}", dir.display());
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine\n"
        );
    }
}

#[test]
fn outside_a_workspace_it_asks_for_dir() {
    let scratch = Scratch::new("nowhere");
    let refused = harness_new(&scratch.0, &["lonely"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--dir PATH"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read_dir(&scratch.0).unwrap().count(), 0);

    let dir = scratch.0.join("lonely");
    let created = harness_new(&scratch.0, &["lonely", "--dir", dir.to_str().unwrap()]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(dir.join("src/lib.rs").is_file());
}

#[test]
fn a_workspace_that_does_not_take_in_filters_gets_a_note() {
    let scratch = Scratch::new("members");
    std::fs::write(
        scratch.0.join("Cargo.toml"),
        "[workspace]\nmembers = [\"tools\"]\n",
    )
    .unwrap();
    let created = harness_new(&scratch.0, &["stray"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let printed = stdout(&created);
    assert!(scratch.0.join("filters/stray/Cargo.toml").is_file());
    assert!(
        printed.contains("does not list filters/* among its [workspace] members"),
        "{printed}"
    );
}
