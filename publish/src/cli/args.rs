//! Argument groups shared by several subcommands. Each subcommand flattens only
//! the groups it uses, so its help lists only flags it honours.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::{self, Credentials};
use crate::client::{Options, RegistryClient};
use crate::errors::{Error, Result};

/// How to reach a registry and who to be there.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// Use plain HTTP for this registry (automatic for localhost, 127.0.0.1 and ::1 unless
    /// --ca-file or --insecure asks for TLS).
    #[arg(long)]
    pub plain_http: bool,
    /// Use TLS but accept any certificate (self-signed test registries).
    #[arg(long)]
    pub insecure: bool,
    /// Trust this PEM CA bundle in addition to the system roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
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

impl Connection {
    pub fn options(&self) -> Options {
        Options {
            plain_http: self.plain_http,
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
            timeout: Duration::from_secs(self.timeout),
            ..Options::default()
        }
    }

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

    pub fn credentials(&self, registry: &str) -> Result<Credentials> {
        let password = self.password()?;
        auth::resolve(registry, self.username.as_deref(), password)
    }

    pub fn client_for(&self, registry: &str, options: Options) -> Result<RegistryClient> {
        RegistryClient::new(registry, self.credentials(registry)?, options)
    }
}

/// Upload settings (push, copy).
#[derive(Args, Clone, Debug)]
pub struct Upload {
    /// Upload each blob with one PUT instead of chunks.
    #[arg(long)]
    pub monolithic: bool,
    /// Bytes per PATCH request in chunked uploads.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub chunk_size: usize,
}

impl Upload {
    pub fn apply(&self, options: &mut Options) {
        options.monolithic = self.monolithic;
        options.chunk_size = self.chunk_size;
    }
}

/// Progress bars (commands that move blobs).
#[derive(Args, Clone, Debug)]
pub struct Progress {
    /// Never draw a progress bar (drawn on a terminal for blobs of 1 MiB and more).
    #[arg(long)]
    pub no_progress: bool,
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
