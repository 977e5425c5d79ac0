//! `harness test --coverage`: response-header's scenarios run on its
//! instrumented native twin reach some of its source lines, and fewer when
//! one scenario file is left out (bad-config.yaml is the only one that
//! reaches the config errors).

use std::path::{Path, PathBuf};

use crate::cli::{harness, stderr, stdout};
use crate::cli_world::tempdir;
use crate::support::{module, workspace_root};

const TESTS: &str = "filters/response-header/tests";
const SOURCES: &str = "filters/response-header/src/";

/// Lines hit, summed over the lcov records of files under `SOURCES`.
fn lines_hit(lcov: &Path) -> u64 {
    let text = std::fs::read_to_string(lcov).expect("read lcov.info");
    let sources = workspace_root().join(SOURCES);
    let mut in_sources = false;
    let mut hit = 0;
    for line in text.lines() {
        if let Some(file) = line.strip_prefix("SF:") {
            assert!(
                Path::new(file).starts_with(&sources),
                "lcov covers {file}, outside {SOURCES}"
            );
            in_sources = true;
        } else if let Some(count) = line.strip_prefix("DA:").and_then(|d| d.split(',').nth(1)) {
            if in_sources && count.parse::<u64>().expect("DA count") > 0 {
                hit += 1;
            }
        } else if line == "end_of_record" {
            in_sources = false;
        }
    }
    hit
}

/// Runs `harness test --coverage=<tmp>` on `files`; the lcov file it wrote.
fn coverage_of(files: &[PathBuf]) -> PathBuf {
    let report = tempdir();
    let mut args = vec![format!("--coverage={}", report.display())];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let mut argv = vec!["test"];
    argv.extend(args.iter().map(String::as_str));
    let output = harness(&argv);
    assert!(
        output.status.success(),
        "harness test --coverage failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("coverage: response-header: "),
        "no summary line:\n{}",
        stdout(&output)
    );
    assert!(report.join("response-header/html/index.html").is_file());
    let lcov = report.join("response-header/lcov.info");
    // Function names as written in the source, not mangled symbols.
    let text = std::fs::read_to_string(&lcov).expect("read lcov.info");
    let names: Vec<&str> = text.lines().filter(|l| l.starts_with("FN:")).collect();
    assert!(
        names.iter().any(|l| l.contains("response_header::")),
        "{names:#?}"
    );
    assert!(
        !names
            .iter()
            .any(|l| l.contains(",_ZN") || l.contains(",_R")),
        "{names:#?}"
    );
    lcov
}

#[test]
fn coverage_counts_the_lines_the_scenarios_reach_and_fewer_without_one() {
    let _ = module("response_header.wasm");
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join(TESTS))
        .expect("read the scenario directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let all = lines_hit(&coverage_of(&files));
    assert!(all > 0, "no line of {SOURCES} was covered");

    files.retain(|path| !path.ends_with("bad-config.yaml"));
    let fewer = lines_hit(&coverage_of(&files));
    assert!(
        fewer < all,
        "without bad-config.yaml {fewer} lines were covered, with it {all}"
    );
}

/// Modules no crate of the workspace builds are refused before anything is
/// built, naming the module (exit 2, like any usage error).
#[test]
fn coverage_refuses_modules_that_are_not_workspace_crates() {
    for (file, says) in [
        (
            "harness/scenarios/wat-response-header.yaml",
            "is not a .wasm file",
        ),
        (
            "harness/scenarios/as-add-header.yaml",
            "builds add_header.wasm",
        ),
    ] {
        let output = harness(&["test", "--coverage", file]);
        assert_eq!(output.status.code(), Some(2), "{file}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(says),
            "{file}: stderr lacks '{says}':\n{}",
            stderr(&output)
        );
    }
    let output = harness(&["test", "--coverage", "--native", "target/debug", TESTS]);
    assert_eq!(output.status.code(), Some(2), "--native with --coverage");
}
