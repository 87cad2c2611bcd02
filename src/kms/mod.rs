//! KMS as byok needs it: a narrow, blocking trait, and its `aws-sdk-kms` implementation.
//!
//! Async lives only in [`aws`]: the engine calls these blocking methods from a few worker
//! threads at once (one target each), through [`pace::Paced`], which keeps every operation
//! under KMS's request quotas and backs off on throttling. The import token is opaque, never printed and never written; only its
//! SHA-256 reaches the transcript.

pub mod aws;
pub mod endpoint;
pub mod fleet;
pub mod pace;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::wrap::{WrappingAlgorithm, WrappingKeySpec};

pub use aws::AwsKms;
pub use fleet::{FleetKms, PacedFleet};
pub use pace::{Operation, Paced, Rates};

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
    /// `MultiRegion`, when KMS reports it.
    pub multi_region: Option<bool>,
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
    /// No connection: the request never left (connection refused, DNS, TLS).
    Unreachable,
    /// The request may have been sent but no answer came: timeout, connection reset, a
    /// response that could not be read. KMS may or may not have done it.
    NoAnswer,
    /// KMS answered with an error code.
    Service,
    /// The answer lacked something byok needs.
    BadResponse,
}

/// A failed KMS call. Its message is KMS's error code and message (or the transport's error
/// chain in words), never a Rust `Debug` dump.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{} {operation} failed: {}{}{}",
    if *operation == "GetCallerIdentity" { "STS" } else { "KMS" },
    // What the endpoint answered is printed escaped: it must not drive the terminal.
    code.as_deref().map(|c| format!("{}: ", crate::text::escape(c))).unwrap_or_default(),
    crate::text::escape(message),
    self.next_step().map(|n| format!("; {n}")).unwrap_or_default()
)]
pub struct KmsError {
    pub operation: &'static str,
    pub failure: KmsFailure,
    /// The KMS error code, e.g. `NotFoundException`.
    pub code: Option<String>,
    /// The HTTP status of KMS's answer, when there was one.
    pub status: Option<u16>,
    pub message: String,
}

impl KmsError {
    /// What the operator can do about it, when byok knows.
    pub fn next_step(&self) -> Option<&'static str> {
        match (self.failure, self.code.as_deref()) {
            (KmsFailure::Unreachable, _) => Some(
                "check the network, [kms] endpoint in the ceremony file (absent for real AWS) and kms.region, then run the ceremony again (with --resume)",
            ),
            (KmsFailure::NoAnswer, _) => Some(
                "KMS did not answer in time; byok never resends a write (a lost ImportKeyMaterial answer is asked of KMS and recorded); check the key in KMS, then run again with --resume",
            ),
            (_, Some("NotFoundException")) => {
                Some("check the target key and kms.region in the ceremony file")
            }
            (_, Some("AccessDeniedException" | "UnrecognizedClientException"))
            | (_, Some("InvalidSignatureException" | "ExpiredTokenException")) => {
                Some("check the AWS credentials and the key policy")
            }
            (_, Some("ExpiredImportTokenException")) => {
                Some("the import parameters expired: run the ceremony again with --resume")
            }
            (_, Some("ThrottlingException")) => Some(
                "KMS kept throttling after byok backed off; lower the rates in [kms.rates] or run again later with --resume",
            ),
            _ => None,
        }
    }

    /// Is this KMS's `code`?
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// KMS refused the call for rate: it did nothing, and the call may be sent again.
    pub fn is_throttling(&self) -> bool {
        self.failure == KmsFailure::Service
            && matches!(
                self.code.as_deref(),
                Some("ThrottlingException" | "Throttling" | "TooManyRequestsException")
            )
    }

    /// Whether KMS may have carried out the call despite the error: no answer, or a server
    /// error (5xx). A write that fails like this must be reconciled, never resent.
    pub fn outcome_unknown(&self) -> bool {
        match self.failure {
            KmsFailure::NoAnswer => true,
            KmsFailure::Service => self.status.is_none_or(|s| s >= 500),
            KmsFailure::Unreachable | KmsFailure::BadResponse => false,
        }
    }

    /// `CODE: message`, for records.
    pub fn code_and_message(&self) -> String {
        match &self.code {
            Some(c) => format!("{c}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// `ImportType` of ImportKeyMaterial, always sent explicitly (the API defaults to
/// EXISTING_KEY_MATERIAL). A `KeyMaterialId` goes only with EXISTING_KEY_MATERIAL: the type
/// makes sending one with NEW_KEY_MATERIAL impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportType<'a> {
    /// The first import into a key, or a rotation's new material.
    NewKeyMaterial,
    /// Material the key held before (after expiry or DeleteImportedKeyMaterial), or its
    /// multi-Region primary's material into a replica: KMS recomputes the KeyMaterialId from
    /// the key and the material and refuses the import unless it is `key_material_id`.
    ExistingKeyMaterial { key_material_id: &'a str },
}

impl<'a> ImportType<'a> {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            ImportType::NewKeyMaterial => "NEW_KEY_MATERIAL",
            ImportType::ExistingKeyMaterial { .. } => "EXISTING_KEY_MATERIAL",
        }
    }

    /// The `KeyMaterialId` sent with it, if any.
    pub fn key_material_id(self) -> Option<&'a str> {
        match self {
            ImportType::NewKeyMaterial => None,
            ImportType::ExistingKeyMaterial { key_material_id } => Some(key_material_id),
        }
    }
}

/// One key material of a key, from ListKeyRotations (`IncludeKeyMaterial = ALL_KEY_MATERIAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterialInfo {
    pub key_material_id: String,
    pub import_state: Option<String>,
    pub key_material_state: Option<String>,
}

/// Where a ceremony's calls really went, and as whom: recorded in `kms_identity` before any
/// approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whereabouts {
    /// `scheme://host[:port]` of a KMS request as sent (DescribeKey of the probe key).
    pub endpoint: String,
    /// `scheme://host[:port]` of the STS GetCallerIdentity request as sent.
    pub sts_endpoint: String,
    /// GetCallerIdentity's `Account`.
    pub account: String,
    /// GetCallerIdentity's `Arn`: the principal the credentials belong to.
    pub caller_arn: String,
}

/// The KMS operations a ceremony needs. Implementations are shared by the threads that run
/// different targets' calls at once.
pub trait Kms: Sync {
    /// DescribeKey; `key` is an ARN, key id or `alias/…`.
    fn describe_key(&self, key: &str) -> Result<KeyInfo, KmsError>;
    /// CreateKey with Origin EXTERNAL, KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT, in
    /// the ceremony's region.
    fn create_key(
        &self,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<KeyInfo, KmsError>;
    /// CreateAlias `alias` → `key_arn`.
    fn create_alias(&self, alias: &str, key_arn: &str) -> Result<(), KmsError>;
    /// UpdateAlias: points the existing `alias` at `key_arn`. Sent exactly once: never
    /// retried (a lost answer is settled by DescribeKey of the alias).
    fn update_alias(&self, alias: &str, key_arn: &str) -> Result<(), KmsError>;
    /// ListResourceTags of a key, every page.
    fn list_resource_tags(&self, key_arn: &str) -> Result<BTreeMap<String, String>, KmsError>;
    /// The ARNs of the keys in the ceremony's region that carry tag `key` = `value`
    /// (ListKeys and ListResourceTags): how a resumed run finds a key whose CreateKey answer
    /// was lost.
    fn find_tagged_keys(&self, key: &str, value: &str) -> Result<Vec<String>, KmsError>;
    /// GetParametersForImport.
    fn get_parameters_for_import(
        &self,
        key_arn: &str,
        algorithm: WrappingAlgorithm,
        spec: WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError>;
    /// ImportKeyMaterial with an explicit expiration model and import type (and, when given,
    /// a KeyMaterialDescription); returns the KeyMaterialId if KMS reports one. Sent exactly
    /// once: never retried.
    fn import_key_material(
        &self,
        key_arn: &str,
        token: &ImportToken,
        encrypted_key_material: &[u8],
        expiration: Expiration,
        import_type: ImportType<'_>,
        description: Option<&str>,
    ) -> Result<Option<String>, KmsError>;
    /// RotateKeyOnDemand: makes the key's PENDING_ROTATION material current. Sent exactly
    /// once: never retried.
    fn rotate_key_on_demand(&self, key_arn: &str) -> Result<(), KmsError>;
    /// ListKeyRotations with `IncludeKeyMaterial = ALL_KEY_MATERIAL`, every page.
    fn list_key_materials(&self, key_arn: &str) -> Result<Vec<KeyMaterialInfo>, KmsError>;
    /// Encrypt with SYMMETRIC_DEFAULT.
    fn encrypt(&self, key_arn: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError>;
    /// Decrypt; returns the plaintext and the key ARN KMS used.
    fn decrypt(&self, key_arn: &str, ciphertext: &[u8]) -> Result<(Vec<u8>, String), KmsError>;
    /// STS GetCallerIdentity with the same configuration and credentials as KMS, and the
    /// endpoints the requests were really sent to: the KMS one from DescribeKey of
    /// `probe_key` (read only; KMS's answer, even an error code, proves where it went, so only
    /// a transport failure fails this).
    fn whereabouts(&self, probe_key: &str) -> Result<Whereabouts, KmsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_endpoint_answered_is_printed_escaped() {
        let e = KmsError {
            operation: "DescribeKey",
            failure: KmsFailure::Service,
            code: Some("Bad\u{1b}[2K".into()),
            status: Some(400),
            message: "gone\r\nbyok? approve".into(),
        };
        assert_eq!(
            e.to_string(),
            "KMS DescribeKey failed: Bad\\u{1b}[2K: gone\\u{d}\\u{a}byok? approve"
        );
        let sts = KmsError {
            operation: "GetCallerIdentity",
            ..e
        };
        assert!(
            sts.to_string()
                .starts_with("STS GetCallerIdentity failed: ")
        );
    }
}
