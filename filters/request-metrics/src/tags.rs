//! Which tags a request is counted under, and the metric names they make.

use sdk_ext::ConfigError;
use sdk_ext::metrics::MetricFamily;
use sdk_ext::types::MetricType;
use serde::Deserialize;

/// Where a tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum From {
    Method,
    ResponseCode,
    ResponseCodeClass,
    RouteName,
    Header,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagSpec {
    pub name: String,
    pub from: From,
    /// The request header to read when `from` is `header`.
    #[serde(default)]
    pub header: Option<String>,
}

fn default_prefix() -> String {
    "wasm_http".to_string()
}

fn default_tags() -> Vec<TagSpec> {
    vec![
        TagSpec {
            name: "request_method".into(),
            from: From::Method,
            header: None,
        },
        TagSpec {
            name: "response_code_class".into(),
            from: From::ResponseCodeClass,
            header: None,
        },
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_tags")]
    tags: Vec<TagSpec>,
}

#[derive(Debug)]
pub struct Config {
    pub tags: Vec<TagSpec>,
    pub requests: MetricFamily,
    pub duration: MetricFamily,
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json_or_default_with(raw, || RawConfig {
            prefix: default_prefix(),
            tags: default_tags(),
        })?;
        if raw.prefix.is_empty()
            || !raw
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ConfigError::new(
                "prefix",
                "must be letters, digits and `_` (a Prometheus-safe metric name prefix)",
            ));
        }
        for (i, tag) in raw.tags.iter().enumerate() {
            let at = |sub: &str, reason: &str| ConfigError::new(format!("tags[{i}].{sub}"), reason);
            if tag.name.is_empty()
                || !tag
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(at("name", "must be letters, digits and `_`"));
            }
            match (&tag.from, &tag.header) {
                (From::Header, None) => {
                    return Err(at("header", "is required when `from` is `header`"));
                }
                (From::Header, Some(h)) if !sdk_ext::headers::is_valid_name(h) => {
                    return Err(at("header", "is not a valid header name"));
                }
                (From::Header, Some(_)) => {}
                (_, Some(_)) => return Err(at("header", "is only used when `from` is `header`")),
                (_, None) => {}
            }
            if raw.tags[..i].iter().any(|t| t.name == tag.name) {
                return Err(at("name", "is used by an earlier tag"));
            }
        }
        let names: Vec<&str> = raw.tags.iter().map(|t| t.name.as_str()).collect();
        Ok(Config {
            requests: MetricFamily::new(
                MetricType::Counter,
                &format!("{}_requests_total", raw.prefix),
                &names,
            ),
            duration: MetricFamily::new(
                MetricType::Histogram,
                &format!("{}_request_duration_milliseconds", raw.prefix),
                &names,
            ),
            tags: raw
                .tags
                .into_iter()
                .map(|t| TagSpec {
                    header: t.header.map(|h| h.to_ascii_lowercase()),
                    ..t
                })
                .collect(),
        })
    }
}

/// What the filter saw of one request, for tagging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub method: String,
    pub route_name: Option<String>,
    /// Values of the headers `tags` read, by header name.
    pub headers: Vec<(String, String)>,
    /// `None` when no response headers were seen (reset, timeout).
    pub response_code: Option<u32>,
}

/// `2xx`, `4xx`, ...; `none` when there was no response.
pub fn code_class(code: Option<u32>) -> String {
    match code {
        Some(code @ 100..=599) => format!("{}xx", code / 100),
        _ => "none".to_string(),
    }
}

/// One value per configured tag, in order; `unknown` when absent.
pub fn tag_values(tags: &[TagSpec], seen: &Observed) -> Vec<String> {
    tags.iter()
        .map(|tag| match tag.from {
            From::Method => seen.method.clone(),
            From::ResponseCode => seen
                .response_code
                .map_or_else(|| "0".to_string(), |c| c.to_string()),
            From::ResponseCodeClass => code_class(seen.response_code),
            From::RouteName => seen
                .route_name
                .clone()
                .unwrap_or_else(|| "unknown".to_string()),
            From::Header => tag
                .header
                .as_ref()
                .and_then(|h| seen.headers.iter().find(|(k, _)| k == h))
                .map_or_else(|| "unknown".to_string(), |(_, v)| v.clone()),
        })
        .map(|v| {
            if v.is_empty() {
                "unknown".to_string()
            } else {
                v
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = br#"{"prefix":"shop","tags":[
        {"name":"request_method","from":"method"},
        {"name":"response_code_class","from":"response_code_class"},
        {"name":"route_name","from":"route_name"},
        {"name":"tenant","from":"header","header":"X-Tenant"}]}"#;

    #[test]
    fn code_classes() {
        assert_eq!(code_class(Some(204)), "2xx");
        assert_eq!(code_class(Some(503)), "5xx");
        assert_eq!(code_class(None), "none");
        assert_eq!(code_class(Some(42)), "none");
    }

    #[test]
    fn values_follow_the_tag_order_with_unknown_for_missing() {
        let config = Config::parse(CONFIG).unwrap();
        let seen = Observed {
            method: "POST".into(),
            route_name: Some("orders".into()),
            headers: vec![("x-tenant".into(), "acme".into())],
            response_code: Some(201),
        };
        assert_eq!(
            tag_values(&config.tags, &seen),
            vec!["POST", "2xx", "orders", "acme"]
        );
        let bare = Observed {
            method: "GET".into(),
            ..Observed::default()
        };
        assert_eq!(
            tag_values(&config.tags, &bare),
            vec!["GET", "none", "unknown", "unknown"]
        );
    }

    #[test]
    fn metric_names_follow_the_istio_tag_convention() {
        let config = Config::parse(CONFIG).unwrap();
        assert_eq!(
            config.requests.name_for(&["GET", "2xx", "orders", "acme"]),
            "request_method=.=GET;.;response_code_class=.=2xx;.;route_name=.=orders;.;tenant=.=acme;.;shop_requests_total"
        );
        assert_eq!(
            config.duration.name_for(&["GET", "2xx", "r", "t"]),
            "request_method=.=GET;.;response_code_class=.=2xx;.;route_name=.=r;.;tenant=.=t;.;shop_request_duration_milliseconds"
        );
    }

    #[test]
    fn empty_configuration_uses_defaults() {
        let config = Config::parse(b"").unwrap();
        assert_eq!(
            config.requests.name_for(&["GET", "2xx"]),
            "request_method=.=GET;.;response_code_class=.=2xx;.;wasm_http_requests_total"
        );
    }

    #[test]
    fn bad_configurations_are_explained() {
        let err = |json: &[u8]| Config::parse(json).unwrap_err();
        assert_eq!(err(br#"{"prefix":"a-b"}"#).path(), "prefix");
        assert_eq!(
            err(br#"{"tags":[{"name":"t","from":"header"}]}"#).path(),
            "tags[0].header"
        );
        assert_eq!(
            err(br#"{"tags":[{"name":"t","from":"method","header":"x"}]}"#).path(),
            "tags[0].header"
        );
        assert_eq!(
            err(br#"{"tags":[{"name":"t","from":"method"},{"name":"t","from":"route_name"}]}"#)
                .path(),
            "tags[1].name"
        );
        assert!(
            err(br#"{"tags":[{"name":"t","from":"planet"}]}"#)
                .path()
                .starts_with("tags[0].from")
        );
    }
}
