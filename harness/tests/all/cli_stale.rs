//! Stale modules: `harness run` and `harness test` warn when a module is
//! older than its crate's sources, in a temp copy of a workspace holding
//! the probe's .wasm under another crate's name; `--module` on `harness test`.

use std::fs::{File, FileTimes};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cli::{harness, stderr, stdout};
use crate::cli_world::tempdir;
use crate::support::{probe_module, wasm_dir};

const REBUILD: &str = "cargo build -p my-filter --target wasm32-wasip1 --release";

/// A workspace with one member `filters/my-filter`, its module built (a
/// copy of the probe) and a scenario file naming it by its target path.
fn workspace() -> (PathBuf, PathBuf) {
    let _ = probe_module();
    let root = tempdir();
    let member = root.join("filters/my-filter");
    std::fs::create_dir_all(member.join("src/logic")).expect("mkdir");
    std::fs::create_dir_all(member.join("tests")).expect("mkdir");
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\n    \"filters/*\",\n]\n",
    )
    .expect("write");
    std::fs::write(
        member.join("Cargo.toml"),
        "[package]\nname = \"my-filter\"\nversion = \"0.1.0\"\n",
    )
    .expect("write");
    std::fs::write(member.join("src/lib.rs"), "// filter\n").expect("write");
    std::fs::write(member.join("src/logic/mod.rs"), "// logic\n").expect("write");
    std::fs::write(
        member.join("tests/my-filter.yaml"),
        "plugin:\n  module: target/wasm32-wasip1/release/my_filter.wasm\n  config: '{}'\n\
         cases:\n  - name: passes\n    request: GET /\n    expect: {response: {status: 200}}\n",
    )
    .expect("write");
    let module = root.join("target/wasm32-wasip1/release/my_filter.wasm");
    std::fs::create_dir_all(module.parent().expect("dir")).expect("mkdir");
    std::fs::copy(wasm_dir().join("test_filter_probe.wasm"), &module).expect("copy");
    (root, module)
}

fn set_mtime(path: &Path, time: SystemTime) {
    let file = File::options().write(true).open(path).expect("open");
    file.set_times(FileTimes::new().set_modified(time))
        .expect("set mtime");
}

#[test]
fn a_module_older_than_its_sources_is_named_with_the_rebuild_command() {
    let (root, module) = workspace();
    let now = SystemTime::now();
    let module_arg = module.to_str().expect("utf-8");
    let scenarios = root.join("filters/my-filter/tests");
    let scenarios = scenarios.to_str().expect("utf-8");

    // Built after every source: no warning.
    set_mtime(&module, now);
    for source in ["Cargo.toml", "src/lib.rs", "src/logic/mod.rs"] {
        set_mtime(
            &root.join("filters/my-filter").join(source),
            now - Duration::from_secs(60),
        );
    }
    let out = harness(&["run", module_arg, "--config", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let out = harness(&["test", scenarios]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // A source file deep under src/ changed since: both commands say so.
    set_mtime(
        &root.join("filters/my-filter/src/logic/mod.rs"),
        now + Duration::from_secs(60),
    );
    let out = harness(&["run", module_arg, "--config", "{}"]);
    let err = stderr(&out);
    assert!(out.status.success(), "a warning only: {err}");
    assert!(
        err.contains("my_filter.wasm is older than its sources")
            && err.contains("filters/my-filter/src/logic/mod.rs changed after it was built")
            && err.contains(REBUILD),
        "{err}"
    );
    let out = harness(&["test", scenarios]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains(REBUILD), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn module_overrides_every_scenarios_module() {
    let (root, module) = workspace();
    std::fs::remove_file(&module).expect("remove the built module");
    let scenarios = root.join("filters/my-filter/tests");
    let scenarios = scenarios.to_str().expect("utf-8");
    let out = harness(&["test", scenarios]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("not found"), "{}", stdout(&out));

    let probe = wasm_dir().join("test_filter_probe.wasm");
    let out = harness(&[
        "test",
        scenarios,
        "--module",
        probe.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("1 passed, 0 failed"),
        "{}",
        stdout(&out)
    );

    let out = harness(&["test", scenarios, "--module", "no/such.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--module no/such.wasm does not exist"));
    let _ = std::fs::remove_dir_all(&root);
}
