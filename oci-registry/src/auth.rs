//! Credentials: read from Docker's config.json (auths, credHelpers, credsStore)
//! through `docker_credential`, or given on the command line; `login`/`logout`
//! write config.json themselves (docker_credential only reads), mode 0600.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

use crate::errors::{Error, Result};

/// Credentials for one registry, never printed.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An identity token from a credential helper (sent as a bearer token).
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl Credentials {
    pub fn to_registry_auth(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Token(token) => RegistryAuth::Bearer(token.clone()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "anonymously".into(),
            Credentials::Basic { username, .. } => format!("as user {username:?}"),
            Credentials::Token(_) => "with an identity token".into(),
        }
    }
}

/// The Docker config directory: $DOCKER_CONFIG, else ~/.docker.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".docker"))
        .ok_or_else(|| Error::Usage("neither DOCKER_CONFIG nor HOME is set".into()))
}

/// Credentials for `registry` from config.json, or anonymous when it names none.
/// A credential helper that fails is an error (a silent anonymous fallback would
/// end in a confusing 401).
pub fn from_docker_config(registry: &str) -> Result<Credentials> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(registry) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Credentials::Basic { username, password })
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(Credentials::Token(token)),
        Err(E::ConfigNotFound | E::NoCredentialConfigured | E::ConfigReadError) => {
            Ok(Credentials::Anonymous)
        }
        // A helper's stdout may hold a secret: name the helper, show only its stderr.
        Err(E::HelperFailure { helper, stderr, .. }) => Err(Error::Auth {
            registry: registry.to_string(),
            detail: format!(
                "credential helper docker-credential-{helper} failed: {}",
                stderr.trim()
            ),
            anonymous: false,
        }),
        Err(other) => Err(Error::Auth {
            registry: registry.to_string(),
            detail: format!("reading credentials from the Docker config failed: {other}"),
            anonymous: false,
        }),
    }
}

/// Resolves what to use: an explicit user (password from stdin or -p) wins over config.json.
pub fn resolve(
    registry: &str,
    username: Option<&str>,
    password: Option<String>,
) -> Result<Credentials> {
    match (username, password) {
        (Some(username), Some(password)) => Ok(Credentials::Basic {
            username: username.to_string(),
            password,
        }),
        (Some(_), None) => Err(Error::Usage(
            "-u needs its password: --password-stdin (or -p PASSWORD)".into(),
        )),
        (None, Some(_)) => Err(Error::Usage("--password-stdin needs -u USER".into())),
        (None, None) => from_docker_config(registry),
    }
}

/// Reads a password from stdin, trimming the trailing newline.
pub fn read_password_stdin() -> Result<String> {
    let mut password = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
        .map_err(|e| Error::io("reading the password from stdin", e))?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Error::Usage("--password-stdin: stdin was empty".into()));
    }
    Ok(password)
}

fn read_config(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Default::default()),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "{} is not valid JSON: {e}; fix or remove it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes config.json atomically with mode 0600 (it holds secrets).
fn write_config(path: &Path, config: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(config)
        .map_err(|e| Error::Usage(format!("cannot encode the Docker config: {e}")))?;
    crate::cache::write_atomically(path, &bytes, 0o600)
}

/// Stores `username`/`password` for `registry` in config.json (`auths.<registry>.auth`).
pub fn store(registry: &str, username: &str, password: &str) -> Result<PathBuf> {
    let path = config_dir()?.join("config.json");
    let mut config = read_config(&path)?;
    let auths = config
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Error::Usage(format!(
            "{}: \"auths\" is not an object",
            path.display()
        )));
    };
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(registry.to_string(), serde_json::json!({ "auth": encoded }));
    write_config(&path, &config)?;
    Ok(path)
}

/// Removes the stored credentials for `registry`; false when there were none.
pub fn remove(registry: &str) -> Result<bool> {
    let path = config_dir()?.join("config.json");
    let mut config = read_config(&path)?;
    let removed = config
        .get_mut("auths")
        .and_then(|a| a.as_object_mut())
        .and_then(|auths| auths.remove(registry))
        .is_some();
    if removed {
        write_config(&path, &config)?;
    }
    Ok(removed)
}
