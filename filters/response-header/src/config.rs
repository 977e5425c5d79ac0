//! Configuration of the response-header filter: one header
//! (`{"name":..,"value":..}`) or a list (`{"headers":[{"name":..,"value":..}]}`).

use sdk_ext::config::{ConfigError, Validate, validate_list};
use serde::Deserialize;

/// One header to add to every response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEntry {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

impl Validate for HeaderEntry {
    fn validate(&self) -> Result<(), ConfigError> {
        sdk_ext::headers::check_header(&self.name, self.value.as_bytes())
            .map_err(|(field, reason)| ConfigError::new(field, reason))
    }
}

/// The document as users write it; both forms may not be mixed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    value: Option<String>,
    headers: Option<Vec<HeaderEntry>>,
}

/// The validated configuration: headers in the order they are added, names lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub headers: Vec<HeaderEntry>,
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let doc: RawConfig = sdk_ext::config::parse_json(raw)?;
        let headers = match (doc.name, doc.value, doc.headers) {
            (None, None, None) => {
                return Err(ConfigError::root(
                    "expected {\"name\": .., \"value\": ..} or {\"headers\": [{\"name\": .., \"value\": ..}]}",
                ));
            }
            (name, value, None) => {
                let entry = HeaderEntry {
                    name: name.ok_or_else(|| ConfigError::new("name", "missing field `name`"))?,
                    value: value.unwrap_or_default(),
                };
                entry.validate()?;
                vec![entry]
            }
            (None, None, Some(list)) => {
                if list.is_empty() {
                    return Err(ConfigError::new("headers", "must list at least one header"));
                }
                validate_list("headers", &list)?;
                list
            }
            (_, _, Some(_)) => {
                return Err(ConfigError::root(
                    "use either `name`/`value` or `headers`, not both",
                ));
            }
        };
        Ok(Config {
            headers: headers
                .into_iter()
                .map(|h| HeaderEntry {
                    name: h.name.to_ascii_lowercase(),
                    value: h.value,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: &str) -> HeaderEntry {
        HeaderEntry {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn single_header_form() {
        let config = Config::parse(br#"{"name":"hello","value":"hello details"}"#).unwrap();
        assert_eq!(config.headers, vec![entry("hello", "hello details")]);
    }

    #[test]
    fn list_form_keeps_order_and_lowercases_names() {
        let config = Config::parse(
            br#"{"headers":[{"name":"X-One","value":"1"},{"name":"x-two","value":"2"}]}"#,
        )
        .unwrap();
        assert_eq!(
            config.headers,
            vec![entry("x-one", "1"), entry("x-two", "2")]
        );
    }

    #[test]
    fn value_defaults_to_empty() {
        let config = Config::parse(br#"{"name":"x-flag"}"#).unwrap();
        assert_eq!(config.headers, vec![entry("x-flag", "")]);
    }

    #[test]
    fn empty_name_is_rejected_with_its_path() {
        let err = Config::parse(br#"{"name":"","value":"v"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration at name: must not be empty"
        );
        let err =
            Config::parse(br#"{"headers":[{"name":"a","value":"1"},{"name":"","value":"2"}]}"#)
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration at headers[1].name: must not be empty"
        );
    }

    #[test]
    fn missing_name_is_rejected() {
        let err = Config::parse(br#"{"value":"v"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration at name: missing field `name`"
        );
        let err = Config::parse(br#"{"headers":[{"value":"v"}]}"#).unwrap_err();
        assert_eq!(err.path(), "headers[0]");
        assert!(err.reason().contains("missing field `name`"));
    }

    #[test]
    fn other_mistakes_are_explained() {
        let err = Config::parse(b"{}").unwrap_err();
        assert!(err.reason().starts_with("expected"), "{err}");
        let err = Config::parse(br#"{"name":"a","headers":[]}"#).unwrap_err();
        assert!(err.reason().contains("not both"), "{err}");
        let err = Config::parse(br#"{"headers":[]}"#).unwrap_err();
        assert_eq!(err.path(), "headers");
        let err = Config::parse(br#"{"name":"bad name","value":"v"}"#).unwrap_err();
        assert!(
            err.reason().contains("not a valid HTTP header name"),
            "{err}"
        );
        let err = Config::parse(br#"{"name":"x","value":"a\r\nb"}"#).unwrap_err();
        assert_eq!(err.path(), "value");
        let err = Config::parse(br#"{"nam":"x"}"#).unwrap_err();
        assert_eq!(err.path(), "nam");
        let err = Config::parse(b"").unwrap_err();
        assert!(err.reason().contains("empty"), "{err}");
    }
}
