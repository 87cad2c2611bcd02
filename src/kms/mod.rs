//! KMS as byok needs it: a narrow, blocking trait, and its `aws-sdk-kms` implementation.
//!
//! Async lives only in [`aws`]: the ceremony is a sequence of steps and calls these methods
//! one at a time. The import token is opaque, never printed and never written; only its
//! SHA-256 reaches the transcript.

pub mod aws;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::wrap::{WrappingAlgorithm, WrappingKeySpec};

pub use aws::AwsKms;

/// DescribeKey, reduced to what a ceremony checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub arn: String,
    pub key_id: String,
    pub origin: String,
    pub key_spec: String,
    pub key_usage: String,
    pub state: String,
    pub enabled: bool,
    pub expiration_model: Option<String>,
    pub valid_to: Option<OffsetDateTime>,
    pub current_key_material_id: Option<String>,
}

/// The import token from GetParametersForImport. Opaque: no `Debug`, no `Display`.
pub struct ImportToken(Vec<u8>);

impl ImportToken {
    /// Wraps raw token bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        ImportToken(bytes)
    }

    /// The bytes, for ImportKeyMaterial only.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Hex SHA-256, the only form in which the token is recorded.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.0))
    }
}

/// GetParametersForImport's answer.
pub struct ImportParameters {
    /// The key ARN the response names.
    pub key_id: String,
    pub public_key_der: Vec<u8>,
    pub import_token: ImportToken,
    pub parameters_valid_to: OffsetDateTime,
}

/// The expiration of imported material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    DoesNotExpire,
    Expires { valid_to: OffsetDateTime },
}

impl Expiration {
    /// The KMS `ExpirationModel` name.
    pub fn model(&self) -> &'static str {
        match self {
            Expiration::DoesNotExpire => "KEY_MATERIAL_DOES_NOT_EXPIRE",
            Expiration::Expires { .. } => "KEY_MATERIAL_EXPIRES",
        }
    }

    /// `ValidTo`, when the material expires.
    pub fn valid_to(&self) -> Option<OffsetDateTime> {
        match self {
            Expiration::DoesNotExpire => None,
            Expiration::Expires { valid_to } => Some(*valid_to),
        }
    }
}

/// Which kind of failure, for exit codes and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsFailure {
    /// No answer: connection refused, DNS, TLS, timeout.
    Unreachable,
    /// KMS answered with an error code.
    Service,
    /// The answer lacked something byok needs.
    BadResponse,
}

/// A failed KMS call.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "KMS {operation} failed: {}{message}{}",
    code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(),
    self.next_step().map(|n| format!("; {n}")).unwrap_or_default()
)]
pub struct KmsError {
    pub operation: &'static str,
    pub failure: KmsFailure,
    /// The KMS error code, e.g. `NotFoundException`.
    pub code: Option<String>,
    pub message: String,
}

impl KmsError {
    /// What the operator can do about it, when byok knows.
    pub fn next_step(&self) -> Option<&'static str> {
        match (self.failure, self.code.as_deref()) {
            (KmsFailure::Unreachable, _) => Some(
                "check the network, AWS_ENDPOINT_URL_KMS (unset for real AWS) and kms.region, then run the ceremony again",
            ),
            (_, Some("NotFoundException")) => {
                Some("check kms.key and kms.region in the ceremony file")
            }
            (_, Some("AccessDeniedException" | "UnrecognizedClientException"))
            | (_, Some("InvalidSignatureException" | "ExpiredTokenException")) => {
                Some("check the AWS credentials and the key policy")
            }
            (_, Some("ExpiredImportTokenException")) => {
                Some("the import parameters expired: run the ceremony again")
            }
            _ => None,
        }
    }

    /// Is this KMS's `code`?
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// The KMS operations a ceremony needs.
pub trait Kms {
    /// DescribeKey; `key` is an ARN, key id or `alias/…`.
    fn describe_key(&self, key: &str) -> Result<KeyInfo, KmsError>;
    /// GetParametersForImport.
    fn get_parameters_for_import(
        &self,
        key_arn: &str,
        algorithm: WrappingAlgorithm,
        spec: WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError>;
    /// ImportKeyMaterial with an explicit expiration model; returns the KeyMaterialId if KMS
    /// reports one.
    fn import_key_material(
        &self,
        key_arn: &str,
        token: &ImportToken,
        encrypted_key_material: &[u8],
        expiration: Expiration,
    ) -> Result<Option<String>, KmsError>;
    /// Encrypt with SYMMETRIC_DEFAULT.
    fn encrypt(&self, key_arn: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError>;
    /// Decrypt; returns the plaintext and the key ARN KMS used.
    fn decrypt(&self, key_arn: &str, ciphertext: &[u8]) -> Result<(Vec<u8>, String), KmsError>;
}
