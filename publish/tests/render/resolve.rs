//! `publish render --resolve` against a real registry (htpasswd auth, credentials
//! from the Docker config `publish login` wrote): the pinned digest is the one
//! `publish push` reported, a moved tag gives the new digest, a missing image is
//! an error naming it.

use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, proxy_wasm_module, small_module};

use super::{article_example, crate_dir, parse_yaml_documents, read, str_at};

const USER: &str = "render-user";
const PASSWORD: &str = "render-Passw0rd-123";

fn deployment_for(cli: &Cli, image: &str) -> String {
    let text = read(&article_example()).replace(
        "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
        image,
    );
    let path = cli.file("deployment.yaml", text.as_bytes());
    path.to_str().unwrap().to_string()
}

fn resolved_pins(cli: &Cli, input: &str) -> (String, String) {
    let crds = crate_dir().join("schemas/istio-crds.yaml");
    let run = cli.run(&[
        "render",
        input,
        "--resolve",
        "--only",
        "wasmplugin,node-agent",
        "--check-crds",
        crds.to_str().unwrap(),
    ]);
    assert!(run.ok(), "{}", run.stderr());
    let docs = parse_yaml_documents(&run.stdout());
    assert_eq!(docs.len(), 2);
    (
        str_at(&docs[0], "/modules/0/sha256").to_string(),
        str_at(&docs[1], "/spec/sha256").to_string(),
    )
}

#[test]
fn resolve_pins_the_manifest_digest_the_registry_serves() {
    let registry = Registry::start(RegistryAuth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let cli = Cli::new();
    let image = format!("{}/asm/asm-test:v0.1", registry.host());
    let input = deployment_for(&cli, &image);

    let module = cli.file("filter.wasm", small_module());
    let module = module.to_str().unwrap();
    let password = format!("{PASSWORD}\n");
    let with_password = |args: &[&str]| cli.run_with(args, Some(&password), &[]);
    let pushed = with_password(&[
        "push",
        module,
        &image,
        "-u",
        USER,
        "--password-stdin",
        "--json",
    ])
    .json();
    let first = pushed["wasmplugin_sha256"].as_str().unwrap().to_string();
    assert_eq!(first.len(), 64);

    // Without credentials the registry refuses, and the error says which image.
    let anonymous = cli.run(&["render", &input, "--resolve"]);
    anonymous.fails_saying(&image);
    assert!(anonymous.stdout().is_empty());

    // Credentials on the command line...
    let run = with_password(&[
        "render",
        &input,
        "--resolve",
        "-u",
        USER,
        "--password-stdin",
        "--only",
        "wasmplugin",
    ]);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(
        str_at(&parse_yaml_documents(&run.stdout())[0], "/spec/sha256"),
        first
    );
    assert!(!run.stderr().contains(PASSWORD));

    // ...or from the Docker config `publish login` writes.
    let login = with_password(&["login", &registry.host(), "-u", USER, "--password-stdin"]);
    assert!(login.ok(), "{}", login.stderr());
    assert_eq!(resolved_pins(&cli, &input), (first.clone(), first.clone()));

    // The tag moves to another module: --resolve follows it.
    let other = cli.file("other.wasm", &proxy_wasm_module(4096, 99));
    let repushed = cli.push(&other, &image, &[]);
    let second = repushed["wasmplugin_sha256"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(resolved_pins(&cli, &input), (second.clone(), second));

    // A tag that is not there: a clear error naming the image, nothing printed.
    let missing = deployment_for(&cli, &format!("{}/asm/asm-test:v9", registry.host()));
    let run = cli.run(&["render", &missing, "--resolve"]);
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(stderr.contains("asm/asm-test:v9"), "{stderr}");
    assert!(stderr.contains("spec.filter.image"), "{stderr}");
    assert!(run.stdout().is_empty());
}
