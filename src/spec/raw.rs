//! The ceremony file exactly as written: serde structs that reject unknown fields.
//!
//! Values stay strings here; `super::parse` validates and turns them into typed, checked values with
//! messages that name the field and the allowed values.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub ceremony: RawCeremony,
    pub hsm: RawHsm,
    pub kms: RawKms,
    /// `[[target]]` tables.
    pub target: Option<Vec<RawTarget>>,
    /// One `[targets]` table: services × environments.
    pub targets: Option<RawTargets>,
    /// Required, except for `kind = "rollback"`, which imports nothing.
    pub import: Option<RawImport>,
    pub dual_control: RawDualControl,
    #[serde(default)]
    pub custodian: Vec<RawCustodian>,
    /// `[rotation]`, for `kind = "rotate"`.
    pub rotation: Option<RawRotation>,
    /// `[source]`: an earlier transcript this ceremony builds on (`kind = "reimport"`).
    pub source: Option<RawSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Path of the earlier transcript, relative to the ceremony file's directory or absolute.
    pub transcript: String,
    /// SHA-256 of its last line: the fingerprint written on paper at its end.
    pub last_line_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    pub strategy: Option<String>,
    pub key_material_description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDualControl {
    pub enabled: Option<bool>,
    pub quorum: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustodian {
    pub name: String,
    /// The custodian's own PKCS#11 module; neither this nor `module_env`: the HSM's.
    pub module: Option<String>,
    pub module_env: Option<String>,
    pub token_label: Option<String>,
    pub token_serial: Option<String>,
    pub key_label: String,
    pub public_key_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCeremony {
    pub id: String,
    /// `import` (the default), `rotate`, `rollback` or `reimport`.
    pub kind: Option<String>,
    #[serde(default)]
    pub description: String,
    pub operator: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsm {
    pub module: Option<String>,
    pub module_env: Option<String>,
    pub token_label: Option<String>,
    pub token_serial: Option<String>,
    pub audit_key_label: String,
    pub audit_key_sha256: String,
    pub keep_key_label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKms {
    pub region: String,
    /// The one target, when neither `[[target]]` nor `[targets]` is given.
    pub key: Option<String>,
    /// Requests per second per KMS operation (`[kms.rates]`).
    pub rates: Option<std::collections::BTreeMap<String, toml::Value>>,
    /// How long one KMS call may take before its outcome counts as unknown.
    pub call_timeout_seconds: Option<i64>,
    /// The endpoint every KMS and STS call goes to, instead of AWS's own (LocalStack).
    pub endpoint: Option<String>,
    /// The AWS account the ceremony must run as (STS GetCallerIdentity).
    pub account: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub key: String,
    /// `strategy = "alias-swap"`: the ARN of the key the alias names now.
    pub previous_key: Option<String>,
    pub create: Option<bool>,
    pub description: Option<String>,
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets {
    pub services: Vec<String>,
    pub environments: Vec<String>,
    /// A template with `{service}` and `{environment}`.
    pub key: String,
    pub create: Option<bool>,
    pub description: Option<String>,
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImport {
    pub wrapping_algorithm: Option<String>,
    pub wrapping_key_spec: Option<String>,
    pub wrap: Option<String>,
    pub expiration: String,
    pub valid_to: Option<toml::value::Datetime>,
    /// `"<N>d"`: ValidTo N days after the run starts (instead of `valid_to`).
    pub valid_for: Option<String>,
}
