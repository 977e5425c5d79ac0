//! request-block configuration: what to block and how to answer.

use sdk_ext::ConfigError;
use sdk_ext::LocalResponse;
use sdk_ext::rules::{PathMatcher, PathSpec, RequestFacts, Rules, compile_paths};
use serde::Deserialize;

fn default_status() -> u32 {
    403
}

fn default_body() -> String {
    "request blocked\n".to_string()
}

/// The document as written (top level, or a rule's merged view).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlock {
    #[serde(default)]
    paths: Vec<PathSpec>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    forbidden_headers: Vec<String>,
    #[serde(default = "default_status")]
    status: u32,
    #[serde(default = "default_body")]
    body: String,
    #[serde(default)]
    ignore_case: bool,
}

/// One compiled blocking policy.
#[derive(Debug)]
pub struct Block {
    paths: Vec<PathMatcher>,
    methods: Vec<String>,
    forbidden_headers: Vec<String>,
    status: u32,
    body: String,
    ignore_case: bool,
}

/// Why a request was blocked (for the log line and response details).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Path,
    Method,
    Header(String),
}

impl Block {
    fn build(raw: RawBlock) -> Result<Block, ConfigError> {
        if !(200..=599).contains(&raw.status) {
            return Err(ConfigError::new(
                "status",
                format!("{} is not an HTTP status (200-599)", raw.status),
            ));
        }
        for (i, name) in raw.forbidden_headers.iter().enumerate() {
            if !sdk_ext::headers::is_valid_name(name) {
                return Err(ConfigError::new(
                    format!("forbidden_headers[{i}]"),
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
        for (i, method) in raw.methods.iter().enumerate() {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ConfigError::new(
                    format!("methods[{i}]"),
                    format!("`{method}` is not an HTTP method"),
                ));
            }
        }
        Ok(Block {
            paths: compile_paths("paths", &raw.paths, raw.ignore_case)?,
            methods: raw.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            forbidden_headers: raw
                .forbidden_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            status: raw.status,
            body: raw.body,
            ignore_case: raw.ignore_case,
        })
    }

    fn blocks_anything(&self) -> bool {
        !(self.paths.is_empty() && self.methods.is_empty() && self.forbidden_headers.is_empty())
    }

    /// Why this request must be blocked, if it must: any listed path, any
    /// listed method or any forbidden header present is enough.
    pub fn check(&self, facts: &RequestFacts, has_header: impl Fn(&str) -> bool) -> Option<Reason> {
        if self
            .paths
            .iter()
            .any(|p| p.matches(&facts.path, self.ignore_case))
        {
            return Some(Reason::Path);
        }
        if self
            .methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&facts.method))
        {
            return Some(Reason::Method);
        }
        self.forbidden_headers
            .iter()
            .find(|h| has_header(h))
            .map(|h| Reason::Header(h.clone()))
    }

    pub fn reply(&self, reason: &Reason) -> LocalResponse {
        let details = match reason {
            Reason::Path => "request_block_path".to_string(),
            Reason::Method => "request_block_method".to_string(),
            Reason::Header(h) => format!("request_block_header_{h}"),
        };
        LocalResponse::new(self.status)
            .header("content-type", "text/plain")
            .body(self.body.as_bytes())
            .details(&details)
    }
}

/// Top-level policy plus per-route overrides (`rules`).
pub type Config = Rules<Block>;

pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
    let rules = Rules::parse_with(raw, Block::build)?;
    if !rules.default_config().blocks_anything() && rules.rule_count() == 0 {
        return Err(ConfigError::root(
            "nothing to block: set `paths`, `methods` or `forbidden_headers`",
        ));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(method: &str, path: &str) -> RequestFacts {
        RequestFacts {
            authority: "example.com".into(),
            path: path.into(),
            method: method.into(),
            route_name: None,
        }
    }

    const CONFIG: &[u8] = br#"{
        "paths": [{"exact": "/secret"}, {"prefix": "/admin/"}, {"regex": "\\.php$"}],
        "methods": ["TRACE"],
        "forbidden_headers": ["X-Debug"],
        "status": 404,
        "body": "not here\n",
        "ignore_case": true
    }"#;

    fn check(method: &str, path: &str, headers: &[&str]) -> Option<Reason> {
        let config = parse(CONFIG).unwrap();
        let block = config.select(&facts(method, path));
        block.check(&facts(method, path), |h| headers.contains(&h))
    }

    #[test]
    fn paths_match_exact_prefix_and_regex_ignoring_case_and_query() {
        assert_eq!(check("GET", "/secret?x=1", &[]), Some(Reason::Path));
        assert_eq!(check("GET", "/SECRET", &[]), Some(Reason::Path));
        assert_eq!(check("GET", "/admin/users", &[]), Some(Reason::Path));
        assert_eq!(check("GET", "/index.PHP", &[]), Some(Reason::Path));
        assert_eq!(check("GET", "/secret/more", &[]), None);
        assert_eq!(check("GET", "/administrator", &[]), None);
    }

    #[test]
    fn methods_and_forbidden_headers_block() {
        assert_eq!(check("trace", "/", &[]), Some(Reason::Method));
        assert_eq!(
            check("GET", "/", &["x-debug"]),
            Some(Reason::Header("x-debug".into()))
        );
        assert_eq!(check("GET", "/", &["x-other"]), None);
    }

    #[test]
    fn case_sensitive_by_default() {
        let config = parse(br#"{"paths":[{"prefix":"/admin"}]}"#).unwrap();
        let block = config.default_config();
        assert!(block.check(&facts("GET", "/admin"), |_| false).is_some());
        assert!(block.check(&facts("GET", "/ADMIN"), |_| false).is_none());
    }

    #[test]
    fn reply_uses_configured_status_and_body() {
        let config = parse(CONFIG).unwrap();
        let reply = config.default_config().reply(&Reason::Path);
        assert_eq!(reply.status(), 404);
        assert_eq!(reply.body_bytes(), b"not here\n");
        assert_eq!(reply.details_text(), "request_block_path");
        let defaults = parse(br#"{"methods":["DELETE"]}"#).unwrap();
        let reply = defaults.default_config().reply(&Reason::Method);
        assert_eq!(reply.status(), 403);
        assert_eq!(reply.body_bytes(), b"request blocked\n");
    }

    #[test]
    fn rules_scope_policies_to_hosts() {
        let config = parse(
            br#"{"rules":[{"match":{"hosts":["admin.example.com"]},"config":{"paths":[{"prefix":"/"}],"status":401}}]}"#,
        )
        .unwrap();
        let mut f = facts("GET", "/x");
        assert!(config.select(&f).check(&f, |_| false).is_none());
        f.authority = "admin.example.com".into();
        let block = config.select(&f);
        assert_eq!(block.check(&f, |_| false), Some(Reason::Path));
        assert_eq!(block.reply(&Reason::Path).status(), 401);
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let err = parse(b"{}").unwrap_err();
        assert!(err.reason().contains("nothing to block"));
        let err = parse(br#"{"methods":["GET"],"status":42}"#).unwrap_err();
        assert_eq!(err.path(), "status");
        let err = parse(br#"{"paths":[{"regex":"("}]}"#).unwrap_err();
        assert_eq!(err.path(), "paths[0].regex");
        let err = parse(br#"{"forbidden_headers":["bad header"]}"#).unwrap_err();
        assert_eq!(err.path(), "forbidden_headers[0]");
        let err = parse(br#"{"methods":["GET "]}"#).unwrap_err();
        assert_eq!(err.path(), "methods[0]");
    }
}
