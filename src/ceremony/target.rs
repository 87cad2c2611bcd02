//! Where each target stands during a run: what KMS said, what the HSM holds, what was recorded.
//!
//! Only the engine's main thread touches these (it alone owns the HSM session and the
//! transcript); KMS worker threads get owned copies of what a call needs.

use crate::hsm::KeyRef;
use crate::kms::ImportToken;
use crate::spec::Target;
use crate::transcript::payload::TargetOutcome;

/// A target's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing done for it in this run yet.
    NotStarted,
    /// Recorded as imported by the transcript this run resumes: skipped.
    DoneEarlier,
    /// KMS already holds material the earlier transcript does not record: never imported
    /// again.
    ImportedUnrecorded,
    /// Key resolved (and created if asked): DescribeKey showed it ready.
    Checked,
    /// Wrapped and waiting for the import approval.
    Wrapped,
    /// KMS holds the material from this run.
    Imported,
    /// Imported and the import verified.
    Verified,
    /// A rotation: RotateKeyOnDemand made the imported material current.
    Rotated,
    /// An alias swap: the alias names the new key.
    Swapped,
    /// A rollback: the alias names the previous key again.
    RolledBack,
    /// ImportKeyMaterial's outcome is unknown even after asking KMS.
    Uncertain,
    /// The step failed before KMS held anything new.
    Failed,
}

/// One target's state.
pub struct TargetState {
    pub spec: Target,
    pub status: Status,
    /// The key ARN once known (DescribeKey, CreateKey or the earlier transcript).
    pub arn: Option<String>,
    /// A key created by an earlier, interrupted run, whose alias may still be missing.
    pub reuse_created: Option<String>,
    /// The session AES key and the session copy of the wrapping public key.
    pub key: Option<KeyRef>,
    pub wrapping: Option<KeyRef>,
    pub kcv: Option<String>,
    pub blob: Option<Vec<u8>>,
    pub blob_sha256: Option<String>,
    pub token: Option<ImportToken>,
    pub parameters_valid_to: Option<time::OffsetDateTime>,
    pub public_key_sha256: Option<String>,
    pub key_material_id: Option<String>,
    /// The token copy's label, once made.
    pub kept: Option<String>,
    /// A rotation: the material current before it (DescribeKey at the preflight).
    pub previous_material: Option<String>,
    /// A rotation: a random probe and its ciphertext under the previous material.
    pub probe: Option<(Vec<u8>, Vec<u8>)>,
    /// Alias-swap and rollback: the key the alias names at the preflight, and the key it is
    /// to name (rollback: known at the preflight; alias-swap: the created key, `arn`).
    pub alias_from: Option<String>,
    pub alias_to: Option<String>,
    /// Alias-swap: the tags the new key is created with (the previous key's, the file's and
    /// byok's own).
    pub swap_tags: Option<std::collections::BTreeMap<String, String>>,
    /// A reimport: the source target, kept key and KeyMaterialId (after the kept-key check).
    pub reimport: Option<super::reimport::ReimportFrom>,
}

impl TargetState {
    pub fn new(spec: Target) -> Self {
        TargetState {
            spec,
            status: Status::NotStarted,
            arn: None,
            reuse_created: None,
            key: None,
            wrapping: None,
            kcv: None,
            blob: None,
            blob_sha256: None,
            token: None,
            parameters_valid_to: None,
            public_key_sha256: None,
            key_material_id: None,
            kept: None,
            previous_material: None,
            probe: None,
            alias_from: None,
            alias_to: None,
            swap_tags: None,
            reimport: None,
        }
    }

    /// Whether this run still has to import into the target.
    pub fn to_import(&self) -> bool {
        !matches!(
            self.status,
            Status::DoneEarlier | Status::ImportedUnrecorded
        )
    }

    /// The key ARN, or the key as the file names it.
    pub fn name(&self) -> &str {
        self.arn.as_deref().unwrap_or(&self.spec.key)
    }

    /// The `targets` entry of `ceremony_finished` and `ceremony_aborted`.
    pub fn outcome(&self) -> TargetOutcome {
        let status = match self.status {
            // No ImportKeyMaterial was sent for it (it may have been checked or wrapped).
            Status::NotStarted | Status::Checked | Status::Wrapped => "not_started",
            Status::DoneEarlier => "done",
            Status::ImportedUnrecorded => "imported_unrecorded",
            Status::Failed => "not_imported",
            Status::Imported | Status::Verified => "imported",
            Status::Rotated => "rotated",
            Status::Swapped => "swapped",
            Status::RolledBack => "rolled_back",
            Status::Uncertain => "uncertain",
        };
        TargetOutcome {
            index: self.spec.index as u64,
            key: self.spec.key.clone(),
            key_arn: self.arn.clone(),
            status: status.into(),
            key_material_id: self.key_material_id.clone(),
            kcv: self.kcv.clone(),
        }
    }
}
