//! `harness test`: runs scenario files and reports `N passed, N failed`;
//! for CI also as JUnit XML (`--junit FILE`) or JSON (`--json`), and on a
//! selection of cases (`--case PATTERN`); with `--coverage`, the lines of
//! each filter's sources the scenarios reach (coverage.rs).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use harness::scenario::{Runner, find_scenarios, parse, resolve_module};

/// `harness test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Scenario files or directories holding them.
    paths: Vec<PathBuf>,
    /// Run each `<name>.wasm` as its native twin `<DIR>/lib<name>.so` instead.
    #[arg(long, value_name = "DIR")]
    native: Option<PathBuf>,
    /// Also write the results as JUnit XML to FILE (one testsuite per scenario file).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print the results as one JSON document on stdout instead of the report.
    #[arg(long)]
    json: bool,
    /// Run only cases whose name contains PATTERN, or matches it as a glob
    /// when it has `*` or `?` (repeatable: a case matching any runs).
    #[arg(long = "case", value_name = "PATTERN")]
    cases: Vec<String>,
    /// Run this module wherever a scenario names one of its own (e.g. a
    /// debug build, or a copy under test).
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
    /// Run on native twins built with `-C instrument-coverage` and write, per
    /// filter crate, lcov and HTML of the source lines the cases reached to
    /// DIR/<crate>/ [default: target/coverage/report].
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true,
          conflicts_with_all = ["native", "json", "module"])]
    coverage: Option<Option<PathBuf>>,
}

/// Runs the selected cases of every scenario: 0 when every case passed, 1
/// when one failed, 2 for a usage error.
pub fn command(args: &TestArgs) -> ExitCode {
    const COMMAND: &str = "harness test";
    if args.paths.is_empty() {
        return super::usage_error(
            COMMAND,
            "give scenario files or directories (e.g. filters/*/tests)",
        );
    }
    if !args.cases.is_empty()
        && let Err(message) = check_selection(&args.paths, &args.cases)
    {
        return super::usage_error(COMMAND, &message);
    }
    if let Some(report_dir) = &args.coverage {
        let request = super::coverage::Request {
            paths: &args.paths,
            cases: &args.cases,
            junit: args.junit.as_deref(),
            report_dir: report_dir.as_deref(),
        };
        return super::coverage::command(&request);
    }
    let mut runner = match &args.native {
        Some(dir) => Runner::native(dir),
        None => Runner::new(),
    };
    if let Some(module) = &args.module {
        if !module.is_file() {
            return super::usage_error(
                COMMAND,
                &format!("--module {} does not exist", module.display()),
            );
        }
        runner.override_module(module);
    }
    // Native twins live elsewhere; their .wasm's age says nothing about them.
    if args.native.is_none() {
        for module in modules_used(args) {
            super::stale::warn_if_stale(&module);
        }
    }
    if !args.cases.is_empty() {
        let patterns = args.cases.clone();
        runner.select_cases(move |name| selected(&patterns, name));
    }
    let summary = if args.json {
        runner.run_paths(&args.paths, &mut std::io::sink())
    } else {
        runner.run_paths(&args.paths, &mut std::io::stdout())
    };
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, summary.to_junit())
    {
        return super::usage_error(
            COMMAND,
            &format!("cannot write the JUnit report {}: {e}", path.display()),
        );
    }
    if args.json {
        let mut out = std::io::stdout().lock();
        let written = serde_json::to_writer_pretty(&mut out, &summary)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out));
        if let Err(e) = super::written(written) {
            return super::usage_error(COMMAND, &format!("the JSON report: {e}"));
        }
    }
    if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// An error naming the patterns when no case of any readable scenario
/// file matches them (files that do not load are reported by the run).
fn check_selection(paths: &[PathBuf], patterns: &[String]) -> Result<(), String> {
    let mut names = Vec::new();
    for path in paths {
        for file in find_scenarios(path).unwrap_or_default() {
            names.extend(case_names(&file));
        }
    }
    if names.iter().any(|name| selected(patterns, name)) {
        return Ok(());
    }
    let patterns: Vec<String> = patterns.iter().map(|p| format!("'{p}'")).collect();
    Err(format!(
        "no case matches --case {} among the {} case(s) found; a pattern without `*` or `?` \
         matches names containing it",
        patterns.join(", --case "),
        names.len()
    ))
}

/// Every module the scenarios under `args.paths` would load (the
/// override alone when `--module` is given), each once.
fn modules_used(args: &TestArgs) -> BTreeSet<PathBuf> {
    if let Some(module) = &args.module {
        return BTreeSet::from([module.clone()]);
    }
    (module_specs(&args.paths).into_iter())
        .filter_map(|(spec, base)| resolve_module(&spec, &base).ok())
        .collect()
}

/// The module each plugin of the readable scenario files under `paths`
/// names, as written, with the directory it is relative to.
pub(super) fn module_specs(paths: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut specs = Vec::new();
    for file in paths
        .iter()
        .flat_map(|p| find_scenarios(p).unwrap_or_default())
    {
        let Some(scenario) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| parse(&text, &file.display().to_string()).ok())
        else {
            continue;
        };
        let base = file.parent().unwrap_or(Path::new("."));
        let named = (scenario.plugins.iter())
            .chain(std::iter::once(&scenario.plugin))
            .chain(scenario.cases.iter().map(|c| &c.plugin))
            .filter_map(|p| p.module.clone());
        specs.extend(named.map(|spec| (spec, base.to_path_buf())));
    }
    specs
}

fn case_names(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| parse(&text, &file.display().to_string()).ok())
        .map(|scenario| scenario.cases.into_iter().map(|c| c.name).collect())
        .unwrap_or_default()
}

/// True when `name` matches one of `patterns`.
fn selected(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches_pattern(p, name))
}

/// A glob (`*` any run of characters, `?` one) when the pattern has one of
/// them, else a substring.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return name.contains(pattern);
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    glob(&pattern, &name)
}

/// Iterative glob match with backtracking to the last `*`.
fn glob(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some('?') => (p, n) = (p + 1, n + 1),
            Some(c) if *c == name[n] => (p, n) = (p + 1, n + 1),
            _ => match star {
                Some((sp, sn)) => {
                    (p, n) = (sp + 1, sn + 1);
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches_pattern;

    #[test]
    fn patterns_are_substrings_unless_they_have_glob_characters() {
        assert!(matches_pattern("status", "wrong status and missing log"));
        assert!(!matches_pattern("Status", "wrong status and missing log"));
        assert!(matches_pattern("wrong*", "wrong status and missing log"));
        assert!(!matches_pattern("status*", "wrong status and missing log"));
        assert!(matches_pattern(
            "*missing log",
            "wrong status and missing log"
        ));
        assert!(matches_pattern("w?ong*log", "wrong status and missing log"));
        assert!(matches_pattern("*a*b*", "xaybz"));
        assert!(!matches_pattern("*a*b", "xaybz"));
        assert!(matches_pattern("*", ""));
        assert!(!matches_pattern("?", ""));
    }
}
