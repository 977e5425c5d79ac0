//! Where API keys are looked for, how they are checked, and how they are
//! removed before the request goes upstream.

use sdk_ext::credentials::{ConsumerSpec, CredentialStore};
use sdk_ext::{ConfigError, LocalResponse};
use serde::Deserialize;

fn default_header_names() -> Vec<String> {
    vec!["x-api-key".to_string()]
}

fn default_consumer_header() -> String {
    "x-consumer".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    consumers: Vec<ConsumerSpec>,
    #[serde(default = "default_header_names")]
    header_names: Vec<String>,
    #[serde(default)]
    query_names: Vec<String>,
    #[serde(default = "default_consumer_header")]
    consumer_header: String,
}

#[derive(Debug)]
pub struct Config {
    consumers: CredentialStore,
    pub header_names: Vec<String>,
    pub query_names: Vec<String>,
    pub consumer_header: String,
}

/// Where a key was found, so it can be stripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(String),
    Query(String),
}

/// A key found in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub key: Vec<u8>,
    pub source: Source,
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json(raw)?;
        if raw.header_names.is_empty() && raw.query_names.is_empty() {
            return Err(ConfigError::root(
                "set `header_names` and/or `query_names`: there is nowhere to look for a key",
            ));
        }
        for (i, name) in raw.header_names.iter().enumerate() {
            if !sdk_ext::headers::is_valid_name(name) || name.starts_with(':') {
                return Err(ConfigError::new(
                    format!("header_names[{i}]"),
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
        for (i, name) in raw.query_names.iter().enumerate() {
            if name.is_empty() || name.contains(['&', '=', '?', '#']) {
                return Err(ConfigError::new(
                    format!("query_names[{i}]"),
                    format!("`{name}` is not a query parameter name"),
                ));
            }
        }
        if !sdk_ext::headers::is_valid_name(&raw.consumer_header)
            || raw.consumer_header.starts_with(':')
        {
            return Err(ConfigError::new(
                "consumer_header",
                "must be a valid header name",
            ));
        }
        Ok(Config {
            consumers: CredentialStore::build("consumers", &raw.consumers)?,
            header_names: raw
                .header_names
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            query_names: raw.query_names,
            consumer_header: raw.consumer_header.to_ascii_lowercase(),
        })
    }

    /// The first key present: headers in order, then query parameters in order.
    pub fn find_key(
        &self,
        header: impl Fn(&str) -> Option<Vec<u8>>,
        path: &str,
    ) -> Option<Presented> {
        for name in &self.header_names {
            if let Some(key) = header(name).filter(|k| !k.is_empty()) {
                return Some(Presented {
                    key,
                    source: Source::Header(name.clone()),
                });
            }
        }
        for name in &self.query_names {
            if let Some(key) = sdk_ext::query::get(path, name).filter(|k| !k.is_empty()) {
                return Some(Presented {
                    key,
                    source: Source::Query(name.clone()),
                });
            }
        }
        None
    }

    pub fn consumer(&self, key: &[u8]) -> Option<&str> {
        self.consumers.find(key)
    }

    /// `:path` with every configured key parameter removed; `None` if unchanged.
    pub fn strip_query(&self, path: &str) -> Option<String> {
        let mut current: Option<String> = None;
        for name in &self.query_names {
            let base = current.as_deref().unwrap_or(path);
            if let Some(stripped) = sdk_ext::query::remove(base, name) {
                current = Some(stripped);
            }
        }
        current
    }

    pub fn deny(reason: &str) -> LocalResponse {
        LocalResponse::new(401)
            .header("content-type", "text/plain")
            .body(format!("unauthorized: {reason}\n"))
            .details(&format!("key_auth_{}", reason.replace(' ', "_")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = br#"{"consumers":[{"name":"mobile","credential":"k-mobile-123"},{"name":"web","credential":"k-web-456"}],
        "header_names":["x-api-key"],"query_names":["apikey"]}"#;

    fn headers(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<Vec<u8>> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_bytes().to_vec())
        }
    }

    #[test]
    fn header_key_wins_over_query_key() {
        let config = Config::parse(CONFIG).unwrap();
        let found = config
            .find_key(
                headers(&[("x-api-key", "k-web-456")]),
                "/a?apikey=k-mobile-123",
            )
            .unwrap();
        assert_eq!(found.source, Source::Header("x-api-key".into()));
        assert_eq!(config.consumer(&found.key), Some("web"));
    }

    #[test]
    fn query_key_is_decoded_and_checked() {
        let config = Config::parse(CONFIG).unwrap();
        let found = config
            .find_key(headers(&[]), "/a?x=1&apikey=k%2Dmobile%2D123")
            .unwrap();
        assert_eq!(found.source, Source::Query("apikey".into()));
        assert_eq!(config.consumer(&found.key), Some("mobile"));
        assert_eq!(config.consumer(b"nope"), None);
    }

    #[test]
    fn no_key_anywhere() {
        let config = Config::parse(CONFIG).unwrap();
        assert_eq!(
            config.find_key(headers(&[("x-api-key", "")]), "/a?apikey="),
            None
        );
    }

    #[test]
    fn query_keys_are_stripped() {
        let config = Config::parse(CONFIG).unwrap();
        assert_eq!(
            config.strip_query("/a?apikey=k&x=1").as_deref(),
            Some("/a?x=1")
        );
        assert_eq!(config.strip_query("/a?x=1"), None);
    }

    #[test]
    fn defaults_and_errors() {
        let config = Config::parse(br#"{"consumers":[{"name":"a","credential":"k"}]}"#).unwrap();
        assert_eq!(config.header_names, vec!["x-api-key"]);
        assert!(config.query_names.is_empty());
        let err = |json: &[u8]| Config::parse(json).unwrap_err();
        assert!(
            err(br#"{"consumers":[{"name":"a","credential":"k"}],"header_names":[]}"#)
                .reason()
                .contains("nowhere")
        );
        assert_eq!(
            err(br#"{"consumers":[{"name":"a","credential":"k"}],"query_names":["a=b"]}"#).path(),
            "query_names[0]"
        );
        assert_eq!(
            err(br#"{"consumers":[{"name":"a"}]}"#).path(),
            "consumers[0]"
        );
    }

    #[test]
    fn denial_is_a_401() {
        let reply = Config::deny("invalid API key");
        assert_eq!(reply.status(), 401);
        assert_eq!(reply.body_bytes(), b"unauthorized: invalid API key\n");
        assert_eq!(reply.details_text(), "key_auth_invalid_API_key");
    }
}
