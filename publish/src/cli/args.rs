//! Argument groups shared by several subcommands. Each subcommand flattens only
//! the groups it uses, so its help lists only flags it honours.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::{self, Credentials};
use crate::client::{Options, RegistryClient};
use crate::errors::{Error, Result};

/// How to reach a registry: plain HTTP or TLS, and which certificates to trust.
/// Every command that talks to a registry (render and sync too) flattens this.
#[derive(Args, Clone, Debug, Default)]
pub struct Transport {
    /// Use plain HTTP for a registry that is not on loopback (localhost, 127.0.0.1 and ::1
    /// get it automatically unless --ca-file or --insecure asks for TLS).
    #[arg(long)]
    pub plain_http: bool,
    /// Use TLS but accept any certificate (self-signed test registries).
    #[arg(long)]
    pub insecure: bool,
    /// Trust this PEM CA bundle in addition to the system roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

impl Transport {
    /// Client options with these transport settings and no progress bar.
    pub fn options(&self) -> Options {
        Options {
            plain_http: self.plain_http,
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            progress: false,
            ..Options::default()
        }
    }
}

/// Who to be at the registry (default: Docker's config.json).
#[derive(Args, Clone, Debug, Default)]
pub struct Login {
    /// User name (default: Docker's config.json); the password comes from -p,
    /// --password-stdin, or config.json.
    #[arg(short = 'u', long = "username", value_name = "USER")]
    pub username: Option<String>,
    /// Password for -u. Visible to other users of the machine: prefer --password-stdin.
    #[arg(
        short = 'p',
        long = "password",
        value_name = "PASSWORD",
        conflicts_with = "password_stdin"
    )]
    pub password: Option<String>,
    /// Read the password for -u from stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

impl Login {
    /// The password from -p or stdin, if one was given (registered for redaction).
    pub fn password(&self) -> Result<Option<String>> {
        let password = match (&self.password, self.password_stdin) {
            (Some(password), _) => {
                eprintln!(
                    "publish: warning: a password given with -p is visible to other users; prefer --password-stdin"
                );
                Some(password.clone())
            }
            (None, true) => Some(auth::read_password_stdin()?),
            (None, false) => None,
        };
        if let Some(password) = &password {
            crate::logging::redact(password);
        }
        Ok(password)
    }

    /// Credentials for `registry` from -u with `password` (read once by the
    /// caller, [`Login::password`]), else from config.json.
    pub fn credentials(&self, registry: &str, password: Option<String>) -> Result<Credentials> {
        auth::resolve(registry, self.username.as_deref(), password)
    }
}

/// How to reach a registry, how hard to try, and who to be there.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    #[command(flatten)]
    pub transport: Transport,
    /// Retries after a 5xx, 429 or dropped connection (exponential backoff); a refused
    /// connection is retried at most twice.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// First backoff delay in milliseconds (doubles per retry).
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub backoff_ms: u64,
    /// Per-request read timeout in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
    #[command(flatten)]
    pub login: Login,
}

impl Connection {
    pub fn options(&self) -> Options {
        Options {
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
            timeout: Duration::from_secs(self.timeout),
            ..self.transport.options()
        }
    }

    pub fn client_for(&self, registry: &str, options: Options) -> Result<RegistryClient> {
        let credentials = self.login.credentials(registry, self.login.password()?)?;
        RegistryClient::new(registry, credentials, options)
    }
}

/// The flags of commands that move blobs (pull; push and copy through [`Upload`]).
#[derive(Args, Clone, Debug)]
pub struct Transfer {
    /// Never draw a progress bar (drawn on a terminal for blobs of 1 MiB and more).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub connection: Connection,
}

impl Transfer {
    pub fn options(&self) -> Options {
        Options {
            progress: !self.no_progress,
            blob_locations: crate::cache::BlobCache::default_root().map(|r| r.join("locations")),
            ..self.connection.options()
        }
    }
}

/// Upload settings (push, copy), with the transfer flags they come with.
#[derive(Args, Clone, Debug)]
pub struct Upload {
    /// Upload each blob with one PUT, however large.
    #[arg(long)]
    pub monolithic: bool,
    /// A blob larger than this goes up as PATCH chunks of this size, the last
    /// one in the closing PUT; a smaller one in a single PUT.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub chunk_size: usize,
    #[command(flatten)]
    pub transfer: Transfer,
}

impl Upload {
    pub fn options(&self) -> Options {
        Options {
            monolithic: self.monolithic,
            chunk_size: self.chunk_size,
            ..self.transfer.options()
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.transfer.connection
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// How to print the report.
#[derive(Args, Clone, Debug)]
pub struct Report {
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
}

impl Report {
    pub fn is_json(&self) -> bool {
        self.json || self.format == Format::Json
    }
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Usage(format!("cannot encode the report: {e}")))?;
    out!("{text}");
    Ok(())
}

/// `registry` as users type it for login/logout: `oci://` and a trailing `/` dropped.
pub fn registry_name(text: &str) -> String {
    text.trim_start_matches("oci://")
        .trim_end_matches('/')
        .to_string()
}
