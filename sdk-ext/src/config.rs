//! Typed plugin configuration: JSON parsing that reports the failing field path,
//! plus a validation step for the rules serde cannot express.

use serde::de::DeserializeOwned;
use std::fmt;

/// Why a configuration was rejected, and where.
///
/// `path` uses the JSON path notation of serde_path_to_error (`headers[1].name`);
/// an empty path means the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    reason: String,
}

impl ConfigError {
    /// An error about the field at `path` (e.g. `"headers[1].name"`, or `""` for the whole document).
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An error about the whole document.
    pub fn root(reason: impl Into<String>) -> Self {
        Self::new("", reason)
    }

    /// Prefixes the path with a field name: `name` + `value` -> `name.value`.
    #[must_use]
    pub fn in_field(mut self, field: &str) -> Self {
        self.path = if self.path.is_empty() {
            field.to_string()
        } else if self.path.starts_with('[') {
            format!("{field}{}", self.path)
        } else {
            format!("{field}.{}", self.path)
        };
        self
    }

    /// Prefixes the path with a list element: `headers`, 1 + `name` -> `headers[1].name`.
    #[must_use]
    pub fn in_list(self, field: &str, index: usize) -> Self {
        self.in_field(&format!("{field}[{index}]"))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid configuration: {}", self.reason)
        } else {
            write!(f, "invalid configuration at {}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Rules a deserialized configuration must satisfy beyond its types.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Validates every element of a list, reporting `field[i]...` on the first failure.
pub fn validate_list<T: Validate>(field: &str, items: &[T]) -> Result<(), ConfigError> {
    for (index, item) in items.iter().enumerate() {
        item.validate().map_err(|e| e.in_list(field, index))?;
    }
    Ok(())
}

/// Deserializes JSON, reporting the path of the field that failed.
///
/// An empty document is rejected with a hint; use [`parse_json_or_default`] for
/// plugins that run without configuration.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ConfigError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::root(
            "the configuration is empty; expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, error.into_inner().to_string())
    })?;
    deserializer
        .end()
        .map_err(|e| ConfigError::root(format!("trailing data after the JSON value: {e}")))?;
    Ok(value)
}

/// Deserializes an already-parsed JSON value, reporting the failing field path.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, error.into_inner().to_string())
    })
}

/// Like [`parse_json`], but an empty document yields `T::default()`.
pub fn parse_json_or_default<T: DeserializeOwned + Default>(raw: &[u8]) -> Result<T, ConfigError> {
    parse_json_or_default_with(raw, T::default)
}

/// Like [`parse_json`], but an empty document yields `default()`.
pub fn parse_json_or_default_with<T: DeserializeOwned>(
    raw: &[u8],
    default: impl FnOnce() -> T,
) -> Result<T, ConfigError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(default());
    }
    parse_json(raw)
}

/// Deserializes and validates: the usual body of [`crate::Plugin::configure`].
pub fn from_json<T: DeserializeOwned + Validate>(raw: &[u8]) -> Result<T, ConfigError> {
    let value: T = parse_json(raw)?;
    value.validate()?;
    Ok(value)
}

/// Parses a duration written as `"250ms"`, `"1.5s"`, `"2m"`, `"1h"` or `"30"` (seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"250ms\", \"2s\" or \"1m\""))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}`; use ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a valid duration"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        name: String,
        #[serde(default)]
        value: String,
    }

    impl Validate for Entry {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.name.is_empty() {
                return Err(ConfigError::new("name", "must not be empty"));
            }
            Ok(())
        }
    }

    #[derive(Debug, Deserialize)]
    struct List {
        headers: Vec<Entry>,
    }

    impl Validate for List {
        fn validate(&self) -> Result<(), ConfigError> {
            validate_list("headers", &self.headers)
        }
    }

    #[test]
    fn serde_errors_carry_the_field_path() {
        let err = from_json::<List>(br#"{"headers":[{"name":"a"},{"name":7}]}"#).unwrap_err();
        assert_eq!(err.path(), "headers[1].name");
        assert!(err.reason().contains("invalid type"), "{err}");
    }

    #[test]
    fn valid_documents_parse() {
        let list = from_json::<List>(br#"{"headers":[{"name":"a","value":"1"}]}"#).unwrap();
        assert_eq!(list.headers[0].value, "1");
    }

    #[test]
    fn missing_fields_point_at_their_parent() {
        let err = from_json::<List>(br#"{"headers":[{"value":"x"}]}"#).unwrap_err();
        assert_eq!(err.path(), "headers[0]");
        assert!(err.reason().contains("missing field `name`"), "{err}");
    }

    #[test]
    fn validation_errors_are_prefixed_with_the_list_index() {
        let err = from_json::<List>(br#"{"headers":[{"name":"a"},{"name":""}]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration at headers[1].name: must not be empty"
        );
    }

    #[test]
    fn unknown_fields_are_reported() {
        let err = from_json::<List>(br#"{"headers":[{"name":"a","valu":"x"}]}"#).unwrap_err();
        assert_eq!(err.path(), "headers[0].valu");
        assert!(err.reason().contains("unknown field `valu`"), "{err}");
    }

    #[test]
    fn empty_and_malformed_documents_are_rejected_at_the_root() {
        let err = from_json::<List>(b"  ").unwrap_err();
        assert_eq!(err.path(), "");
        assert!(
            err.to_string()
                .starts_with("invalid configuration: the configuration is empty")
        );
        let err = from_json::<List>(b"{\"headers\": [").unwrap_err();
        assert!(err.reason().contains("EOF"), "{err}");
        let err = from_json::<List>(br#"{"headers":[]} x"#).unwrap_err();
        assert!(err.reason().contains("trailing"), "{err}");
    }

    #[test]
    fn default_is_used_for_empty_documents_only() {
        #[derive(Debug, Default, Deserialize, PartialEq)]
        struct Opt {
            #[serde(default)]
            level: u32,
        }
        assert_eq!(parse_json_or_default::<Opt>(b"").unwrap(), Opt::default());
        assert_eq!(
            parse_json_or_default::<Opt>(br#"{"level":3}"#)
                .unwrap()
                .level,
            3
        );
    }

    #[test]
    fn durations_parse_with_units() {
        use std::time::Duration;
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown duration unit")
        );
        assert!(parse_duration("fast").is_err());
    }
}
