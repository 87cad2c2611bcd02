//! Dual control: the statements custodians sign, and the checks on each approval.
//!
//! A statement is a JSON object; custodians sign SHA-256 of its RFC 8785 serialization with
//! ECDSA P-256 on their own token. The same functions serve the ceremony (which collects
//! approvals) and the verifier (which recomputes what each guarded step did), so the two can
//! never disagree about what was approved.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::transcript::jcs;

/// The approval points of an import ceremony.
pub const PLAN: &str = "plan";
/// Before ImportKeyMaterial.
pub const IMPORT: &str = "import";

/// The plan statement: approved before anything changes in the HSM or KMS.
pub fn plan_statement(
    ceremony_id: &str,
    ceremony_file_sha256: &str,
    audit_key_sha256: &str,
    target_key: &str,
) -> Value {
    json!({
        "point": PLAN,
        "ceremony_id": ceremony_id,
        "ceremony_file_sha256": ceremony_file_sha256,
        "audit_key_sha256": audit_key_sha256,
        "target_key": target_key,
    })
}

/// What the import will do, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFacts {
    pub ceremony_id: String,
    pub key_arn: String,
    pub wrapping_algorithm: String,
    pub wrapping_key_spec: String,
    pub wrapping_public_key_sha256: String,
    pub blob_sha256: String,
    pub kcv: String,
    pub expiration_model: String,
    pub valid_to: Option<String>,
}

/// The import statement: approved before ImportKeyMaterial.
pub fn import_statement(f: &ImportFacts) -> Value {
    json!({
        "point": IMPORT,
        "ceremony_id": f.ceremony_id,
        "key_arn": f.key_arn,
        "wrapping_algorithm": f.wrapping_algorithm,
        "wrapping_key_spec": f.wrapping_key_spec,
        "wrapping_public_key_sha256": f.wrapping_public_key_sha256,
        "blob_sha256": f.blob_sha256,
        "kcv": f.kcv,
        "expiration_model": f.expiration_model,
        "valid_to": f.valid_to,
    })
}

/// The bytes a custodian signs: the RFC 8785 serialization of the statement.
pub fn signed_bytes(statement: &Value) -> Result<Vec<u8>, jcs::JcsError> {
    jcs::to_vec(statement)
}

/// Hex SHA-256 of the signed bytes: the digest shown to custodians.
pub fn statement_sha256(statement: &Value) -> Result<String, jcs::JcsError> {
    Ok(hex::encode(Sha256::digest(signed_bytes(statement)?)))
}

/// Why an approval signature is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalProblem {
    #[error(
        "the approval key on {custodian}'s token has SHA-256 {found}, but the ceremony file pins {pinned}; use the token that holds the enrolled key"
    )]
    WrongKey {
        custodian: String,
        found: String,
        pinned: String,
    },
    #[error("{custodian}'s signature does not verify under the pinned key")]
    BadSignature { custodian: String },
    #[error("{custodian}'s public key is not an EC P-256 SubjectPublicKeyInfo")]
    BadKey { custodian: String },
}

/// Checks one approval: the key is the pinned one and the signature verifies over `signed`.
pub fn check_approval(
    custodian: &str,
    pinned_sha256: &str,
    spki: &[u8],
    signed: &[u8],
    signature: &[u8],
) -> Result<(), ApprovalProblem> {
    let found = crate::ecdsa::fingerprint(spki);
    if !found.eq_ignore_ascii_case(pinned_sha256) {
        return Err(ApprovalProblem::WrongKey {
            custodian: custodian.to_string(),
            found,
            pinned: pinned_sha256.to_ascii_lowercase(),
        });
    }
    let verifier =
        crate::ecdsa::Verifier::from_spki(spki).map_err(|_| ApprovalProblem::BadKey {
            custodian: custodian.to_string(),
        })?;
    if !verifier.verify(signed, signature) {
        return Err(ApprovalProblem::BadSignature {
            custodian: custodian.to_string(),
        });
    }
    Ok(())
}

/// The statement in plain words, one `name: value` line each, for the approval screen.
pub fn describe(statement: &Value) -> String {
    let mut out = String::new();
    if let Some(map) = statement.as_object() {
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => "(none)".into(),
                other => other.to_string(),
            };
            out.push_str(&format!("    {k:<28} {v}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_their_point_and_canonicalize() {
        let s = plan_statement("c", "aa", "bb", "alias/x");
        assert_eq!(
            String::from_utf8(signed_bytes(&s).unwrap()).unwrap(),
            r#"{"audit_key_sha256":"bb","ceremony_file_sha256":"aa","ceremony_id":"c","point":"plan","target_key":"alias/x"}"#
        );
        assert_eq!(statement_sha256(&s).unwrap().len(), 64);
        assert!(describe(&s).contains("    target_key                   alias/x\n"));
    }
}
