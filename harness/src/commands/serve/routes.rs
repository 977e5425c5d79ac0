//! The route table the router consults once the filter chain let a
//! request through: virtual hosts picked by `:authority`, then the first
//! route whose match fits, as Envoy's `RouteMatcher::route` does
//! (source/common/router/config_impl.cc). The filters may have changed the
//! headers meanwhile; Envoy's wasm filter clears the route cache when they
//! do, so matching the headers the router gets is what Envoy does too.

use harness::{ByteString, Headers};

use super::http::Upstream;

/// Envoy's route timeout when a route sets none (15 s).
pub(crate) use harness::DEFAULT_ROUTE_TIMEOUT_MS as DEFAULT_TIMEOUT_MS;

/// Every virtual host of one listener's connection manager.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteTable {
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Clone, Debug)]
pub(crate) struct VirtualHost {
    /// Lower-cased; `*`, `*.suffix` and `prefix.*` are wildcards.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug)]
pub(crate) struct Route {
    /// `name` (`%ROUTE_NAME%`).
    pub name: Option<String>,
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub(crate) enum PathMatch {
    /// `prefix`: the start of `:path` (query included, as Envoy compares it).
    Prefix(String),
    /// `path`: the whole path before any `?`.
    Exact(String),
    /// `safe_regex`: matches the whole path before any `?`.
    Regex(regex::Regex),
}

#[derive(Clone, Debug)]
pub(crate) struct HeaderMatch {
    /// Lower-cased header name.
    pub name: String,
    pub rule: HeaderRule,
    /// `invert_match`.
    pub invert: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum HeaderRule {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// `present_match: true` (present) or `false` (absent).
    Present(bool),
    /// `safe_regex`: matches the whole value.
    Regex(regex::Regex),
}

#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// `route.cluster`: the request goes to that cluster's endpoint.
    Forward(Forward),
    /// `direct_response`: the router answers itself.
    Direct { status: u16, body: Vec<u8> },
}

#[derive(Clone, Debug)]
pub(crate) struct Forward {
    /// The cluster's name (`%UPSTREAM_CLUSTER%`); none in quick mode.
    pub cluster: Option<String>,
    pub upstream: Upstream,
    /// 0: no timeout (Envoy's `timeout: 0s`).
    pub timeout_ms: u64,
    /// `prefix_rewrite`: replaces the part of `:path` the prefix matched.
    pub prefix_rewrite: Option<String>,
}

impl RouteTable {
    /// The quick form's table: every request to `upstream`.
    pub fn everything_to(upstream: Upstream) -> RouteTable {
        RouteTable {
            virtual_hosts: vec![VirtualHost {
                domains: vec!["*".to_string()],
                routes: vec![Route {
                    name: None,
                    path: PathMatch::Prefix("/".to_string()),
                    case_sensitive: true,
                    headers: Vec::new(),
                    action: Action::Forward(Forward {
                        cluster: None,
                        upstream,
                        timeout_ms: DEFAULT_TIMEOUT_MS,
                        prefix_rewrite: None,
                    }),
                }],
            }],
        }
    }

    /// The route for a request with these headers (`None`: Envoy's 404).
    pub fn pick(&self, headers: &Headers) -> Option<&Route> {
        let authority = headers
            .get(":authority")
            .or_else(|| headers.get("host"))
            .map(ByteString::to_text)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let host = self.virtual_host_for(&authority)?;
        let path = headers.get_text(":path").unwrap_or_default();
        host.routes.iter().find(|r| r.matches(&path, headers))
    }

    /// Envoy's order: an exact domain, then the longest `*.suffix`, then
    /// the longest `prefix.*`, then `*`.
    fn virtual_host_for(&self, authority: &str) -> Option<&VirtualHost> {
        let hosts = &self.virtual_hosts;
        let exact = hosts
            .iter()
            .find(|h| h.domains.iter().any(|d| d == authority));
        if exact.is_some() {
            return exact;
        }
        let best = |pick: &dyn Fn(&str) -> Option<usize>| {
            hosts
                .iter()
                .filter_map(|h| {
                    h.domains
                        .iter()
                        .filter_map(|d| pick(d))
                        .max()
                        .map(|n| (n, h))
                })
                .max_by_key(|(n, _)| *n)
                .map(|(_, h)| h)
        };
        let suffix = |d: &str| {
            let rest = d.strip_prefix('*')?;
            (!rest.is_empty() && authority.len() > rest.len() && authority.ends_with(rest))
                .then_some(rest.len())
        };
        let prefix = |d: &str| {
            let rest = d.strip_suffix('*')?;
            (!rest.is_empty() && authority.len() > rest.len() && authority.starts_with(rest))
                .then_some(rest.len())
        };
        best(&suffix)
            .or_else(|| best(&prefix))
            .or_else(|| hosts.iter().find(|h| h.domains.iter().any(|d| d == "*")))
    }
}

impl Route {
    fn matches(&self, path: &str, headers: &Headers) -> bool {
        let fold = |s: &str| {
            if self.case_sensitive {
                s.to_string()
            } else {
                s.to_ascii_lowercase()
            }
        };
        let path_fits = match &self.path {
            PathMatch::Prefix(p) => fold(path).starts_with(&fold(p)),
            PathMatch::Exact(p) => fold(path.split('?').next().unwrap_or_default()) == fold(p),
            PathMatch::Regex(r) => r.is_match(path.split('?').next().unwrap_or_default()),
        };
        path_fits && self.headers.iter().all(|h| h.matches(headers))
    }

    /// `:path` as the upstream receives it (after `prefix_rewrite`).
    pub fn rewritten_path(&self, path: &str, rewrite: &str) -> String {
        match &self.path {
            PathMatch::Prefix(p) if path.len() >= p.len() => {
                format!("{rewrite}{}", &path[p.len()..])
            }
            _ => path.to_string(),
        }
    }
}

impl HeaderMatch {
    /// Several values of one header are joined with `,`, as Envoy's
    /// `HeaderUtility::getAllOfHeaderAsString` does.
    fn matches(&self, headers: &Headers) -> bool {
        let values: Vec<String> = headers
            .get_all(&self.name)
            .map(ByteString::to_text)
            .collect();
        let value = (!values.is_empty()).then(|| values.join(","));
        let fits = match (&self.rule, &value) {
            (HeaderRule::Present(want), v) => v.is_some() == *want,
            (_, None) => return false,
            (HeaderRule::Exact(s), Some(v)) => v == s,
            (HeaderRule::Prefix(s), Some(v)) => v.starts_with(s.as_str()),
            (HeaderRule::Suffix(s), Some(v)) => v.ends_with(s.as_str()),
            (HeaderRule::Contains(s), Some(v)) => v.contains(s.as_str()),
            (HeaderRule::Regex(r), Some(v)) => r.is_match(v),
        };
        fits != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(status: u16) -> Action {
        Action::Direct {
            status,
            body: Vec::new(),
        }
    }

    fn route(path: PathMatch, headers: Vec<HeaderMatch>, status: u16) -> Route {
        Route {
            name: None,
            path,
            case_sensitive: true,
            headers,
            action: direct(status),
        }
    }

    fn status_for(table: &RouteTable, pairs: &[(&str, &str)]) -> Option<u16> {
        let headers = Headers::from_pairs(pairs.iter().copied());
        match table.pick(&headers).map(|r| &r.action) {
            Some(Action::Direct { status, .. }) => Some(*status),
            _ => None,
        }
    }

    #[test]
    fn hosts_then_routes_in_envoy_order() {
        let host = |domains: &[&str], routes| VirtualHost {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
        };
        let api = vec![
            route(
                PathMatch::Prefix("/".into()),
                vec![HeaderMatch {
                    name: "x-v".into(),
                    rule: HeaderRule::Exact("2".into()),
                    invert: false,
                }],
                202,
            ),
            route(PathMatch::Exact("/health".into()), vec![], 204),
            route(PathMatch::Prefix("/api".into()), vec![], 200),
        ];
        let table = RouteTable {
            virtual_hosts: vec![
                host(
                    &["*"],
                    vec![route(PathMatch::Prefix("/".into()), vec![], 404)],
                ),
                host(&["*.example.com"], api),
                host(&["exact.example.com"], vec![]),
            ],
        };
        let req = |authority, path| [(":authority", authority), (":path", path)];
        assert_eq!(
            status_for(&table, &req("a.example.com", "/api/x")),
            Some(200)
        );
        assert_eq!(
            status_for(&table, &req("a.example.com", "/health?q=1")),
            Some(204)
        );
        assert_eq!(status_for(&table, &req("a.example.com", "/healthz")), None);
        assert_eq!(status_for(&table, &req("other", "/api")), Some(404));
        // The exact host has no routes: Envoy's 404, not a fall-back to `*`.
        assert_eq!(status_for(&table, &req("exact.example.com", "/")), None);
        let mut with_header = req("a.example.com", "/api").to_vec();
        with_header.push(("x-v", "2"));
        assert_eq!(status_for(&table, &with_header), Some(202));
    }

    #[test]
    fn header_rules_and_rewrites() {
        let present = |want, invert| HeaderMatch {
            name: "x-a".into(),
            rule: HeaderRule::Present(want),
            invert,
        };
        let headers = Headers::from_pairs([("x-a", "1"), ("x-a", "2")]);
        assert!(present(true, false).matches(&headers));
        assert!(!present(false, false).matches(&headers));
        assert!(present(true, true).matches(&Headers::new()));
        let joined = HeaderMatch {
            name: "x-a".into(),
            rule: HeaderRule::Exact("1,2".into()),
            invert: false,
        };
        assert!(joined.matches(&headers));
        let r = route(PathMatch::Prefix("/api/".into()), vec![], 200);
        assert_eq!(
            r.rewritten_path("/api/users?id=1", "/v2/"),
            "/v2/users?id=1"
        );
        let whole = |p: &str| regex::Regex::new(&format!("^(?:{p})$")).unwrap();
        let by_regex = route(PathMatch::Regex(whole("/v[0-9]+/.*")), vec![], 200);
        assert!(by_regex.matches("/v2/users?x=/", &Headers::new()));
        assert!(!by_regex.matches("/api/v2/users", &Headers::new()));
        let digits = HeaderMatch {
            name: "x-a".into(),
            rule: HeaderRule::Regex(whole("[0-9]")),
            invert: false,
        };
        assert!(
            !digits.matches(&headers),
            "the whole value \"1,2\" must match"
        );
    }
}
