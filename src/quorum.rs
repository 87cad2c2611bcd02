//! Dual control: the statements custodians sign, and the checks on each approval.
//!
//! A statement is a JSON object; custodians sign SHA-256 of its RFC 8785 serialization with
//! ECDSA P-256 on their own token. The same functions serve the ceremony (which collects
//! approvals) and the verifier (which recomputes what each guarded step did), so the two can
//! never disagree about what was approved.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jcs;

/// The approval points of an import ceremony.
pub const PLAN: &str = "plan";
/// Before ImportKeyMaterial.
pub const IMPORT: &str = "import";
/// (v3, rotate) Before RotateKeyOnDemand.
pub const ROTATE: &str = "rotate";
/// (v3, alias-swap and rollback) Before UpdateAlias.
pub const SWAP: &str = "swap";
/// The `point` of a decline statement (format version 3).
pub const DECLINE: &str = "decline";

/// What a custodian signs to decline a statement (format version 3): it names the approval
/// point and the SHA-256 of the statement declined; from format version 4 on, also the run id
/// of record 0 (`run_id`), so that a decline cannot be replayed into another run.
pub fn decline_statement(point: &str, statement_sha256: &str, run_id: Option<&str>) -> Value {
    let mut v = serde_json::json!({
        "point": DECLINE,
        "declines": point,
        "statement_sha256": statement_sha256,
    });
    if let (Some(id), Value::Object(map)) = (run_id, &mut v) {
        map.insert("run_id".into(), Value::String(id.to_string()));
    }
    v
}

/// The plan statement (format version 2): approved before anything changes in the HSM or
/// KMS. It names every target of the ceremony file and, for a resumed run, the transcript it
/// continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStatement {
    pub point: String,
    pub ceremony_id: String,
    pub ceremony_file_sha256: String,
    pub audit_key_sha256: String,
    /// Every target's key, as the ceremony file names it, in order.
    pub targets: Vec<String>,
    /// SHA-256 of the last line of the transcript this run resumes, or null.
    pub resumes: Option<String>,
    /// (v4) The run id of record 0 (`ceremony_started.run_id`): ties the approval to this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// The import statement (format version 2): every wrapped target at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportStatement {
    pub point: String,
    pub ceremony_id: String,
    pub expiration_model: String,
    pub valid_to: Option<String>,
    pub targets: Vec<ImportTarget>,
    /// (v3) `"rotate"` or `"reimport"`; absent for a first import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// (v3, rotate) The KeyMaterialDescription sent with every import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material_description: Option<String>,
    /// (v3, reimport) The SHA-256 of the last line of the `[source]` transcript whose kept
    /// material is imported again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_last_line_sha256: Option<String>,
    /// (v4) The run id of record 0 (`ceremony_started.run_id`): ties the approval to this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// The rotate statement (v3, `kind = "rotate"`): approved after the imports, before
/// RotateKeyOnDemand. It names, per target, the material that becomes current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateStatement {
    pub point: String,
    pub ceremony_id: String,
    pub targets: Vec<RotateTarget>,
    /// (v4) The run id of record 0 (`ceremony_started.run_id`): ties the approval to this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// One target of a rotate statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateTarget {
    pub target_index: u64,
    pub key_arn: String,
    /// The material current before (from `rotation_preflight`).
    pub previous_key_material_id: Option<String>,
    /// The material this ceremony imported (from `key_imported`), made current.
    pub key_material_id: String,
}

/// The swap statement (v3, alias-swap and rollback): approved before UpdateAlias. It names,
/// per target, the alias and the keys it moves from and to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapStatement {
    pub point: String,
    pub ceremony_id: String,
    /// `rotate` (alias-swap) or `rollback`.
    pub kind: String,
    pub targets: Vec<SwapTarget>,
    /// (v4) The run id of record 0 (`ceremony_started.run_id`): ties the approval to this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// One target of a swap statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapTarget {
    pub target_index: u64,
    pub alias: String,
    /// The key the alias names now (from `alias_preflight`).
    pub from_key_arn: String,
    /// The key it will name: the new key (alias-swap) or the restored one (rollback).
    pub to_key_arn: String,
}

/// One target of an import statement: exactly what will be sent to KMS for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportTarget {
    pub target_index: u64,
    pub key_arn: String,
    pub wrapping_algorithm: String,
    pub wrapping_key_spec: String,
    pub wrapping_public_key_sha256: String,
    pub blob_sha256: String,
    pub import_token_sha256: String,
    pub kcv: String,
    /// (v3, reimport) The KeyMaterialId sent with ImportType EXISTING_KEY_MATERIAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material_id: Option<String>,
}

/// A statement as JSON (what is signed and recorded).
pub fn to_value<T: Serialize>(statement: &T) -> Result<Value, jcs::JcsError> {
    serde_json::to_value(statement).map_err(|e| jcs::JcsError::Serialize(e.to_string()))
}

/// The statements of format version 1 (one target per ceremony), for verifying old
/// transcripts.
pub mod v1 {
    use serde_json::{Value, json};

    use super::{IMPORT, PLAN};

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

/// The statement in plain words, one `name: value` line each, for the approval screen; a list
/// of targets becomes a compact table, one row per target.
pub fn describe(statement: &Value) -> String {
    let mut out = String::new();
    let Some(map) = statement.as_object() else {
        return out;
    };
    for (k, v) in map {
        match v {
            Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
                out.push_str(&format!("    {k} ({}):\n", rows.len()));
                out.push_str(&table(rows));
            }
            Value::Array(items) => {
                let list: Vec<String> = items.iter().map(scalar).collect();
                out.push_str(&format!("    {k:<28} {}\n", list.join(", ")));
            }
            other => out.push_str(&format!("    {k:<28} {}\n", scalar(other))),
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// Rows of objects as aligned columns: a column whose value is the same in every row is shown
/// once above the table; the index and key come first; hashes are shortened to 16 hex digits
/// (the full values are in the statement whose SHA-256 is signed).
fn table(rows: &[Value]) -> String {
    let mut columns: Vec<String> = rows[0]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let rank = |c: &str| match c {
        "target_index" => 0,
        "key_arn" => 1,
        "kcv" => 2,
        _ => 3,
    };
    columns.sort_by_key(|c| rank(c));
    let mut out = String::new();
    if rows.len() > 1 {
        columns.retain(|c| {
            let same = rows.iter().all(|r| r[c.as_str()] == rows[0][c.as_str()]);
            if same && rank(c) == 3 {
                out.push_str(&format!(
                    "      {c:<26} {} (every target)\n",
                    scalar(&rows[0][c.as_str()])
                ));
            }
            !same || rank(c) < 3
        });
    }
    let cell = |row: &Value, c: &str| {
        let text = scalar(&row[c]);
        if c.ends_with("sha256") && text.len() > 16 {
            format!("{}…", &text[..16])
        } else {
            text
        }
    };
    let header: Vec<String> = columns
        .iter()
        .map(|c| {
            if c == "target_index" {
                "#".to_string()
            } else {
                c.clone()
            }
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .zip(&header)
        .map(|(c, h)| {
            rows.iter()
                .map(|r| cell(r, c).chars().count())
                .chain(std::iter::once(h.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut l = String::from("     ");
        for (c, w) in cells.iter().zip(&widths) {
            l.push_str(&format!(" {c:<w$}"));
        }
        l.trim_end().to_string() + "\n"
    };
    let header: Vec<String> = columns
        .iter()
        .map(|c| {
            if c == "target_index" {
                "#".to_string()
            } else {
                c.clone()
            }
        })
        .collect();
    out.push_str(&line(header));
    for r in rows {
        out.push_str(&line(columns.iter().map(|c| cell(r, c)).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_their_point_and_canonicalize() {
        let s = v1::plan_statement("c", "aa", "bb", "alias/x");
        assert_eq!(
            String::from_utf8(signed_bytes(&s).unwrap()).unwrap(),
            r#"{"audit_key_sha256":"bb","ceremony_file_sha256":"aa","ceremony_id":"c","point":"plan","target_key":"alias/x"}"#
        );
        assert_eq!(statement_sha256(&s).unwrap().len(), 64);
        assert!(describe(&s).contains("    target_key                   alias/x\n"));
    }
}
