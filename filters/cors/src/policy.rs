//! CORS policy: origin matching, preflight answers and response decoration.

use sdk_ext::LocalResponse;
use sdk_ext::config::{ConfigError, Validate};
use serde::Deserialize;

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `https://app.example.com` (exact), `https://*.example.com` (any
    /// subdomain, that scheme), `*.example.com` (any subdomain, any scheme) or `*`.
    pub allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
}

impl Validate for Policy {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.allow_origins.is_empty() {
            return Err(ConfigError::new(
                "allow_origins",
                "must list at least one origin",
            ));
        }
        for (i, origin) in self.allow_origins.iter().enumerate() {
            let host = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
            let wildcard_ok = origin == "*"
                || !host.contains('*')
                || host.starts_with("*.") && !host[1..].contains('*');
            if origin.is_empty() || !wildcard_ok {
                return Err(ConfigError::new(
                    format!("allow_origins[{i}]"),
                    format!(
                        "`{origin}` is not an origin pattern (`https://a.example.com`, `https://*.example.com`, `*.example.com` or `*`)"
                    ),
                ));
            }
        }
        if self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            return Err(ConfigError::new(
                "allow_credentials",
                "cannot be true with the origin `*` (browsers reject it); list the origins",
            ));
        }
        for (field, list) in [
            ("allow_headers", &self.allow_headers),
            ("expose_headers", &self.expose_headers),
        ] {
            for (i, name) in list.iter().enumerate() {
                if name != "*" && !sdk_ext::headers::is_valid_name(name) {
                    return Err(ConfigError::new(
                        format!("{field}[{i}]"),
                        format!("`{name}` is not a valid header name"),
                    ));
                }
            }
        }
        for (i, method) in self.allow_methods.iter().enumerate() {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ConfigError::new(
                    format!("allow_methods[{i}]"),
                    format!("`{method}` is not an HTTP method"),
                ));
            }
        }
        Ok(())
    }
}

/// True if `origin` (`scheme://host[:port]`) matches `pattern`.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    let (pattern_scheme, pattern_host) = match pattern.split_once("://") {
        Some((s, h)) => (Some(s), h),
        None => (None, pattern),
    };
    if pattern_scheme.is_some_and(|s| !s.eq_ignore_ascii_case(scheme)) {
        return false;
    }
    match pattern_host.strip_prefix('*') {
        // "*.example.com": at least one label before the suffix; any port.
        Some(suffix) => {
            let host = host
                .rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                .map_or(host, |(h, _)| h);
            host.len() > suffix.len()
                && host
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => host.eq_ignore_ascii_case(pattern_host),
    }
}

impl Policy {
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|p| origin_matches(p, origin))
    }

    /// The `access-control-allow-origin` value: `*` only when every origin
    /// is allowed and no credentials are involved, else the origin itself.
    fn allow_origin_value<'a>(&self, origin: &'a str) -> &'a str {
        if !self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            "*"
        } else {
            origin
        }
    }

    /// The local 204 answer to a preflight from an allowed origin.
    pub fn preflight(&self, origin: &str, requested_headers: Option<&str>) -> LocalResponse {
        let mut reply = LocalResponse::new(204)
            .header(
                "access-control-allow-origin",
                self.allow_origin_value(origin),
            )
            .header(
                "access-control-allow-methods",
                self.allow_methods.join(", "),
            )
            .details("cors_preflight");
        let allow_headers = if self.allow_headers.iter().any(|h| h == "*") {
            // Reflect what the browser asked for.
            requested_headers.unwrap_or_default().to_string()
        } else {
            self.allow_headers.join(", ")
        };
        if !allow_headers.is_empty() {
            reply = reply.header("access-control-allow-headers", allow_headers);
        }
        if let Some(max_age) = self.max_age_seconds {
            reply = reply.header("access-control-max-age", max_age.to_string());
        }
        if self.allow_credentials {
            reply = reply.header("access-control-allow-credentials", "true");
        }
        reply.header("vary", "Origin")
    }

    /// Headers added to the response of an actual request from an allowed origin.
    pub fn decoration(&self, origin: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![(
            "access-control-allow-origin",
            self.allow_origin_value(origin).to_string(),
        )];
        if self.allow_credentials {
            headers.push(("access-control-allow-credentials", "true".to_string()));
        }
        if !self.expose_headers.is_empty() {
            headers.push((
                "access-control-expose-headers",
                self.expose_headers.join(", "),
            ));
        }
        headers.push(("vary", "Origin".to_string()));
        headers
    }
}

/// A preflight is an OPTIONS request with `origin` and `access-control-request-method`.
pub fn is_preflight(method: &str, origin: Option<&str>, request_method: Option<&str>) -> bool {
    method.eq_ignore_ascii_case("OPTIONS") && origin.is_some() && request_method.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Policy {
        sdk_ext::config::from_json(json.as_bytes()).unwrap()
    }

    const EXAMPLE: &str = r#"{"allow_origins":["https://app.example.com","https://*.example.org"],
        "allow_methods":["GET","PUT"],"allow_headers":["content-type","x-token"],
        "expose_headers":["x-request-id"],"allow_credentials":true,"max_age_seconds":600}"#;

    #[test]
    fn origins_match_exactly_or_by_subdomain_wildcard() {
        assert!(origin_matches(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(!origin_matches(
            "https://app.example.com",
            "http://app.example.com"
        ));
        assert!(!origin_matches(
            "https://app.example.com",
            "https://app.example.com.evil.io"
        ));
        assert!(origin_matches(
            "https://*.example.org",
            "https://a.b.example.org"
        ));
        assert!(!origin_matches(
            "https://*.example.org",
            "https://example.org"
        ));
        assert!(!origin_matches(
            "https://*.example.org",
            "https://evilexample.org"
        ));
        assert!(origin_matches("*.example.org", "http://x.example.org:8080"));
        assert!(origin_matches("*.example.org", "http://x.example.org"));
        assert!(origin_matches("*", "https://anything.io"));
        assert!(!origin_matches("https://a.com", "null"));
    }

    #[test]
    fn preflight_lists_the_policy() {
        let p = policy(EXAMPLE);
        let reply = p.preflight("https://app.example.com", Some("x-token"));
        assert_eq!(reply.status(), 204);
        let h = |n| String::from_utf8(reply.header_value(n).unwrap().to_vec()).unwrap();
        assert_eq!(h("access-control-allow-origin"), "https://app.example.com");
        assert_eq!(h("access-control-allow-methods"), "GET, PUT");
        assert_eq!(h("access-control-allow-headers"), "content-type, x-token");
        assert_eq!(h("access-control-max-age"), "600");
        assert_eq!(h("access-control-allow-credentials"), "true");
        assert_eq!(h("vary"), "Origin");
    }

    #[test]
    fn wildcard_origin_without_credentials_answers_star_and_reflects_headers() {
        let p = policy(r#"{"allow_origins":["*"],"allow_headers":["*"]}"#);
        let reply = p.preflight("https://x.io", Some("x-a, x-b"));
        assert_eq!(
            reply.header_value("access-control-allow-origin"),
            Some(&b"*"[..])
        );
        assert_eq!(
            reply.header_value("access-control-allow-headers"),
            Some(&b"x-a, x-b"[..])
        );
        assert_eq!(
            reply.header_value("access-control-allow-methods"),
            Some(&b"GET, HEAD, POST"[..])
        );
        assert!(reply.header_value("access-control-max-age").is_none());
    }

    #[test]
    fn decoration_for_actual_requests() {
        let p = policy(EXAMPLE);
        let headers = p.decoration("https://a.example.org");
        assert_eq!(
            headers[0],
            (
                "access-control-allow-origin",
                "https://a.example.org".to_string()
            )
        );
        assert!(headers.contains(&("access-control-expose-headers", "x-request-id".to_string())));
        assert!(headers.contains(&("access-control-allow-credentials", "true".to_string())));
    }

    #[test]
    fn preflight_detection() {
        assert!(is_preflight("OPTIONS", Some("https://a"), Some("PUT")));
        assert!(!is_preflight("OPTIONS", Some("https://a"), None));
        assert!(!is_preflight("GET", Some("https://a"), Some("PUT")));
    }

    #[test]
    fn invalid_policies_are_rejected() {
        let err = |json: &str| sdk_ext::config::from_json::<Policy>(json.as_bytes()).unwrap_err();
        assert_eq!(err(r#"{"allow_origins":[]}"#).path(), "allow_origins");
        assert_eq!(
            err(r#"{"allow_origins":["https://a*.com"]}"#).path(),
            "allow_origins[0]"
        );
        assert_eq!(
            err(r#"{"allow_origins":["*"],"allow_credentials":true}"#).path(),
            "allow_credentials"
        );
        assert_eq!(
            err(r#"{"allow_origins":["*"],"allow_headers":["a b"]}"#).path(),
            "allow_headers[0]"
        );
        assert_eq!(
            err(r#"{"allow_origins":["*"],"allow_methods":[""]}"#).path(),
            "allow_methods[0]"
        );
        assert_eq!(err(r#"{}"#).path(), "");
    }
}
