//! `login` and `logout`: check credentials, then keep them in Docker's config.json.

use std::io::IsTerminal as _;

use clap::Args;

use super::args::{Connection, registry_name};
use crate::errors::{Error, Result};
use crate::{RegistryClient, auth, reference};

#[derive(Args, Debug)]
#[command(
    after_help = "On a terminal, a missing user name or password is asked for (the password without echo)."
)]
pub struct LoginArgs {
    /// host[:port]
    pub registry: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// host[:port] whose stored credentials to remove.
    pub registry: String,
}

fn prompt_line(label: &str) -> Result<String> {
    eprint!("{label}: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::io("reading the user name", e))?;
    Ok(line.trim().to_string())
}

pub async fn login(args: LoginArgs) -> Result<()> {
    let registry = registry_name(&args.registry);
    let terminal = std::io::stdin().is_terminal();
    let username = match (&args.connection.login.username, terminal) {
        (Some(username), _) => username.clone(),
        (None, true) => prompt_line("Username")?,
        (None, false) => {
            return Err(Error::Usage(
                "login needs -u USER (and -p PASSWORD or --password-stdin) when stdin is not a terminal"
                    .into(),
            ));
        }
    };
    let password = match (args.connection.login.password()?, terminal) {
        (Some(password), _) => password,
        (None, true) => {
            let password = rpassword::prompt_password("Password: ")
                .map_err(|e| Error::io("reading the password from the terminal", e))?;
            crate::logging::redact(&password);
            password
        }
        (None, false) => {
            return Err(Error::Usage(
                "login needs a password: --password-stdin (or -p PASSWORD), or run it on a terminal to be asked"
                    .into(),
            ));
        }
    };
    if username.is_empty() || password.is_empty() {
        return Err(Error::Usage(
            "login needs a non-empty user name and password".into(),
        ));
    }
    let credentials = auth::Credentials::Basic {
        username: username.clone(),
        password: password.clone(),
    };
    let client = RegistryClient::new(&registry, credentials, args.connection.options())?;
    let probe = reference::parse(&format!("{registry}/publish-login-check:probe"))?;
    client.check_login(&probe).await?;
    let path = auth::store(&registry, &username, &password)?;
    out!(
        "login succeeded; credentials for {registry} stored in {}",
        path.display()
    );
    Ok(())
}

pub fn logout(args: LogoutArgs) -> Result<()> {
    let registry = registry_name(&args.registry);
    if auth::remove(&registry)? {
        out!(
            "removed the credentials for {registry} from {}",
            auth::config_dir()?.join("config.json").display()
        );
    } else {
        out!("no credentials stored for {registry}");
    }
    Ok(())
}
