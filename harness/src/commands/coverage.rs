//! `harness test --coverage`: which lines of a filter's own sources its
//! scenarios reach. The filter crates the scenarios name are built for the
//! host with `-C instrument-coverage` into `<target>/coverage` (only the
//! filter crate is instrumented, so its dependencies build once and the
//! normal build is untouched); the scenarios then run on those native twins
//! in a child `harness test --native` with `LLVM_PROFILE_FILE` set, and
//! rustup's llvm-tools turn the profiles into lcov and HTML.
//!
//! Each native VM loads a private copy of the library, each copy with its
//! own counters and profile runtime. The runtime writes its counters when a
//! copy is unloaded or at exit; the `%m` in the file pattern makes every
//! copy merge into one file per process instead of the last one replacing
//! the others' counts.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use harness::scenario::resolve_module;

use super::stale::{is_workspace, member_building};

/// What `harness test` passes on to a coverage run.
pub(super) struct Request<'a> {
    pub paths: &'a [PathBuf],
    pub cases: &'a [String],
    pub junit: Option<&'a Path>,
    /// Where the reports go; `<target>/coverage/report` when unset.
    pub report_dir: Option<&'a Path>,
}

/// A filter crate the scenarios run, found in the workspace.
struct Filter {
    package: String,
    /// `response_header`: the `.wasm` stem and `lib<name>.so`.
    lib_name: String,
    sources: PathBuf,
    /// True when a scenario's `.wasm` is not built yet (the runner resolves
    /// a twin through the path of its module).
    wasm_missing: bool,
}

/// Builds, runs and reports; exits like `harness test` (0 all passed, 1 a
/// case failed) or 2 when coverage could not be measured.
pub(super) fn command(request: &Request) -> ExitCode {
    match measure(request) {
        Ok(code) => code,
        Err(message) => super::usage_error("harness test --coverage", &message),
    }
}

fn measure(request: &Request) -> Result<ExitCode, String> {
    let tools = LlvmTools::find()?;
    let (root, filters) = filters_named(request.paths)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"))
        .join("coverage");
    build(&root, &target, &filters)?;

    let report_dir = request
        .report_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| target.join("report"));
    // Per report, so that two runs writing different reports do not mix.
    let profiles = report_dir.join("profraw");
    // Profiles of an earlier run would add to this one's counts.
    if profiles.exists() {
        std::fs::remove_dir_all(&profiles)
            .map_err(|e| format!("cannot clear {}: {e}", profiles.display()))?;
    }
    std::fs::create_dir_all(&profiles)
        .map_err(|e| format!("cannot create {}: {e}", profiles.display()))?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the harness executable to run the scenarios: {e}"))?;
    let mut child = Command::new(exe);
    child
        .arg("test")
        .arg("--native")
        .arg(target.join("debug"))
        .env("LLVM_PROFILE_FILE", profiles.join("%p-%m.profraw"));
    for case in request.cases {
        child.arg("--case").arg(case);
    }
    if let Some(junit) = request.junit {
        child.arg("--junit").arg(junit);
    }
    let status = child
        .arg("--")
        .args(request.paths)
        .status()
        .map_err(|e| format!("cannot run the scenarios on the instrumented twins: {e}"))?;
    if status.code() == Some(i32::from(super::EXIT_USAGE)) {
        // The child said why; a usage error ran no case worth reporting.
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }

    let profile = tools.merge(&profiles, &report_dir.join("coverage.profdata"))?;
    for filter in &filters {
        let library = target
            .join("debug")
            .join(format!("lib{}.so", filter.lib_name));
        let out = report_dir.join(&filter.package);
        let lines = tools.report(&profile, &library, &filter.sources, &out)?;
        println!(
            "coverage: {}: {} of {} lines ({:.1}%), {}",
            filter.package,
            lines.covered,
            lines.total,
            lines.percent(),
            shown(&out.join("html/index.html")).display()
        );
    }
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// `path` relative to the current directory when it is under it.
fn shown(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|here| std::fs::canonicalize(here).ok())
        .and_then(|here| path.strip_prefix(here).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

/// The workspace root and the filter crates behind the `.wasm` modules the
/// scenarios under `paths` name.
fn filters_named(paths: &[PathBuf]) -> Result<(PathBuf, Vec<Filter>), String> {
    let mut root: Option<PathBuf> = None;
    let mut filters: Vec<Filter> = Vec::new();
    for (spec, base) in super::test::module_specs(paths) {
        let module = Path::new(&spec);
        let lib_name = match (module.extension(), module.file_stem()) {
            (Some(ext), Some(stem)) if ext == "wasm" => stem.to_string_lossy().into_owned(),
            _ => {
                return Err(format!(
                    "module {spec} is not a .wasm file built from a Rust filter crate; \
                     coverage needs its crate (run those scenarios without --coverage)"
                ));
            }
        };
        let here = std::fs::canonicalize(&base).unwrap_or(base.clone());
        let Some(workspace) = here.ancestors().find(|dir| is_workspace(dir)) else {
            return Err(format!(
                "{} is not inside a cargo workspace: coverage builds the filter crates, \
                 run it on scenarios of the workspace that holds them",
                base.display()
            ));
        };
        let root = root.get_or_insert_with(|| workspace.to_path_buf());
        let wasm_missing = resolve_module(&spec, &base).is_err();
        if let Some(known) = filters.iter_mut().find(|f| f.lib_name == lib_name) {
            known.wasm_missing |= wasm_missing;
            continue;
        }
        let Some((member, package)) = member_building(root, &lib_name) else {
            return Err(format!(
                "no member of the workspace at {} builds {lib_name}.wasm (named in a scenario \
                 under {}); coverage measures the workspace's own filter crates",
                root.display(),
                base.display()
            ));
        };
        filters.push(Filter {
            package,
            lib_name,
            sources: member.join("src"),
            wasm_missing,
        });
    }
    match root {
        Some(root) if !filters.is_empty() => Ok((root, filters)),
        _ => Err(
            "the scenarios name no module to measure (give scenario files or \
                  directories, e.g. filters/<name>/tests)"
                .to_string(),
        ),
    }
}

/// Builds the missing `.wasm` modules and every instrumented twin.
fn build(root: &Path, target: &Path, filters: &[Filter]) -> Result<(), String> {
    let missing: Vec<&Filter> = filters.iter().filter(|f| f.wasm_missing).collect();
    if !missing.is_empty() {
        let mut wasm = cargo(root);
        wasm.args(["build", "--quiet", "--target", "wasm32-wasip1", "--release"]);
        for filter in &missing {
            wasm.args(["-p", &filter.package]);
        }
        run_cargo(wasm, "building the .wasm modules the scenarios name")?;
    }
    for filter in filters {
        eprintln!(
            "harness test --coverage: building {} with -C instrument-coverage in {}",
            filter.package,
            shown(target).display()
        );
        let mut twin = cargo(root);
        twin.args(["rustc", "--quiet", "--lib", "-p", &filter.package])
            .arg("--target-dir")
            .arg(target)
            .args(["--", "-C", "instrument-coverage"]);
        run_cargo(
            twin,
            &format!("building the instrumented twin of {}", filter.package),
        )?;
    }
    Ok(())
}

fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root);
    command
}

fn run_cargo(mut command: Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("{what}: cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed (cargo's errors above)"))
    }
}

/// llvm-profdata and llvm-cov from the toolchain's own sysroot: they read
/// the profile format of the LLVM that rustc is built on (a system LLVM of
/// another version may not).
struct LlvmTools {
    bin: PathBuf,
}

/// Lines of the filter's sources with code, and those the cases ran.
struct Lines {
    covered: u64,
    total: u64,
}

impl Lines {
    fn percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        100.0 * self.covered as f64 / self.total as f64
    }
}

impl LlvmTools {
    fn find() -> Result<LlvmTools, String> {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let sysroot = output_of(Command::new(&rustc).args(["--print", "sysroot"]))?;
        let version = output_of(Command::new(&rustc).arg("-vV"))?;
        let host = version
            .lines()
            .find_map(|line| line.strip_prefix("host: "))
            .ok_or_else(|| format!("`{rustc} -vV` names no host triple"))?;
        let bin = Path::new(sysroot.trim())
            .join("lib/rustlib")
            .join(host.trim())
            .join("bin");
        for tool in ["llvm-profdata", "llvm-cov"] {
            if !bin.join(tool).is_file() {
                return Err(format!(
                    "{tool} is not in {}: install rustup's llvm-tools component \
                     (`rustup component add llvm-tools`, or scripts/setup.sh)",
                    bin.display()
                ));
            }
        }
        Ok(LlvmTools { bin })
    }

    /// Merges every `.profraw` in `dir` into `out`.
    fn merge(&self, dir: &Path, out: &Path) -> Result<PathBuf, String> {
        let raw: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "profraw"))
            .collect();
        if raw.is_empty() {
            return Err(format!(
                "no profile was written to {} (did any case run? a twin that aborts the \
                 process writes none)",
                dir.display()
            ));
        }
        let mut merge = Command::new(self.bin.join("llvm-profdata"));
        merge.args(["merge", "-sparse", "-o"]).arg(out).args(&raw);
        output_of(&mut merge)?;
        Ok(out.to_path_buf())
    }

    /// Writes `out/lcov.info` and `out/html/` for the lines of `sources`
    /// that `library` holds, and counts them.
    fn report(
        &self,
        profile: &Path,
        library: &Path,
        sources: &Path,
        out: &Path,
    ) -> Result<Lines, String> {
        let html = out.join("html");
        std::fs::create_dir_all(&html)
            .map_err(|e| format!("cannot create {}: {e}", html.display()))?;
        let cov = |subcommand: &str| {
            let mut command = Command::new(self.bin.join("llvm-cov"));
            command
                .arg(subcommand)
                .arg("-instr-profile")
                .arg(profile)
                .arg(library);
            command
        };
        let lcov = demangle_lcov(&output_of(cov("export").arg("-format=lcov").arg(sources))?);
        let lcov_file = out.join("lcov.info");
        std::fs::write(&lcov_file, &lcov)
            .map_err(|e| format!("cannot write {}: {e}", lcov_file.display()))?;
        let mut show = cov("show");
        show.arg("-format=html")
            .arg(format!("-output-dir={}", html.display()))
            .arg(sources);
        // llvm-cov pipes the names through a demangler program: this one.
        if let Ok(me) = std::env::current_exe() {
            show.arg(format!("-Xdemangler={}", me.display()))
                .arg("-Xdemangler=demangle");
        }
        output_of(&mut show)?;
        Ok(count_lines(&lcov))
    }
}

/// The lcov report with Rust function names (`FN:`, `FNDA:` records)
/// demangled, without their hashes.
fn demangle_lcov(lcov: &str) -> String {
    let mut out = String::with_capacity(lcov.len());
    for line in lcov.lines() {
        let record = ["FN:", "FNDA:"].into_iter().find(|p| line.starts_with(p));
        match record.and_then(|p| {
            line[p.len()..]
                .split_once(',')
                .map(|(n, name)| (p, n, name))
        }) {
            Some((prefix, number, name)) => {
                let name = harness::symbols::demangled(name);
                out.push_str(&format!("{prefix}{number},{name}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `harness demangle` (hidden; llvm-cov's `-Xdemangler`): each stdin line,
/// a symbol, demangled on stdout.
pub fn demangle_stdin() -> std::process::ExitCode {
    use std::io::{BufRead, Write};
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if writeln!(out, "{}", harness::symbols::demangled(&line)).is_err() {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

/// The `LF` (lines found) and `LH` (lines hit) records of an lcov file, summed.
fn count_lines(lcov: &str) -> Lines {
    let mut lines = Lines {
        covered: 0,
        total: 0,
    };
    for line in lcov.lines() {
        let number = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(n) = number("LF:") {
            lines.total += n;
        } else if let Some(n) = number("LH:") {
            lines.covered += n;
        }
    }
    lines
}

/// Runs `command` and returns its stdout, or an error with its stderr.
fn output_of(command: &mut Command) -> Result<String, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| format!("{program} printed text that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::count_lines;

    #[test]
    fn lcov_line_records_are_summed_over_files() {
        let lcov =
            "SF:a.rs\nDA:1,3\nLF:10\nLH:4\nend_of_record\nSF:b.rs\nLF:5\nLH:5\nend_of_record\n";
        let lines = count_lines(lcov);
        assert_eq!((lines.covered, lines.total), (9, 15));
        assert!((lines.percent() - 60.0).abs() < 1e-9);
    }
}
