//! What gets redacted, in which bodies.

use regex_guest::bytes::{Regex, RegexBuilder};
use sdk_ext::ConfigError;
use serde::Deserialize;

fn default_replacement() -> String {
    "[REDACTED]".to_string()
}

fn default_content_types() -> Vec<String> {
    vec!["application/json".to_string(), "text/*".to_string()]
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    patterns: Vec<String>,
    #[serde(default = "default_replacement")]
    replacement: String,
    #[serde(default = "default_content_types")]
    content_types: Vec<String>,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
}

#[derive(Debug)]
pub struct Config {
    patterns: Vec<Regex>,
    replacement: Vec<u8>,
    content_types: Vec<String>,
    pub max_body_bytes: usize,
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json(raw)?;
        if raw.patterns.is_empty() {
            return Err(ConfigError::new("patterns", "must list at least one regex"));
        }
        let patterns = raw
            .patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        ConfigError::new(format!("patterns[{i}]"), format!("invalid regex: {e}"))
                    })
                    .and_then(|re| {
                        if re.is_match(b"") {
                            Err(ConfigError::new(
                                format!("patterns[{i}]"),
                                "matches the empty string, which would redact between every byte",
                            ))
                        } else {
                            Ok(re)
                        }
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, ct) in raw.content_types.iter().enumerate() {
            let valid = ct
                .split_once('/')
                .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty());
            if !valid {
                return Err(ConfigError::new(
                    format!("content_types[{i}]"),
                    format!("`{ct}` is not a media type like `application/json` or `text/*`"),
                ));
            }
        }
        if raw.max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be more than 0"));
        }
        Ok(Config {
            patterns,
            replacement: raw.replacement.into_bytes(),
            content_types: raw
                .content_types
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            max_body_bytes: raw.max_body_bytes,
        })
    }

    /// True if a body of this `content-type` is redacted (`text/*` covers every text type).
    pub fn handles_content_type(&self, content_type: &str) -> bool {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.content_types
            .iter()
            .any(|allowed| match allowed.strip_suffix("/*") {
                Some(kind) => media.split_once('/').is_some_and(|(t, _)| t == kind),
                None => *allowed == media,
            })
    }

    /// Every match of every pattern replaced, pattern after pattern (a later
    /// pattern sees the earlier ones' replacements); `None` when nothing matched.
    pub fn redact(&self, body: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut redacted: Option<Vec<u8>> = None;
        let mut count = 0;
        for pattern in &self.patterns {
            let current = redacted.as_deref().unwrap_or(body);
            if let Some((next, found)) = self.replace_matches(pattern, current) {
                count += found;
                redacted = Some(next);
            }
        }
        redacted.map(|body| (body, count))
    }

    /// One scan of `haystack`: the same non-overlapping, leftmost-first matches
    /// as `replace_all`, spliced as they are found (counting them first would
    /// scan the body twice); `None` when `pattern` does not match.
    fn replace_matches(&self, pattern: &Regex, haystack: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut matches = pattern.find_iter(haystack);
        let first = matches.next()?;
        let mut out = Vec::with_capacity(haystack.len());
        let mut copied_to = 0;
        let mut found = 0;
        for m in std::iter::once(first).chain(matches) {
            out.extend_from_slice(&haystack[copied_to..m.start()]);
            out.extend_from_slice(&self.replacement);
            copied_to = m.end();
            found += 1;
        }
        out.extend_from_slice(&haystack[copied_to..]);
        Some((out, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = br#"{"patterns":["\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b","\"ssn\":\\s*\"[0-9-]+\""],
        "replacement":"[REDACTED]","content_types":["application/json","text/*"],"max_body_bytes":64}"#;

    #[test]
    fn every_match_of_every_pattern_is_replaced() {
        let config = Config::parse(CONFIG).unwrap();
        let (body, count) = config
            .redact(br#"{"card":"4111-1111-1111-1111","ssn": "123-45-6789","other":"5500-0000-0000-0004"}"#)
            .unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            body,
            br#"{"card":"[REDACTED]",[REDACTED],"other":"[REDACTED]"}"#.to_vec()
        );
    }

    #[test]
    fn one_scan_gives_what_replace_all_gives_pattern_after_pattern() {
        // The second pattern matches text the first one's replacement made.
        let config =
            Config::parse(br#"{"patterns":["a+","\\[X\\]b","\\d{2}"],"replacement":"[X]"}"#)
                .unwrap();
        let reference = |body: &[u8]| {
            let mut current = body.to_vec();
            let mut count = 0;
            for pattern in &config.patterns {
                count += pattern.find_iter(&current).count();
                current = pattern
                    .replace_all(&current, regex_guest::bytes::NoExpand(b"[X]"))
                    .into_owned();
            }
            (count > 0).then_some((current, count))
        };
        for body in [
            &b"aab aab"[..],
            b"aaaa1234b",
            b"12345",
            b"a",
            b"[X]b",
            b"nothing here",
            b"",
        ] {
            assert_eq!(
                config.redact(body),
                reference(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(config.redact(b"aab aab"), Some((b"[X] [X]".to_vec(), 4)));
    }

    #[test]
    fn nothing_to_redact_is_none() {
        let config = Config::parse(CONFIG).unwrap();
        assert_eq!(config.redact(b"{\"id\":1}"), None);
    }

    #[test]
    fn non_utf8_bodies_are_handled_as_bytes() {
        let config = Config::parse(CONFIG).unwrap();
        let mut body = vec![0xff, 0xfe];
        body.extend_from_slice(b" 4111-1111-1111-1111");
        let (out, _) = config.redact(&body).unwrap();
        assert_eq!(&out[..2], &[0xff, 0xfe]);
        assert!(out.ends_with(b"[REDACTED]"));
    }

    #[test]
    fn replacement_is_literal() {
        let config = Config::parse(br#"{"patterns":["secret"],"replacement":"$0$1"}"#).unwrap();
        assert_eq!(config.redact(b"a secret").unwrap().0, b"a $0$1".to_vec());
    }

    #[test]
    fn content_types_match_exactly_or_by_wildcard() {
        let config = Config::parse(CONFIG).unwrap();
        assert!(config.handles_content_type("application/json; charset=utf-8"));
        assert!(config.handles_content_type("Text/HTML"));
        assert!(!config.handles_content_type("application/octet-stream"));
        assert!(!config.handles_content_type("application/json-patch+json"));
        assert!(!config.handles_content_type(""));
    }

    #[test]
    fn bad_configurations_are_explained() {
        let err = |json: &[u8]| Config::parse(json).unwrap_err();
        assert_eq!(err(br#"{"patterns":[]}"#).path(), "patterns");
        assert_eq!(err(br#"{"patterns":["("]}"#).path(), "patterns[0]");
        assert!(
            err(br#"{"patterns":["a*"]}"#)
                .reason()
                .contains("empty string")
        );
        assert_eq!(
            err(br#"{"patterns":["a"],"content_types":["json"]}"#).path(),
            "content_types[0]"
        );
        assert_eq!(
            err(br#"{"patterns":["a"],"max_body_bytes":0}"#).path(),
            "max_body_bytes"
        );
    }
}
