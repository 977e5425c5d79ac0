//! Errors that point the right way, and `-v` showing the registry conversation
//! without secrets.

use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::support::registry::{Registry, RegistryAuth, free_port};
use crate::support::{Cli, small_module};

#[test]
fn a_wrong_pin_says_the_pin_does_not_match_and_shows_both_digests() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/pin/f:v1", registry.host());
    let pushed = cli.push(&module, &reference, &[]);
    let actual = pushed["manifest_digest"].as_str().unwrap();
    let wrong = "ab".repeat(32);
    let out = cli.home.path().join("pinned.wasm");
    let run = cli.run(&[
        "pull",
        &reference,
        "-o",
        out.to_str().unwrap(),
        "--sha256",
        &wrong,
    ]);
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(stderr.contains("pin does not match"), "{stderr}");
    assert!(stderr.contains(&format!("sha256:{wrong}")), "{stderr}");
    assert!(stderr.contains(actual), "{stderr}");
    assert!(
        !stderr.contains("altered"),
        "the registry is blamed: {stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn a_refused_connection_is_named_and_retried_briefly() {
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("127.0.0.1:{}/nobody/f:v1", free_port());
    let started = Instant::now();
    let run = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--backoff-ms",
        "50",
    ]);
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("is the registry running"), "{stderr}");
    assert!(!stderr.contains("authenticat"), "{stderr}");
    assert_eq!(stderr.matches("retry ").count(), 2, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_unknown_host_is_named_as_a_dns_failure() {
    let cli = Cli::new();
    let run = cli.run(&[
        "inspect",
        "no-such-registry.invalid:5000/f:v1",
        "--plain-http",
        "--backoff-ms",
        "10",
    ]);
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(stderr.contains("does not resolve"), "{stderr}");
    assert!(!stderr.contains("authenticat"), "{stderr}");
}

#[test]
fn verbose_output_shows_the_registry_requests_and_no_secret() {
    const USER: &str = "verbose-user";
    const PASSWORD: &str = "v3rbose-Secret-pw";
    let registry = Registry::start(RegistryAuth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/verbose/f:v1", registry.host());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for (args, env) in [(vec!["-v"], vec![]), (vec![], vec![("RUST_LOG", "debug")])] {
        let mut all = vec![
            "push",
            module.to_str().unwrap(),
            &reference,
            "-u",
            USER,
            "--password-stdin",
        ];
        all.extend(args);
        let run = cli.run_with(&all, Some(PASSWORD), &env);
        assert!(run.ok(), "{}", run.stderr());
        let stderr = run.stderr();
        assert!(
            stderr.contains("/v2/verbose/f/"),
            "no registry request shown: {stderr}"
        );
        assert!(stderr.contains("manifests/v1"), "{stderr}");
        assert!(!stderr.contains(PASSWORD), "the password leaked: {stderr}");
        assert!(
            !stderr.contains(&basic),
            "the basic credential leaked: {stderr}"
        );
    }
    let quiet = cli.run_with(
        &[
            "pull",
            &reference,
            "-o",
            "-",
            "-u",
            USER,
            "--password-stdin",
        ],
        Some(PASSWORD),
        &[],
    );
    assert!(quiet.ok(), "{}", quiet.stderr());
    assert!(!quiet.stderr().contains("/v2/"), "{}", quiet.stderr());
}
