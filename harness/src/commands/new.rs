//! `harness new <name>`: a new filter crate laid out like the example filters
//! (typed configuration validated in `on_configure`, plain-Rust logic with
//! unit tests, a thin sdk-ext adapter, README, a scenario file), which builds,
//! tests and runs as generated. The files come from `harness/templates/filter`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

/// `harness new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// The crate name: lowercase letters, digits and single hyphens, starting
    /// with a letter (e.g. `add-tenant`). The module is `<name with _>.wasm`.
    name: String,
    /// Where to create the crate [default: filters/<name> in the Cargo
    /// workspace around the current directory].
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// A TCP (network) filter instead of an HTTP one: sdk-ext's
    /// NetworkFilter, scenarios with `connect` steps, a WasmPlugin with
    /// `type: NETWORK`.
    #[arg(long)]
    tcp: bool,
}

/// Each template and the path it is written to inside the new crate; both
/// have their placeholders (`{{crate_name}}`, ...) replaced.
const TEMPLATES: [(&str, &str); 6] = [
    (
        "Cargo.toml",
        include_str!("../../templates/filter/Cargo.toml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/filter/README.md.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/filter/src/lib.rs.tmpl"),
    ),
    (
        "src/config.rs",
        include_str!("../../templates/filter/src/config.rs.tmpl"),
    ),
    (
        "src/policy.rs",
        include_str!("../../templates/filter/src/policy.rs.tmpl"),
    ),
    (
        "tests/{{crate_name}}.yaml",
        include_str!("../../templates/filter/tests/filter.yaml.tmpl"),
    ),
];

/// The TCP (network) filter's templates (`harness new --tcp`), written to
/// the same paths.
const TCP_TEMPLATES: [(&str, &str); 6] = [
    (
        "Cargo.toml",
        include_str!("../../templates/tcp-filter/Cargo.toml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/tcp-filter/README.md.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/tcp-filter/src/lib.rs.tmpl"),
    ),
    (
        "src/config.rs",
        include_str!("../../templates/tcp-filter/src/config.rs.tmpl"),
    ),
    (
        "src/policy.rs",
        include_str!("../../templates/tcp-filter/src/policy.rs.tmpl"),
    ),
    (
        "tests/{{crate_name}}.yaml",
        include_str!("../../templates/tcp-filter/tests/filter.yaml.tmpl"),
    ),
];

/// Names a new crate may not take: the template's dependencies and this
/// workspace's own crates (cargo refuses two packages of one name), and
/// the crates every Rust program can already name.
const TAKEN_NAMES: [&str; 11] = [
    "sdk-ext",
    "proxy-abi",
    "proxy-wasm",
    "harness",
    "publish",
    "log",
    "serde",
    "std",
    "core",
    "alloc",
    "test",
];

/// Words a library cannot be named, even when cargo would take the package name.
const RUST_KEYWORDS: [&str; 51] = [
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "union", "unsafe", "unsized", "use", "virtual", "where", "while",
];

/// What a refused `harness new` prints, and its exit status.
enum Refused {
    /// Exit status 2: the name or the missing `--dir`.
    Usage(String),
    /// Exit status 1: the directory exists or could not be written.
    Failed(String),
}

/// Runs `harness new`: 0 when the crate was written, 1 when the directory
/// exists or cannot be written, 2 for a name that is not valid or no
/// workspace to put the crate in.
pub fn command(args: &NewArgs) -> ExitCode {
    const COMMAND: &str = "harness new";
    match create(args) {
        Ok(report) => match super::written(std::io::stdout().write_all(report.as_bytes())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::failed(COMMAND, &e),
        },
        Err(Refused::Usage(message)) => super::usage_error(COMMAND, &message),
        Err(Refused::Failed(message)) => {
            eprintln!("{COMMAND}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Checks, writes the crate, and returns what to print.
fn create(args: &NewArgs) -> Result<String, Refused> {
    check_name(&args.name).map_err(Refused::Usage)?;
    let names = Names::of(&args.name);
    let (dir, root) = match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let root = workspace_root()?;
            (root.join("filters").join(&args.name), Some(root))
        }
    };
    if dir.exists() {
        return Err(Refused::Failed(format!(
            "{} already exists; nothing was written. Choose another name, or --dir PATH",
            dir.display()
        )));
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Refused::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    // create_dir, not create_dir_all: it fails if the directory appeared meanwhile.
    std::fs::create_dir(&dir)
        .map_err(|e| Refused::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let templates = if args.tcp { &TCP_TEMPLATES } else { &TEMPLATES };
    let written = write_files(&dir, &names, templates).inspect_err(|_| {
        // Only what this call created: the directory did not exist before.
        let _ = std::fs::remove_dir_all(&dir);
    })?;
    let mut out = report(&dir, &names, &written);
    if let Some(root) = root {
        out.push_str(&membership_note(&root, &names.crate_name));
    }
    Ok(out)
}

/// The workspace around the current directory.
fn workspace_root() -> Result<PathBuf, Refused> {
    let cwd = std::env::current_dir().map_err(|e| {
        Refused::Failed(format!(
            "cannot read the current directory: {e}; give --dir PATH"
        ))
    })?;
    let root = cwd
        .ancestors()
        .find(|dir| super::stale::is_workspace(dir))
        .ok_or_else(|| {
            Refused::Usage(format!(
                "no Cargo.toml with [workspace] in {} or above it; run this inside the \
                 workspace, or give the crate's directory with --dir PATH",
                cwd.display()
            ))
        })?;
    Ok(root.to_path_buf())
}

/// A hint when the workspace's members do not take in `filters/<name>`
/// (cargo then refuses to build it); empty when they do.
fn membership_note(root: &Path, crate_name: &str) -> String {
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    let member = format!("\"filters/{crate_name}\"");
    if text.contains("\"filters/*\"") || text.contains(&member) {
        return String::new();
    }
    format!(
        "note: {} does not list filters/* among its [workspace] members; add \"filters/*\" \
         (or {member}) there before building\n",
        manifest.display()
    )
}

/// Writes every template into `dir`; returns the paths written, relative to `dir`.
fn write_files(
    dir: &Path,
    names: &Names,
    templates: &[(&str, &str)],
) -> Result<Vec<String>, Refused> {
    let mut written = Vec::new();
    for &(path, template) in templates {
        let relative = names.substitute(path);
        let file = dir.join(&relative);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Refused::Failed(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&file, names.substitute(template))
            .map_err(|e| Refused::Failed(format!("cannot write {}: {e}", file.display())))?;
        written.push(relative);
    }
    Ok(written)
}

/// The files created and the commands to run next, with paths as the user
/// would type them from the current directory.
fn report(dir: &Path, names: &Names, written: &[String]) -> String {
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| dir.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| dir.to_path_buf());
    let shown = shown.display();
    let mut out = format!(
        "created {} (module {}.wasm) in {shown}:\n",
        names.crate_name, names.lib_name
    );
    for file in written {
        out.push_str(&format!("  {shown}/{file}\n"));
    }
    out.push_str(&format!(
        "next:\n  \
         cargo build --target wasm32-wasip1 --release -p {crate_name}\n  \
         cargo test -p {crate_name}\n  \
         harness test {shown}/tests/{crate_name}.yaml\n",
        crate_name = names.crate_name
    ));
    out
}

/// A crate name cargo and this workspace accept, or why not.
fn check_name(name: &str) -> Result<(), String> {
    let hint = "use lowercase letters, digits and single hyphens, starting with a letter \
                (e.g. add-tenant)";
    if name.is_empty() {
        return Err(format!("the crate name is empty; {hint}"));
    }
    if name.len() > 64 {
        return Err(format!(
            "`{name}` is {} characters long; crate names have at most 64",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let suggestion = name.to_ascii_lowercase().replace(['_', ' ', '.'], "-");
        return Err(format!(
            "`{name}` is not a valid filter crate name (`{bad}` is not allowed); {hint}, \
             like `{suggestion}`"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("`{name}` must start with a letter; {hint}"));
    }
    if name.ends_with('-') || name.contains("--") {
        return Err(format!("`{name}` has a trailing or doubled hyphen; {hint}"));
    }
    if TAKEN_NAMES.contains(&name) {
        return Err(format!(
            "`{name}` is already the name of a crate this one builds with; choose another"
        ));
    }
    if RUST_KEYWORDS.contains(&name) {
        return Err(format!(
            "`{name}` is a Rust keyword and cannot name a library; choose another"
        ));
    }
    Ok(())
}

/// The names the templates use, all derived from the crate name.
struct Names {
    /// `add-tenant`: the package, `Plugin::NAME`, the scenario's plugin name.
    crate_name: String,
    /// `add_tenant`: the library and its module file `add_tenant.wasm`.
    lib_name: String,
    /// `AddTenant`: the plugin type.
    type_name: String,
    /// `Add tenant`: the README's and the description's words.
    title: String,
}

impl Names {
    /// Names for a crate name [`check_name`] accepted.
    fn of(crate_name: &str) -> Names {
        let words: Vec<&str> = crate_name.split('-').collect();
        let capitalised = |word: &str| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        };
        Names {
            crate_name: crate_name.to_string(),
            lib_name: crate_name.replace('-', "_"),
            type_name: words.iter().map(|w| capitalised(w)).collect(),
            title: capitalised(&words.join(" ")),
        }
    }

    fn substitute(&self, template: &str) -> String {
        template
            .replace("{{crate_name}}", &self.crate_name)
            .replace("{{lib_name}}", &self.lib_name)
            .replace("{{type_name}}", &self.type_name)
            .replace("{{title}}", &self.title)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_workspace_conventions() {
        let names = Names::of("add-tenant2");
        assert_eq!(names.lib_name, "add_tenant2");
        assert_eq!(names.type_name, "AddTenant2");
        assert_eq!(names.title, "Add tenant2");
        let single = Names::of("cors");
        assert_eq!(
            (single.type_name.as_str(), single.title.as_str()),
            ("Cors", "Cors")
        );
    }

    #[test]
    fn every_placeholder_of_every_template_is_replaced() {
        let names = Names::of("add-tenant");
        for (path, template) in TEMPLATES.into_iter().chain(TCP_TEMPLATES) {
            for text in [names.substitute(path), names.substitute(template)] {
                assert!(!text.contains("{{"), "{path}: a placeholder is left");
            }
            assert!(template.contains("{{crate_name}}"), "{path} names no crate");
        }
    }

    #[test]
    fn valid_names_are_accepted() {
        for name in ["a", "add-tenant", "rate-limit-v2", "x1"] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_names_are_refused_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("Add-Tenant", "`A` is not allowed"),
            ("add_tenant", "like `add-tenant`"),
            ("add tenant", "` ` is not allowed"),
            ("2fa", "must start with a letter"),
            ("-x", "must start with a letter"),
            ("add-", "trailing or doubled hyphen"),
            ("add--tenant", "trailing or doubled hyphen"),
            ("sdk-ext", "already the name"),
            ("fn", "Rust keyword"),
        ];
        for (name, reason) in cases {
            let err = check_name(name).expect_err(name);
            assert!(err.contains(reason), "{name}: {err}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }
}
