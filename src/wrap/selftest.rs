//! The known-answer test that proves a wrap before it is used, and `byok probe`.
//!
//! The test wraps a throwaway AES key under a fixed RSA key pair of the ceremony's wrapping key
//! size whose private half is compiled into byok (`kat-rsa-2048.pem`, `kat-rsa-3072.pem`,
//! `kat-rsa-4096.pem`: public test vectors that protect nothing; the 3072- and 4096-bit ones were
//! made once with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:N` (OpenSSL 3.0.19)
//! for issue 11, so that a token that cannot wrap under the size KMS will hand out fails here,
//! before any approval), unwraps it here
//! with exactly the parameters KMS will use (OAEP hash and MGF1, and for RSA-AES the RFC 5649
//! unwrap under the recovered ephemeral key), and compares key check values. A token that pads
//! differently from what it was asked (SoftHSM 2.7's `CKM_RSA_AES_KEY_WRAP` silently uses SHA-1)
//! fails it with a mismatch.
//!
//! Every object a test creates is destroyed, and every unwrapped value wiped, before it returns.

use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use zeroize::Zeroizing;

use super::{
    HsmWrapPlan, WrapError, WrapLocation, WrappingAlgorithm, WrappingKeySpec, WrappingPublicKey,
    aes_kwp_unwrap, host_wrap, software_kcv, wrap_in_hsm,
};
use crate::hsm::{AesKeyKind, Hsm, KeyRef};

/// What the known-answer test proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTest {
    pub algorithm: WrappingAlgorithm,
    pub location: WrapLocation,
    /// The plan proven inside the token (`None` for a host wrap).
    pub plan: Option<HsmWrapPlan>,
    /// The mechanisms used, e.g. `CKM_RSA_PKCS_OAEP`.
    pub mechanism: String,
    pub kat_key_bits: usize,
    /// Plans the token offered that were tried first and failed, with the reason (a PKCS#11
    /// error, or "mismatch: …" for output that did not unwrap).
    pub rejected: Vec<String>,
}

/// The compiled-in known-answer key pair of size `spec` (a public test vector).
fn kat_private_key(spec: WrappingKeySpec) -> Result<RsaPrivateKey, WrapError> {
    let pem = match spec {
        WrappingKeySpec::Rsa2048 => include_str!("kat-rsa-2048.pem"),
        WrappingKeySpec::Rsa3072 => include_str!("kat-rsa-3072.pem"),
        WrappingKeySpec::Rsa4096 => include_str!("kat-rsa-4096.pem"),
    };
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .map_err(|e| WrapError::BadPublicKey(format!("built-in {spec} known-answer key: {e}")))?;
    let bits = rsa::traits::PublicKeyParts::n(&key).bits();
    if bits != spec.bits() {
        return Err(WrapError::BadPublicKey(format!(
            "built-in {spec} known-answer key has {bits} bits"
        )));
    }
    Ok(key)
}

/// Proves that `algorithm` works as KMS expects at `location` on this token, under an RSA key
/// of size `spec` (the ceremony's wrapping key spec), or says why not.
///
/// Inside the HSM every plan the token offers is tried in order of preference
/// ([`HsmWrapPlan::candidates`]); the first that passes is returned, so the ceremony's real wrap
/// uses exactly what was proven. When none passes, a mismatch (a token that does not do what it
/// claims) wins over a plain refusal.
///
/// When the token cannot do it, the error's alternatives are the algorithms whose known-answer
/// test passed inside this token under the same key size (proven, not assumed), so nobody is
/// sent to an algorithm the token cannot do either.
pub fn self_test(
    hsm: &dyn Hsm,
    algorithm: WrappingAlgorithm,
    location: WrapLocation,
    spec: WrappingKeySpec,
) -> Result<SelfTest, WrapError> {
    match prove(hsm, algorithm, location, spec) {
        Err(WrapError::Unsupported {
            algorithm, reason, ..
        }) => Err(WrapError::Unsupported {
            algorithm,
            reason,
            alternatives: proven_alternatives(hsm, algorithm, spec),
        }),
        other => other,
    }
}

/// The other algorithms whose known-answer test passes inside `hsm` under a `spec` key.
fn proven_alternatives(
    hsm: &dyn Hsm,
    algorithm: WrappingAlgorithm,
    spec: WrappingKeySpec,
) -> Vec<&'static str> {
    WrappingAlgorithm::ALL
        .into_iter()
        .filter(|a| *a != algorithm)
        .filter(|a| prove(hsm, *a, WrapLocation::Hsm, spec).is_ok())
        .map(WrappingAlgorithm::kms_name)
        .collect()
}

/// [`self_test`] without looking for alternatives (an `Unsupported` error has none).
fn prove(
    hsm: &dyn Hsm,
    algorithm: WrappingAlgorithm,
    location: WrapLocation,
    spec: WrappingKeySpec,
) -> Result<SelfTest, WrapError> {
    let private = kat_private_key(spec)?;
    let public = WrappingPublicKey {
        key: private.to_public_key(),
    };
    let unsupported = |reason: String| WrapError::Unsupported {
        algorithm,
        reason,
        alternatives: Vec::new(),
    };
    let plans = match location {
        WrapLocation::Host => vec![None],
        WrapLocation::Hsm => HsmWrapPlan::candidates(hsm, algorithm)
            .map_err(unsupported)?
            .into_iter()
            .map(Some)
            .collect(),
    };
    let mut rejected = Vec::new();
    let mut mismatch = None;
    let mut refusal = None;
    for plan in plans {
        let mut created: Vec<KeyRef> = Vec::new();
        let result = one_test(hsm, algorithm, plan, &private, &public, &mut created);
        for key in created.into_iter().rev() {
            // Best effort: session objects also vanish when the session closes.
            let _ = hsm.destroy(key);
        }
        match result {
            Ok(()) => {
                return Ok(SelfTest {
                    algorithm,
                    location,
                    plan,
                    mechanism: mechanism_name(plan),
                    kat_key_bits: public.bits(),
                    rejected,
                });
            }
            Err(e @ WrapError::Mismatch { .. }) => {
                if let WrapError::Mismatch {
                    mechanism, detail, ..
                } = &e
                {
                    rejected.push(format!("{mechanism}: mismatch: {detail}"));
                }
                mismatch.get_or_insert(e);
            }
            Err(WrapError::Unsupported { reason, .. }) => {
                rejected.push(format!("{}: {reason}", mechanism_name(plan)));
                refusal.get_or_insert(reason);
            }
            Err(other) => return Err(other),
        }
    }
    match (mismatch, refusal) {
        (Some(m), _) => Err(m),
        (None, Some(reason)) if rejected.len() == 1 => Err(unsupported(reason)),
        _ => Err(unsupported(rejected.join("; "))),
    }
}

fn mechanism_name(plan: Option<HsmWrapPlan>) -> String {
    match plan {
        Some(p) => p.mechanism(),
        None => "host (rsa and aes-kw crates)".into(),
    }
}

/// One known-answer test of one plan (or of the host wrap when `plan` is `None`).
fn one_test(
    hsm: &dyn Hsm,
    algorithm: WrappingAlgorithm,
    plan: Option<HsmWrapPlan>,
    private: &RsaPrivateKey,
    public: &WrappingPublicKey,
    created: &mut Vec<KeyRef>,
) -> Result<(), WrapError> {
    let mechanism = mechanism_name(plan);
    let mismatch = |detail: String| WrapError::Mismatch {
        algorithm,
        mechanism: mechanism.clone(),
        detail,
    };
    let (blob, kcv) = match plan {
        Some(plan) => {
            let wrapping = hsm.import_rsa_public_key(&public.modulus(), &public.exponent())?;
            created.push(wrapping);
            let key = hsm.generate_aes256(AesKeyKind::Sensitive)?;
            created.push(key);
            let kcv = hsm.key_check_value(key)?;
            let blob =
                wrap_in_hsm(hsm, plan, wrapping, key).map_err(|e| match e.pkcs11_call() {
                    Some(call) => WrapError::Unsupported {
                        algorithm,
                        reason: match plan {
                            HsmWrapPlan::Oaep { hash } => {
                                format!("{call} with OAEP {}", hash.name())
                            }
                            _ => format!(
                                "{call} with OAEP {} in {}",
                                plan.hash().name(),
                                plan.mechanism()
                            ),
                        },
                        alternatives: Vec::new(),
                    },
                    None => WrapError::Hsm(e),
                })?;
            (blob, kcv)
        }
        None => {
            let key = hsm.generate_aes256(AesKeyKind::Extractable)?;
            created.push(key);
            let kcv = hsm.key_check_value(key)?;
            let material = hsm.extract_key_value(key)?;
            if software_kcv(material.as_bytes()) != Some(kcv) {
                return Err(mismatch(
                    "the value the token returned does not match its own key check value".into(),
                ));
            }
            (host_wrap(&material, public, algorithm)?, kcv)
        }
    };
    let unwrapped = unwrap_known_answer(private, algorithm, &blob).map_err(mismatch)?;
    if unwrapped.len() != 32 {
        return Err(mismatch(format!(
            "unwrapped {} bytes, expected 32",
            unwrapped.len()
        )));
    }
    if software_kcv(&unwrapped) != Some(kcv) {
        return Err(mismatch(
            "the unwrapped key's check value differs from the HSM's".into(),
        ));
    }
    Ok(())
}

/// Unwraps a known-answer blob the way KMS would.
fn unwrap_known_answer(
    private: &RsaPrivateKey,
    algorithm: WrappingAlgorithm,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let k = rsa::traits::PublicKeyParts::size(private);
    let hash = algorithm.oaep_hash();
    let expected = algorithm.blob_len(k * 8);
    if blob.len() != expected {
        return Err(format!(
            "the blob has {} bytes, expected {expected}",
            blob.len()
        ));
    }
    let (rsa_part, aes_part) = blob.split_at(k);
    let first = Zeroizing::new(
        private
            .decrypt(super::oaep_padding(hash), rsa_part)
            .map_err(|e| {
                format!(
                    "the RSA part does not unwrap with OAEP {} and MGF1 {}: {e}",
                    hash.name(),
                    hash.name()
                )
            })?,
    );
    if !algorithm.is_rsa_aes() {
        return Ok(first);
    }
    aes_kwp_unwrap(&first, aes_part)
        .map_err(|e| format!("the AES part under the recovered ephemeral key: {e}"))
}

/// One line of `byok probe`: one algorithm inside the HSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    pub algorithm: WrappingAlgorithm,
    pub outcome: ProbeOutcome,
}

/// What the probe found for one algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The known-answer test passed with `mechanism`; `rejected` lists plans tried first.
    Yes {
        mechanism: String,
        rejected: Vec<String>,
    },
    /// The token cannot do it: why.
    No { reason: String },
    /// The token's output does not unwrap with the requested parameters.
    Mismatch { mechanism: String, detail: String },
    /// Something else failed (the reason).
    Error { reason: String },
}

/// Runs the known-answer test of every algorithm inside the HSM under a `spec` key.
pub fn probe(hsm: &dyn Hsm, spec: WrappingKeySpec) -> Vec<ProbeLine> {
    WrappingAlgorithm::ALL
        .into_iter()
        .map(|algorithm| ProbeLine {
            algorithm,
            outcome: match prove(hsm, algorithm, WrapLocation::Hsm, spec) {
                Ok(t) => ProbeOutcome::Yes {
                    mechanism: t.mechanism,
                    rejected: t.rejected,
                },
                Err(WrapError::Unsupported { reason, .. }) => ProbeOutcome::No { reason },
                Err(WrapError::Mismatch {
                    mechanism, detail, ..
                }) => ProbeOutcome::Mismatch { mechanism, detail },
                Err(e) => ProbeOutcome::Error {
                    reason: e.to_string(),
                },
            },
        })
        .collect()
}

impl std::fmt::Display for ProbeLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.algorithm.kms_name();
        match &self.outcome {
            ProbeOutcome::Yes {
                mechanism,
                rejected,
            } => {
                write!(
                    f,
                    "{name:<24} inside HSM: yes ({mechanism}, known-answer test passed)"
                )?;
                for r in rejected {
                    write!(f, "\n{:<24}   tried first: {r}", "")?;
                }
                Ok(())
            }
            ProbeOutcome::No { reason } => write!(f, "{name:<24} inside HSM: no ({reason})"),
            ProbeOutcome::Mismatch { mechanism, detail } => write!(
                f,
                "{name:<24} inside HSM: MISMATCH ({mechanism} output does not unwrap as KMS expects: {detail}; do not use this token for {name})"
            ),
            ProbeOutcome::Error { reason } => write!(f, "{name:<24} inside HSM: error ({reason})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::KeyMaterial;

    fn kat_public() -> (RsaPrivateKey, WrappingPublicKey) {
        kat_public_of(WrappingKeySpec::Rsa2048)
    }

    fn kat_public_of(spec: WrappingKeySpec) -> (RsaPrivateKey, WrappingPublicKey) {
        let private = kat_private_key(spec).unwrap();
        let public = WrappingPublicKey {
            key: private.to_public_key(),
        };
        (private, public)
    }

    #[test]
    fn each_wrapping_key_spec_has_a_known_answer_key_of_its_size() {
        let mut moduli = Vec::new();
        for spec in WrappingKeySpec::ALL {
            let (_, public) = kat_public_of(spec);
            assert_eq!(public.bits(), spec.bits(), "{spec}");
            moduli.push(public.modulus());
        }
        moduli.dedup();
        assert_eq!(moduli.len(), 3, "three distinct key pairs");
    }

    #[test]
    fn host_wrap_of_every_algorithm_unwraps_with_the_kat_key_of_every_size() {
        let material = KeyMaterial::from_slice(&[7u8; 32]).unwrap();
        for spec in WrappingKeySpec::ALL {
            let (private, public) = kat_public_of(spec);
            for alg in WrappingAlgorithm::ALL {
                let blob = host_wrap(&material, &public, alg).unwrap();
                assert_eq!(blob.len(), alg.blob_len(spec.bits()), "{alg} {spec}");
                let back = unwrap_known_answer(&private, alg, &blob).unwrap();
                assert_eq!(back.as_slice(), [7u8; 32].as_slice(), "{alg} {spec}");
            }
        }
    }

    #[test]
    fn the_wrong_hash_is_a_mismatch_naming_the_part() {
        let (private, public) = kat_public();
        let material = KeyMaterial::from_slice(&[9u8; 32]).unwrap();
        let blob = host_wrap(&material, &public, WrappingAlgorithm::RsaesOaepSha1).unwrap();
        let err = unwrap_known_answer(&private, WrappingAlgorithm::RsaesOaepSha256, &blob)
            .err()
            .unwrap();
        assert_eq!(
            err,
            "the RSA part does not unwrap with OAEP SHA-256 and MGF1 SHA-256: decryption error"
        );
        let blob = host_wrap(&material, &public, WrappingAlgorithm::RsaAesKeyWrapSha1).unwrap();
        let err = unwrap_known_answer(&private, WrappingAlgorithm::RsaAesKeyWrapSha256, &blob)
            .err()
            .unwrap();
        assert!(
            err.starts_with("the RSA part does not unwrap with OAEP SHA-256"),
            "{err}"
        );
        // An OAEP blob offered as RSA-AES has the wrong length.
        let blob = host_wrap(&material, &public, WrappingAlgorithm::RsaesOaepSha256).unwrap();
        let err = unwrap_known_answer(&private, WrappingAlgorithm::RsaAesKeyWrapSha256, &blob)
            .err()
            .unwrap();
        assert_eq!(err, "the blob has 256 bytes, expected 296");
    }

    #[test]
    fn a_corrupted_aes_part_is_a_mismatch() {
        let (private, public) = kat_public();
        let material = KeyMaterial::from_slice(&[3u8; 32]).unwrap();
        let mut blob =
            host_wrap(&material, &public, WrappingAlgorithm::RsaAesKeyWrapSha256).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 0x80;
        let err = unwrap_known_answer(&private, WrappingAlgorithm::RsaAesKeyWrapSha256, &blob)
            .err()
            .unwrap();
        assert!(
            err.starts_with(
                "the AES part under the recovered ephemeral key: RFC 5649 unwrap failed"
            ),
            "{err}"
        );
    }
}
