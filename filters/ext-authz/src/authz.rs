//! The authorization callout: what is sent, and what each answer means.

use sdk_ext::{CallOutcome, ConfigError, HttpCall, LocalResponse};
use serde::Deserialize;
use std::time::Duration;

fn default_timeout() -> String {
    "200ms".to_string()
}

fn default_status_on_error() -> u32 {
    403
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    path_prefix: String,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default)]
    allowed_request_headers: Vec<String>,
    #[serde(default)]
    allowed_upstream_headers: Vec<String>,
    #[serde(default)]
    allowed_client_headers: Vec<String>,
    #[serde(default)]
    failure_mode_allow: bool,
    #[serde(default = "default_status_on_error")]
    status_on_error: u32,
}

#[derive(Debug)]
pub struct Config {
    pub cluster: String,
    authority: String,
    path_prefix: String,
    pub timeout: Duration,
    allowed_request_headers: Vec<String>,
    allowed_upstream_headers: Vec<String>,
    allowed_client_headers: Vec<String>,
    failure_mode_allow: bool,
    status_on_error: u32,
}

/// What happens to the paused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Resume, after setting these request headers.
    Allow(Vec<(String, Vec<u8>)>),
    /// Answer the client instead.
    Deny(LocalResponse),
}

/// Header set on requests let through because the service failed (failure_mode_allow).
pub const FAILURE_MODE_HEADER: &str = "x-envoy-auth-failure-mode-allowed";

fn header_names(field: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if sdk_ext::headers::is_valid_name(name) && !name.starts_with(':') {
                Ok(name.to_ascii_lowercase())
            } else {
                Err(ConfigError::new(
                    format!("{field}[{i}]"),
                    format!("`{name}` is not a valid header name"),
                ))
            }
        })
        .collect()
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json(raw)?;
        if raw.cluster.is_empty() {
            return Err(ConfigError::new(
                "cluster",
                "must name the authorization service's cluster",
            ));
        }
        if !raw.path_prefix.is_empty() && !raw.path_prefix.starts_with('/') {
            return Err(ConfigError::new("path_prefix", "must start with `/`"));
        }
        let timeout = sdk_ext::config::parse_duration(&raw.timeout)
            .map_err(|e| ConfigError::new("timeout", e))?;
        if timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be more than 0"));
        }
        if !(200..=599).contains(&raw.status_on_error) {
            return Err(ConfigError::new(
                "status_on_error",
                "must be an HTTP status (200-599)",
            ));
        }
        Ok(Config {
            authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
            cluster: raw.cluster,
            path_prefix: raw.path_prefix.trim_end_matches('/').to_string(),
            timeout,
            allowed_request_headers: header_names(
                "allowed_request_headers",
                &raw.allowed_request_headers,
            )?,
            allowed_upstream_headers: header_names(
                "allowed_upstream_headers",
                &raw.allowed_upstream_headers,
            )?,
            allowed_client_headers: header_names(
                "allowed_client_headers",
                &raw.allowed_client_headers,
            )?,
            failure_mode_allow: raw.failure_mode_allow,
            status_on_error: raw.status_on_error,
        })
    }

    /// The check request: the original method, `path_prefix` + the original
    /// path, and the allowed request headers (Envoy's HTTP ext_authz shape).
    pub fn check_call(
        &self,
        method: &str,
        path: &str,
        header: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> HttpCall {
        let mut call = HttpCall::new(
            &self.cluster,
            method,
            &format!("{}{path}", self.path_prefix),
            &self.authority,
        )
        .timeout(self.timeout);
        for name in &self.allowed_request_headers {
            if let Some(value) = header(name) {
                call = call.header(name, value);
            }
        }
        call
    }

    /// 200 allows (copying `allowed_upstream_headers`); a 5xx or no answer
    /// is the service failing and follows `failure_mode_allow` (Envoy's
    /// router answers a timed-out call with 504 and an unreachable cluster
    /// with 503; Envoy's own ext_authz HTTP client treats every 5xx as an
    /// error too); any other status denies with that status.
    pub fn verdict(&self, outcome: &CallOutcome) -> Verdict {
        match outcome {
            CallOutcome::Response(answer) if (500..=599).contains(&answer.status) => {
                self.on_failure()
            }
            CallOutcome::Response(answer) if answer.status == 200 => Verdict::Allow(
                self.allowed_upstream_headers
                    .iter()
                    .filter_map(|name| answer.header(name).map(|v| (name.clone(), v.to_vec())))
                    .collect(),
            ),
            CallOutcome::Response(answer) => {
                let status = if (200..=599).contains(&answer.status) {
                    answer.status
                } else {
                    403
                };
                let mut reply = LocalResponse::new(status)
                    .body(answer.body.clone())
                    .details("ext_authz_denied");
                for name in &self.allowed_client_headers {
                    if let Some(value) = answer.header(name) {
                        reply = reply.header(name, value.to_vec());
                    }
                }
                Verdict::Deny(reply)
            }
            CallOutcome::Failed => self.on_failure(),
        }
    }

    /// The service could not be asked or failed (reset, timeout, 5xx, unknown cluster).
    pub fn on_failure(&self) -> Verdict {
        if self.failure_mode_allow {
            Verdict::Allow(vec![(FAILURE_MODE_HEADER.to_string(), b"true".to_vec())])
        } else {
            Verdict::Deny(
                LocalResponse::new(self.status_on_error)
                    .header("content-type", "text/plain")
                    .body("authorization service unavailable\n")
                    .details("ext_authz_error"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk_ext::CallResponse;

    const CONFIG: &[u8] =
        br#"{"cluster":"authz","authority":"authz.internal","path_prefix":"/check/",
        "timeout":"250ms","allowed_request_headers":["Authorization","cookie"],
        "allowed_upstream_headers":["x-user-id"],"allowed_client_headers":["www-authenticate"]}"#;

    fn answer(status: u32, headers: &[(&str, &str)], body: &str) -> CallOutcome {
        CallOutcome::Response(CallResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn the_check_carries_method_prefixed_path_and_allowed_headers() {
        let config = Config::parse(CONFIG).unwrap();
        let call = config.check_call("POST", "/orders?x=1", |name| match name {
            "authorization" => Some(b"Bearer t".to_vec()),
            "x-secret" => Some(b"no".to_vec()),
            _ => None,
        });
        assert_eq!(call.cluster(), "authz");
        assert_eq!(call.timeout_value(), Duration::from_millis(250));
        let h = |n: &str| sdk_ext::headers::find(call.headers(), n).map(<[u8]>::to_vec);
        assert_eq!(h(":method"), Some(b"POST".to_vec()));
        assert_eq!(h(":path"), Some(b"/check/orders?x=1".to_vec()));
        assert_eq!(h(":authority"), Some(b"authz.internal".to_vec()));
        assert_eq!(h("authorization"), Some(b"Bearer t".to_vec()));
        assert_eq!(h("cookie"), None);
        assert_eq!(call.headers().len(), 4);
    }

    #[test]
    fn ok_allows_and_copies_only_allowed_headers() {
        let config = Config::parse(CONFIG).unwrap();
        let verdict = config.verdict(&answer(200, &[("x-user-id", "42"), ("x-other", "no")], ""));
        assert_eq!(
            verdict,
            Verdict::Allow(vec![("x-user-id".into(), b"42".to_vec())])
        );
    }

    #[test]
    fn other_statuses_deny_with_that_status_body_and_client_headers() {
        let config = Config::parse(CONFIG).unwrap();
        let Verdict::Deny(reply) = config.verdict(&answer(
            403,
            &[("www-authenticate", "Bearer"), ("x-internal", "no")],
            "nope",
        )) else {
            panic!("expected a denial");
        };
        assert_eq!(reply.status(), 403);
        assert_eq!(reply.body_bytes(), b"nope");
        assert_eq!(reply.header_value("www-authenticate"), Some(&b"Bearer"[..]));
        assert_eq!(reply.header_value("x-internal"), None);
        let Verdict::Deny(reply) = config.verdict(&answer(429, &[], "")) else {
            panic!("expected a denial");
        };
        assert_eq!(reply.status(), 429);
    }

    #[test]
    fn a_5xx_answer_is_the_service_failing() {
        // A timed-out call arrives as the router's 504, an unreachable one as 503.
        let deny = Config::parse(CONFIG).unwrap();
        for status in [500, 503, 504] {
            let Verdict::Deny(reply) =
                deny.verdict(&answer(status, &[], "upstream request timeout"))
            else {
                panic!("expected a denial");
            };
            assert_eq!(reply.status(), 403, "status_on_error, not {status}");
            assert_eq!(reply.body_bytes(), b"authorization service unavailable\n");
        }
        let allow = Config::parse(br#"{"cluster":"authz","failure_mode_allow":true}"#).unwrap();
        assert!(matches!(
            allow.verdict(&answer(504, &[], "")),
            Verdict::Allow(headers) if headers[0].0 == FAILURE_MODE_HEADER
        ));
    }

    #[test]
    fn failures_follow_the_failure_mode() {
        let deny = Config::parse(CONFIG).unwrap();
        let Verdict::Deny(reply) = deny.verdict(&CallOutcome::Failed) else {
            panic!("expected a denial");
        };
        assert_eq!(reply.status(), 403);
        let allow = Config::parse(br#"{"cluster":"authz","failure_mode_allow":true}"#).unwrap();
        assert_eq!(
            allow.verdict(&CallOutcome::Failed),
            Verdict::Allow(vec![(FAILURE_MODE_HEADER.into(), b"true".to_vec())])
        );
    }

    #[test]
    fn bad_configurations_are_explained() {
        let err = |json: &[u8]| Config::parse(json).unwrap_err();
        assert_eq!(err(br#"{"cluster":""}"#).path(), "cluster");
        assert_eq!(err(br#"{"cluster":"a","timeout":"0s"}"#).path(), "timeout");
        assert_eq!(
            err(br#"{"cluster":"a","path_prefix":"check"}"#).path(),
            "path_prefix"
        );
        assert_eq!(
            err(br#"{"cluster":"a","allowed_upstream_headers":[":path"]}"#).path(),
            "allowed_upstream_headers[0]"
        );
        assert!(
            err(br#"{}"#)
                .reason()
                .starts_with("missing field `cluster`")
        );
    }
}
