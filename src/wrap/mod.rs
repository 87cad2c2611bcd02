//! Wrapping algorithms KMS accepts, where the wrap happens, and the checks that prove a wrap.
//!
//! The known-answer self-test wraps a throwaway AES key inside the token under a fixed RSA key
//! pair whose private half is compiled into byok (`kat-rsa-2048.pem`, a public test vector that
//! protects nothing), unwraps it here with exactly the padding the ceremony asks for, and compares
//! key check values. A token that silently pads differently fails it.
//!
//! This module never returns key material: the host wrap consumes the material it is given and
//! the self-test's throwaway key is wiped before returning.

use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

use crate::hsm::{AesKeyKind, Hsm, HsmError, KeyRef};
use crate::secure::KeyMaterial;

/// The wrapping algorithms of KMS `GetParametersForImport` that byok implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrappingAlgorithm {
    RsaesOaepSha256,
    RsaesOaepSha1,
}

/// The digest used for OAEP (and its MGF1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OaepHash {
    Sha1,
    Sha256,
}

impl WrappingAlgorithm {
    /// Every algorithm byok implements, strongest first.
    pub const ALL: [WrappingAlgorithm; 2] = [
        WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaesOaepSha1,
    ];

    /// The KMS API name.
    pub fn kms_name(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
        }
    }

    /// Parses a KMS name; `Err` explains why a known-but-unsupported name is refused.
    pub fn from_kms_name(name: &str) -> Result<Self, String> {
        match name {
            "RSAES_OAEP_SHA_256" => Ok(WrappingAlgorithm::RsaesOaepSha256),
            "RSAES_OAEP_SHA_1" => Ok(WrappingAlgorithm::RsaesOaepSha1),
            "RSA_AES_KEY_WRAP_SHA_256" | "RSA_AES_KEY_WRAP_SHA_1" => Err(format!(
                "{name} is not implemented in this version of byok; use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
            )),
            "RSAES_PKCS1_V1_5" => Err(
                "RSAES_PKCS1_V1_5 is no longer accepted by AWS KMS; use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
                    .to_string(),
            ),
            "SM2PKE" => Err(
                "SM2PKE (China regions) is not supported by byok; use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
                    .to_string(),
            ),
            other => Err(format!(
                "expected RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1, found {other:?}"
            )),
        }
    }

    /// OAEP digest of this algorithm.
    pub fn oaep_hash(self) -> OaepHash {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 => OaepHash::Sha256,
            WrappingAlgorithm::RsaesOaepSha1 => OaepHash::Sha1,
        }
    }

    /// The other algorithms, for "use one of these instead" messages.
    pub fn alternatives(self) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|a| **a != self)
            .map(|a| a.kms_name())
            .collect()
    }
}

impl std::fmt::Display for WrappingAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kms_name())
    }
}

impl OaepHash {
    fn padding(self) -> Oaep {
        match self {
            OaepHash::Sha1 => Oaep::new::<sha1::Sha1>(),
            OaepHash::Sha256 => Oaep::new::<sha2::Sha256>(),
        }
    }

    /// Name for messages and records: `SHA-1` or `SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            OaepHash::Sha1 => "SHA-1",
            OaepHash::Sha256 => "SHA-256",
        }
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
        match name {
            "RSA_2048" => Some(WrappingKeySpec::Rsa2048),
            "RSA_3072" => Some(WrappingKeySpec::Rsa3072),
            "RSA_4096" => Some(WrappingKeySpec::Rsa4096),
            _ => None,
        }
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

/// Why a wrap or its proof failed.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error(
        "the token cannot do {algorithm} inside the HSM: {reason}; alternatives: {}, or wrap = \"host\" in the ceremony file",
        alternatives.join(", ")
    )]
    Unsupported {
        algorithm: WrappingAlgorithm,
        reason: String,
        alternatives: Vec<&'static str>,
    },
    #[error(
        "the token's {algorithm} wrap does not unwrap with {hash} OAEP padding ({detail}): the token does not do what it claims; do not use it for this algorithm"
    )]
    Mismatch {
        algorithm: WrappingAlgorithm,
        hash: &'static str,
        detail: String,
    },
    #[error("the wrapping public key is not a usable RSA public key: {0}")]
    BadPublicKey(String),
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

/// An RSA wrapping public key from KMS, checked for size.
pub struct WrappingPublicKey {
    key: RsaPublicKey,
}

impl WrappingPublicKey {
    /// Parses the DER SPKI from GetParametersForImport and checks its size.
    pub fn from_spki_der(der: &[u8], expected: WrappingKeySpec) -> Result<Self, WrapError> {
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

/// Wraps `material` on the host with RSA-OAEP. Used only for `wrap = "host"`.
pub fn host_wrap(
    material: &KeyMaterial,
    public_key: &WrappingPublicKey,
    algorithm: WrappingAlgorithm,
) -> Result<Vec<u8>, WrapError> {
    let mut rng = rand_core::OsRng;
    public_key
        .key
        .encrypt(
            &mut rng,
            algorithm.oaep_hash().padding(),
            material.as_bytes(),
        )
        .map_err(|e| WrapError::HostWrap {
            algorithm,
            detail: e.to_string(),
        })
}

/// The compiled-in known-answer key pair (a public test vector).
fn kat_private_key() -> Result<RsaPrivateKey, WrapError> {
    RsaPrivateKey::from_pkcs8_pem(include_str!("kat-rsa-2048.pem"))
        .map_err(|e| WrapError::BadPublicKey(format!("built-in known-answer key: {e}")))
}

/// AES-256-ECB of a zero block, first 3 bytes: the key check value.
pub fn software_kcv(key: &[u8]) -> Option<[u8; 3]> {
    use aes::cipher::{BlockEncrypt, KeyInit};
    let cipher = aes::Aes256::new_from_slice(key).ok()?;
    let mut block = aes::Block::default();
    cipher.encrypt_block(&mut block);
    Some([block[0], block[1], block[2]])
}

/// What the known-answer test proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTest {
    pub algorithm: WrappingAlgorithm,
    pub location: WrapLocation,
    /// The mechanism used inside the token (for `hsm`), e.g. `CKM_RSA_PKCS_OAEP`.
    pub mechanism: &'static str,
    pub kat_key_bits: usize,
}

/// Proves that `algorithm` works as KMS expects at `location` on this token, or says why not.
///
/// Every object the test creates is destroyed before it returns, whatever happens.
pub fn self_test(
    hsm: &dyn Hsm,
    algorithm: WrappingAlgorithm,
    location: WrapLocation,
) -> Result<SelfTest, WrapError> {
    let private = kat_private_key()?;
    let public = WrappingPublicKey {
        key: private.to_public_key(),
    };
    let mut created: Vec<KeyRef> = Vec::new();
    let result = run_self_test(hsm, algorithm, location, &private, &public, &mut created);
    for key in created.into_iter().rev() {
        // Best effort: the session objects also vanish when the session closes.
        let _ = hsm.destroy(key);
    }
    result
}

fn run_self_test(
    hsm: &dyn Hsm,
    algorithm: WrappingAlgorithm,
    location: WrapLocation,
    private: &RsaPrivateKey,
    public: &WrappingPublicKey,
    created: &mut Vec<KeyRef>,
) -> Result<SelfTest, WrapError> {
    let hash = algorithm.oaep_hash();
    let unsupported = |reason: String| WrapError::Unsupported {
        algorithm,
        reason,
        alternatives: algorithm.alternatives(),
    };
    let blob = match location {
        WrapLocation::Hsm => {
            hsm.oaep_wrap_support().map_err(unsupported)?;
            let wrapping = hsm.import_rsa_public_key(&public.modulus(), &public.exponent())?;
            created.push(wrapping);
            let key = hsm.generate_aes256(AesKeyKind::Sensitive)?;
            created.push(key);
            let kcv = hsm.key_check_value(key)?;
            let blob =
                hsm.wrap_rsa_oaep(wrapping, key, hash)
                    .map_err(|e| match e.pkcs11_call() {
                        Some(call) => unsupported(format!("{call} with OAEP {}", hash.name())),
                        None => WrapError::Hsm(e),
                    })?;
            (blob, kcv)
        }
        WrapLocation::Host => {
            let key = hsm.generate_aes256(AesKeyKind::Extractable)?;
            created.push(key);
            let kcv = hsm.key_check_value(key)?;
            let material = hsm.extract_key_value(key)?;
            if software_kcv(material.as_bytes()) != Some(kcv) {
                return Err(WrapError::Mismatch {
                    algorithm,
                    hash: hash.name(),
                    detail: "the value the token returned does not match its own key check value"
                        .into(),
                });
            }
            (host_wrap(&material, public, algorithm)?, kcv)
        }
    };
    let (blob, kcv) = blob;
    let unwrapped = Zeroizing::new(private.decrypt(hash.padding(), &blob).map_err(|e| {
        WrapError::Mismatch {
            algorithm,
            hash: hash.name(),
            detail: format!("unwrap failed: {e}"),
        }
    })?);
    if unwrapped.len() != 32 {
        return Err(WrapError::Mismatch {
            algorithm,
            hash: hash.name(),
            detail: format!("unwrapped {} bytes, expected 32", unwrapped.len()),
        });
    }
    if software_kcv(&unwrapped) != Some(kcv) {
        return Err(WrapError::Mismatch {
            algorithm,
            hash: hash.name(),
            detail: "the unwrapped key's check value differs from the HSM's".into(),
        });
    }
    Ok(SelfTest {
        algorithm,
        location,
        mechanism: match location {
            WrapLocation::Hsm => "CKM_RSA_PKCS_OAEP",
            WrapLocation::Host => "host RSA-OAEP (rsa crate)",
        },
        kat_key_bits: public.bits(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_and_refusals_explain() {
        for a in WrappingAlgorithm::ALL {
            assert_eq!(WrappingAlgorithm::from_kms_name(a.kms_name()), Ok(a));
        }
        assert_eq!(
            WrappingAlgorithm::from_kms_name("RSAES_PKCS1_V1_5").unwrap_err(),
            "RSAES_PKCS1_V1_5 is no longer accepted by AWS KMS; use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
        );
        assert_eq!(
            WrappingAlgorithm::from_kms_name("rsaes_oaep_sha_256").unwrap_err(),
            "expected RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1, found \"rsaes_oaep_sha_256\""
        );
    }

    #[test]
    fn kcv_matches_a_published_vector() {
        // FIPS-197 C.3: AES-256 with key 00..1f encrypting 00112233..ff gives 8ea2b7ca...;
        // for the zero block we check against OpenSSL's output for the same key:
        // `openssl enc -aes-256-ecb -K 000102..1f -nopad` of 16 zero bytes = f29000b6 2a49...
        let key: Vec<u8> = (0u8..32).collect();
        assert_eq!(software_kcv(&key), Some([0xf2, 0x90, 0x00]));
        assert_eq!(software_kcv(&key[..16]), None);
    }

    #[test]
    fn host_wrap_round_trips_with_the_kat_key_and_checks_size() {
        let private = kat_private_key().unwrap();
        let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&private.to_public_key()).unwrap();
        let public =
            WrappingPublicKey::from_spki_der(der.as_bytes(), WrappingKeySpec::Rsa2048).unwrap();
        let material = KeyMaterial::from_slice(&[7u8; 32]).unwrap();
        for alg in WrappingAlgorithm::ALL {
            let blob = host_wrap(&material, &public, alg).unwrap();
            assert_eq!(blob.len(), 256);
            let back = private.decrypt(alg.oaep_hash().padding(), &blob).unwrap();
            assert_eq!(back, vec![7u8; 32]);
        }
        let err = WrappingPublicKey::from_spki_der(der.as_bytes(), WrappingKeySpec::Rsa4096)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "the wrapping public key is RSA-2048, but the ceremony asked KMS for RSA_4096"
        );
    }
}
