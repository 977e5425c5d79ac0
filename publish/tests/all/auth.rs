//! Basic and bearer-token authentication, login/logout, credential helpers.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::registry::{Registry, RegistryAuth};
use crate::support::token::{ISSUER, SERVICE, TokenServer};
use crate::support::{Cli, small_module};

const USER: &str = "mesh-dev";
const PASSWORD: &str = "s3cret-Passw0rd-xyz";
const WRONG: &str = "wrong-Passw0rd-abc";

fn basic_registry() -> Registry {
    Registry::start(RegistryAuth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    })
}

#[test]
fn basic_auth_with_password_stdin_login_and_logout() {
    let registry = basic_registry();
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let module = module.to_str().unwrap();
    let reference = format!("{}/secure/f:v1", registry.host());
    let out = cli.home.path().join("out.wasm");
    let out = out.to_str().unwrap();

    let anonymous = cli.run(&["push", module, &reference]);
    assert!(!anonymous.ok());
    assert!(
        anonymous
            .stderr()
            .contains("requires credentials and none are configured"),
        "{}",
        anonymous.stderr()
    );

    let pushed = cli.run_with(
        &[
            "push",
            module,
            &reference,
            "-u",
            USER,
            "--password-stdin",
            "--json",
        ],
        Some(&format!("{PASSWORD}\n")),
        &[],
    );
    pushed.json();
    assert!(!pushed.stderr().contains(PASSWORD));

    let refused = cli.run_with(
        &["login", &registry.host(), "-u", USER, "--password-stdin"],
        Some(WRONG),
        &[],
    );
    assert!(!refused.ok());
    let text = format!("{}{}", refused.stdout(), refused.stderr());
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(text.contains(USER), "{text}");
    assert!(!text.contains(WRONG), "the password was printed: {text}");
    assert!(!cli.docker_config().join("config.json").exists());

    let login = cli.run_with(
        &["login", &registry.host(), "-u", USER, "--password-stdin"],
        Some(PASSWORD),
        &[],
    );
    assert!(login.ok(), "{}", login.stderr());
    assert!(!login.stdout().contains(PASSWORD));
    let config_path = cli.docker_config().join("config.json");
    let mode = std::fs::metadata(&config_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert!(
        config["auths"][registry.host()]["auth"].is_string(),
        "{config}"
    );

    // Credentials now come from config.json.
    let pulled = cli.run(&["pull", &reference, "-o", out, "--json"]);
    pulled.json();
    assert_eq!(std::fs::read(out).unwrap(), small_module());

    let logout = cli.run(&["logout", &registry.host()]);
    assert!(logout.ok(), "{}", logout.stderr());
    let again = cli.run(&["pull", &reference, "-o", out, "--no-cache"]);
    again.fails_saying("requires credentials");
}

#[test]
fn a_wrong_password_gives_a_clear_message_and_never_the_secret() {
    let registry = basic_registry();
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/secure/f:v1", registry.host());
    let run = cli.run_with(
        &[
            "push",
            module.to_str().unwrap(),
            &reference,
            "-u",
            USER,
            "--password-stdin",
        ],
        Some(WRONG),
        &[],
    );
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!("authentication to {} failed", registry.host())),
        "{stderr}"
    );
    assert!(
        stderr.contains("publish login"),
        "no hint what to do: {stderr}"
    );
    assert!(
        !stderr.contains(WRONG),
        "the password was printed: {stderr}"
    );
    assert!(
        !stderr.contains("retry"),
        "a refused login is not retried: {stderr}"
    );
}

fn token_registry(tokens: &TokenServer) -> Registry {
    Registry::start(RegistryAuth::Token {
        realm: tokens.realm(),
        issuer: ISSUER.into(),
        service: SERVICE.into(),
        cert: tokens.cert.clone(),
    })
}

#[test]
fn bearer_token_auth_through_a_token_server() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = token_registry(&tokens);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let module = module.to_str().unwrap();
    let reference = format!("{}/tokens/f:v1", registry.host());

    let pushed = cli.run_with(
        &[
            "push",
            module,
            &reference,
            "-u",
            USER,
            "--password-stdin",
            "--json",
        ],
        Some(PASSWORD),
        &[],
    );
    pushed.json();

    let out = cli.home.path().join("out.wasm");
    let pulled = cli.run_with(
        &[
            "pull",
            &reference,
            "-o",
            out.to_str().unwrap(),
            "-u",
            USER,
            "--password-stdin",
            "--json",
        ],
        Some(PASSWORD),
        &[],
    );
    pulled.json();
    assert_eq!(std::fs::read(&out).unwrap(), small_module());

    let refused = cli.run_with(
        &["push", module, &reference, "-u", USER, "--password-stdin"],
        Some(WRONG),
        &[],
    );
    assert!(!refused.ok());
    assert!(
        refused
            .stderr()
            .contains(&format!("authentication to {} failed", registry.host())),
        "{}",
        refused.stderr()
    );
    assert!(!refused.stderr().contains(WRONG));

    let anonymous = cli.run(&[
        "pull",
        &reference,
        "-o",
        out.to_str().unwrap(),
        "--no-cache",
    ]);
    anonymous.fails_saying("authentication");
}

#[test]
fn credentials_from_a_docker_credential_helper() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = token_registry(&tokens);
    let cli = Cli::new();
    let bin = cli.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-publishtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(cli.docker_config()).unwrap();
    std::fs::write(
        cli.docker_config().join("config.json"),
        serde_json::json!({"credHelpers": {registry.host(): "publishtest"}}).to_string(),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/helper/f:v1", registry.host());
    let run = cli.run_with(
        &["push", module.to_str().unwrap(), &reference, "--json"],
        None,
        &[("PATH", &path)],
    );
    run.json();
    assert!(!run.stderr().contains(PASSWORD));
}
