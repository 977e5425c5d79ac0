//! `verify_signature` and `sign` as Envoy defines them (foreign.cc on
//! top of source/common/crypto/utility_impl.cc), checked against keys and
//! signatures made by OpenSSL (tests/data/signing/README.md).

use harness::LogLevel;
use serde_json::{Value, json};

use crate::support::*;

fn data(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/signing")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A protobuf message of length-delimited fields.
fn message(fields: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, value) in fields {
        out.push(number << 3 | 2);
        varint(&mut out, value.len());
        out.extend_from_slice(value);
    }
    out
}

fn call(label: &str, name: &str, args: &[u8]) -> Value {
    json!({"op": "call_foreign", "label": label, "name": name, "args_hex": hex(args), "decode": "hex"})
}

fn run(steps: Vec<Value>) -> harness::Outcome {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": steps}}}));
    exchange(&mut envoy, get("/"), ok_upstream())
}

/// The status and result bytes of call `label`.
fn answer(outcome: &harness::Outcome, label: &str) -> (String, Vec<u8>) {
    let line = result(outcome, label);
    let rest = line
        .strip_prefix(&format!("{label}: "))
        .unwrap_or_else(|| panic!("{line}"));
    let (status, bytes) = rest.split_once(" result=").expect("status and result");
    (status.to_string(), unhex(bytes.trim_matches('"')))
}

/// `VerifySignatureResult { result: true }` / `SignResult { result: true, .. }`.
const RESULT_TRUE: [u8; 2] = [0x08, 0x01];

fn error_field(number: u8, text: &str) -> Vec<u8> {
    message(&[(number, text.as_bytes())])
}

fn verify(hash: &str, key_field: u8, key: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    message(&[
        (1, hash.as_bytes()),
        (key_field, key),
        (3, signature),
        (4, text),
    ])
}

fn sign(hash: &str, key_field: u8, key: &[u8], text: &[u8]) -> Vec<u8> {
    message(&[(1, hash.as_bytes()), (key_field, key), (3, text)])
}

/// SignResult's signature (field 2) after `result: true`.
fn signature_of(result: &[u8]) -> Vec<u8> {
    assert_eq!(result[..3], [0x08, 0x01, 0x12], "a successful SignResult");
    let (mut len, mut shift, mut at) = (0usize, 0, 3);
    loop {
        let b = result[at];
        len |= usize::from(b & 0x7f) << shift;
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    assert_eq!(result.len(), at + len);
    result[at..].to_vec()
}

#[test]
fn openssl_signatures_verify_with_rsa_and_p256_keys_in_both_forms() {
    let text = data("text.txt");
    let rsa_sig = data("rsa.sha256.sig");
    let ec_sig = data("ec.sha384.sig");
    let mut tampered = text.clone();
    tampered[0] ^= 1;
    let outcome = run(vec![
        call(
            "rsa pem",
            "verify_signature",
            &verify("sha256", 5, &data("rsa.pub.pem"), &rsa_sig, &text),
        ),
        call(
            "rsa der",
            "verify_signature",
            &verify("SHA256", 2, &data("rsa.pub.der"), &rsa_sig, &text),
        ),
        call(
            "ec pem",
            "verify_signature",
            &verify("sha384", 5, &data("ec.pub.pem"), &ec_sig, &text),
        ),
        call(
            "tampered",
            "verify_signature",
            &verify("sha256", 5, &data("rsa.pub.pem"), &rsa_sig, &tampered),
        ),
        call(
            "other hash",
            "verify_signature",
            &verify("sha512", 5, &data("rsa.pub.pem"), &rsa_sig, &text),
        ),
        call(
            "md5",
            "verify_signature",
            &verify("md5", 5, &data("rsa.pub.pem"), &rsa_sig, &text),
        ),
        call(
            "garbage key",
            "verify_signature",
            &verify("sha256", 2, b"not a key", &rsa_sig, &text),
        ),
    ]);
    for label in ["rsa pem", "rsa der", "ec pem"] {
        assert_eq!(
            answer(&outcome, label),
            ("OK".into(), RESULT_TRUE.to_vec()),
            "{label}"
        );
    }
    let failed = error_field(2, "Failed to verify digest. Error code: 0");
    assert_eq!(answer(&outcome, "tampered"), ("OK".into(), failed.clone()));
    assert_eq!(answer(&outcome, "other hash"), ("OK".into(), failed));
    assert_eq!(
        answer(&outcome, "md5"),
        ("OK".into(), error_field(2, "md5 is not supported."))
    );
    assert_eq!(
        answer(&outcome, "garbage key"),
        (
            "OK".into(),
            error_field(2, "Failed to initialize digest verify.")
        )
    );
}

#[test]
fn rsa_signatures_are_openssls_byte_for_byte_from_every_key_form() {
    // PKCS#1 v1.5 is deterministic: the same key and text give OpenSSL's bytes.
    let text = data("text.txt");
    let outcome = run(vec![
        call(
            "pkcs8 pem",
            "sign",
            &sign("sha256", 4, &data("rsa.pem"), &text),
        ),
        call(
            "pkcs1 pem",
            "sign",
            &sign("sha256", 4, &data("rsa.pkcs1.pem"), &text),
        ),
        call(
            "pkcs8 der",
            "sign",
            &sign("sha256", 2, &data("rsa.pk8.der"), &text),
        ),
        call(
            "sha1",
            "sign",
            &sign("sha1", 2, &data("rsa.pk8.der"), &text),
        ),
        call("md5", "sign", &sign("md5", 2, &data("rsa.pk8.der"), &text)),
        call(
            "garbage key",
            "sign",
            &sign("sha256", 4, b"-----BEGIN PRIVATE KEY-----", &text),
        ),
    ]);
    for label in ["pkcs8 pem", "pkcs1 pem", "pkcs8 der"] {
        let (status, bytes) = answer(&outcome, label);
        assert_eq!(status, "OK");
        assert_eq!(signature_of(&bytes), data("rsa.sha256.sig"), "{label}");
    }
    let (status, sha1) = answer(&outcome, "sha1");
    assert_eq!(status, "OK");
    assert_ne!(signature_of(&sha1), data("rsa.sha256.sig"));
    assert_eq!(
        answer(&outcome, "md5"),
        ("OK".into(), error_field(3, "md5 is not supported."))
    );
    assert_eq!(
        answer(&outcome, "garbage key"),
        (
            "OK".into(),
            error_field(
                3,
                "Invalid key type: private key required for signing operation."
            )
        )
    );
}

#[test]
fn p256_signatures_verify_and_both_private_key_forms_sign() {
    let text = data("text.txt");
    let outcome = run(vec![
        call(
            "sec1 pem",
            "sign",
            &sign("sha384", 4, &data("ec.pem"), &text),
        ),
        call(
            "pkcs8 der",
            "sign",
            &sign("sha256", 2, &data("ec.pk8.der"), &text),
        ),
    ]);
    let sec1 = signature_of(&answer(&outcome, "sec1 pem").1);
    let pkcs8 = signature_of(&answer(&outcome, "pkcs8 der").1);
    // DER-encoded ECDSA signatures (a SEQUENCE), as OpenSSL makes them.
    assert_eq!((sec1[0], pkcs8[0]), (0x30, 0x30));
    let public = data("ec.pub.pem");
    let outcome = run(vec![
        call(
            "sec1",
            "verify_signature",
            &verify("sha384", 5, &public, &sec1, &text),
        ),
        call(
            "pkcs8",
            "verify_signature",
            &verify("sha256", 5, &public, &pkcs8, &text),
        ),
        call(
            "wrong hash",
            "verify_signature",
            &verify("sha256", 5, &public, &sec1, &text),
        ),
    ]);
    assert_eq!(
        answer(&outcome, "sec1"),
        ("OK".into(), RESULT_TRUE.to_vec())
    );
    assert_eq!(
        answer(&outcome, "pkcs8"),
        ("OK".into(), RESULT_TRUE.to_vec())
    );
    assert_eq!(
        answer(&outcome, "wrong hash"),
        (
            "OK".into(),
            error_field(2, "Failed to verify digest. Error code: 0")
        )
    );
}

#[test]
fn p384_and_p521_signatures_from_openssl_verify_and_ours_verify_there_too() {
    let text = data("text.txt");
    let outcome = run(vec![
        call(
            "p384 openssl",
            "verify_signature",
            &verify(
                "sha256",
                5,
                &data("p384.pub.pem"),
                &data("p384.sha256.sig"),
                &text,
            ),
        ),
        call(
            "p521 openssl",
            "verify_signature",
            &verify(
                "sha512",
                5,
                &data("p521.pub.pem"),
                &data("p521.sha512.sig"),
                &text,
            ),
        ),
        call(
            "p521 short digest",
            "verify_signature",
            &verify(
                "sha256",
                5,
                &data("p521.pub.pem"),
                &data("p521.sha256.sig"),
                &text,
            ),
        ),
        call(
            "p384 wrong key",
            "verify_signature",
            &verify(
                "sha256",
                5,
                &data("p521.pub.pem"),
                &data("p384.sha256.sig"),
                &text,
            ),
        ),
        call(
            "p384 sign",
            "sign",
            &sign("sha384", 4, &data("p384.pem"), &text),
        ),
        call(
            "p521 sign",
            "sign",
            &sign("sha512", 2, &data("p521.pk8.der"), &text),
        ),
    ]);
    for label in ["p384 openssl", "p521 openssl", "p521 short digest"] {
        assert_eq!(
            answer(&outcome, label),
            ("OK".into(), RESULT_TRUE.to_vec()),
            "{label}"
        );
    }
    assert_eq!(
        answer(&outcome, "p384 wrong key"),
        (
            "OK".into(),
            error_field(2, "Failed to verify digest. Error code: 0")
        )
    );
    // What the harness signs, OpenSSL verifies.
    let sig_path = std::env::temp_dir().join(format!("harness-sig-{}", std::process::id()));
    for (label, public, hash) in [
        ("p384 sign", "p384.pub.pem", "-sha384"),
        ("p521 sign", "p521.pub.pem", "-sha512"),
    ] {
        let signature = signature_of(&answer(&outcome, label).1);
        std::fs::write(&sig_path, signature).unwrap();
        let data_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing");
        let status = std::process::Command::new("openssl")
            .args(["dgst", hash, "-verify"])
            .arg(data_dir.join(public))
            .arg("-signature")
            .arg(&sig_path)
            .arg(data_dir.join("text.txt"))
            .output()
            .expect("openssl runs");
        assert!(
            status.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&status.stdout)
        );
    }
    let _ = std::fs::remove_file(&sig_path);
}

#[test]
fn other_ec_curves_are_not_simulated_and_say_so() {
    let text = data("text.txt");
    let outcome = run(vec![call(
        "p224",
        "verify_signature",
        &verify(
            "sha256",
            5,
            &data("p224.pub.pem"),
            &data("p384.sha256.sig"),
            &text,
        ),
    )]);
    assert_eq!(answer(&outcome, "p224"), ("NOT_FOUND".into(), Vec::new()));
    assert!(
        outcome
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains("P-256, P-384 and P-521")),
        "{:#?}",
        outcome.logs
    );
}
