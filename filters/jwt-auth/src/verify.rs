//! Token verification: structure, algorithm, issuer, key, signature, time
//! window and audience, in that order; the first failure is the reason.

use crate::keys::{Algorithm, BASE64URL, Key, parse_jwks};
use base64::Engine;
use sdk_ext::{ConfigError, LocalResponse};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

fn default_clock_skew() -> u64 {
    60
}

fn default_from_header() -> String {
    "authorization".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    jwks: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimHeader {
    /// A top-level claim name, or a dotted path into nested objects.
    pub claim: String,
    pub header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    providers: Vec<RawProvider>,
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
    #[serde(default)]
    claims_to_headers: Vec<ClaimHeader>,
    #[serde(default = "default_from_header")]
    from_header: String,
    #[serde(default)]
    forward: bool,
    #[serde(default)]
    allow_missing: bool,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
}

fn default_cache_size() -> usize {
    100
}

#[derive(Debug)]
pub struct Provider {
    pub issuer: String,
    audiences: Vec<String>,
    keys: Vec<Key>,
}

#[derive(Debug)]
pub struct Config {
    providers: Vec<Provider>,
    clock_skew: i64,
    pub claims_to_headers: Vec<ClaimHeader>,
    pub from_header: String,
    /// Keep the token on the upstream request.
    pub forward: bool,
    /// Let requests without a token through (a present but bad token is still refused).
    pub allow_missing: bool,
    /// Tokens whose signature already verified, like Envoy's `jwt_cache_config`.
    cache: RefCell<TokenCache>,
}

/// Signature-verified tokens (per worker), oldest evicted first. Time and
/// audience are still checked on every use; only the signature work is saved.
#[derive(Debug, Default)]
struct TokenCache {
    capacity: usize,
    entries: HashMap<String, Signed>,
    order: VecDeque<String>,
}

/// A token whose signature verified: its provider and claims.
#[derive(Debug, Clone)]
struct Signed {
    provider: usize,
    claims: Map<String, Value>,
}

impl TokenCache {
    fn get(&self, token: &str) -> Option<Signed> {
        self.entries.get(token).cloned()
    }

    fn insert(&mut self, token: &str, signed: Signed) {
        if self.capacity == 0 || self.entries.contains_key(token) {
            return;
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.order.push_back(token.to_string());
        self.entries.insert(token.to_string(), signed);
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    Missing,
    Malformed(&'static str),
    UnsupportedAlgorithm(String),
    UnknownIssuer,
    NoMatchingKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
}

impl Reject {
    pub fn description(&self) -> String {
        match self {
            Reject::Missing => "missing bearer token".into(),
            Reject::Malformed(what) => format!("malformed token: {what}"),
            Reject::UnsupportedAlgorithm(alg) => format!("unsupported algorithm {alg}"),
            Reject::UnknownIssuer => "unknown issuer".into(),
            Reject::NoMatchingKey => "no key matches the token".into(),
            Reject::BadSignature => "invalid signature".into(),
            Reject::Expired => "token expired".into(),
            Reject::NotYetValid => "token not yet valid".into(),
            Reject::WrongAudience => "audience not allowed".into(),
        }
    }

    /// 401 with an RFC 6750 challenge.
    pub fn reply(&self) -> LocalResponse {
        let challenge = match self {
            Reject::Missing => "Bearer".to_string(),
            other => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                other.description()
            ),
        };
        LocalResponse::new(401)
            .header("www-authenticate", challenge)
            .header("content-type", "text/plain")
            .body(format!("unauthorized: {}\n", self.description()))
            .details("jwt_auth_denied")
    }
}

/// A verified token: its issuer and claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub issuer: String,
    pub claims: Map<String, Value>,
}

impl Verified {
    /// A claim as header text: strings as they are, numbers and booleans
    /// printed, anything else as compact JSON; `None` if absent.
    pub fn claim_text(&self, path: &str) -> Option<String> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut value = self.claims.get(first)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(match value {
            Value::String(s) => s.clone(),
            Value::Null => return None,
            other => other.to_string(),
        })
    }
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json(raw)?;
        if raw.providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "must list at least one issuer",
            ));
        }
        let mut providers = Vec::new();
        for (i, p) in raw.providers.into_iter().enumerate() {
            if p.issuer.is_empty() {
                return Err(ConfigError::new(
                    format!("providers[{i}].issuer"),
                    "must not be empty",
                ));
            }
            if providers.iter().any(|q: &Provider| q.issuer == p.issuer) {
                return Err(ConfigError::new(
                    format!("providers[{i}].issuer"),
                    "is listed twice",
                ));
            }
            let keys =
                parse_jwks(p.jwks).map_err(|e| e.in_field("jwks").in_list("providers", i))?;
            providers.push(Provider {
                issuer: p.issuer,
                audiences: p.audiences,
                keys,
            });
        }
        for (i, mapping) in raw.claims_to_headers.iter().enumerate() {
            if mapping.claim.is_empty() {
                return Err(ConfigError::new(
                    format!("claims_to_headers[{i}].claim"),
                    "must not be empty",
                ));
            }
            if !sdk_ext::headers::is_valid_name(&mapping.header) || mapping.header.starts_with(':')
            {
                return Err(ConfigError::new(
                    format!("claims_to_headers[{i}].header"),
                    "must be a valid header name",
                ));
            }
        }
        if !sdk_ext::headers::is_valid_name(&raw.from_header) || raw.from_header.starts_with(':') {
            return Err(ConfigError::new(
                "from_header",
                "must be a valid header name",
            ));
        }
        Ok(Config {
            providers,
            clock_skew: i64::try_from(raw.clock_skew_seconds).unwrap_or(i64::MAX),
            claims_to_headers: raw
                .claims_to_headers
                .into_iter()
                .map(|m| ClaimHeader {
                    header: m.header.to_ascii_lowercase(),
                    ..m
                })
                .collect(),
            from_header: raw.from_header.to_ascii_lowercase(),
            forward: raw.forward,
            allow_missing: raw.allow_missing,
            cache: RefCell::new(TokenCache {
                capacity: raw.cache_size,
                ..TokenCache::default()
            }),
        })
    }

    /// The token in a header value: `Bearer <token>` for `authorization`,
    /// the whole value for any other header.
    pub fn token_from<'a>(&self, value: &'a [u8]) -> Option<&'a str> {
        let value = std::str::from_utf8(value).ok()?.trim();
        let token = if self.from_header == "authorization" {
            let (scheme, token) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token.trim()
        } else {
            value
        };
        (!token.is_empty()).then_some(token)
    }

    /// Verifies `token` at `now` (Unix seconds, from the host clock).
    pub fn verify(&self, token: &str, now: i64) -> Result<Verified, Reject> {
        let cached = self.cache.borrow().get(token);
        let signed = match cached {
            Some(signed) => signed,
            None => {
                let signed = self.check_signature(token)?;
                let mut cache = self.cache.borrow_mut();
                // Cloning the claims only for a cache that will keep them.
                if cache.capacity > 0 {
                    cache.insert(token, signed.clone());
                }
                signed
            }
        };
        let provider = &self.providers[signed.provider];
        self.check_claims(provider, &signed.claims, now)?;
        Ok(Verified {
            issuer: provider.issuer.clone(),
            claims: signed.claims,
        })
    }

    /// Structure, algorithm, issuer, key and signature: what does not change with time.
    fn check_signature(&self, token: &str) -> Result<Signed, Reject> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Reject::Malformed("expected three dot-separated parts"));
        };
        let header: Map<String, Value> =
            decode_json(header_b64).ok_or(Reject::Malformed("header is not base64url JSON"))?;
        let claims: Map<String, Value> =
            decode_json(payload_b64).ok_or(Reject::Malformed("payload is not base64url JSON"))?;
        let signature = BASE64URL
            .decode(signature_b64)
            .map_err(|_| Reject::Malformed("signature is not base64url"))?;

        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let alg = Algorithm::from_name(alg_name)
            .ok_or_else(|| Reject::UnsupportedAlgorithm(alg_name.to_string()))?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(Reject::UnknownIssuer)?;
        let provider_index = self
            .providers
            .iter()
            .position(|p| p.issuer == issuer)
            .ok_or(Reject::UnknownIssuer)?;
        let provider = &self.providers[provider_index];

        // The key must be of the token's algorithm, and the kid must match when given:
        // this is what stops RS256 public keys being used as HS256 secrets.
        let kid = header.get("kid").and_then(Value::as_str);
        let mut candidates = provider
            .keys
            .iter()
            .filter(|k| k.algorithm() == alg && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .peekable();
        if candidates.peek().is_none() {
            return Err(Reject::NoMatchingKey);
        }
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        if !candidates.any(|k| k.verify(signing_input, &signature)) {
            return Err(Reject::BadSignature);
        }

        Ok(Signed {
            provider: provider_index,
            claims,
        })
    }

    /// `exp`, `nbf` (with the clock skew) and `aud`: checked on every use.
    fn check_claims(
        &self,
        provider: &Provider,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<(), Reject> {
        let time = |name: &str| -> Result<Option<i64>, Reject> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .or_else(|| v.as_f64().map(|f| f as i64))
                    .map(Some)
                    .ok_or(Reject::Malformed("exp/nbf must be numbers")),
            }
        };
        if let Some(exp) = time("exp")?
            && now > exp.saturating_add(self.clock_skew)
        {
            return Err(Reject::Expired);
        }
        if let Some(nbf) = time("nbf")?
            && now.saturating_add(self.clock_skew) < nbf
        {
            return Err(Reject::NotYetValid);
        }
        if !provider.audiences.is_empty() {
            let allowed = |a: &Value| {
                a.as_str()
                    .is_some_and(|a| provider.audiences.iter().any(|x| x == a))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(allowed),
                Some(single) => allowed(single),
                None => false,
            };
            if !ok {
                return Err(Reject::WrongAudience);
            }
        }
        Ok(())
    }
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = BASE64URL.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = include_str!("../tests/fixtures/jwks.json");
    const TOKENS: &str = include_str!("../tests/fixtures/tokens.json");

    fn config() -> Config {
        let json = format!(
            r#"{{"providers":[{{"issuer":"https://auth.example.com","audiences":["shop-api"],"jwks":{JWKS}}}],
                "clock_skew_seconds":60,
                "claims_to_headers":[{{"claim":"sub","header":"x-jwt-sub"}},{{"claim":"groups","header":"x-jwt-groups"}}]}}"#
        );
        Config::parse(json.as_bytes()).unwrap()
    }

    fn token(name: &str) -> String {
        let tokens: Value = serde_json::from_str(TOKENS).unwrap();
        tokens[name].as_str().unwrap().to_string()
    }

    fn now() -> i64 {
        let tokens: Value = serde_json::from_str(TOKENS).unwrap();
        tokens["now"].as_i64().unwrap()
    }

    #[test]
    fn valid_tokens_of_each_algorithm_pass() {
        let config = config();
        for (name, sub) in [
            ("valid_hs256", "user-42"),
            ("valid_rs256", "user-42"),
            ("valid_es256", "user-es"),
            ("valid_rs256_no_kid", "user-nokid"),
            ("valid_audience_list", "user-42"),
            ("expired_within_skew", "user-42"),
        ] {
            let verified = config
                .verify(&token(name), now())
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(verified.claim_text("sub").as_deref(), Some(sub), "{name}");
            assert_eq!(verified.issuer, "https://auth.example.com");
        }
    }

    #[test]
    fn each_failure_has_its_reason() {
        let config = config();
        let check = |name: &str| config.verify(&token(name), now()).unwrap_err();
        assert_eq!(check("expired"), Reject::Expired);
        assert_eq!(check("not_yet_valid"), Reject::NotYetValid);
        assert_eq!(check("wrong_audience"), Reject::WrongAudience);
        assert_eq!(check("unknown_issuer"), Reject::UnknownIssuer);
        assert_eq!(check("bad_signature"), Reject::BadSignature);
        assert_eq!(check("tampered_payload"), Reject::BadSignature);
        assert_eq!(
            check("alg_none"),
            Reject::UnsupportedAlgorithm("none".into())
        );
        assert_eq!(check("rs256_signed_with_hs_kid"), Reject::NoMatchingKey);
        assert_eq!(
            check("malformed"),
            Reject::Malformed("expected three dot-separated parts")
        );
        assert!(matches!(
            config.verify("a.b.c", now()),
            Err(Reject::Malformed(_))
        ));
    }

    #[test]
    fn a_tampered_rs256_signature_is_refused() {
        let config = config();
        let valid = token("valid_rs256");
        let (signing_input, signature_b64) = valid.rsplit_once('.').unwrap();
        let mut signature = BASE64URL.decode(signature_b64).unwrap();
        for position in [0, signature.len() / 2, signature.len() - 1] {
            let mut flipped = signature.clone();
            flipped[position] ^= 0x01;
            let tampered = format!("{signing_input}.{}", BASE64URL.encode(&flipped));
            assert_eq!(
                config.verify(&tampered, now()),
                Err(Reject::BadSignature),
                "byte {position} flipped"
            );
        }
        // A signature one byte short, and one as large as the modulus allows.
        signature.pop();
        let short = format!("{signing_input}.{}", BASE64URL.encode(&signature));
        assert_eq!(config.verify(&short, now()), Err(Reject::BadSignature));
        let too_large = format!("{signing_input}.{}", BASE64URL.encode([0xff; 256]));
        assert_eq!(config.verify(&too_large, now()), Err(Reject::BadSignature));
        // The untouched token still passes.
        assert!(config.verify(&valid, now()).is_ok());
    }

    #[test]
    fn time_comes_from_the_caller() {
        let config = config();
        // The valid token expires at now + 3600; skew is 60 s.
        assert!(
            config
                .verify(&token("valid_rs256"), now() + 3600 + 60)
                .is_ok()
        );
        assert_eq!(
            config.verify(&token("valid_rs256"), now() + 3600 + 61),
            Err(Reject::Expired)
        );
        assert_eq!(
            config.verify(&token("valid_rs256"), now() - 60 - 61),
            Err(Reject::NotYetValid)
        );
    }

    #[test]
    fn the_cache_saves_signatures_not_time_checks() {
        let config = config();
        let rs = token("valid_rs256");
        assert!(config.verify(&rs, now()).is_ok());
        assert_eq!(config.cache.borrow().entries.len(), 1);
        // A cache hit is still refused once the token has expired.
        assert_eq!(config.verify(&rs, now() + 7200), Err(Reject::Expired));
        // Refused tokens are never cached.
        assert_eq!(
            config.verify(&token("bad_signature"), now()),
            Err(Reject::BadSignature)
        );
        assert_eq!(config.cache.borrow().entries.len(), 1);
    }

    #[test]
    fn the_cache_evicts_the_oldest_entry_and_can_be_disabled() {
        let signed = Signed {
            provider: 0,
            claims: Map::new(),
        };
        let mut cache = TokenCache {
            capacity: 2,
            ..TokenCache::default()
        };
        for token in ["a", "b", "a", "c"] {
            cache.insert(token, signed.clone());
        }
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        let mut off = TokenCache::default();
        off.insert("a", signed);
        assert!(off.get("a").is_none());
    }

    #[test]
    fn claims_become_header_text() {
        let verified = config().verify(&token("valid_hs256"), now()).unwrap();
        assert_eq!(
            verified.claim_text("email").as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(
            verified.claim_text("groups").as_deref(),
            Some(r#"["admin","dev"]"#)
        );
        assert_eq!(verified.claim_text("exp").as_deref(), Some("1704070800"));
        assert_eq!(verified.claim_text("missing"), None);
    }

    #[test]
    fn bearer_tokens_are_taken_from_authorization() {
        let config = config();
        assert_eq!(
            config.token_from(b"Bearer abc.def.ghi"),
            Some("abc.def.ghi")
        );
        assert_eq!(config.token_from(b"bearer  abc "), Some("abc"));
        assert_eq!(config.token_from(b"Basic abc"), None);
        assert_eq!(config.token_from(b"Bearer "), None);
        assert_eq!(config.token_from(&[0xff]), None);
    }

    #[test]
    fn replies_carry_an_rfc6750_challenge() {
        let reply = Reject::Expired.reply();
        assert_eq!(reply.status(), 401);
        assert_eq!(
            reply.header_value("www-authenticate"),
            Some(&b"Bearer error=\"invalid_token\", error_description=\"token expired\""[..])
        );
        assert_eq!(
            Reject::Missing.reply().header_value("www-authenticate"),
            Some(&b"Bearer"[..])
        );
    }

    #[test]
    fn configuration_errors_point_into_the_jwks() {
        let err = |json: &str| Config::parse(json.as_bytes()).unwrap_err();
        assert_eq!(err(r#"{"providers":[]}"#).path(), "providers");
        assert_eq!(
            err(r#"{"providers":[{"issuer":"a","jwks":{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}}]}"#)
                .path(),
            "providers[0].jwks.keys[0].k"
        );
        assert_eq!(
            err(r#"{"providers":[{"issuer":"","jwks":{"keys":[]}}]}"#).path(),
            "providers[0].issuer"
        );
    }
}
