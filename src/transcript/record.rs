//! Record types of the transcript: the documented contract of `docs/transcript.md`.
//!
//! A record is one line of the transcript. Its members are fixed (`v`, `seq`, `prev`, `time`,
//! `type`, `data`, `sig`) and the line is the RFC 8785 serialization of the whole record. The
//! `data` of each type in format version 2 is a typed payload in [`super::payload`].

use serde::{Deserialize, Serialize};

/// Format version written in every record's `v`.
pub const FORMAT_VERSION: u64 = 4;

/// Format versions `byok verify` reads: version 1 (one target per ceremony, byok 0.1), 2 (many
/// targets, byok 0.2) and 3 (the known-answer test and the KMS preflight before the plan
/// approval, signed declines, `approval_failed`; byok 0.3) and 4 (a random run id in record 0
/// and in every statement custodians sign, and `kms_identity`: where the ceremony ran and as
/// whom; byok 0.4).
pub const SUPPORTED_VERSIONS: [u64; 4] = [1, 2, 3, 4];

/// `prev` of the first record: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The kinds of record, roughly in the order a successful ceremony writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// Record 0: tool version, ceremony file and its hash, the audit public key, the targets.
    CeremonyStarted,
    /// Module and token identity, and the login.
    HsmOpened,
    /// (v2, resume) What KMS and the previous transcript say of one target before this run.
    TargetReconciled,
    /// (v2) CreateKey (Origin EXTERNAL) and CreateAlias for a target with `create = true`.
    KeyCreated,
    /// (v4, every kind) Where the KMS calls went and as whom (STS GetCallerIdentity), once,
    /// at the start of step `kms_preflight`, before any approval.
    KmsIdentity,
    /// DescribeKey of the target key before anything changes.
    KmsPreflight,
    /// The token's ability to do the chosen wrap, proven by a known-answer test.
    CapabilityChecked,
    /// GetParametersForImport: public key and import token hashes, validity.
    ImportParameters,
    /// AES-256 generated in the HSM: handle, label and key check value.
    KeyGenerated,
    /// The wrapped blob's hash and length, and where the wrap happened.
    KeyWrapped,
    /// A custodian's signed approval of a statement (dual control).
    Approval,
    /// A custodian declined to approve; the ceremony aborts next.
    Declined,
    /// (v3) A custodian could not sign at an approval point (PIN failed every attempt, PIN
    /// locked, token or key missing); another custodian may step in.
    ApprovalFailed,
    /// (v3, rotate) What a key holds before a rotation, and a probe encrypted under it.
    RotationPreflight,
    /// (v3, rotate) The rotate statement, approved.
    RotateConfirmed,
    /// (v3, rotate) RotateKeyOnDemand's outcome.
    KeyRotated,
    /// (v3, rotate) The new material is current, the old probe decrypts, a new round trip works.
    RotationVerified,
    /// (v3, reimport and rollback) The `[source]` transcript verified and pinned: what it says.
    SourceVerified,
    /// (v3, reimport) The kept key found by its label, copied into a session key inside the
    /// HSM, and its KCV computed now, compared with the source's.
    KeptKeyChecked,
    /// (v3, alias-swap and rollback) What an alias names before anything moves.
    AliasPreflight,
    /// (v3, alias-swap and rollback) The swap statement, approved.
    SwapConfirmed,
    /// (v3, alias-swap and rollback) UpdateAlias's outcome.
    AliasUpdated,
    /// (v3, alias-swap and rollback) The alias names the new key; both keys' states.
    AliasVerified,
    /// The import statement was approved (by the quorum, or by the operator in a rehearsal).
    ImportConfirmed,
    /// ImportKeyMaterial succeeded; carries the KeyMaterialId.
    KeyImported,
    /// (v2) ImportKeyMaterial's outcome was unknown (timeout, transport error, 5xx); KMS was
    /// asked what happened: imported, not imported, or still unknown, with the evidence.
    ImportReconciled,
    /// (v2) The token copy of imported material, with the attributes read back from the token.
    KeyKept,
    /// DescribeKey and an Encrypt/Decrypt round trip after the import.
    ImportVerified,
    /// HSM session objects destroyed (or kept, as recorded).
    CleanupDone,
    /// Last record of a ceremony that completed.
    CeremonyFinished,
    /// Last record of a ceremony that stopped: which step, which error class, which targets.
    CeremonyAborted,
}

impl RecordType {
    /// The `type` string written in the transcript.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::CeremonyStarted => "ceremony_started",
            RecordType::HsmOpened => "hsm_opened",
            RecordType::TargetReconciled => "target_reconciled",
            RecordType::KeyCreated => "key_created",
            RecordType::KmsIdentity => "kms_identity",
            RecordType::KmsPreflight => "kms_preflight",
            RecordType::CapabilityChecked => "capability_checked",
            RecordType::ImportParameters => "import_parameters",
            RecordType::KeyGenerated => "key_generated",
            RecordType::KeyWrapped => "key_wrapped",
            RecordType::Approval => "approval",
            RecordType::Declined => "declined",
            RecordType::ApprovalFailed => "approval_failed",
            RecordType::RotationPreflight => "rotation_preflight",
            RecordType::RotateConfirmed => "rotate_confirmed",
            RecordType::KeyRotated => "key_rotated",
            RecordType::RotationVerified => "rotation_verified",
            RecordType::SourceVerified => "source_verified",
            RecordType::KeptKeyChecked => "kept_key_checked",
            RecordType::AliasPreflight => "alias_preflight",
            RecordType::SwapConfirmed => "swap_confirmed",
            RecordType::AliasUpdated => "alias_updated",
            RecordType::AliasVerified => "alias_verified",
            RecordType::ImportConfirmed => "import_confirmed",
            RecordType::KeyImported => "key_imported",
            RecordType::ImportReconciled => "import_reconciled",
            RecordType::KeyKept => "key_kept",
            RecordType::ImportVerified => "import_verified",
            RecordType::CleanupDone => "cleanup_done",
            RecordType::CeremonyFinished => "ceremony_finished",
            RecordType::CeremonyAborted => "ceremony_aborted",
        }
    }

    /// Parses a `type` string; `None` for an unknown type.
    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// True for the two types that end a transcript.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RecordType::CeremonyFinished | RecordType::CeremonyAborted
        )
    }

    /// True for the types that exist only in format version 2.
    pub fn is_v2_only(self) -> bool {
        matches!(
            self,
            RecordType::TargetReconciled
                | RecordType::KeyCreated
                | RecordType::ImportReconciled
                | RecordType::KeyKept
                | RecordType::ApprovalFailed
                | RecordType::RotationPreflight
                | RecordType::RotateConfirmed
                | RecordType::KeyRotated
                | RecordType::RotationVerified
                | RecordType::SourceVerified
                | RecordType::KeptKeyChecked
                | RecordType::AliasPreflight
                | RecordType::SwapConfirmed
                | RecordType::AliasUpdated
                | RecordType::AliasVerified
        )
    }

    /// True for the types that exist only from format version 3 on.
    pub fn is_v3_only(self) -> bool {
        matches!(
            self,
            RecordType::ApprovalFailed
                | RecordType::RotationPreflight
                | RecordType::RotateConfirmed
                | RecordType::KeyRotated
                | RecordType::RotationVerified
                | RecordType::SourceVerified
                | RecordType::KeptKeyChecked
                | RecordType::AliasPreflight
                | RecordType::SwapConfirmed
                | RecordType::AliasUpdated
                | RecordType::AliasVerified
        )
    }

    /// True for the types that exist only from format version 4 on.
    pub fn is_v4_only(self) -> bool {
        matches!(self, RecordType::KmsIdentity)
    }
}

/// Every record type, for parsing and documentation tests.
pub const ALL: [RecordType; 31] = [
    RecordType::CeremonyStarted,
    RecordType::HsmOpened,
    RecordType::TargetReconciled,
    RecordType::KeyCreated,
    RecordType::KmsIdentity,
    RecordType::KmsPreflight,
    RecordType::CapabilityChecked,
    RecordType::ImportParameters,
    RecordType::KeyGenerated,
    RecordType::KeyWrapped,
    RecordType::Approval,
    RecordType::Declined,
    RecordType::ApprovalFailed,
    RecordType::RotationPreflight,
    RecordType::RotateConfirmed,
    RecordType::KeyRotated,
    RecordType::RotationVerified,
    RecordType::SourceVerified,
    RecordType::KeptKeyChecked,
    RecordType::AliasPreflight,
    RecordType::SwapConfirmed,
    RecordType::AliasUpdated,
    RecordType::AliasVerified,
    RecordType::ImportConfirmed,
    RecordType::KeyImported,
    RecordType::ImportReconciled,
    RecordType::KeyKept,
    RecordType::ImportVerified,
    RecordType::CleanupDone,
    RecordType::CeremonyFinished,
    RecordType::CeremonyAborted,
];

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_strings_round_trip_and_match_serde() {
        for t in ALL {
            assert_eq!(RecordType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        assert_eq!(RecordType::parse("approval_maybe"), None);
    }
}
