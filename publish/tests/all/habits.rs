//! oras habits: both argument orders, `-o -`, `-p` and `--password-stdin`,
//! per-command help, `--format`, reproducible digests without SOURCE_DATE_EPOCH.

use clap::CommandFactory as _;

use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, sha256_hex, small_module};

#[test]
fn push_takes_our_order_and_oras_order_with_a_media_type() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let module = module.to_str().unwrap();
    let ours = format!("{}/order/f:ours", registry.host());
    let theirs = format!("{}/order/f:oras", registry.host());
    let typed = format!("{}/order/f:typed", registry.host());

    let a = cli.run(&["push", module, &ours, "--json"]).json();
    let b = cli.run(&["push", &theirs, module, "--json"]).json();
    let media = format!("{module}:application/vnd.module.wasm.content.layer.v1+wasm");
    let c = cli.run(&["push", &typed, &media, "--json"]).json();
    // Same module and options: same manifest, whichever order and tag.
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    assert_eq!(a["manifest_digest"], c["manifest_digest"]);

    let cncf = format!("{module}:application/wasm");
    let wrong = cli.run(&["push", &typed, &cncf]);
    wrong.fails_saying("--layout cncf");
    let cncf_ok = cli.run(&["push", &typed, &cncf, "--layout", "cncf", "--json"]);
    assert_eq!(cncf_ok.json()["layout"], "cncf");

    let missing = cli.run(&["push", &ours, "nope/missing.wasm"]);
    assert!(!missing.ok());
    assert!(
        missing
            .stderr()
            .contains("nope/missing.wasm: no such module file")
            && missing.stderr().contains("oras's order"),
        "{}",
        missing.stderr()
    );
    let neither = cli.run(&["push", "target/x.wasm", "also/not-a-ref"]);
    neither.fails_saying("push takes MODULE REF");
}

#[test]
fn the_same_push_gives_the_same_digest_without_source_date_epoch() {
    let first = Registry::start(RegistryAuth::None);
    let second = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    for layout in ["oci", "compat", "cncf", "single"] {
        let push = |registry: &Registry, extra: &[&str]| {
            let reference = format!("{}/repro/{layout}:v1", registry.host());
            let mut args = vec![
                "push",
                module.to_str().unwrap(),
                &reference,
                "--layout",
                layout,
            ];
            args.extend_from_slice(extra);
            args.push("--json");
            cli.run(&args).json()["manifest_digest"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let a = push(&first, &[]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(a, push(&second, &[]), "{layout}: two digests for one input");
        assert_ne!(a, push(&second, &["--created", "now"]), "{layout}");
    }
    let reference = format!("{}/repro/oci:v1", first.host());
    let plain = cli.run(&["inspect", &reference, "--json"]).json();
    assert!(
        plain["annotations"]
            .get("org.opencontainers.image.created")
            .is_none(),
        "{plain}"
    );
    cli.run(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--created",
        "1700000000",
        "--json",
    ])
    .json();
    let dated = cli.run(&["inspect", &reference, "--format", "json"]).json();
    assert_eq!(
        dated["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    // RFC 3339 has four-digit years: a time past 9999 is refused, not mis-written.
    let far = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--created",
        "253402300800",
    ]);
    far.fails_saying("past the year 9999");
}

#[test]
fn pull_to_dash_streams_the_module_to_stdout() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/stream/f:v1", registry.host());
    cli.push(&module, &reference, &[]);
    let run = cli.run(&["pull", &reference, "-o", "-"]);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(run.output.stdout, small_module());
    assert!(run.stderr().contains("pulled"), "{}", run.stderr());
    assert!(!cli.home.path().join("-").exists());
    assert!(!std::path::Path::new("-").exists());
    let json = cli.run(&["pull", &reference, "-o", "-", "--format", "json"]);
    assert_eq!(json.output.stdout, small_module());
    let report: serde_json::Value = serde_json::from_slice(&json.output.stderr).unwrap();
    assert_eq!(
        report["module_digest"],
        format!("sha256:{}", sha256_hex(small_module()))
    );
}

#[test]
fn a_reader_that_closes_the_pipe_ends_the_command_quietly() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("large.wasm", crate::support::large_module());
    let reference = format!("{}/pipe/f:v1", registry.host());
    cli.push(&module, &reference, &[]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_publish"))
        .args(["pull", &reference, "-o", "-", "--no-cache"])
        .env("DOCKER_CONFIG", cli.docker_config())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -c 0`: the reader goes away before the 2 MiB arrive.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
}

#[test]
fn login_takes_a_password_flag_or_stdin_and_refuses_without_a_terminal() {
    const USER: &str = "mesh-ops";
    const PASSWORD: &str = "flag-Passw0rd-987";
    let registry = Registry::start(RegistryAuth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let cli = Cli::new();
    let with_flag = cli.run(&["login", &registry.host(), "-u", USER, "-p", PASSWORD]);
    assert!(with_flag.ok(), "{}", with_flag.stderr());
    assert!(with_flag.stderr().contains("prefer --password-stdin"));
    assert!(!with_flag.stdout().contains(PASSWORD) && !with_flag.stderr().contains(PASSWORD));
    let with_stdin = cli.run_with(
        &["login", &registry.host(), "-u", USER, "--password-stdin"],
        Some(PASSWORD),
        &[],
    );
    assert!(with_stdin.ok(), "{}", with_stdin.stderr());
    // stdin is not a terminal here: no prompt, a clear refusal.
    let no_password = cli.run(&["login", &registry.host(), "-u", USER]);
    no_password.fails_saying("--password-stdin");
}

#[test]
fn each_subcommand_lists_only_its_own_flags_each_described() {
    let mut command = publish::cli::Cli::command();
    command.build();
    fn check(command: &clap::Command, path: &str) {
        for arg in command.get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            assert!(
                arg.get_help().is_some(),
                "`{path}` argument {} has no description",
                arg.get_id()
            );
        }
        for sub in command.get_subcommands() {
            check(sub, &format!("{path} {}", sub.get_name()));
        }
    }
    check(&command, "publish");
    let cli = Cli::new();
    let help = |args: &[&str]| {
        let run = cli.run(args);
        assert!(run.ok(), "{}", run.stderr());
        run.stdout()
    };
    for sub in [
        "pull",
        "login",
        "inspect",
        "manifest fetch",
        "repo tags",
        "tag",
    ] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let text = help(&args);
        for upload_only in ["--monolithic", "--chunk-size", "--layout", "--root-id"] {
            assert!(
                !text.contains(upload_only),
                "`{sub} --help` lists {upload_only}:\n{text}"
            );
        }
    }
    // render and sync reach registries too: one declaration of the transport
    // flags serves them, without the retry and upload flags they do not honour.
    for sub in ["render", "sync"] {
        let text = help(&[sub, "--help"]);
        for flag in ["--plain-http", "--insecure", "--ca-file"] {
            assert!(text.contains(flag), "`{sub} --help` lacks {flag}:\n{text}");
        }
        for other in ["--retries", "--monolithic", "--no-progress"] {
            assert!(
                !text.contains(other),
                "`{sub} --help` lists {other}:\n{text}"
            );
        }
    }
    assert!(!help(&["sync", "--help"]).contains("--username"));
    assert!(!help(&["login", "--help"]).contains("--no-progress"));
    assert!(!help(&["inspect", "--help"]).contains("--no-progress"));
    let push = help(&["push", "--help"]);
    for flag in [
        "--monolithic",
        "--chunk-size",
        "--format",
        "--json",
        "--created",
        "oras",
    ] {
        assert!(push.contains(flag), "push --help lacks {flag}:\n{push}");
    }
}

#[test]
fn completions_and_the_manual_page_cover_the_subcommands() {
    let cli = Cli::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = cli.run(&["completions", shell]);
        assert!(run.ok(), "{}", run.stderr());
        let script = run.stdout();
        for sub in ["push", "pull", "copy", "manifest", "render"] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(script.contains("oci-layout"), "{shell}: no copy flags");
    }
    let bad = cli.run(&["completions", "cmd-exe"]);
    assert!(!bad.ok());
    let man = cli.run(&["man"]);
    assert!(man.ok(), "{}", man.stderr());
    let page = man.stdout();
    assert!(page.contains(".TH publish 1"), "{page}");
    for sub in ["push", "copy", "manifest", "render", "sync"] {
        assert!(page.contains(sub), "the manual page lacks {sub}");
    }
}
