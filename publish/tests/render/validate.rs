//! `publish render --validate`: the parameters go through the filter's own
//! on_configure in the harness; a misspelt field is refused with the filter's
//! words, and nothing is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{article_example, crate_dir, read};
use crate::support::Cli;
use crate::support::registry::{Registry, RegistryAuth};

/// The response-header filter, built for wasm32-wasip1 by `make build` (which
/// `make test` runs first). Its parameters are the article's `{"name","value"}`.
fn response_header_module() -> PathBuf {
    let path = crate_dir().join("../target/wasm32-wasip1/release/response_header.wasm");
    assert!(
        path.is_file(),
        "{} is missing; run `make build` (cargo build --target wasm32-wasip1 --release) first",
        path.display()
    );
    path
}

fn render(input: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["render", input.to_str().unwrap(), "--validate"];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_publish"))
        .args(&args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn misspelt(dir: &Path, image: Option<&str>) -> PathBuf {
    let mut input = read(&article_example()).replace(r#""name":"hello""#, r#""nmae":"hello""#);
    if let Some(image) = image {
        input = input.replace(
            "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
            image,
        );
    }
    let path = dir.join("misspelt.yaml");
    std::fs::write(&path, input).unwrap();
    path
}

#[test]
fn the_filter_accepts_good_parameters_and_refuses_a_misspelt_field_in_its_own_words() {
    let module = response_header_module();
    let module = module.to_str().unwrap();
    let good = render(&article_example(), &["--module", module]);
    assert!(good.status.success(), "{}", text(&good.stderr));
    assert!(
        text(&good.stderr).contains("accepts spec.filter.parameters"),
        "{}",
        text(&good.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deploy");
    let bad = render(
        &misspelt(dir.path(), None),
        &["--module", module, "-o", out.to_str().unwrap()],
    );
    assert!(!bad.status.success());
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("refuses spec.filter.parameters"),
        "{stderr}"
    );
    assert!(stderr.contains("proxy_on_configure"), "{stderr}");
    // The filter's own message, quoted.
    assert!(stderr.contains("unknown field `nmae`"), "{stderr}");
    assert!(
        !out.exists(),
        "something was written for refused parameters"
    );
}

#[test]
fn without_a_module_the_image_is_pulled_from_the_registry() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let image = format!("{}/asm/response-header:v1", registry.host());
    cli.push(&response_header_module(), &image, &[]);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        read(&article_example()).replace(
            "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
            &image,
        ),
    )
    .unwrap();
    let accepted = render(&good, &[]);
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    let refused = render(&misspelt(dir.path(), Some(&image)), &[]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("unknown field `nmae`"),
        "{}",
        text(&refused.stderr)
    );
}
