//! The errors users see. Each variant says what failed and, where it helps,
//! what to do next. Secrets never reach these messages.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: not a loadable Proxy-Wasm module: {reason}")]
    InvalidModule { path: PathBuf, reason: String },

    #[error("invalid reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },

    #[error("authentication to {registry} failed: {detail}. {}", auth_hint(.registry, .anonymous))]
    Auth {
        registry: String,
        detail: String,
        /// No credentials were offered (the hint says how to give some).
        anonymous: bool,
    },

    #[error("{what} at {registry}: {detail}")]
    Registry {
        what: String,
        registry: String,
        detail: String,
    },

    #[error(
        "{what}: digest mismatch, expected {expected}, got {actual} (the registry served altered content)"
    )]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },

    #[error(
        "{reference}: the --sha256 pin does not match the manifest: pinned {pinned}, the registry's manifest is {actual} \
         (the tag now names other content, or the pin is not this image's manifest digest)"
    )]
    PinMismatch {
        reference: String,
        pinned: String,
        actual: String,
    },

    #[error("cannot reach {registry} ({what}): {detail}")]
    Connection {
        what: String,
        registry: String,
        detail: String,
    },

    #[error(
        "{what}: size mismatch, the manifest says {expected} bytes, the registry sent {actual}"
    )]
    Size {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{0}")]
    Layout(String),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Usage(String),
}

fn auth_hint(registry: &str, anonymous: &bool) -> String {
    if *anonymous {
        format!(
            "Log in with `publish login {registry} -u USER --password-stdin`, or pass -u USER --password-stdin"
        )
    } else {
        format!("Check the user name and password (`publish login {registry}` stores new ones)")
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
