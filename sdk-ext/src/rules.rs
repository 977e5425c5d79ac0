//! Route/host rules with per-rule configuration overrides.
//!
//! A plugin configuration may carry a `rules` list; each rule has a `match`
//! and a partial `config` laid over the top-level fields:
//!
//! ```json
//! {"status": 403,
//!  "rules": [{"match": {"hosts": ["*.internal"], "paths": [{"prefix": "/admin"}]},
//!             "config": {"status": 404}}]}
//! ```
//!
//! The first rule whose match holds wins; no match means the top-level config.

use crate::config::{ConfigError, Validate};
use regex_guest::{Regex, RegexBuilder};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// How a path is matched. JSON: `{"exact": "/a"}`, `{"prefix": "/api/"}` or `{"regex": "^/v[0-9]+/"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum PathSpec {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// A compiled [`PathSpec`]. Matches the path without its query string.
#[derive(Debug, Clone)]
pub enum PathMatcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl PathMatcher {
    /// `ignore_case` lower-cases exact/prefix patterns and makes regexes case-insensitive.
    pub fn compile(spec: &PathSpec, ignore_case: bool) -> Result<Self, ConfigError> {
        let fold = |s: &str| {
            if ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        Ok(match spec {
            PathSpec::Exact(p) => PathMatcher::Exact(fold(p)),
            PathSpec::Prefix(p) => PathMatcher::Prefix(fold(p)),
            PathSpec::Regex(r) => PathMatcher::Regex(
                RegexBuilder::new(r)
                    .case_insensitive(ignore_case)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| ConfigError::new("regex", format!("invalid regex: {e}")))?,
            ),
        })
    }

    /// `path` may include a query string; it is ignored. For an `ignore_case`
    /// matcher pass `ignore_case` again so the path is folded the same way.
    pub fn matches(&self, path: &str, ignore_case: bool) -> bool {
        let path = strip_query(path);
        match self {
            PathMatcher::Regex(re) => re.is_match(path),
            PathMatcher::Exact(p) | PathMatcher::Prefix(p) => {
                let folded;
                let path = if ignore_case {
                    folded = path.to_ascii_lowercase();
                    folded.as_str()
                } else {
                    path
                };
                match self {
                    PathMatcher::Exact(_) => path == p,
                    _ => path.starts_with(p.as_str()),
                }
            }
        }
    }
}

/// Compiles a list of path specs, reporting `field[i]...` on failure.
pub fn compile_paths(
    field: &str,
    specs: &[PathSpec],
    ignore_case: bool,
) -> Result<Vec<PathMatcher>, ConfigError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| PathMatcher::compile(spec, ignore_case).map_err(|e| e.in_list(field, i)))
        .collect()
}

/// The path without `?query` and `#fragment`.
pub fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// A host pattern: `example.com` (exact), `*.example.com` (any subdomain) or `*`.
/// Ports in the request's authority are ignored; comparison ignores case.
pub fn host_matches(pattern: &str, authority: &str) -> bool {
    let host = strip_port(authority);
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            host.len() > suffix.len()
                && host
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| &authority[..=h.len()]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// What rules are matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub authority: String,
    pub path: String,
    pub method: String,
    /// `xds.route_name`, when the host knows it.
    pub route_name: Option<String>,
}

impl RequestFacts {
    /// Reads `:authority`, `:path`, `:method` and the route name from the
    /// request headers (call it where they are in reach: on_request_headers).
    pub fn from_headers(headers: &crate::headers::Headers) -> Self {
        RequestFacts {
            authority: headers.get_str(":authority").unwrap_or_default(),
            path: headers.get_str(":path").unwrap_or_default(),
            method: headers.get_str(":method").unwrap_or_default(),
            // Current Envoy serves only xds.route_name (the top-level name is gone).
            route_name: crate::property::get_string(&["xds", "route_name"]),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    paths: Vec<PathSpec>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    route_names: Vec<String>,
}

/// A compiled rule match; every non-empty criterion must hold.
#[derive(Debug, Clone)]
pub struct RuleMatch {
    hosts: Vec<String>,
    paths: Vec<PathMatcher>,
    methods: Vec<String>,
    route_names: Vec<String>,
}

impl RuleMatch {
    fn compile(spec: &MatchSpec) -> Result<Self, ConfigError> {
        if spec.hosts.is_empty()
            && spec.paths.is_empty()
            && spec.methods.is_empty()
            && spec.route_names.is_empty()
        {
            return Err(ConfigError::root(
                "a rule must match on at least one of hosts, paths, methods, route_names",
            ));
        }
        for (i, host) in spec.hosts.iter().enumerate() {
            if host.is_empty() || (host.contains('*') && !(host == "*" || host.starts_with("*."))) {
                return Err(ConfigError::new(
                    format!("hosts[{i}]"),
                    format!(
                        "`{host}` is not a host pattern (`example.com`, `*.example.com` or `*`)"
                    ),
                ));
            }
        }
        Ok(RuleMatch {
            hosts: spec.hosts.clone(),
            paths: compile_paths("paths", &spec.paths, false)?,
            methods: spec
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            route_names: spec.route_names.clone(),
        })
    }

    pub fn matches(&self, facts: &RequestFacts) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| host_matches(h, &facts.authority)))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(&facts.path, false)))
            && (self.methods.is_empty()
                || self
                    .methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&facts.method)))
            && (self.route_names.is_empty()
                || facts
                    .route_name
                    .as_deref()
                    .is_some_and(|r| self.route_names.iter().any(|n| n == r)))
    }
}

/// The top-level configuration plus per-rule overrides, each fully built.
#[derive(Debug)]
pub struct Rules<T> {
    default: T,
    rules: Vec<(RuleMatch, T)>,
}

impl<T> Rules<T> {
    /// The configuration for this request: the first matching rule's, else the top-level one.
    pub fn select(&self, facts: &RequestFacts) -> &T {
        self.rules
            .iter()
            .find(|(m, _)| m.matches(facts))
            .map_or(&self.default, |(_, config)| config)
    }

    pub fn default_config(&self) -> &T {
        &self.default
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Parses `{...fields of R..., "rules": [{"match": .., "config": {..}}]}`:
    /// the top level as `R`, each rule as the top level with its `config`
    /// fields laid over, then `build` turns each `R` into a `T`.
    pub fn parse_with<R: DeserializeOwned>(
        raw: &[u8],
        build: impl Fn(R) -> Result<T, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut doc: serde_json::Value = crate::config::parse_json(raw)?;
        let Some(object) = doc.as_object_mut() else {
            return Err(ConfigError::root("expected a JSON object"));
        };
        let raw_rules = object.remove("rules");
        let base = object.clone();
        let default = build(crate::config::parse_value(doc)?)?;
        let mut rules = Vec::new();
        if let Some(raw_rules) = raw_rules {
            let list: Vec<RawRule> =
                crate::config::parse_value(raw_rules).map_err(|e| e.in_field("rules"))?;
            for (i, rule) in list.into_iter().enumerate() {
                let matcher = RuleMatch::compile(&rule.matcher)
                    .map_err(|e| e.in_field("match").in_list("rules", i))?;
                let mut merged = base.clone();
                if let Some(overrides) = rule.config {
                    let serde_json::Value::Object(overrides) = overrides else {
                        return Err(ConfigError::new(
                            format!("rules[{i}].config"),
                            "expected a JSON object",
                        ));
                    };
                    merged.extend(overrides);
                }
                let config = crate::config::parse_value(serde_json::Value::Object(merged))
                    .and_then(&build)
                    .map_err(|e| e.in_field("config").in_list("rules", i))?;
                rules.push((matcher, config));
            }
        }
        Ok(Rules { default, rules })
    }
}

impl<T: DeserializeOwned + Validate> Rules<T> {
    /// [`Rules::parse_with`] for a configuration that only needs validation.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        Self::parse_with(raw, |config: T| config.validate().map(|()| config))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matcher: MatchSpec,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(authority: &str, method: &str, path: &str) -> RequestFacts {
        RequestFacts {
            authority: authority.into(),
            path: path.into(),
            method: method.into(),
            route_name: Some("r1".into()),
        }
    }

    #[test]
    fn path_matchers_ignore_the_query() {
        let exact = PathMatcher::compile(&PathSpec::Exact("/a".into()), false).unwrap();
        assert!(exact.matches("/a?x=1", false));
        assert!(!exact.matches("/a/b", false));
        let prefix = PathMatcher::compile(&PathSpec::Prefix("/api/".into()), false).unwrap();
        assert!(prefix.matches("/api/v1", false));
        assert!(!prefix.matches("/API/v1", false));
        let regex = PathMatcher::compile(&PathSpec::Regex("^/v[0-9]+/".into()), false).unwrap();
        assert!(regex.matches("/v2/users", false));
        assert!(!regex.matches("/x/v2/", false));
    }

    #[test]
    fn ignore_case_folds_patterns_and_paths() {
        let prefix = PathMatcher::compile(&PathSpec::Prefix("/Admin".into()), true).unwrap();
        assert!(prefix.matches("/ADMIN/users", true));
        let regex = PathMatcher::compile(&PathSpec::Regex("^/admin$".into()), true).unwrap();
        assert!(regex.matches("/ADMIN", true));
    }

    #[test]
    fn bad_regexes_are_reported_with_their_index() {
        let err = compile_paths(
            "paths",
            &[PathSpec::Prefix("/".into()), PathSpec::Regex("(".into())],
            false,
        )
        .unwrap_err();
        assert_eq!(err.path(), "paths[1].regex");
        assert!(err.reason().contains("invalid regex"));
    }

    #[test]
    fn hosts_match_exactly_or_by_suffix_without_port() {
        assert!(host_matches("example.com", "Example.COM:8080"));
        assert!(!host_matches("example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("[::1]", "[::1]:80"));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        status: u32,
        #[serde(default)]
        body: String,
    }

    impl Validate for Limits {
        fn validate(&self) -> Result<(), ConfigError> {
            if !(200..600).contains(&self.status) {
                return Err(ConfigError::new(
                    "status",
                    "must be an HTTP status (200-599)",
                ));
            }
            Ok(())
        }
    }

    #[test]
    fn rules_override_top_level_fields_and_first_match_wins() {
        let rules = Rules::<Limits>::parse(
            br#"{"status":403,"body":"no",
                 "rules":[{"match":{"hosts":["*.internal"],"paths":[{"prefix":"/admin"}]},"config":{"status":404}},
                          {"match":{"methods":["post"]},"config":{"body":"posted"}},
                          {"match":{"route_names":["r1"]},"config":{"status":451}}]}"#,
        )
        .unwrap();
        assert_eq!(rules.rule_count(), 3);
        let pick = |f: &RequestFacts| rules.select(f);
        assert_eq!(
            pick(&facts("a.internal", "GET", "/admin/x")),
            &Limits {
                status: 404,
                body: "no".into()
            }
        );
        assert_eq!(
            pick(&facts("example.com", "POST", "/")),
            &Limits {
                status: 403,
                body: "posted".into()
            }
        );
        assert_eq!(pick(&facts("example.com", "GET", "/")).status, 451);
        let mut other = facts("example.com", "GET", "/");
        other.route_name = None;
        assert_eq!(pick(&other), rules.default_config());
    }

    #[test]
    fn rule_errors_name_the_rule() {
        let err = Rules::<Limits>::parse(
            br#"{"status":403,"rules":[{"match":{"paths":[{"prefix":"/"}]},"config":{"status":99}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration at rules[0].config.status: must be an HTTP status (200-599)"
        );
        let err = Rules::<Limits>::parse(br#"{"status":403,"rules":[{"match":{}}]}"#).unwrap_err();
        assert_eq!(err.path(), "rules[0].match");
        let err =
            Rules::<Limits>::parse(br#"{"status":403,"rules":[{"match":{"hosts":["a*b"]}}]}"#)
                .unwrap_err();
        assert_eq!(err.path(), "rules[0].match.hosts[0]");
        let err = Rules::<Limits>::parse(
            br#"{"status":403,"rules":[{"match":{"paths":[{"glob":"/"}]}}]}"#,
        )
        .unwrap_err();
        assert!(err.path().starts_with("rules[0].match.paths[0]"), "{err}");
        let err = Rules::<Limits>::parse(br#"{"status":"x"}"#).unwrap_err();
        assert_eq!(err.path(), "status");
    }
}
