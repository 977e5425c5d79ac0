//! Interop with clients nobody here wrote: skopeo and the oras Python package.

use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, python_oras, sha256_hex, skopeo, small_module};

#[test]
fn skopeo_reads_and_copies_what_we_push_keeping_the_digest() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    for layout in ["oci", "compat", "cncf", "single"] {
        let reference = format!("{}/skopeo/f:{layout}", registry.host());
        let pushed = cli.push(&module, &reference, &["--layout", layout]);
        let digest = pushed["manifest_digest"].as_str().unwrap();

        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]);
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw.stdout)),
            digest,
            "{layout}"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );

        let dir = cli.home.path().join(format!("copy-{layout}"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("dir:{}", dir.display()),
        ]);
        let copied = std::fs::read(dir.join("manifest.json")).unwrap();
        assert_eq!(
            format!("sha256:{}", sha256_hex(&copied)),
            digest,
            "{layout}: skopeo copy changed the digest"
        );
        if layout != "compat" {
            let module_hex = sha256_hex(small_module());
            assert_eq!(
                std::fs::read(dir.join(&module_hex)).unwrap(),
                small_module(),
                "{layout}"
            );
        }
    }
}

#[test]
fn oras_pulls_what_we_push() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("hdr.wasm", small_module());
    for layout in ["oci", "cncf", "single"] {
        let reference = format!("{}/oras/pulls:{layout}", registry.host());
        cli.push(
            &module,
            &reference,
            &["--layout", layout, "--root-id", "root"],
        );
        let outdir = cli.home.path().join(format!("oras-{layout}"));
        std::fs::create_dir_all(&outdir).unwrap();
        let files = python_oras(
            &outdir,
            &format!(
                "import oras.client\n\
                 c = oras.client.OrasClient(hostname='{host}', insecure=True)\n\
                 print('\\n'.join(c.pull(target='{reference}', outdir='.')))\n",
                host = registry.host()
            ),
        );
        assert_eq!(
            std::fs::read(outdir.join("hdr.wasm")).unwrap(),
            small_module(),
            "{layout}: oras pulled {files}"
        );
        if layout == "oci" {
            let config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(outdir.join("runtime-config.json")).unwrap())
                    .unwrap();
            assert_eq!(config["config"]["rootIds"][0], "root");
        }
    }
}

/// The layouts as oras users push them, the ASM article's command included.
#[test]
fn we_pull_what_oras_pushes_in_each_layout() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let work = cli.home.path().join("oras-push");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("example-filter.wasm"), small_module()).unwrap();
    std::fs::write(
        work.join("runtime-config.json"),
        br#"{"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":["my_root_id"]}}"#,
    )
    .unwrap();
    let host = registry.host();
    let script = format!(
        r#"
import io, tarfile, gzip, oras.client
c = oras.client.OrasClient(hostname='{host}', insecure=True)
# The article: config plus ONE layer.
c.push(target='{host}/asm/asm-test:v0.1',
       manifest_config='runtime-config.json:application/vnd.module.wasm.config.v1+json',
       files=['example-filter.wasm:application/vnd.module.wasm.content.layer.v1+wasm'])
# The Wasm image spec oci variant: runtime-config.json and the module as two layers.
c.push(target='{host}/asm/asm-test:two-layers',
       manifest_config='runtime-config.json:application/vnd.module.wasm.config.v1+json',
       files=['runtime-config.json:application/vnd.module.wasm.config.v1+json',
              'example-filter.wasm:application/vnd.module.wasm.content.layer.v1+wasm'])
# CNCF Wasm artifact.
open('cncf-config.json', 'w').write('{{"architecture":"wasm","os":"wasip1"}}')
c.push(target='{host}/asm/asm-test:cncf',
       manifest_config='cncf-config.json:application/vnd.wasm.config.v0+json',
       files=['example-filter.wasm:application/wasm'])
# compat: a tar+gzip layer holding plugin.wasm in a sub-directory.
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w') as tar:
    tar.add('example-filter.wasm', arcname='filters/plugin.wasm')
open('plugin.tar.gz', 'wb').write(gzip.compress(buf.getvalue()))
c.push(target='{host}/asm/asm-test:compat',
       files=['plugin.tar.gz:application/vnd.oci.image.layer.v1.tar+gzip'])
"#
    );
    python_oras(&work, &script);
    let expectations = [
        ("v0.1", "single", false),
        ("two-layers", "oci", true),
        ("cncf", "cncf", false),
        ("compat", "compat", true),
    ];
    for (tag, layout, istio_loads) in expectations {
        let reference = format!("{host}/asm/asm-test:{tag}");
        let out = cli.home.path().join(format!("from-oras-{tag}.wasm"));
        let pulled = cli.pull(&reference, &out, &["--no-cache"]);
        assert_eq!(std::fs::read(&out).unwrap(), small_module(), "{tag}");
        assert_eq!(pulled["layout"], layout, "{tag}");
        assert_eq!(
            pulled["istio"]["loads"], istio_loads,
            "{tag}: {}",
            pulled["istio"]
        );
    }
    let inspected = cli
        .run(&["inspect", &format!("{host}/asm/asm-test:v0.1"), "--json"])
        .json();
    assert!(
        inspected["istio"]["reason"]
            .as_str()
            .unwrap()
            .contains("number of layers must be 2"),
        "{inspected}"
    );
}

/// A Docker schema2 compat image, converted by skopeo from our OCI compat push.
#[test]
fn we_pull_docker_schema2_compat_images() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let host = registry.host();
    cli.push(
        &module,
        &format!("{host}/docker/f:oci-compat"),
        &["--layout", "compat"],
    );
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{host}/docker/f:oci-compat"),
        &format!("docker://{host}/docker/f:schema2"),
    ]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/docker/f:schema2"),
    ]);
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    let out = cli.home.path().join("schema2.wasm");
    let pulled = cli.pull(&format!("{host}/docker/f:schema2"), &out, &["--no-cache"]);
    assert_eq!(std::fs::read(&out).unwrap(), small_module());
    assert_eq!(pulled["layout"], "compat");
    assert_eq!(pulled["istio"]["loads"], true, "{}", pulled["istio"]);
    assert_eq!(
        pulled["manifest_digest"],
        format!("sha256:{}", sha256_hex(&raw.stdout))
    );
}
