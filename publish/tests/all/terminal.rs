//! `publish login` on a real (pseudo-)terminal, against docker-registry with
//! htpasswd: the user name is asked for with echo, the password without, and
//! neither a good nor a wrong password ever shows on the screen.

use base64::Engine as _;

use crate::support::registry::{Registry, RegistryAuth};
use crate::support::terminal::Step;
use crate::support::{Cli, small_module};

const USER: &str = "tty-user";
const PASSWORD: &str = "typed-Passw0rd-4711";
const WRONG: &str = "mistyped-Passw0rd-0815";

fn registry() -> Registry {
    Registry::start(RegistryAuth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    })
}

#[test]
fn login_on_a_terminal_asks_for_both_and_hides_the_password() {
    let registry = registry();
    let cli = Cli::new();
    let run = cli.run_on_terminal(
        &["login", &registry.host()],
        &[
            Step {
                prompt: "Username: ",
                answer: USER,
                hidden: false,
            },
            Step {
                prompt: "Password: ",
                answer: PASSWORD,
                hidden: true,
            },
        ],
    );
    let screen = &run.transcript;
    assert_eq!(run.status, 0, "{screen}");
    assert!(screen.contains("login succeeded"), "{screen}");
    // The terminal echoed the user name, so it would have echoed the password too.
    assert!(screen.contains(&format!("Username: {USER}")), "{screen}");
    assert!(!screen.contains(PASSWORD), "the password showed: {screen}");

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cli.docker_config().join("config.json")).unwrap())
            .unwrap();
    let auth = config["auths"][registry.host()]["auth"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    assert_eq!(decoded, format!("{USER}:{PASSWORD}").as_bytes());
    // The stored credentials are the ones the registry takes.
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/tty/f:v1", registry.host());
    cli.push(&module, &reference, &[]);
}

#[test]
fn a_wrong_password_on_a_terminal_is_refused_clearly_and_not_shown() {
    let registry = registry();
    let cli = Cli::new();
    let run = cli.run_on_terminal(
        &["login", &registry.host(), "-u", USER],
        &[Step {
            prompt: "Password: ",
            answer: WRONG,
            hidden: true,
        }],
    );
    let screen = &run.transcript;
    assert_ne!(run.status, 0, "{screen}");
    assert!(
        !screen.contains("Username:"),
        "-u was given, yet asked: {screen}"
    );
    assert!(screen.contains("refused the credentials"), "{screen}");
    assert!(screen.contains(USER), "{screen}");
    assert!(!screen.contains(WRONG), "the password showed: {screen}");
    assert!(!cli.docker_config().join("config.json").exists());
}
