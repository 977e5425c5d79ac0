//! Consumer credentials for the auth filters: secrets are kept only as SHA-256
//! digests, and a presented secret is found by hashing it, so the lookup time
//! does not depend on how much of a stored secret matches.

use crate::config::ConfigError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A consumer as configured: a name and a secret, in plain text or as the
/// hex SHA-256 of the secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    pub name: String,
    #[serde(default)]
    pub credential: Option<String>,
    #[serde(default)]
    pub credential_sha256: Option<String>,
}

/// Consumers indexed by the SHA-256 of their secret.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    by_digest: HashMap<[u8; 32], String>,
}

impl CredentialStore {
    /// Builds the store from `field` (e.g. `consumers`), reporting `field[i].x` errors.
    pub fn build(field: &str, specs: &[ConsumerSpec]) -> Result<Self, ConfigError> {
        if specs.is_empty() {
            return Err(ConfigError::new(field, "must list at least one consumer"));
        }
        let mut store = CredentialStore::default();
        for (i, spec) in specs.iter().enumerate() {
            let at =
                |sub: &str, reason: String| ConfigError::new(format!("{field}[{i}].{sub}"), reason);
            if spec.name.is_empty() || !crate::headers::is_valid_value(spec.name.as_bytes()) {
                return Err(at("name", "must be a non-empty header-safe string".into()));
            }
            let digest = match (&spec.credential, &spec.credential_sha256) {
                (Some(plain), None) if !plain.is_empty() => sha256(plain.as_bytes()),
                (Some(_), None) => return Err(at("credential", "must not be empty".into())),
                (None, Some(hex)) => parse_hex_digest(hex).ok_or_else(|| {
                    at(
                        "credential_sha256",
                        "must be 64 hex digits (a SHA-256 digest)".into(),
                    )
                })?,
                (None, None) => {
                    return Err(ConfigError::new(
                        format!("{field}[{i}]"),
                        "needs `credential` or `credential_sha256`",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        format!("{field}[{i}]"),
                        "set `credential` or `credential_sha256`, not both",
                    ));
                }
            };
            if let Some(other) = store.by_digest.insert(digest, spec.name.clone()) {
                return Err(at(
                    "name",
                    format!("has the same credential as consumer `{other}`"),
                ));
            }
        }
        Ok(store)
    }

    /// The consumer whose secret is `presented`.
    pub fn find(&self, presented: &[u8]) -> Option<&str> {
        self.by_digest.get(&sha256(presented)).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(json: &str) -> Vec<ConsumerSpec> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plain_and_hashed_credentials_are_found() {
        // bob's digest is arbitrary here; the second store below uses a real one.
        let store = CredentialStore::build(
            "consumers",
            &specs(r#"[{"name":"alice","credential":"alice:secret"},
                       {"name":"bob","credential_sha256":"7d8e5e8f8e3a0d0cd2b3b9a16a4ba2d0e7a1c1e0b3e3a0f5c1d2e3f4a5b6c7d8"}]"#),
        )
        .unwrap();
        assert_eq!(store.find(b"alice:secret"), Some("alice"));
        assert_eq!(store.find(b"alice:Secret"), None);
        assert_eq!(store.len(), 2);
        let hashed = CredentialStore::build(
            "consumers",
            &[ConsumerSpec {
                name: "bob".into(),
                credential: None,
                credential_sha256: Some(
                    sha256(b"bob:hunter2")
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                ),
            }],
        )
        .unwrap();
        assert_eq!(hashed.find(b"bob:hunter2"), Some("bob"));
    }

    #[test]
    fn mistakes_are_reported_per_consumer() {
        let err = |json: &str| CredentialStore::build("consumers", &specs(json)).unwrap_err();
        assert_eq!(err("[]").path(), "consumers");
        assert_eq!(err(r#"[{"name":"a"}]"#).path(), "consumers[0]");
        assert_eq!(
            err(r#"[{"name":"","credential":"x"}]"#).path(),
            "consumers[0].name"
        );
        assert_eq!(
            err(r#"[{"name":"a","credential":""}]"#).path(),
            "consumers[0].credential"
        );
        assert_eq!(
            err(r#"[{"name":"a","credential_sha256":"abc"}]"#).path(),
            "consumers[0].credential_sha256"
        );
        let dup = err(r#"[{"name":"a","credential":"k"},{"name":"b","credential":"k"}]"#);
        assert_eq!(dup.path(), "consumers[1].name");
        assert!(dup.reason().contains("`a`"));
    }
}
