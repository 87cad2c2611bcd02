//! The `data` of every record type of format version 2, as typed payloads.
//!
//! The ceremony writes records only through these types and `byok verify` reads every version-2
//! record back into them (`deny_unknown_fields`: a member that is not here makes the record
//! invalid), so the transcript contract lives in this one file. `docs/transcript.md` documents
//! each member. No payload holds a PIN, key material or the import token: only hashes,
//! lengths, identifiers and public keys.
//!
//! Records that belong to one target name it by `target_index` (its position in
//! `ceremony_started.targets`) and, once known, its `key_arn`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::RecordType;

/// A record payload: its type and its serialization.
pub trait Payload: Serialize {
    /// The record type this payload is written as.
    const TYPE: RecordType;
}

macro_rules! payloads {
    ($($name:ident => $kind:ident),* $(,)?) => {
        $(impl Payload for $name {
            const TYPE: RecordType = RecordType::$kind;
        })*
    };
}

payloads! {
    CeremonyStarted => CeremonyStarted,
    HsmOpened => HsmOpened,
    TargetReconciled => TargetReconciled,
    KeyCreated => KeyCreated,
    KmsIdentity => KmsIdentity,
    KmsPreflight => KmsPreflight,
    CapabilityChecked => CapabilityChecked,
    ImportParameters => ImportParameters,
    KeyGenerated => KeyGenerated,
    KeyWrapped => KeyWrapped,
    Approval => Approval,
    Declined => Declined,
    ApprovalFailed => ApprovalFailed,
    RotationPreflight => RotationPreflight,
    RotateConfirmed => RotateConfirmed,
    KeyRotated => KeyRotated,
    RotationVerified => RotationVerified,
    SourceVerified => SourceVerified,
    AliasPreflight => AliasPreflight,
    SwapConfirmed => SwapConfirmed,
    AliasUpdated => AliasUpdated,
    AliasVerified => AliasVerified,
    KeptKeyChecked => KeptKeyChecked,
    ImportConfirmed => ImportConfirmed,
    KeyImported => KeyImported,
    ImportReconciled => ImportReconciled,
    KeyKept => KeyKept,
    ImportVerified => ImportVerified,
    CleanupDone => CleanupDone,
    CeremonyFinished => CeremonyFinished,
    CeremonyAborted => CeremonyAborted,
}

/// Record 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyStarted {
    pub tool: String,
    pub tool_version: String,
    pub ceremony_id: String,
    pub description: String,
    pub operator: String,
    pub ceremony_file_name: Option<String>,
    /// The ceremony file's text, byte for byte.
    pub ceremony_file: String,
    pub ceremony_file_sha256: String,
    pub audit_key_label: String,
    /// Base64 SubjectPublicKeyInfo DER of the audit key.
    pub audit_public_key: String,
    pub audit_key_sha256: String,
    pub dual_control: DualControlRecord,
    /// Every target of the ceremony file, in file order (after expansion).
    pub targets: Vec<TargetEntry>,
    /// How many targets' KMS calls may run at once (`--kms-concurrency`).
    pub kms_concurrency: u64,
    /// The transcript this run resumes (`--resume`), or null.
    pub resumes: Option<Resumes>,
    /// (v3) `[ceremony] kind`: `import`, `rotate` or `rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// (v3, rotate) `[rotation] strategy`: `new-material` or `alias-swap`. Absent in a
    /// rotation: `new-material` (byok 0.3.0 wrote no strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// (v4) 128 random bits from the operating system, as 32 lowercase hex digits: every
    /// statement custodians sign in this run carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Dual control as the ceremony file sets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DualControlRecord {
    pub enabled: bool,
    pub quorum: Option<u64>,
    pub custodians: Vec<CustodianPin>,
    /// The REHEARSAL warning when dual control is off, else null.
    pub warning: Option<String>,
}

/// A custodian and their pinned approval key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodianPin {
    pub name: String,
    pub public_key_sha256: String,
}

/// One target as the ceremony file names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    pub index: u64,
    /// Alias, key id or ARN, as written (after template expansion).
    pub key: String,
    pub region: String,
    pub create: bool,
    /// The HSM label of the kept copy, when the material is kept.
    pub keep_key_label: Option<String>,
    /// (v3, alias-swap) The ARN of the key the alias names before the swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<String>,
}

/// The link from a resumed run to the transcript it continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resumes {
    /// File name of the earlier transcript.
    pub transcript_name: String,
    /// SHA-256 of its last complete line.
    pub last_line_sha256: String,
    /// How many complete records it had.
    pub records: u64,
    /// Whether it ended with ceremony_finished or ceremony_aborted (false: it was cut off).
    pub closed: bool,
}

/// The HSM token the ceremony runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmOpened {
    pub module_path: String,
    pub module_manufacturer: String,
    pub module_description: String,
    pub module_version: String,
    pub cryptoki_version: String,
    pub token_label: String,
    pub token_serial: String,
    pub token_model: String,
    pub token_manufacturer: String,
    pub login: String,
    /// (v3) Whether the audit key pair is sign-only (private key CKA_SIGN only, public key
    /// CKA_VERIFY only), as the token reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_key_sign_only: Option<bool>,
    /// (v3) The audit key pair's usage attributes as read back from the token, e.g.
    /// `private CKA_SIGN=true CKA_SIGN_RECOVER=false …; public CKA_VERIFY=true …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_key_usage: Option<String>,
}

/// What a resumed run found for one target before doing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetReconciled {
    pub target_index: u64,
    pub key_arn: Option<String>,
    /// `done` (imported and recorded earlier), `imported_unrecorded` (KMS holds material the
    /// earlier transcript does not record: never imported again), `created` (the earlier run
    /// created the key; it is reused) or `pending` (to be imported in this run).
    pub status: String,
    /// DescribeKey's KeyState, when the key exists.
    pub key_state: Option<String>,
    pub current_key_material_id: Option<String>,
    /// What the earlier transcript recorded for the target, in its own words.
    pub earlier: Vec<String>,
}

/// CreateKey and CreateAlias for a target with `create = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCreated {
    pub target_index: u64,
    pub key_arn: String,
    pub key_id: String,
    pub alias: String,
    /// True when the key was created by an earlier, interrupted run and is reused.
    pub reused: bool,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

/// (v4, every kind) Where the ceremony's KMS calls went and as whom: written once, at the start
/// of step `kms_preflight`, before any approval. The endpoints are the URLs the requests were
/// really sent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsIdentity {
    /// `kms.region` of the ceremony file.
    pub region: String,
    /// `scheme://host[:port]` the KMS requests went to (DescribeKey of the first target).
    pub endpoint: String,
    /// True when the endpoint is not AWS's own: the ceremony file named it.
    pub endpoint_overridden: bool,
    /// `ceremony_file` (`[kms] endpoint`) or `aws` (the SDK's regional endpoint).
    pub endpoint_source: String,
    /// The environment variables that named the same endpoint (byok refuses any other).
    pub endpoint_env: Vec<String>,
    /// `scheme://host[:port]` the STS GetCallerIdentity request went to.
    pub sts_endpoint: String,
    /// STS GetCallerIdentity: the account and the principal's ARN.
    pub account: String,
    pub caller_arn: String,
    /// `kms.account` of the ceremony file, when it pins one.
    pub pinned_account: Option<String>,
}

/// DescribeKey of a target before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsPreflight {
    pub target_index: u64,
    pub requested_key: String,
    pub region: String,
    pub key_arn: String,
    pub origin: String,
    pub key_spec: String,
    pub key_usage: String,
    pub key_state: String,
    pub enabled: bool,
}

/// The known-answer test of the wrap, once per ceremony.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityChecked {
    pub algorithm: String,
    pub location: String,
    pub mechanism: String,
    pub known_answer_key_bits: u64,
    pub known_answer_test: String,
    pub rejected: Vec<String>,
    pub process_hardening: Option<ProcessHardening>,
}

/// What hardening achieved before a host wrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessHardening {
    pub core_dumps_disabled: bool,
    pub not_dumpable: bool,
}

/// GetParametersForImport for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParameters {
    pub target_index: u64,
    pub key_arn: String,
    pub wrapping_algorithm: String,
    pub wrapping_key_spec: String,
    pub public_key_sha256: String,
    pub public_key_der_length: u64,
    pub import_token_sha256: String,
    pub parameters_valid_to: String,
}

/// AES-256 generated in the HSM for one target (a session object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyGenerated {
    pub target_index: u64,
    pub key_arn: String,
    pub handle: u64,
    pub label: String,
    pub key_type: String,
    pub value_length: u64,
    pub token_object: bool,
    pub sensitive: bool,
    pub kcv: String,
    pub kcv_method: String,
}

/// The wrapped blob of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyWrapped {
    pub target_index: u64,
    pub key_arn: String,
    pub location: String,
    pub mechanism: String,
    pub wrapping_algorithm: String,
    pub oaep_hash: String,
    pub aes_key_wrap: Option<String>,
    pub wrapping_public_key_sha256: String,
    pub blob_sha256: String,
    pub blob_length: u64,
    pub host_memory_locked: Option<bool>,
}

/// A custodian's signed approval of a statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub point: String,
    pub custodian: String,
    /// Base64 SPKI DER of the custodian's approval key.
    pub public_key: String,
    pub public_key_sha256: String,
    pub statement: Value,
    pub statement_sha256: String,
    /// Base64 DER ECDSA P-256 signature over the statement's RFC 8785 bytes.
    pub signature: String,
}

/// A custodian declined to approve a statement.
///
/// Format version 3: the custodian's own token signs the decline (`signed_by` =
/// `"custodian_token"`; `decline` is the signed decline statement, `signature` is over its
/// RFC 8785 bytes); the operator going back from a wrong name records nothing. Version 2
/// declines have none of the four optional members and are the audit key's word only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declined {
    pub point: String,
    pub custodian: String,
    pub statement: Value,
    pub statement_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// `{"point":"decline","declines":<point>,"statement_sha256":<hex>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Value>,
    /// Base64 SPKI DER of the custodian's approval key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Base64 DER ECDSA P-256 signature over the decline statement's RFC 8785 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// (v3, rotate) What KMS holds for a target before a rotation (read only, before the plan
/// approval), and a probe encrypted under its current material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPreflight {
    pub target_index: u64,
    pub key_arn: String,
    /// DescribeKey's CurrentKeyMaterialId.
    pub current_key_material_id: Option<String>,
    /// How many materials ListKeyRotations shows, or null when KMS does not serve it.
    pub key_materials: Option<u64>,
    /// On-demand rotations so far (materials - 1), or null when unknown.
    pub rotations_so_far: Option<u64>,
    /// The on-demand rotation limit byok applies.
    pub rotation_limit: u64,
    /// SHA-256 of the random probe (from the HSM) and of its ciphertext under the current material.
    pub probe_sha256: String,
    pub probe_ciphertext_sha256: String,
}

/// (v3, rotate) The rotate statement, approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateConfirmed {
    pub approved_by: Vec<String>,
    pub dual_control: bool,
    pub statement: Value,
    pub statement_sha256: String,
}

/// (v3, rotate) RotateKeyOnDemand's outcome for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotated {
    pub target_index: u64,
    pub key_arn: String,
    /// The material made current: the one this ceremony imported.
    pub key_material_id: String,
    /// `rotated`, or `reconciled` when the answer was lost and DescribeKey showed the material
    /// current.
    pub outcome: String,
    pub evidence: Vec<String>,
}

/// (v3, rotate) After RotateKeyOnDemand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationVerified {
    pub target_index: u64,
    pub key_arn: String,
    /// DescribeKey's CurrentKeyMaterialId now.
    pub current_key_material_id: Option<String>,
    /// The material current before the rotation.
    pub previous_key_material_id: Option<String>,
    /// Whether the probe encrypted before the rotation still decrypts to itself.
    pub previous_probe_decrypts: bool,
    /// `ok` or `failed`: a new Encrypt/Decrypt round trip.
    pub round_trip: String,
    pub problems: Vec<String>,
}

/// (v3, reimport and rollback) The `[source]` transcript, verified in full under this
/// ceremony's audit key and pinned by its last line, before anything else happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceVerified {
    /// `source.transcript` as the ceremony file writes it.
    pub transcript: String,
    /// SHA-256 of its last line: equal to `source.last_line_sha256`.
    pub last_line_sha256: String,
    /// Its ceremony id and kind (`ceremony_started`), record count and format version.
    pub ceremony_id: String,
    pub kind: String,
    /// Its `ceremony_started.strategy` (a rotation), or null.
    pub strategy: Option<String>,
    pub records: u64,
    pub format_version: u64,
    /// Whether dual control was on in it (a rehearsal's transcript is signed by the audit
    /// key alone).
    pub dual_control: bool,
    /// Its targets that kept a key KMS holds: what a reimport may import again.
    pub kept_targets: Vec<SourceKept>,
    /// Every alias it moved (`alias_updated`), in order: what a rollback may move back.
    pub swaps: Vec<SourceSwap>,
}

/// One target of a source transcript that kept its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceKept {
    /// The target's index in the source ceremony.
    pub target_index: u64,
    pub key_arn: String,
    pub key_material_id: String,
    /// The KCV of the kept copy (`key_kept.kcv`).
    pub kcv: String,
    pub kept_label: String,
}

/// (v3, reimport) One target's kept key, checked in the HSM before the plan approval: found by
/// its label, copied into a session key under the Security Officer's trusted transfer key, and
/// its KCV computed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptKeyChecked {
    pub target_index: u64,
    /// The key to import into (from `kms_preflight`).
    pub key_arn: String,
    /// The source target it takes the material of: its index, key ARN, and how the two keys
    /// relate (`same key` or `multi-Region replica`).
    pub source_target_index: u64,
    pub source_key_arn: String,
    pub relation: String,
    /// The KeyMaterialId the reimport sends (EXISTING_KEY_MATERIAL), from the source.
    pub key_material_id: String,
    pub label: String,
    /// Handles of the kept token object and of its session copy.
    pub kept_handle: u64,
    pub session_handle: u64,
    pub kcv_now: String,
    pub kcv_source: String,
    /// `kcv_now == kcv_source`; when false the ceremony stops here.
    #[serde(rename = "match")]
    pub matches: bool,
    pub kcv_method: String,
}

/// One alias a source alias-swap ceremony moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSwap {
    pub alias: String,
    pub from_key_arn: String,
    pub to_key_arn: String,
}

/// (v3, alias-swap and rollback) What an alias names before anything moves (read only, before
/// the plan approval), and the key it is to name afterwards, when that exists already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasPreflight {
    pub target_index: u64,
    pub alias: String,
    /// The key DescribeKey of the alias returned, and its state.
    pub alias_key_arn: String,
    pub alias_key_state: String,
    pub alias_key_enabled: bool,
    pub alias_key_origin: String,
    /// The key the alias must name: `previous_key` (alias-swap) or the key the source
    /// ceremony moved the alias to (rollback).
    pub expected_key_arn: String,
    /// (alias-swap) The previous key's tags (ListResourceTags), copied to the new key.
    pub tags: BTreeMap<String, String>,
    /// (rollback) The key the alias goes back to, and its state.
    pub restore_key_arn: Option<String>,
    pub restore_key_state: Option<String>,
    pub restore_key_enabled: Option<bool>,
}

/// (v3, alias-swap and rollback) The swap statement, approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapConfirmed {
    pub approved_by: Vec<String>,
    pub dual_control: bool,
    pub statement: Value,
    pub statement_sha256: String,
}

/// (v3, alias-swap and rollback) UpdateAlias's outcome for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasUpdated {
    pub target_index: u64,
    pub alias: String,
    pub from_key_arn: String,
    pub to_key_arn: String,
    /// `updated`, or `reconciled` when the answer was lost and DescribeKey of the alias showed
    /// the new key.
    pub outcome: String,
    pub evidence: Vec<String>,
}

/// (v3, alias-swap and rollback) After UpdateAlias: what the alias names, both keys' states,
/// and an Encrypt through the alias that KMS answers with the new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasVerified {
    pub target_index: u64,
    pub alias: String,
    /// DescribeKey of the alias now.
    pub alias_key_arn: String,
    pub to_key_arn: String,
    pub to_key_state: String,
    pub from_key_arn: String,
    pub from_key_state: String,
    /// `ok` or `failed`: Encrypt through the alias (answered by `to_key_arn`), Decrypt.
    pub round_trip: String,
    pub problems: Vec<String>,
}

/// (v3) A custodian could not sign at an approval point. Signed by the audit key only: the
/// custodian's token did not sign anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFailed {
    pub point: String,
    pub custodian: String,
    /// What the custodian was doing: `approve` or `decline`.
    pub action: String,
    /// PIN attempts made (0 when the token or key was not found).
    pub pin_attempts: u64,
    /// The error, in words (never a PIN).
    pub error: String,
    /// Custodians who approved this point so far, and who may still step in.
    pub approved_so_far: Vec<String>,
    pub remaining: Vec<String>,
    /// Whether `remaining` can still make the quorum.
    pub quorum_reachable: bool,
}

/// The import statement, approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfirmed {
    pub approved_by: Vec<String>,
    pub dual_control: bool,
    pub statement: Value,
    pub statement_sha256: String,
}

/// ImportKeyMaterial of one target succeeded (or was reconciled as imported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyImported {
    pub target_index: u64,
    pub key_arn: String,
    /// What KMS returned; null when its answer was lost and the import was reconciled.
    pub key_material_id: Option<String>,
    pub import_type: String,
    /// (v3, rotate) The KeyMaterialDescription sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material_description: Option<String>,
    pub expiration_model: String,
    pub valid_to: Option<String>,
    pub blob_sha256: String,
    pub import_token_sha256: String,
}

/// ImportKeyMaterial's answer was lost; what KMS says happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportReconciled {
    pub target_index: u64,
    pub key_arn: String,
    /// `imported`, `not_imported` or `unknown`.
    pub outcome: String,
    /// The failed call, as KMS or the transport reported it (code and message).
    pub error: String,
    /// DescribeKey's KeyState afterwards, when it answered.
    pub key_state: Option<String>,
    pub current_key_material_id: Option<String>,
    /// ListKeyRotations (ALL_KEY_MATERIAL) where KMS serves it, else why not.
    pub key_materials: Vec<String>,
    pub evidence: Vec<String>,
    pub blob_sha256: String,
    pub import_token_sha256: String,
}

/// The token copy of one target's imported material, as the token reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyKept {
    pub target_index: u64,
    pub key_arn: String,
    pub label: String,
    pub handle: u64,
    /// The key check value computed before the copy, of the material KMS holds.
    pub kcv: String,
    /// Attributes read back from the token after the copy.
    pub attributes: KeptAttributes,
}

/// PKCS#11 attributes of a kept key, read back from the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptAttributes {
    pub token: bool,
    pub private: bool,
    pub sensitive: bool,
    pub extractable: bool,
    pub wrap_with_trusted: bool,
    pub modifiable: bool,
    pub encrypt: bool,
    pub decrypt: bool,
    pub sign: bool,
    pub verify: bool,
    pub wrap: bool,
    pub unwrap: bool,
    pub derive: bool,
    /// `CKA_COPYABLE`, or null when the token does not report it.
    pub copyable: Option<bool>,
}

/// DescribeKey and an Encrypt/Decrypt round trip after one target's import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportVerified {
    pub target_index: u64,
    pub key_arn: String,
    pub key_state: String,
    pub enabled: bool,
    pub origin: String,
    pub expiration_model: Option<String>,
    pub valid_to_reported: Option<String>,
    pub current_key_material_id: Option<String>,
    pub round_trip: String,
    pub challenge_sha256: String,
    pub ciphertext_sha256: String,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Session objects destroyed at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupDone {
    pub destroyed_handles: Vec<u64>,
    /// Labels of the kept token copies (see key_kept).
    pub kept_keys: Vec<String>,
}

/// The last record of a ceremony that completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyFinished {
    pub targets: Vec<TargetOutcome>,
    /// The number of records, this one included.
    pub records: u64,
}

/// Where one target stands at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetOutcome {
    pub index: u64,
    pub key: String,
    pub key_arn: Option<String>,
    /// Where the target's import stands: `imported` (in this run), `done` (recorded by the
    /// resumed transcript), `imported_unrecorded` (KMS held material the resumed transcript
    /// did not record), `not_started` (no ImportKeyMaterial was sent for it; it may have been
    /// created, checked or wrapped), `not_imported` (its step failed and KMS holds nothing new)
    /// or `uncertain` (KMS could not tell whether the import arrived).
    pub status: String,
    pub key_material_id: Option<String>,
    pub kcv: Option<String>,
}

/// The last record of a ceremony that stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyAborted {
    pub step: String,
    /// The target whose step failed, when one did.
    pub target_index: Option<u64>,
    pub error_class: String,
    pub message: String,
    pub destroyed_handles: Vec<u64>,
    pub kept_keys: Vec<String>,
    pub cleanup_errors: Vec<String>,
    pub targets: Vec<TargetOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_members_are_refused() {
        let good = serde_json::json!({"destroyed_handles": [1], "kept_keys": []});
        assert!(serde_json::from_value::<CleanupDone>(good).is_ok());
        let extra = serde_json::json!({"destroyed_handles": [1], "kept_keys": [], "x": 1});
        let err = serde_json::from_value::<CleanupDone>(extra).unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }
}
