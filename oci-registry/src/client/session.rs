//! The push path's own requests, sent with reqwest's connection pool: blob
//! HEAD, cross-repository mount, upload, manifest PUT. oci-client pings `/v2/`
//! before every request on a registry without auth and cannot take a 202
//! answer to a mount, so these requests skip it.
//!
//! Authentication is lazy: a request goes out with what the registry asked for
//! so far, and only a 401 makes the client answer the challenge (Basic, or a
//! bearer token for the request's scope from the realm it names) and send the
//! request once more.

use std::collections::HashMap;

use oci_client::Reference;
use oci_client::errors::{OciDistributionError, OciEnvelope, Result as OciResult};
use reqwest::{RequestBuilder, Response, StatusCode, header};

use super::RegistryClient;
use crate::auth::Credentials;

/// What the registry has asked for so far.
#[derive(Default)]
pub(super) struct Authorization {
    /// It challenged with Basic: the credentials go on every request.
    basic: bool,
    /// Bearer tokens by scope.
    tokens: HashMap<String, String>,
}

/// The token scope for pushing to `reference`'s repository (and pulling from `from`).
pub(super) fn push_scope(reference: &Reference, from: Option<&str>) -> String {
    let mut scope = format!("repository:{}:pull,push", reference.repository());
    if let Some(from) = from {
        scope.push_str(&format!(" repository:{from}:pull"));
    }
    scope
}

pub(super) fn pull_scope(reference: &Reference) -> String {
    format!("repository:{}:pull", reference.repository())
}

impl RegistryClient {
    /// `scheme://registry/v2/<repo>/<rest>`.
    pub(super) fn v2_url(&self, reference: &Reference, rest: &str) -> String {
        format!(
            "{}://{}/v2/{}/{rest}",
            self.scheme,
            reference.resolve_registry(),
            reference.repository()
        )
    }

    /// A `Location` header made absolute (registries may answer with a path).
    pub(super) fn location(&self, response: &Response) -> OciResult<url::Url> {
        let value = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(OciDistributionError::RegistryNoLocationError)?;
        response
            .url()
            .join(value)
            .map_err(|e| OciDistributionError::UrlParseError(e.to_string()))
    }

    /// Sends the request `build` makes, answering one authentication challenge.
    pub(super) async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> OciResult<Response> {
        let mut answered = false;
        let http = self
            .transport
            .http_for_scheme(self.scheme)
            .map_err(setup_error)?;
        loop {
            let request = self.authorize(build(http), scope).await.build()?;
            // A Location may send an upload elsewhere (another scheme, other roots).
            let client = if request.url().scheme() == self.scheme {
                http
            } else {
                self.transport
                    .http_for(request.url())
                    .map_err(setup_error)?
            };
            let response = client.execute(request).await?;
            tracing::debug!(registry = %self.registry, "{} {}", response.status(), response.url());
            if response.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match challenge {
                Some(challenge) if self.answer(&challenge, scope).await? => answered = true,
                _ => return Ok(response),
            }
        }
    }

    async fn authorize(&self, request: RequestBuilder, scope: &str) -> RequestBuilder {
        if let Credentials::Token(token) = &self.credentials {
            return request.bearer_auth(token);
        }
        let authorization = self.authorization.lock().await;
        if let Some(token) = authorization.tokens.get(scope) {
            return request.bearer_auth(token);
        }
        match &self.credentials {
            Credentials::Basic { username, password } if authorization.basic => {
                request.basic_auth(username, Some(password))
            }
            _ => request,
        }
    }

    /// Answers a `WWW-Authenticate` challenge; false when there is nothing to answer with.
    async fn answer(&self, challenge: &str, scope: &str) -> OciResult<bool> {
        let (scheme, params) = parse_challenge(challenge);
        // Held while fetching, so concurrent requests share one token.
        let mut authorization = self.authorization.lock().await;
        if scheme.eq_ignore_ascii_case("basic") {
            // Concurrent requests may all be answered: `send` answers once per request.
            authorization.basic = true;
            return Ok(matches!(self.credentials, Credentials::Basic { .. }));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(false);
        }
        if authorization.tokens.contains_key(scope) {
            // Another request fetched it meanwhile.
            return Ok(true);
        }
        let Some(realm) = params.get("realm") else {
            return Ok(false);
        };
        let mut query = vec![("scope", scope)];
        if let Some(service) = params.get("service") {
            query.push(("service", service.as_str()));
        }
        let realm_url = url::Url::parse(realm).map_err(|e| {
            OciDistributionError::AuthenticationFailure(format!(
                "the token realm {realm} is not a URL: {e}"
            ))
        })?;
        let http = self.transport.http_for(&realm_url).map_err(setup_error)?;
        let mut request = http.get(realm_url).query(&query);
        if let Credentials::Basic { username, password } = &self.credentials {
            request = request.basic_auth(username, Some(password));
        }
        tracing::debug!(registry = %self.registry, "GET {realm} (token for {scope})");
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            return Err(OciDistributionError::AuthenticationFailure(body));
        }
        let token = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                OciDistributionError::RegistryTokenDecodeError(
                    "the token server's answer has no \"token\" field".into(),
                )
            })?;
        authorization.tokens.insert(scope.to_string(), token);
        Ok(true)
    }
}

/// A client that could not be built, as oci-client's errors carry it.
fn setup_error(error: crate::errors::Error) -> OciDistributionError {
    OciDistributionError::GenericError(Some(error.to_string()))
}

/// The scheme and parameters of `Bearer realm="...",service="...",scope="..."`.
fn parse_challenge(text: &str) -> (String, HashMap<String, String>) {
    let text = text.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

/// A failed answer as oci-client reports one, so retries and messages treat
/// both alike: a 4xx with the spec's error envelope as a registry error (its
/// codes name what is missing), anything else with its status code.
pub(super) async fn status_error(response: Response) -> OciDistributionError {
    let url = response.url().to_string();
    let status = response.status();
    let message = response.text().await.unwrap_or_default();
    if status.is_client_error()
        && status != StatusCode::UNAUTHORIZED
        && let Ok(envelope) = serde_json::from_str::<OciEnvelope>(&message)
        && !envelope.errors.is_empty()
    {
        return OciDistributionError::RegistryError { envelope, url };
    }
    OciDistributionError::ServerError {
        url,
        code: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_challenge;

    #[test]
    fn challenges_are_parsed_with_quotes_and_commas() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "http://127.0.0.1:1/token");
        assert_eq!(params["service"], "reg");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
        let (scheme, params) = parse_challenge(r#"Basic realm="test-registry""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], "test-registry");
    }
}
