//! Test helpers: real tools (checked, never skipped), real registries, small
//! but valid Proxy-Wasm modules, and a runner for the `publish` binary.

pub mod http;
pub mod proxy;
pub mod terminal;
pub mod token;

// The registry fixture lives in oci-registry (feature test-support), shared
// with harness's tests.
pub use oci_registry::test_support::{registry, require_tool};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn require_oras_python() {
    let ok = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the oras Python package is not installed; run scripts/setup.sh (or: python3 -m pip install oras)"
    );
}

/// The Kubernetes release whose schemas the core objects are checked against
/// (one kubernetes-validate ships; StatefulSet still requires serviceName there).
pub const KUBERNETES_VERSION: &str = "1.30.0";

/// Runs `python3 -m kubernetes_validate --strict` on `files` against
/// [`KUBERNETES_VERSION`]: the real OpenAPI schemas, unknown fields refused.
/// Fails the test (never skips it) when the package is missing.
pub fn kubernetes_validate(files: &[&Path]) -> Output {
    let installed = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        installed,
        "the kubernetes-validate Python package is not installed; `make setup` installs it \
         (or: python3 -m pip install kubernetes-validate)"
    );
    Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
        ])
        .arg(KUBERNETES_VERSION)
        .args(files)
        .output()
        .unwrap()
}

/// A valid Proxy-Wasm module (ABI 0.2.1 export) with `payload` bytes of data,
/// different `payload`s giving different modules.
pub fn proxy_wasm_module(payload: usize, seed: u8) -> Vec<u8> {
    let data: String = (0..payload)
        .map(|i| format!("\\{:02x}", (i as u8).wrapping_mul(31).wrapping_add(seed)))
        .collect();
    let pages = payload / 65536 + 2;
    let wat = format!(
        r#"(module
            (memory (export "memory") {pages})
            (data (i32.const 1024) "{data}")
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
            (func (export "malloc") (param i32) (result i32) i32.const 0))"#
    );
    wat::parse_str(wat).unwrap()
}

/// The small module most tests push, built once per test process.
pub fn small_module() -> &'static [u8] {
    static MODULE: OnceLock<Vec<u8>> = OnceLock::new();
    MODULE.get_or_init(|| proxy_wasm_module(4096, 7))
}

/// A 2 MiB module (several upload chunks), built once.
pub fn large_module() -> &'static [u8] {
    static MODULE: OnceLock<Vec<u8>> = OnceLock::new();
    MODULE.get_or_init(|| proxy_wasm_module(2 * 1024 * 1024, 3))
}

/// The demo filter if another build step produced it.
pub fn built_filter() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip1/release/response_header.wasm");
    path.is_file().then_some(path)
}

/// Runs the `publish` binary with its own Docker config dir and blob cache.
pub struct Cli {
    pub home: tempfile::TempDir,
}

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Asserts the command failed with `text` in its stderr (shown when not).
    pub fn fails_saying(&self, text: &str) {
        assert!(!self.ok(), "publish succeeded:\nstderr: {}", self.stderr());
        assert!(self.stderr().contains(text), "{}", self.stderr());
    }
    /// The --json report; panics with both streams when the command failed.
    pub fn json(&self) -> serde_json::Value {
        assert!(
            self.ok(),
            "publish failed:\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        serde_json::from_slice(&self.output.stdout).unwrap()
    }
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn docker_config(&self) -> PathBuf {
        self.home.path().join("docker")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    /// Writes a file under this CLI's home and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[])
    }

    pub fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_publish"));
        command
            .args(args)
            .env("DOCKER_CONFIG", self.docker_config())
            .env("PUBLISH_CACHE_DIR", self.cache_dir())
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        Run {
            output: child.wait_with_output().unwrap(),
        }
    }

    /// `publish push MODULE REF --json` plus extra args; asserts success.
    pub fn push(&self, module: &Path, reference: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec![
            "push",
            module.to_str().unwrap(),
            reference,
            "--json",
            "--backoff-ms",
            "20",
        ];
        args.extend_from_slice(extra);
        self.run(&args).json()
    }

    /// `publish pull REF -o OUT --json` plus extra args; asserts success.
    pub fn pull(&self, reference: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = vec![
            "pull",
            reference,
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--backoff-ms",
            "20",
        ];
        args.extend_from_slice(extra);
        self.run(&args).json()
    }
}

/// Runs a Python snippet that uses the oras package, in `cwd`; panics with its output on failure.
pub fn python_oras(cwd: &Path, script: &str) -> String {
    require_oras_python();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras-py failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn skopeo(args: &[&str]) -> Output {
    require_tool("skopeo", "apt-get install skopeo");
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Puts a manifest by hand, bypassing publish (distribution 2.8 does not check
/// descriptor sizes, so lying manifests can be stored).
pub fn put_manifest(
    host: &str,
    repo: &str,
    tag: &str,
    media_type: &str,
    manifest: &serde_json::Value,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", media_type)
            .body(manifest.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    });
}

/// Runs openssl in `dir`, failing the test with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate and its key: `dir/NAME.pem`, `dir/NAME.key`.
pub fn self_signed(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}
