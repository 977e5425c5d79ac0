//! HTTP Basic authentication (RFC 7617) against the configured consumers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sdk_ext::credentials::{ConsumerSpec, CredentialStore};
use sdk_ext::rules::{PathMatcher, PathSpec, compile_paths};
use sdk_ext::{ConfigError, LocalResponse};
use serde::Deserialize;

fn default_realm() -> String {
    "protected".to_string()
}

fn default_consumer_header() -> String {
    "x-consumer".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    consumers: Vec<ConsumerSpec>,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    paths: Vec<PathSpec>,
    #[serde(default = "default_consumer_header")]
    consumer_header: String,
}

#[derive(Debug)]
pub struct Config {
    consumers: CredentialStore,
    realm: String,
    paths: Vec<PathMatcher>,
    pub consumer_header: String,
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json(raw)?;
        if raw.realm.contains('"') || !sdk_ext::headers::is_valid_value(raw.realm.as_bytes()) {
            return Err(ConfigError::new(
                "realm",
                "must not contain quotes, CR, LF or NUL",
            ));
        }
        if !sdk_ext::headers::is_valid_name(&raw.consumer_header)
            || raw.consumer_header.starts_with(':')
        {
            return Err(ConfigError::new(
                "consumer_header",
                "must be a valid header name",
            ));
        }
        for (i, consumer) in raw.consumers.iter().enumerate() {
            if let Some(plain) = &consumer.credential
                && !plain.contains(':')
            {
                return Err(ConfigError::new(
                    format!("consumers[{i}].credential"),
                    "must be `user:password`",
                ));
            }
        }
        Ok(Config {
            consumers: CredentialStore::build("consumers", &raw.consumers)?,
            realm: raw.realm,
            paths: compile_paths("paths", &raw.paths, false)?,
            consumer_header: raw.consumer_header.to_ascii_lowercase(),
        })
    }

    /// An empty `paths` list protects everything.
    pub fn protects(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path, false))
    }

    pub fn check(&self, authorization: Option<&[u8]>) -> Result<&str, Denial> {
        let header = authorization.ok_or(Denial::Missing)?;
        let credentials = decode_basic(header).ok_or(Denial::Malformed)?;
        self.consumers.find(&credentials).ok_or(Denial::Wrong)
    }

    pub fn challenge(&self, denial: Denial) -> LocalResponse {
        LocalResponse::new(401)
            .header(
                "www-authenticate",
                format!("Basic realm=\"{}\"", self.realm),
            )
            .header("content-type", "text/plain")
            .body(format!("unauthorized: {}\n", denial.text()))
            .details(&format!("basic_auth_{}", denial.code()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Missing,
    Malformed,
    Wrong,
}

impl Denial {
    pub fn text(self) -> &'static str {
        match self {
            Denial::Missing => "missing credentials",
            Denial::Malformed => "malformed Basic credentials",
            Denial::Wrong => "wrong credentials",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::Malformed => "malformed",
            Denial::Wrong => "denied",
        }
    }
}

/// `Basic <base64(user:password)>` -> `user:password` (scheme case-insensitive).
pub fn decode_basic(header: &[u8]) -> Option<Vec<u8>> {
    let header = header.trim_ascii();
    let (scheme, rest) = header.split_at(header.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim_ascii()).ok()?;
    decoded.contains(&b':').then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = br#"{"consumers":[{"name":"alice","credential":"alice:secret"},
        {"name":"bob","credential_sha256":"d1821c3f59d1c8bf4047bc688d2f23d25eb1161ffd863fe9e6993724e582395b"}],
        "realm":"api","paths":[{"prefix":"/api/"}]}"#;

    fn basic(credentials: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(credentials)).into_bytes()
    }

    #[test]
    fn decodes_basic_headers() {
        assert_eq!(decode_basic(&basic("a:b")), Some(b"a:b".to_vec()));
        assert_eq!(decode_basic(b"basic YTpi"), Some(b"a:b".to_vec()));
        assert_eq!(decode_basic(b"Bearer YTpi"), None);
        assert_eq!(decode_basic(b"Basic !!!"), None);
        assert_eq!(decode_basic(b"Basic YWI="), None); // "ab": no colon
        assert_eq!(decode_basic(b"Basic"), None);
    }

    #[test]
    fn right_credentials_name_the_consumer() {
        let config = Config::parse(CONFIG).unwrap();
        assert_eq!(config.check(Some(&basic("alice:secret"))), Ok("alice"));
        // bob's configured digest is sha256("bob:hunter2").
        assert_eq!(config.check(Some(&basic("bob:hunter2"))), Ok("bob"));
    }

    #[test]
    fn wrong_missing_or_malformed_credentials_are_denied() {
        let config = Config::parse(CONFIG).unwrap();
        assert_eq!(
            config.check(Some(&basic("alice:wrong"))),
            Err(Denial::Wrong)
        );
        assert_eq!(config.check(None), Err(Denial::Missing));
        assert_eq!(config.check(Some(b"Basic %%%")), Err(Denial::Malformed));
    }

    #[test]
    fn challenge_carries_the_realm() {
        let config = Config::parse(CONFIG).unwrap();
        let reply = config.challenge(Denial::Wrong);
        assert_eq!(reply.status(), 401);
        assert_eq!(
            reply.header_value("www-authenticate"),
            Some(&b"Basic realm=\"api\""[..])
        );
        assert_eq!(reply.body_bytes(), b"unauthorized: wrong credentials\n");
    }

    #[test]
    fn only_listed_paths_are_protected() {
        let config = Config::parse(CONFIG).unwrap();
        assert!(config.protects("/api/users"));
        assert!(!config.protects("/health"));
        let all = Config::parse(br#"{"consumers":[{"name":"a","credential":"a:b"}]}"#).unwrap();
        assert!(all.protects("/anything"));
        assert_eq!(all.consumer_header, "x-consumer");
    }

    #[test]
    fn bad_configurations_are_explained() {
        let err = |json: &[u8]| Config::parse(json).unwrap_err();
        assert_eq!(err(br#"{"consumers":[]}"#).path(), "consumers");
        assert_eq!(
            err(br#"{"consumers":[{"name":"a","credential":"nocolon"}]}"#).path(),
            "consumers[0].credential"
        );
        assert_eq!(
            err(br#"{"consumers":[{"name":"a","credential":"a:b"}],"realm":"a\"b"}"#).path(),
            "realm"
        );
        assert!(
            err(br#"{"realm":"x"}"#)
                .reason()
                .starts_with("missing field `consumers`")
        );
    }
}
