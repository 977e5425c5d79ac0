//! JWK sets (RFC 7517) turned into ready-to-use verification keys:
//! `oct` for HS256, `RSA` for RS256, `EC` P-256 for ES256.

use crate::rs256;
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{KeyInit, Mac};
use p256::ecdsa::signature::Verifier as _;
use sdk_ext::ConfigError;
use serde::Deserialize;
use sha2_011::Sha256;

/// base64url as JOSE uses it; padding is tolerated on input.
pub const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The algorithms this filter verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Hs256,
    Rs256,
    Es256,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "HS256" => Some(Algorithm::Hs256),
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }
}

#[derive(Clone)]
enum Material {
    /// Keyed once at configuration: the inner and outer pads are hashed
    /// here, not again for every token.
    Hmac(Box<hmac::Hmac<Sha256>>),
    Rsa(rs256::PublicKey),
    Ec(p256::ecdsa::VerifyingKey),
}

/// One usable key of a JWK set.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    material: Material,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.material {
            Material::Hmac(_) => "oct",
            Material::Rsa(_) => "RSA",
            Material::Ec(_) => "EC",
        };
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kty", &kind)
            .finish()
    }
}

impl Key {
    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            Material::Hmac(_) => Algorithm::Hs256,
            Material::Rsa(_) => Algorithm::Rs256,
            Material::Ec(_) => Algorithm::Es256,
        }
    }

    /// Checks `signature` over `signing_input` (the ASCII `header.payload`).
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(keyed) => {
                let mut mac = (**keyed).clone();
                mac.update(signing_input);
                // Constant-time comparison inside `verify_slice`.
                mac.verify_slice(signature).is_ok()
            }
            Material::Rsa(key) => key.verify(signing_input, signature),
            Material::Ec(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Debug, Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(rename = "use", default)]
    key_use: Option<String>,
    #[serde(default)]
    k: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Parses a JWK set given inline as an object or as a JSON string (Istio's
/// `jwks` field is a string). Keys for other uses or algorithms are skipped.
pub fn parse_jwks(value: serde_json::Value) -> Result<Vec<Key>, ConfigError> {
    let value = match value {
        serde_json::Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| ConfigError::root(format!("is not a JSON JWK set: {e}")))?,
        other => other,
    };
    let raw: RawJwks = sdk_ext::config::parse_value(value)?;
    let mut keys = Vec::new();
    for (i, jwk) in raw.keys.iter().enumerate() {
        if let Some(key) = parse_jwk(jwk).map_err(|e| e.in_list("keys", i))? {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(ConfigError::new(
            "keys",
            "has no HS256, RS256 or ES256 verification key",
        ));
    }
    Ok(keys)
}

fn field<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ConfigError> {
    value
        .as_deref()
        .ok_or_else(|| ConfigError::new(name, "is required for this key type"))
}

fn decode(value: &Option<String>, name: &str) -> Result<Vec<u8>, ConfigError> {
    BASE64URL
        .decode(field(value, name)?)
        .map_err(|e| ConfigError::new(name, format!("is not base64url: {e}")))
}

fn parse_jwk(jwk: &RawJwk) -> Result<Option<Key>, ConfigError> {
    if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let wanted = match jwk.kty.as_str() {
        "oct" => Algorithm::Hs256,
        "RSA" => Algorithm::Rs256,
        "EC" => Algorithm::Es256,
        _ => return Ok(None),
    };
    if let Some(alg) = &jwk.alg
        && Algorithm::from_name(alg) != Some(wanted)
    {
        return Ok(None);
    }
    let material = match wanted {
        Algorithm::Hs256 => {
            let secret = decode(&jwk.k, "k")?;
            if secret.len() < 32 {
                return Err(ConfigError::new(
                    "k",
                    "an HS256 secret needs at least 32 bytes (256 bits)",
                ));
            }
            let keyed = hmac::Hmac::<Sha256>::new_from_slice(&secret)
                .map_err(|e| ConfigError::new("k", format!("is not a usable HMAC key: {e}")))?;
            Material::Hmac(Box::new(keyed))
        }
        Algorithm::Rs256 => {
            let n = decode(&jwk.n, "n")?;
            let e = decode(&jwk.e, "e")?;
            if e.is_empty() || e.len() > 8 {
                return Err(ConfigError::new("e", "is not a usable RSA exponent"));
            }
            let exponent = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            let key = rs256::PublicKey::new(&n, exponent)
                .map_err(|(member, reason)| ConfigError::new(member, reason))?;
            Material::Rsa(key)
        }
        Algorithm::Es256 => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err(ConfigError::new("crv", "only P-256 (ES256) is supported"));
            }
            let x = decode(&jwk.x, "x")?;
            let y = decode(&jwk.y, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(ConfigError::new("x", "P-256 coordinates are 32 bytes each"));
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| ConfigError::new("x", "the point is not on the P-256 curve"))?;
            Material::Ec(key)
        }
    };
    Ok(Some(Key {
        kid: jwk.kid.clone(),
        material,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = include_str!("../tests/fixtures/jwks.json");

    #[test]
    fn the_fixture_set_has_one_key_per_algorithm() {
        let keys = parse_jwks(serde_json::from_str(JWKS).unwrap()).unwrap();
        let algs: Vec<Algorithm> = keys.iter().map(Key::algorithm).collect();
        assert_eq!(
            algs,
            vec![Algorithm::Hs256, Algorithm::Rs256, Algorithm::Es256]
        );
        assert_eq!(keys[1].kid.as_deref(), Some("rs-1"));
    }

    #[test]
    fn a_jwks_string_is_accepted() {
        let keys = parse_jwks(serde_json::Value::String(JWKS.to_string())).unwrap();
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn unusable_keys_are_skipped_and_broken_ones_reported() {
        let skipped = parse_jwks(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
            {"kty": "RSA", "use": "enc", "n": "AA", "e": "AQAB"},
            {"kty": "oct", "k": BASE64URL.encode([7u8; 32])}
        ]}))
        .unwrap();
        assert_eq!(skipped.len(), 1);
        let err = |v: serde_json::Value| parse_jwks(v).unwrap_err();
        assert_eq!(
            err(serde_json::json!({"keys": [{"kty": "oct", "k": "c2hvcnQ"}]})).path(),
            "keys[0].k"
        );
        assert_eq!(
            err(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "", "y": ""}]}))
                .path(),
            "keys[0].crv"
        );
        assert_eq!(
            err(serde_json::json!({"keys": [{"kty": "RSA", "e": "AQAB"}]})).path(),
            "keys[0].n"
        );
        assert_eq!(err(serde_json::json!({"keys": []})).path(), "keys");
        assert!(
            err(serde_json::json!("{nope"))
                .reason()
                .contains("not a JSON JWK set")
        );
    }

    #[test]
    fn hmac_verification_rejects_other_messages() {
        let key = Key {
            kid: None,
            material: Material::Hmac(Box::new(
                hmac::Hmac::<Sha256>::new_from_slice(&[1; 32]).unwrap(),
            )),
        };
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&[1; 32]).unwrap();
        mac.update(b"a.b");
        let tag = mac.finalize().into_bytes();
        assert!(key.verify(b"a.b", &tag));
        assert!(!key.verify(b"a.c", &tag));
        assert!(!key.verify(b"a.b", &tag[..31]));
    }
}
