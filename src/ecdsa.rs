//! ECDSA P-256 encodings shared by the audit signer and the verifier.
//!
//! PKCS#11 `CKM_ECDSA` returns a raw `r ‖ s` signature and `CKA_EC_POINT` a DER OCTET STRING
//! around the uncompressed point; the transcript stores DER signatures and SPKI DER public keys,
//! which is what OpenSSL and every other standard tool expects. Verification is ring's
//! `ECDSA_P256_SHA256_ASN1`.

use sha2::{Digest, Sha256};

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) before the
/// 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// DER of the prime256v1 OID, the value of `CKA_EC_PARAMS` for P-256.
pub const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// What is wrong with an encoding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodingError {
    #[error(
        "not a P-256 public key (expected a 91-byte SubjectPublicKeyInfo with an uncompressed point)"
    )]
    NotP256Spki,
    #[error("CKA_EC_POINT is not an uncompressed P-256 point ({0} bytes)")]
    BadEcPoint(usize),
    #[error("raw ECDSA signature has {0} bytes, expected 64 (r ‖ s)")]
    BadRawSignature(usize),
}

/// Builds the SPKI DER from `CKA_EC_POINT`, which tokens return either as a DER OCTET STRING
/// (PKCS#11 2.40 §10.10) or, for some, as the bare point.
pub fn spki_from_ec_point(ec_point: &[u8]) -> Result<Vec<u8>, EncodingError> {
    let point = match ec_point {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        [0x04, ..] if ec_point.len() == 65 => ec_point,
        _ => return Err(EncodingError::BadEcPoint(ec_point.len())),
    };
    if point[0] != 0x04 {
        return Err(EncodingError::BadEcPoint(ec_point.len()));
    }
    let mut spki = Vec::with_capacity(91);
    spki.extend_from_slice(&P256_SPKI_PREFIX);
    spki.extend_from_slice(point);
    Ok(spki)
}

/// The uncompressed point inside a P-256 SPKI DER.
pub fn point_from_spki(spki: &[u8]) -> Result<&[u8], EncodingError> {
    match spki.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(point),
        _ => Err(EncodingError::NotP256Spki),
    }
}

/// Lowercase hex SHA-256 of the SPKI DER: the key fingerprint pinned in ceremony files.
pub fn fingerprint(spki: &[u8]) -> String {
    hex::encode(Sha256::digest(spki))
}

/// DER `ECDSA-Sig-Value` from a raw 64-byte `r ‖ s`.
pub fn raw_signature_to_der(raw: &[u8]) -> Result<Vec<u8>, EncodingError> {
    if raw.len() != 64 {
        return Err(EncodingError::BadRawSignature(raw.len()));
    }
    let r = der_integer(&raw[..32]);
    let s = der_integer(&raw[32..]);
    let mut out = Vec::with_capacity(2 + r.len() + s.len());
    out.push(0x30);
    // At most 2 × 35 bytes: the short length form always suffices.
    out.push((r.len() + s.len()) as u8);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Ok(out)
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let trimmed = &bytes[first..];
    let pad = trimmed[0] & 0x80 != 0;
    let mut out = Vec::with_capacity(trimmed.len() + 3);
    out.push(0x02);
    out.push((trimmed.len() + usize::from(pad)) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
    out
}

/// A P-256 public key ready to verify many signatures.
pub struct Verifier {
    key: ring::signature::UnparsedPublicKey<Vec<u8>>,
}

impl Verifier {
    /// From SPKI DER.
    pub fn from_spki(spki: &[u8]) -> Result<Self, EncodingError> {
        let point = point_from_spki(spki)?.to_vec();
        Ok(Verifier {
            key: ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                point,
            ),
        })
    }

    /// True when `der_sig` is a valid ECDSA P-256 signature over SHA-256(`message`).
    pub fn verify(&self, message: &[u8], der_sig: &[u8]) -> bool {
        self.key.verify(message, der_sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_positive() {
        let mut raw = [0u8; 64];
        raw[31] = 1; // r = 1
        raw[32] = 0x80; // s has its high bit set: needs a leading zero
        let der = raw_signature_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        assert_eq!(
            raw_signature_to_der(&raw[..63]),
            Err(EncodingError::BadRawSignature(63))
        );
    }

    #[test]
    fn spki_round_trips_through_ec_point_forms() {
        let mut point = vec![0x04];
        point.extend((1..=64).map(|i| i as u8));
        let mut octet = vec![0x04, 0x41];
        octet.extend_from_slice(&point);
        let a = spki_from_ec_point(&octet).unwrap();
        let b = spki_from_ec_point(&point).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 91);
        assert_eq!(point_from_spki(&a).unwrap(), &point[..]);
        assert_eq!(
            spki_from_ec_point(&point[..33]),
            Err(EncodingError::BadEcPoint(33))
        );
        assert_eq!(point_from_spki(&a[1..]), Err(EncodingError::NotP256Spki));
    }

    /// A signature is one DER `ECDSA-Sig-Value` and nothing else: the same signature twice
    /// (DER ‖ DER), or followed by one byte, does not verify.
    #[test]
    fn a_signature_with_trailing_bytes_does_not_verify() {
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let point = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
        let verifier = Verifier::from_spki(&spki_from_ec_point(&point).unwrap()).unwrap();
        let sig = key.sign(&rng, b"record").unwrap().as_ref().to_vec();
        assert!(verifier.verify(b"record", &sig));
        assert!(!verifier.verify(b"record", &[sig.clone(), sig.clone()].concat()));
        assert!(!verifier.verify(b"record", &[sig.as_slice(), &[0]].concat()));
    }
}
