//! RS256 verification (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2.2)
//! on Montgomery arithmetic whose limb is as wide as the target's native
//! multiply: 32 bits on wasm32, where a 32x32->64 product is one `i64.mul`,
//! and 64 bits on 64-bit hosts, where a 64x64->128 product is one `mul`.
//! RustCrypto's `crypto-bigint` (through `rsa`) uses 64-bit limbs on wasm32
//! too, and there each product is a call to compiler-rt's `__multi3`; the
//! measurements are in BENCHMARKS.md.

use sha2_011::{Digest, Sha256};

#[cfg(any(test, not(target_pointer_width = "64")))]
mod limb32 {
    type Limb = u32;
    type Wide = u64;
    include!("montgomery.rs");
}

#[cfg(any(test, target_pointer_width = "64"))]
mod limb64 {
    type Limb = u64;
    type Wide = u128;
    include!("montgomery.rs");
}

#[cfg(not(target_pointer_width = "64"))]
use limb32::Modulus;
#[cfg(target_pointer_width = "64")]
use limb64::Modulus;

/// DER of `DigestInfo` for SHA-256 up to the digest itself (RFC 8017
/// §9.2, note 1): what the padded message carries before the hash.
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Modulus sizes accepted, in bits: the bounds of RustCrypto's `rsa`
/// (`PublicKey::MIN_SIZE`, `MAX_SIZE`), which this module replaced.
const MIN_BITS: usize = 1024;
const MAX_BITS: usize = 8192;
/// Larger exponents only make each verification slower (the "RSADoS"
/// bound of `rsa` and *ring*).
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key prepared for verification.
#[derive(Clone)]
pub struct PublicKey {
    modulus: Modulus,
    exponent: u64,
    /// The modulus's length in bytes (k in RFC 8017).
    size: usize,
}

impl PublicKey {
    /// Builds a key from the big-endian modulus and exponent of a JWK.
    /// The error names the JWK member at fault (`n` or `e`) and why.
    pub fn new(modulus: &[u8], exponent: u64) -> Result<PublicKey, (&'static str, String)> {
        let first = modulus
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(modulus.len());
        let modulus = &modulus[first..];
        let bits = modulus
            .first()
            .map_or(0, |top| modulus.len() * 8 - top.leading_zeros() as usize);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err((
                "n",
                format!(
                    "has {bits} bits; RSA moduli of {MIN_BITS} to {MAX_BITS} bits are accepted"
                ),
            ));
        }
        if modulus.last().is_some_and(|low| low & 1 == 0) {
            return Err(("n", "is even, so it is not an RSA modulus".to_string()));
        }
        if !(3..=MAX_EXPONENT).contains(&exponent) || exponent & 1 == 0 {
            return Err((
                "e",
                format!("is {exponent}; an RSA exponent must be odd, at least 3 and below 2^33"),
            ));
        }
        Ok(PublicKey {
            modulus: Modulus::new(modulus, bits),
            exponent,
            size: modulus.len(),
        })
    }

    /// RSASSA-PKCS1-v1_5-VERIFY with SHA-256: `signature` must be exactly
    /// the modulus's length, below the modulus, and open to the one valid
    /// encoding of the message's digest, compared whole (as BoringSSL's
    /// `RSA_verify` does), so no alternative encoding is accepted.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let mut encoded = vec![0u8; self.size];
        if signature.len() != self.size
            || !self.modulus.power(signature, self.exponent, &mut encoded)
        {
            return false;
        }
        let digest = Sha256::digest(message);
        // k >= 128 bytes (MIN_BITS), so the padding's 8-byte minimum holds.
        let (head, tail) = encoded.split_at(self.size - SHA256_DIGEST_INFO.len() - digest.len());
        let (info, hash) = tail.split_at(SHA256_DIGEST_INFO.len());
        head[..2] == [0, 1]
            && head[2..head.len() - 1].iter().all(|&b| b == 0xff)
            && head[head.len() - 1] == 0
            && info == SHA256_DIGEST_INFO
            && hash == &digest[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::BASE64URL;
    use base64::Engine;

    fn hex(text: &str) -> Vec<u8> {
        let padded = if text.len() % 2 == 1 {
            format!("0{text}")
        } else {
            text.to_string()
        };
        (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).unwrap())
            .collect()
    }

    fn padded(bytes: &[u8], size: usize) -> Vec<u8> {
        let mut out = vec![0; size - bytes.len()];
        out.extend_from_slice(bytes);
        out
    }

    /// Each limb width against Python's integers (make_modpow.py).
    fn check_powers(power: impl Fn(&[u8], usize, &[u8], u64, &mut [u8]) -> bool) {
        let vectors = include_str!("../tests/fixtures/modpow.txt");
        let mut checked = 0;
        for line in vectors.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let bits: usize = fields[0].parse().unwrap();
            let e: u64 = fields[1].parse().unwrap();
            let n = hex(fields[2]);
            assert_eq!(n.len(), bits.div_ceil(8));
            let mut opened = vec![0; n.len()];
            assert!(power(&n, bits, &hex(fields[3]), e, &mut opened));
            assert_eq!(
                opened,
                padded(&hex(fields[4]), n.len()),
                "{bits}-bit modulus, e = {e}"
            );
            assert!(!power(&n, bits, &n, e, &mut opened), "s = n is refused");
            checked += 1;
        }
        assert_eq!(checked, 32);
    }

    #[test]
    fn powers_match_an_independent_implementation_with_32_bit_limbs() {
        check_powers(|n, bits, s, e, out| limb32::Modulus::new(n, bits).power(s, e, out));
    }

    #[test]
    fn powers_match_an_independent_implementation_with_64_bit_limbs() {
        check_powers(|n, bits, s, e, out| limb64::Modulus::new(n, bits).power(s, e, out));
    }

    /// The fixture set's RSA modulus (big-endian).
    fn fixture_modulus() -> Vec<u8> {
        let jwks: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/jwks.json")).unwrap();
        BASE64URL
            .decode(jwks["keys"][1]["n"].as_str().unwrap())
            .unwrap()
    }

    fn fixture_key() -> PublicKey {
        PublicKey::new(&fixture_modulus(), 65537).unwrap()
    }

    fn fixture_token() -> (Vec<u8>, Vec<u8>) {
        let tokens: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/tokens.json")).unwrap();
        let token = tokens["valid_rs256"].as_str().unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        (
            input.as_bytes().to_vec(),
            BASE64URL.decode(signature).unwrap(),
        )
    }

    #[test]
    fn a_token_signed_by_openssl_verifies_and_altered_ones_do_not() {
        let key = fixture_key();
        let (input, signature) = fixture_token();
        assert!(key.verify(&input, &signature));
        let mut other = input.clone();
        other[0] ^= 1;
        assert!(!key.verify(&other, &signature));
        for byte in [0, 100, signature.len() - 1] {
            let mut flipped = signature.clone();
            flipped[byte] ^= 0x10;
            assert!(!key.verify(&input, &flipped), "byte {byte} flipped");
        }
        assert!(!key.verify(&input, &signature[1..]));
        let mut longer = vec![0];
        longer.extend_from_slice(&signature);
        assert!(!key.verify(&input, &longer), "a zero-prefixed signature");
        let n = fixture_modulus();
        assert!(!key.verify(&input, &n), "s = n is out of range");
        assert!(!key.verify(&input, &vec![0xff; key.size]));
    }

    #[test]
    fn unusable_keys_name_the_member_at_fault() {
        let mut n = vec![0xc5; 256];
        assert!(PublicKey::new(&n, 65537).is_ok());
        assert_eq!(PublicKey::new(&n[..64], 65537).err().unwrap().0, "n");
        assert_eq!(
            PublicKey::new(&vec![0xff; 1025], 65537).err().unwrap().0,
            "n"
        );
        let mut zero_prefixed = vec![0, 0];
        zero_prefixed.extend_from_slice(&n);
        assert!(PublicKey::new(&zero_prefixed, 65537).is_ok_and(|key| key.size == 256));
        for e in [1, 2, 65536, 1 << 33] {
            assert_eq!(PublicKey::new(&n, e).err().unwrap().0, "e", "e = {e}");
        }
        n[255] = 0xc4;
        let (member, reason) = PublicKey::new(&n, 65537).err().unwrap();
        assert_eq!((member, reason.contains("even")), ("n", true));
    }
}
