//! Wrapping algorithms KMS accepts, where the wrap happens, and the checks that prove a wrap.
//!
//! Four algorithms, each with the RSA sizes KMS offers:
//!
//! - `RSAES_OAEP_SHA_256` and `RSAES_OAEP_SHA_1`: RSA-OAEP of the 32-byte material, with the
//!   named hash for OAEP and for MGF1 and an empty label.
//! - `RSA_AES_KEY_WRAP_SHA_256` and `RSA_AES_KEY_WRAP_SHA_1`: RSA-OAEP (same rules) of a fresh,
//!   ephemeral AES-256 key, followed by the RFC 5649 AES key wrap with padding of the material
//!   under that ephemeral key. The blob is the RSA part (modulus length) then the AES part
//!   (40 bytes for 32 bytes of material).
//!
//! Inside the HSM ([`HsmWrapPlan`]) OAEP is `CKM_RSA_PKCS_OAEP`; RSA-AES is
//! `CKM_RSA_AES_KEY_WRAP` where the token offers it, or composed in the token from an ephemeral
//! `CKM_AES_KEY_GEN` key, `CKM_AES_KEY_WRAP_KWP` or `CKM_AES_KEY_WRAP_PAD`, and
//! `CKM_RSA_PKCS_OAEP`. On the host ([`host_wrap`]) the same is done by byok, for
//! `wrap = "host"` only. [`selftest`] proves each plan with a known-answer test before it is used.
//!
//! This module never returns key material: the host wrap consumes the material it is given, and
//! every ephemeral or throwaway key is destroyed (HSM) or wiped (host) before returning.

pub mod selftest;

use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPublicKey};
use zeroize::Zeroizing;

pub use crate::hsm::OaepHash;
use crate::hsm::{AesKeyKind, Hsm, HsmError, KeyRef, WrapMechanism};
use crate::secure::KeyMaterial;

pub use selftest::{ProbeLine, ProbeOutcome, SelfTest, probe, self_test};

/// Length of the RFC 5649 wrap of 32 bytes of material: 32 rounded up to 8, plus 8.
pub const AES_KWP_BLOB_LEN: usize = 40;

/// The wrapping algorithms of KMS `GetParametersForImport` that byok implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrappingAlgorithm {
    RsaesOaepSha256,
    RsaesOaepSha1,
    RsaAesKeyWrapSha256,
    RsaAesKeyWrapSha1,
}

impl WrappingAlgorithm {
    /// Every algorithm byok implements, in the order `byok probe` lists them.
    pub const ALL: [WrappingAlgorithm; 4] = [
        WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaesOaepSha1,
        WrappingAlgorithm::RsaAesKeyWrapSha256,
        WrappingAlgorithm::RsaAesKeyWrapSha1,
    ];

    /// The KMS API name.
    pub fn kms_name(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            WrappingAlgorithm::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
            WrappingAlgorithm::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
        }
    }

    /// Parses a KMS name; `Err` explains why a known-but-unsupported name is refused.
    pub fn from_kms_name(name: &str) -> Result<Self, String> {
        if let Some(a) = Self::ALL.into_iter().find(|a| a.kms_name() == name) {
            return Ok(a);
        }
        let all = Self::names();
        match name {
            "RSAES_PKCS1_V1_5" => Err(format!(
                "RSAES_PKCS1_V1_5 is no longer accepted by AWS KMS; use {all}"
            )),
            "SM2PKE" => Err(format!(
                "SM2PKE (China regions) is not supported by byok; use {all}"
            )),
            other => Err(format!("expected {all}, found {other:?}")),
        }
    }

    /// "A, B, C or D": every KMS name, for messages.
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|a| a.kms_name()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }

    /// OAEP digest of this algorithm (of the material, or of the ephemeral AES key).
    pub fn oaep_hash(self) -> OaepHash {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
                OaepHash::Sha256
            }
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => {
                OaepHash::Sha1
            }
        }
    }

    /// True for the two-layer RSA_AES_KEY_WRAP algorithms.
    pub fn is_rsa_aes(self) -> bool {
        matches!(
            self,
            WrappingAlgorithm::RsaAesKeyWrapSha256 | WrappingAlgorithm::RsaAesKeyWrapSha1
        )
    }

    /// The length KMS expects of a blob wrapping 32 bytes under a `modulus_bits` RSA key.
    pub fn blob_len(self, modulus_bits: usize) -> usize {
        let rsa = modulus_bits.div_ceil(8);
        if self.is_rsa_aes() {
            rsa + AES_KWP_BLOB_LEN
        } else {
            rsa
        }
    }
}

impl std::fmt::Display for WrappingAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kms_name())
    }
}

/// The `rsa` crate's OAEP padding for `hash` (host wraps and the known-answer unwrap).
fn oaep_padding(hash: OaepHash) -> Oaep {
    match hash {
        OaepHash::Sha1 => Oaep::new::<sha1::Sha1>(),
        OaepHash::Sha256 => Oaep::new::<sha2::Sha256>(),
    }
}

/// RSA sizes KMS offers for the wrapping key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrappingKeySpec {
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl WrappingKeySpec {
    /// Every size, smallest first.
    pub const ALL: [WrappingKeySpec; 3] = [
        WrappingKeySpec::Rsa2048,
        WrappingKeySpec::Rsa3072,
        WrappingKeySpec::Rsa4096,
    ];

    /// The KMS API name.
    pub fn kms_name(self) -> &'static str {
        match self {
            WrappingKeySpec::Rsa2048 => "RSA_2048",
            WrappingKeySpec::Rsa3072 => "RSA_3072",
            WrappingKeySpec::Rsa4096 => "RSA_4096",
        }
    }

    /// Parses a KMS name.
    pub fn from_kms_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.kms_name() == name)
    }

    /// Modulus size in bits.
    pub fn bits(self) -> usize {
        match self {
            WrappingKeySpec::Rsa2048 => 2048,
            WrappingKeySpec::Rsa3072 => 3072,
            WrappingKeySpec::Rsa4096 => 4096,
        }
    }
}

impl std::fmt::Display for WrappingKeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kms_name())
    }
}

/// Where the material is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrapLocation {
    /// `C_WrapKey` inside the token: the material never leaves the HSM in plaintext.
    Hsm,
    /// The material is read out of the HSM into locked, zeroized memory and wrapped by byok.
    Host,
}

impl WrapLocation {
    /// The ceremony file's name.
    pub fn name(self) -> &'static str {
        match self {
            WrapLocation::Hsm => "hsm",
            WrapLocation::Host => "host",
        }
    }
}

/// How a wrap is done inside the token. Chosen (and proven) by [`self_test`]; the ceremony's
/// real wrap then uses exactly the same plan through [`wrap_in_hsm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HsmWrapPlan {
    /// `CKM_RSA_PKCS_OAEP` of the material.
    Oaep { hash: OaepHash },
    /// `CKM_RSA_AES_KEY_WRAP` (AES-256 ephemeral key, OAEP with `hash`), done by the token.
    RsaAesNative { hash: OaepHash },
    /// RSA-AES composed in the token: an ephemeral AES-256 key, the material wrapped under it
    /// with `kwp`, the ephemeral key wrapped with `CKM_RSA_PKCS_OAEP`, and the ephemeral key
    /// destroyed.
    RsaAesComposed { hash: OaepHash, kwp: WrapMechanism },
}

impl HsmWrapPlan {
    /// The plans that could do `algorithm` on a token, preferred first, as far as the token's
    /// mechanism list says; `Err` says why there is none.
    pub fn candidates(hsm: &dyn Hsm, algorithm: WrappingAlgorithm) -> Result<Vec<Self>, String> {
        let hash = algorithm.oaep_hash();
        let oaep = hsm.mechanism_support(WrapMechanism::RsaPkcsOaep);
        if !algorithm.is_rsa_aes() {
            return oaep.map(|()| vec![HsmWrapPlan::Oaep { hash }]);
        }
        let mut plans = Vec::new();
        let mut missing = Vec::new();
        match hsm.mechanism_support(WrapMechanism::RsaAesKeyWrap) {
            Ok(()) => plans.push(HsmWrapPlan::RsaAesNative { hash }),
            Err(why) => missing.push(why),
        }
        match &oaep {
            Ok(()) => {
                for kwp in [WrapMechanism::AesKeyWrapKwp, WrapMechanism::AesKeyWrapPad] {
                    match hsm.mechanism_support(kwp) {
                        Ok(()) => plans.push(HsmWrapPlan::RsaAesComposed { hash, kwp }),
                        Err(why) => missing.push(why),
                    }
                }
            }
            Err(why) => missing.push(why.clone()),
        }
        if plans.is_empty() {
            Err(format!(
                "neither CKM_RSA_AES_KEY_WRAP nor CKM_RSA_PKCS_OAEP with an AES key wrap with padding is offered ({})",
                missing.join("; ")
            ))
        } else {
            Ok(plans)
        }
    }

    /// The mechanisms, as written in `capability_checked` and `key_wrapped` records.
    pub fn mechanism(self) -> String {
        match self {
            HsmWrapPlan::Oaep { .. } => "CKM_RSA_PKCS_OAEP".into(),
            HsmWrapPlan::RsaAesNative { .. } => "CKM_RSA_AES_KEY_WRAP".into(),
            HsmWrapPlan::RsaAesComposed { kwp, .. } => {
                format!("CKM_AES_KEY_GEN + {} + CKM_RSA_PKCS_OAEP", kwp.ck_name())
            }
        }
    }

    fn hash(self) -> OaepHash {
        match self {
            HsmWrapPlan::Oaep { hash }
            | HsmWrapPlan::RsaAesNative { hash }
            | HsmWrapPlan::RsaAesComposed { hash, .. } => hash,
        }
    }
}

/// Wraps `key` under the imported RSA public key `wrapping` inside the HSM, following `plan`.
///
/// For a composed RSA-AES plan the ephemeral AES key is destroyed before this returns, whatever
/// happens; the material never leaves the token in plaintext.
pub fn wrap_in_hsm(
    hsm: &dyn Hsm,
    plan: HsmWrapPlan,
    wrapping: KeyRef,
    key: KeyRef,
) -> Result<Vec<u8>, HsmError> {
    match plan {
        HsmWrapPlan::Oaep { hash } => hsm.wrap_rsa_oaep(wrapping, key, hash),
        HsmWrapPlan::RsaAesNative { hash } => hsm.wrap_rsa_aes(wrapping, key, hash),
        HsmWrapPlan::RsaAesComposed { hash, kwp } => {
            let ephemeral = hsm.generate_aes256(AesKeyKind::EphemeralWrapping)?;
            let composed: Result<Vec<u8>, HsmError> = (|| {
                let aes_part = hsm.wrap_aes_kwp(kwp, ephemeral, key)?;
                let mut blob = hsm.wrap_rsa_oaep(wrapping, ephemeral, hash)?;
                blob.extend_from_slice(&aes_part);
                Ok(blob)
            })();
            let destroyed = hsm.destroy(ephemeral);
            let blob = composed?;
            // A wrap whose ephemeral key survived is not a clean wrap: report it.
            destroyed?;
            Ok(blob)
        }
    }
}

/// Why a wrap or its proof failed.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error(
        "the token cannot do {algorithm} inside the HSM: {reason}; {}, or wrap = \"host\" in the ceremony file",
        alternatives_text(alternatives)
    )]
    Unsupported {
        algorithm: WrappingAlgorithm,
        reason: String,
        /// Algorithms whose known-answer test passed inside this token (not merely offered).
        alternatives: Vec<&'static str>,
    },
    #[error(
        "the token's {algorithm} wrap ({mechanism}) does not unwrap as KMS expects ({detail}): the token does not do what it claims; do not use it for this algorithm"
    )]
    Mismatch {
        algorithm: WrappingAlgorithm,
        mechanism: String,
        detail: String,
    },
    #[error("the wrapping public key is not a usable RSA public key: {0}")]
    BadPublicKey(String),
    /// GetParametersForImport answered a key of another algorithm (what was received is named).
    #[error(
        "the wrapping public key from KMS is not an RSA key: its SubjectPublicKeyInfo algorithm is {received}, expected {RSA_ENCRYPTION_OID} (rsaEncryption); KMS import wrapping keys are RSA_2048, RSA_3072 or RSA_4096, so check that AWS_ENDPOINT_URL_KMS (or the ceremony file's endpoint) names a real KMS"
    )]
    NotRsa {
        /// The algorithm OID with its name when known, and for EC keys the curve.
        received: String,
    },
    #[error("the wrapping public key is RSA-{found}, but the ceremony asked KMS for {expected}")]
    WrongKeySize {
        expected: WrappingKeySpec,
        found: usize,
    },
    #[error("host wrap with {algorithm} failed: {detail}")]
    HostWrap {
        algorithm: WrappingAlgorithm,
        detail: String,
    },
    #[error(transparent)]
    Hsm(#[from] HsmError),
}

/// The "use this instead" part of [`WrapError::Unsupported`].
fn alternatives_text(alternatives: &[&str]) -> String {
    if alternatives.is_empty() {
        "no other algorithm passed the known-answer test inside this token".into()
    } else {
        format!(
            "alternatives that passed the known-answer test inside this token: {}",
            alternatives.join(", ")
        )
    }
}

/// The rsaEncryption OID every KMS import wrapping key has.
const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

/// A readable name for a few public-key algorithm and curve OIDs.
fn oid_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.10045.2.1" => "id-ecPublicKey",
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.2.156.10197.1.301" => "SM2",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.3.101.110" => "X25519",
        "1.3.101.112" => "Ed25519",
        _ => return None,
    })
}

/// "OID (name)" or just "OID".
fn describe_oid(oid: &str) -> String {
    match oid_name(oid) {
        Some(name) => format!("{oid} ({name})"),
        None => oid.to_string(),
    }
}

/// What a DER SubjectPublicKeyInfo that is not rsaEncryption holds: its algorithm OID and, for
/// an EC key, the named curve. `None` for rsaEncryption or for DER that is not an SPKI at all.
fn non_rsa_algorithm(der: &[u8]) -> Option<String> {
    use rsa::pkcs8::der::Decode as _;
    use rsa::pkcs8::der::asn1::ObjectIdentifier;
    let spki = rsa::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(der).ok()?;
    let oid = spki.algorithm.oid.to_string();
    if oid == RSA_ENCRYPTION_OID {
        return None;
    }
    let curve = spki
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    Some(match curve {
        Some(curve) if oid == "1.2.840.10045.2.1" => {
            format!(
                "{} on curve {}",
                describe_oid(&oid),
                describe_oid(&curve.to_string())
            )
        }
        _ => describe_oid(&oid),
    })
}

/// An RSA wrapping public key from KMS, checked for size.
pub struct WrappingPublicKey {
    key: RsaPublicKey,
}

impl WrappingPublicKey {
    /// Parses the DER SPKI from GetParametersForImport and checks its size.
    pub fn from_spki_der(der: &[u8], expected: WrappingKeySpec) -> Result<Self, WrapError> {
        // Name what was received: the rsa crate alone would report the OID it expected.
        if let Some(received) = non_rsa_algorithm(der) {
            return Err(WrapError::NotRsa { received });
        }
        let key = RsaPublicKey::from_public_key_der(der)
            .map_err(|e| WrapError::BadPublicKey(e.to_string()))?;
        let bits = key.n().bits();
        if bits != expected.bits() {
            return Err(WrapError::WrongKeySize {
                expected,
                found: bits,
            });
        }
        Ok(WrappingPublicKey { key })
    }

    /// Big-endian modulus.
    pub fn modulus(&self) -> Vec<u8> {
        self.key.n().to_bytes_be()
    }

    /// Big-endian public exponent.
    pub fn exponent(&self) -> Vec<u8> {
        self.key.e().to_bytes_be()
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bits()
    }
}

/// Wraps `material` on the host. Used only for `wrap = "host"`.
///
/// For RSA-AES the ephemeral AES-256 key comes from the operating system's CSPRNG into a
/// zeroizing buffer and is wiped before this returns.
pub fn host_wrap(
    material: &KeyMaterial,
    public_key: &WrappingPublicKey,
    algorithm: WrappingAlgorithm,
) -> Result<Vec<u8>, WrapError> {
    let failed = |detail: String| WrapError::HostWrap { algorithm, detail };
    let mut rng = rand_core::OsRng;
    let padding = || oaep_padding(algorithm.oaep_hash());
    if !algorithm.is_rsa_aes() {
        return public_key
            .key
            .encrypt(&mut rng, padding(), material.as_bytes())
            .map_err(|e| failed(e.to_string()));
    }
    let mut ephemeral = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::try_fill_bytes(&mut rng, ephemeral.as_mut())
        .map_err(|e| failed(format!("no random ephemeral key: {e}")))?;
    let aes_part = aes_kwp_wrap(&ephemeral, material.as_bytes()).map_err(failed)?;
    let mut blob = public_key
        .key
        .encrypt(&mut rng, padding(), ephemeral.as_ref())
        .map_err(|e| failed(e.to_string()))?;
    blob.extend_from_slice(&aes_part);
    Ok(blob)
}

/// The RFC 5649 key-encryption key, built from a reference so that no copy of the key bytes
/// is left on the stack; its AES key schedule is wiped on drop (the `aes` crate's `zeroize`).
fn kek(key: &[u8]) -> Result<aes_kw::KekAes256, String> {
    if key.len() != 32 {
        return Err(format!(
            "the ephemeral key has {} bytes, expected 32",
            key.len()
        ));
    }
    Ok(aes_kw::KekAes256::new(
        aes::cipher::generic_array::GenericArray::from_slice(key),
    ))
}

/// RFC 5649 AES key wrap with padding of `data` under the AES-256 key `key`.
fn aes_kwp_wrap(key: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, String> {
    kek(key)?
        .wrap_with_padding_vec(data)
        .map_err(|e| format!("AES key wrap with padding: {e}"))
}

/// RFC 5649 unwrap, into a zeroizing buffer.
fn aes_kwp_unwrap(key: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    kek(key)?
        .unwrap_with_padding_vec(wrapped)
        .map(Zeroizing::new)
        .map_err(|e| format!("RFC 5649 unwrap failed: {e}"))
}

/// AES-256-ECB of a zero block, first 3 bytes: the key check value.
pub fn software_kcv(key: &[u8]) -> Option<[u8; 3]> {
    use aes::cipher::{BlockEncrypt, KeyInit};
    let cipher = aes::Aes256::new_from_slice(key).ok()?;
    let mut block = aes::Block::default();
    cipher.encrypt_block(&mut block);
    Some([block[0], block[1], block[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 SubjectPublicKeyInfo (made with `openssl ecparam -name prime256v1 -genkey`).
    const P256_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200041048cf9bcea39e43d7dcce6c6557dde3a8b52a352d422fbed837f8dec2b98f24260c7e5fab0c1804946d59b1426d5074fd0a264483804927896dc8a571b9ac5d";

    #[test]
    fn an_ec_wrapping_key_names_what_was_received() {
        let der = hex::decode(P256_SPKI).unwrap();
        let err = WrappingPublicKey::from_spki_der(&der, WrappingKeySpec::Rsa4096)
            .err()
            .unwrap();
        assert!(matches!(err, WrapError::NotRsa { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the wrapping public key from KMS is not an RSA key: its SubjectPublicKeyInfo algorithm is 1.2.840.10045.2.1 (id-ecPublicKey) on curve 1.2.840.10045.3.1.7 (P-256), expected 1.2.840.113549.1.1.1 (rsaEncryption); KMS import wrapping keys are RSA_2048, RSA_3072 or RSA_4096, so check that AWS_ENDPOINT_URL_KMS (or the ceremony file's endpoint) names a real KMS"
        );
        // Not an SPKI at all is still the rsa crate's message.
        let err = WrappingPublicKey::from_spki_der(b"junk", WrappingKeySpec::Rsa4096)
            .err()
            .unwrap();
        assert!(matches!(err, WrapError::BadPublicKey(_)), "{err}");
    }

    #[test]
    fn algorithm_names_round_trip_and_refusals_explain() {
        for a in WrappingAlgorithm::ALL {
            assert_eq!(WrappingAlgorithm::from_kms_name(a.kms_name()), Ok(a));
        }
        assert_eq!(
            WrappingAlgorithm::from_kms_name("RSAES_PKCS1_V1_5").unwrap_err(),
            "RSAES_PKCS1_V1_5 is no longer accepted by AWS KMS; use RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1"
        );
        assert_eq!(
            WrappingAlgorithm::from_kms_name("rsaes_oaep_sha_256").unwrap_err(),
            "expected RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1, found \"rsaes_oaep_sha_256\""
        );
        for s in WrappingKeySpec::ALL {
            assert_eq!(WrappingKeySpec::from_kms_name(s.kms_name()), Some(s));
        }
        assert_eq!(WrappingKeySpec::from_kms_name("RSA_1024"), None);
    }

    #[test]
    fn blob_lengths_follow_the_kms_layout() {
        assert_eq!(WrappingAlgorithm::RsaesOaepSha256.blob_len(4096), 512);
        assert_eq!(WrappingAlgorithm::RsaesOaepSha1.blob_len(2048), 256);
        assert_eq!(
            WrappingAlgorithm::RsaAesKeyWrapSha256.blob_len(3072),
            384 + 40
        );
        assert_eq!(
            WrappingAlgorithm::RsaAesKeyWrapSha1.blob_len(2048),
            256 + 40
        );
    }

    #[test]
    fn kcv_matches_a_published_vector() {
        // `openssl enc -aes-256-ecb -K 000102..1f -nopad` of 16 zero bytes = f29000b6 2a49...
        let key: Vec<u8> = (0u8..32).collect();
        assert_eq!(software_kcv(&key), Some([0xf2, 0x90, 0x00]));
        assert_eq!(software_kcv(&key[..16]), None);
    }

    #[test]
    fn aes_kwp_matches_an_independent_known_answer() {
        // 32 bytes of 0x11 under the all-zero AES-256 key. The expected value was computed
        // independently by OpenSSL (`openssl enc -id-aes256-wrap-pad -K 00…00 -iv A65959A6`)
        // and by Python `cryptography` (`aes_key_wrap_with_padding`).
        let kek = [0u8; 32];
        let data = [0x11u8; 32];
        let wrapped = aes_kwp_wrap(&kek, &data).unwrap();
        assert_eq!(
            hex::encode(&wrapped),
            "88c8bb18f84df09ed29b2f84d73db864fd119c71663198a842e52789a15a095108ea117a3852a9d1"
        );
        assert_eq!(wrapped.len(), AES_KWP_BLOB_LEN);
        assert_eq!(
            aes_kwp_unwrap(&kek, &wrapped).unwrap().as_slice(),
            data.as_slice()
        );
        // One flipped bit fails the integrity check.
        let mut bad = wrapped.clone();
        bad[5] ^= 1;
        assert!(aes_kwp_unwrap(&kek, &bad).is_err());
    }
}
