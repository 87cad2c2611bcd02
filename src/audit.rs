//! The audit key: the HSM key pair that signs every transcript record.
//!
//! It lives outside [`crate::hsm`] (which knows nothing of transcripts) and outside
//! [`crate::transcript`] (which knows nothing of HSMs): it adapts one to the other.

use sha2::Digest as _;

use crate::hsm::{Hsm, HsmError, KeyRef};
use crate::transcript::{RecordSigner, SignError};

/// The audit key on the HSM, signing transcript records.
pub struct HsmSigner<'a> {
    hsm: &'a dyn Hsm,
    key: KeyRef,
    spki: Vec<u8>,
}

impl<'a> HsmSigner<'a> {
    /// Finds the key pair labelled `label`, checks its fingerprint against `pinned_sha256`, and
    /// proves that the private key matches the public key by signing and verifying once.
    pub fn open(hsm: &'a dyn Hsm, label: &str, pinned_sha256: &str) -> Result<Self, HsmError> {
        let (key, spki) = hsm.find_ec_key_pair(label)?;
        let found = crate::ecdsa::fingerprint(&spki);
        if !found.eq_ignore_ascii_case(pinned_sha256) {
            return Err(HsmError::SignerSelfCheck {
                label: label.to_string(),
                detail: format!(
                    "its public key SHA-256 is {found}, but the ceremony file pins {pinned_sha256}; use the token that holds the pinned key or correct the pin"
                ),
            });
        }
        let signer = HsmSigner { hsm, key, spki };
        let probe = b"byok audit key self-check";
        let digest: [u8; 32] = sha2::Sha256::digest(probe).into();
        let sig = hsm.sign_digest(key, &digest)?;
        let verifier = crate::ecdsa::Verifier::from_spki(&signer.spki)?;
        if !verifier.verify(probe, &sig) {
            return Err(HsmError::SignerSelfCheck {
                label: label.to_string(),
                detail: "the private key's signature does not verify under the public key with the same label".into(),
            });
        }
        Ok(signer)
    }

    /// SHA-256 fingerprint of the public key.
    pub fn fingerprint(&self) -> String {
        crate::ecdsa::fingerprint(&self.spki)
    }
}

impl RecordSigner for HsmSigner<'_> {
    fn public_key_spki_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let digest: [u8; 32] = sha2::Sha256::digest(message).into();
        Ok(self.hsm.sign_digest(self.key, &digest)?)
    }
}
