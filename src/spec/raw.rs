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
    pub import: RawImport,
    pub dual_control: RawDualControl,
    #[serde(default)]
    pub custodian: Vec<RawCustodian>,
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
    pub token_label: Option<String>,
    pub token_serial: Option<String>,
    pub key_label: String,
    pub public_key_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCeremony {
    pub id: String,
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
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImport {
    pub wrapping_algorithm: Option<String>,
    pub wrapping_key_spec: Option<String>,
    pub wrap: Option<String>,
    pub expiration: String,
    pub valid_to: Option<toml::value::Datetime>,
}
