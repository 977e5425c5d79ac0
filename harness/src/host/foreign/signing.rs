//! The `verify_signature` and `sign` foreign functions, as Envoy's
//! `source/extensions/common/wasm/foreign.cc` defines them on top of
//! `Common::Crypto::UtilityImpl` (`source/common/crypto/utility_impl.cc`):
//! a key in DER (SubjectPublicKeyInfo / PKCS#8) or PEM (`PUBLIC KEY`;
//! `PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`), a hash named sha1,
//! sha224, sha256, sha384 or sha512 (any case), and `EVP_DigestVerify` /
//! `EVP_DigestSign` semantics: RSA keys use PKCS#1 v1.5, EC keys ECDSA with
//! DER-encoded signatures. Crypto failures are not statuses: the call
//! answers OK with a result message carrying `result: false` and Envoy's
//! error text. RSA keys and EC keys on P-256, P-384 and P-521 are
//! simulated; other EC curves are reported as not simulated.

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use sha2_011::Digest;

use super::wire::{self, Value};
use crate::abi::Status;

/// Where a signing message keeps each field (field numbers).
pub(super) struct KeyMessage {
    hash: u32,
    der: u32,
    pem: u32,
    signature: Option<u32>,
    text: u32,
}

/// `VerifySignatureArguments` (verify_signature.proto): hash_function 1,
/// public_key 2, signature 3, text 4, public_key_pem 5.
pub(super) const VERIFY_SIGNATURE: KeyMessage = KeyMessage {
    hash: 1,
    der: 2,
    pem: 5,
    signature: Some(3),
    text: 4,
};

/// `SignArguments` (sign.proto): hash_function 1, private_key 2, text 3,
/// private_key_pem 4.
pub(super) const SIGN: KeyMessage = KeyMessage {
    hash: 1,
    der: 2,
    pem: 4,
    signature: None,
    text: 3,
};

/// The key as the guest gave it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum KeyForm<'a> {
    Der(&'a [u8]),
    Pem(&'a str),
}

/// One decoded argument message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct KeyArguments<'a> {
    pub hash: &'a str,
    pub key: KeyForm<'a>,
    pub signature: &'a [u8],
    pub text: &'a [u8],
}

/// What Envoy refuses before any crypto: a malformed message, or not
/// exactly one of the DER and PEM keys (`importPublicKey` /
/// `importPrivateKey` in foreign.cc return null): BAD_ARGUMENT.
pub(super) fn key_arguments<'a>(
    args: &'a [u8],
    message: &KeyMessage,
) -> Result<KeyArguments<'a>, Status> {
    let fields = wire::fields(args).map_err(|_| Status::BadArgument)?;
    let (mut hash, mut der, mut pem): (&str, &[u8], &str) = ("", &[], "");
    let (mut signature, mut text): (&[u8], &[u8]) = (&[], &[]);
    // Scalar fields: the last occurrence wins.
    for (number, field) in fields {
        let Value::Bytes(bytes) = field else { continue };
        let as_str = || std::str::from_utf8(bytes).map_err(|_| Status::BadArgument);
        if number == message.hash {
            hash = as_str()?;
        } else if number == message.pem {
            pem = as_str()?;
        } else if number == message.der {
            der = bytes;
        } else if Some(number) == message.signature {
            signature = bytes;
        } else if number == message.text {
            text = bytes;
        }
    }
    let key = match (der.is_empty(), pem.is_empty()) {
        (false, true) => KeyForm::Der(der),
        (true, false) => KeyForm::Pem(pem),
        _ => return Err(Status::BadArgument),
    };
    Ok(KeyArguments {
        hash,
        key,
        signature,
        text,
    })
}

/// The hash functions `UtilityImpl::getHashFunction` knows.
#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

fn hash_named(name: &str) -> Result<Hash, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "sha1" => Hash::Sha1,
        "sha224" => Hash::Sha224,
        "sha256" => Hash::Sha256,
        "sha384" => Hash::Sha384,
        "sha512" => Hash::Sha512,
        _ => return Err(format!("{name} is not supported.")),
    })
}

/// Runs `f` with the digest type of `hash`.
macro_rules! with_digest {
    ($hash:expr, $f:ident ( $($arg:expr),* )) => {
        match $hash {
            Hash::Sha1 => $f::<sha1::Sha1>($($arg),*),
            Hash::Sha224 => $f::<sha2_011::Sha224>($($arg),*),
            Hash::Sha256 => $f::<sha2_011::Sha256>($($arg),*),
            Hash::Sha384 => $f::<sha2_011::Sha384>($($arg),*),
            Hash::Sha512 => $f::<sha2_011::Sha512>($($arg),*),
        }
    };
}

enum PublicKey {
    Rsa(rsa::PublicKey),
    Ec(Curve<p256::PublicKey, p384::PublicKey, p521::PublicKey>),
}

enum PrivateKey {
    Rsa(Box<rsa::PrivateKey>),
    Ec(Curve<p256::SecretKey, p384::SecretKey, p521::SecretKey>),
}

/// Something of one of the NIST curves.
enum Curve<A, B, C> {
    P256(A),
    P384(B),
    P521(C),
}

/// Evaluates `$body` with `$k` bound to the curve's value and `$c` naming
/// the curve's crate, whichever curve `$value` is on.
macro_rules! on_curve {
    ($value:expr, |$k:ident, $c:ident| $body:expr) => {
        match $value {
            Curve::P256($k) => {
                use p256 as $c;
                $body
            }
            Curve::P384($k) => {
                use p384 as $c;
                $body
            }
            Curve::P521($k) => {
                use p521 as $c;
                $body
            }
        }
    };
}

/// Tries `$decode` of each curve's `$kind` (PublicKey / SecretKey) on
/// `$der`, the NIST curves in turn.
macro_rules! decode_curve {
    ($kind:ident :: $decode:ident ($der:expr)) => {
        p256::$kind::$decode($der)
            .map(Curve::P256)
            .or_else(|_| p384::$kind::$decode($der).map(Curve::P384))
            .or_else(|_| p521::$kind::$decode($der).map(Curve::P521))
    };
}

/// A key that decodes as a key Envoy would use but the harness does not
/// simulate (an EC key on a curve other than P-256, P-384 and P-521).
pub(super) struct NotSimulated;

/// The id-ecPublicKey algorithm: an EC key, whatever its curve.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

fn is_ec_spki(der: &[u8]) -> bool {
    use rsa::pkcs8::der::Decode;
    rsa::pkcs8::SubjectPublicKeyInfoRef::from_der(der)
        .is_ok_and(|spki| spki.algorithm.oid.to_string() == EC_PUBLIC_KEY)
}

fn is_ec_pkcs8(der: &[u8]) -> bool {
    use rsa::pkcs8::der::Decode;
    rsa::pkcs8::PrivateKeyInfoRef::from_der(der)
        .is_ok_and(|info| info.algorithm.oid.to_string() == EC_PUBLIC_KEY)
}

/// `importPublicKeyDER` (EVP_parse_public_key) / `importPublicKeyPEM`
/// (PEM_read_bio_PUBKEY); `Ok(None)`: Envoy's key object holds no key.
fn public_key(form: &KeyForm<'_>) -> Result<Option<PublicKey>, NotSimulated> {
    let der = match form {
        KeyForm::Der(der) => der.to_vec(),
        KeyForm::Pem(pem) => match rsa::pkcs8::Document::from_pem(pem.trim_start()) {
            Ok(("PUBLIC KEY", doc)) => doc.as_bytes().to_vec(),
            _ => return Ok(None),
        },
    };
    if let Ok(key) = rsa::PublicKey::from_public_key_der(&der) {
        return Ok(Some(PublicKey::Rsa(key)));
    }
    if let Ok(key) = decode_curve!(PublicKey::from_public_key_der(&der)) {
        return Ok(Some(PublicKey::Ec(key)));
    }
    if is_ec_spki(&der) {
        return Err(NotSimulated);
    }
    Ok(None)
}

/// `importPrivateKeyDER` (EVP_parse_private_key: PKCS#8) /
/// `importPrivateKeyPEM` (PEM_read_bio_PrivateKey: PKCS#8, PKCS#1, SEC1).
fn private_key(form: &KeyForm<'_>) -> Result<Option<PrivateKey>, NotSimulated> {
    let (label, der) = match form {
        KeyForm::Der(der) => ("PRIVATE KEY".to_string(), der.to_vec()),
        KeyForm::Pem(pem) => match rsa::pkcs8::SecretDocument::from_pem(pem.trim_start()) {
            Ok((label, doc)) => (label.to_string(), doc.as_bytes().to_vec()),
            Err(_) => return Ok(None),
        },
    };
    let key = match label.as_str() {
        "PRIVATE KEY" => {
            if let Ok(key) = rsa::PrivateKey::from_pkcs8_der(&der) {
                Some(PrivateKey::Rsa(Box::new(key)))
            } else if let Ok(key) = decode_curve!(SecretKey::from_pkcs8_der(&der)) {
                Some(PrivateKey::Ec(key))
            } else if is_ec_pkcs8(&der) {
                return Err(NotSimulated);
            } else {
                None
            }
        }
        "RSA PRIVATE KEY" => rsa::PrivateKey::from_pkcs1_der(&der)
            .ok()
            .map(|key| PrivateKey::Rsa(Box::new(key))),
        "EC PRIVATE KEY" => match decode_curve!(SecretKey::from_sec1_der(&der)) {
            Ok(key) => Some(PrivateKey::Ec(key)),
            Err(_) => return Err(NotSimulated),
        },
        _ => None,
    };
    Ok(key)
}

fn verify_with<D>(key: &PublicKey, signature: &[u8], text: &[u8]) -> bool
where
    D: Digest + rsa::pkcs8::AssociatedOid,
{
    match key {
        PublicKey::Rsa(key) => rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|sig| {
            rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
                .verify(text, &sig)
                .is_ok()
        }),
        PublicKey::Ec(key) => on_curve!(key, |key, c| {
            c::ecdsa::Signature::from_der(signature).is_ok_and(|sig| {
                c::ecdsa::VerifyingKey::from(key)
                    .verify_prehash(&D::digest(text), &sig)
                    .is_ok()
            })
        }),
    }
}

fn sign_with<D>(key: &PrivateKey, text: &[u8]) -> Option<Vec<u8>>
where
    D: Digest + rsa::pkcs8::AssociatedOid,
{
    match key {
        PrivateKey::Rsa(key) => rsa::pkcs1v15::SigningKey::<D>::new(key.as_ref().clone())
            .try_sign(text)
            .ok()
            .map(|sig| sig.to_vec()),
        PrivateKey::Ec(key) => on_curve!(key, |key, c| {
            let signer = c::ecdsa::SigningKey::from(key);
            let sig: c::ecdsa::Signature = signer.sign_prehash(&D::digest(text)).ok()?;
            Some(sig.to_der().as_bytes().to_vec())
        }),
    }
}

/// `UtilityImpl::verifySignature`: `Err` carries Envoy's error text.
fn verify(args: &KeyArguments<'_>) -> Result<Result<(), String>, NotSimulated> {
    let hash = match hash_named(args.hash) {
        Ok(hash) => hash,
        Err(message) => return Ok(Err(message)),
    };
    let Some(key) = public_key(&args.key)? else {
        return Ok(Err("Failed to initialize digest verify.".to_string()));
    };
    Ok(
        if with_digest!(hash, verify_with(&key, args.signature, args.text)) {
            Ok(())
        } else {
            // EVP_DigestVerify answers 0 for a signature that does not match.
            Err("Failed to verify digest. Error code: 0".to_string())
        },
    )
}

/// `UtilityImpl::sign`: `Err` carries Envoy's error text.
fn sign(args: &KeyArguments<'_>) -> Result<Result<Vec<u8>, String>, NotSimulated> {
    let hash = match hash_named(args.hash) {
        Ok(hash) => hash,
        Err(message) => return Ok(Err(message)),
    };
    let Some(key) = private_key(&args.key)? else {
        return Ok(Err(
            "Invalid key type: private key required for signing operation.".to_string(),
        ));
    };
    Ok(with_digest!(hash, sign_with(&key, args.text))
        .ok_or_else(|| "Failed to create signature.".to_string()))
}

/// `verify_signature`: a `VerifySignatureResult` (result 1, error 2).
pub(super) fn verify_signature(args: &[u8]) -> Result<Result<Vec<u8>, NotSimulated>, Status> {
    let args = key_arguments(args, &VERIFY_SIGNATURE)?;
    Ok(verify(&args).map(|outcome| {
        let mut out = Vec::new();
        match outcome {
            Ok(()) => wire::put_true(&mut out, 1),
            Err(error) => wire::put_bytes(&mut out, 2, error.as_bytes()),
        }
        out
    }))
}

/// `sign`: a `SignResult` (result 1, signature 2, error 3).
pub(super) fn sign_text(args: &[u8]) -> Result<Result<Vec<u8>, NotSimulated>, Status> {
    let args = key_arguments(args, &SIGN)?;
    Ok(sign(&args).map(|outcome| {
        let mut out = Vec::new();
        match outcome {
            Ok(signature) => {
                wire::put_true(&mut out, 1);
                wire::put_bytes(&mut out, 2, &signature);
            }
            Err(error) => wire::put_bytes(&mut out, 3, error.as_bytes()),
        }
        out
    }))
}
