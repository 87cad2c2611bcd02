//! What the ceremonies say they imported: every transcript in `--transcripts DIR`, verified
//! under the audit keys the rotation policy pins, reduced to claims of (key ARN,
//! KeyMaterialId, when). Only a transcript that verifies is believed; the others are listed
//! with the reason and explain nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;

use crate::transcript::verify::{self, VerifyOptions};

/// One import a verified transcript records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub file: PathBuf,
    pub ceremony_id: String,
    /// `import`, `rotate`, `reimport` or `rollback`.
    pub kind: String,
    pub key_arn: String,
    /// None when ImportKeyMaterial's answer was lost and nothing later named the material.
    pub key_material_id: Option<String>,
    /// The `key_imported` record's time (or, for a material only the closing record names,
    /// that record's time: an upper bound).
    pub imported_at: OffsetDateTime,
    /// When the material became the key's current one, when this transcript shows it: the
    /// import itself for a first import (kind `import`), `key_rotated` for a rotation.
    pub current_since: Option<OffsetDateTime>,
    pub import_type: String,
    pub expiration_model: Option<String>,
    pub valid_to: Option<OffsetDateTime>,
}

/// One file of DIR and what came of verifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptEntry {
    pub file: PathBuf,
    pub verified: bool,
    pub ceremony_id: Option<String>,
    pub audit_key_sha256: Option<String>,
    /// Why it is not believed.
    pub problem: Option<String>,
    /// How many imports it records (0 when not verified).
    pub claims: usize,
}

/// Every transcript of DIR and the claims of the verified ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub transcripts: Vec<TranscriptEntry>,
    pub claims: Vec<Claim>,
}

/// DIR could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the transcripts directory {dir}; give the directory the ceremonies' transcripts are kept in"
)]
pub struct LedgerError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Ledger {
    /// The claims on `key_arn`.
    pub fn claims_on<'a>(&'a self, key_arn: &'a str) -> impl Iterator<Item = &'a Claim> + 'a {
        self.claims.iter().filter(move |c| c.key_arn == key_arn)
    }
}

/// Reads every `*.jsonl` file of `dir` (not its subdirectories), in name order, and verifies
/// each under the one of `audit_keys` its record 0 names.
pub fn read_dir(dir: &Path, audit_keys: &[String]) -> Result<Ledger, LedgerError> {
    let err = |source| LedgerError {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl") && p.is_file());
    files.sort();
    let mut ledger = Ledger::default();
    for file in files {
        let (entry, claims) = match std::fs::read(&file) {
            Ok(bytes) => read_one(&file, &bytes, audit_keys),
            Err(e) => (
                TranscriptEntry {
                    file: file.clone(),
                    verified: false,
                    ceremony_id: None,
                    audit_key_sha256: None,
                    problem: Some(format!("cannot read it: {e}")),
                    claims: 0,
                },
                Vec::new(),
            ),
        };
        ledger.transcripts.push(entry);
        ledger.claims.extend(claims);
    }
    Ok(ledger)
}

/// Verifies one transcript and extracts its claims.
pub fn read_one(file: &Path, bytes: &[u8], audit_keys: &[String]) -> (TranscriptEntry, Vec<Claim>) {
    let first: Option<Value> = bytes
        .split(|&b| b == b'\n')
        .next()
        .and_then(|l| serde_json::from_slice(l).ok());
    let audit = first
        .as_ref()
        .and_then(|r| r["data"]["audit_key_sha256"].as_str())
        .map(str::to_string);
    let ceremony_id = first
        .as_ref()
        .and_then(|r| r["data"]["ceremony_id"].as_str())
        .map(str::to_string);
    let mut entry = TranscriptEntry {
        file: file.to_path_buf(),
        verified: false,
        ceremony_id,
        audit_key_sha256: audit.clone(),
        problem: None,
        claims: 0,
    };
    let Some(fp) = audit.filter(|a| audit_keys.contains(a)) else {
        entry.problem = Some(match &entry.audit_key_sha256 {
            Some(a) => format!(
                "signed by audit key {}, which neither the policy's [transcripts] audit_key_sha256 nor --audit-key-sha256 pins",
                crate::text::escape(a)
            ),
            None => "record 0 names no audit key: not a byok transcript".to_string(),
        });
        return (entry, Vec::new());
    };
    let opts = VerifyOptions {
        audit_key_sha256: Some(fp),
        ..VerifyOptions::default()
    };
    match verify::verify_bytes(bytes, &opts) {
        Err(invalid) => {
            entry.problem = Some(format!(
                "does not verify (line {}): {}",
                invalid.line, invalid.problem
            ));
            (entry, Vec::new())
        }
        Ok(report) => {
            let claims = claims_of(file, &report.ceremony_id, bytes);
            entry.verified = true;
            entry.ceremony_id = Some(report.ceremony_id);
            entry.claims = claims.len();
            (entry, claims)
        }
    }
}

impl Claim {
    /// A claim of a NEW_KEY_MATERIAL import that only its `key_rotated` or closing record
    /// names, dated `at`.
    fn named_by(
        file: &Path,
        ceremony_id: &str,
        kind: &str,
        key_arn: String,
        id: String,
        at: OffsetDateTime,
    ) -> Claim {
        Claim {
            file: file.to_path_buf(),
            ceremony_id: ceremony_id.to_string(),
            kind: kind.to_string(),
            key_arn,
            key_material_id: Some(id),
            imported_at: at,
            current_since: None,
            import_type: "NEW_KEY_MATERIAL".to_string(),
            expiration_model: None,
            valid_to: None,
        }
    }
}

fn time_of(record: &Value) -> Option<OffsetDateTime> {
    record["time"].as_str().and_then(crate::rfc3339::parse)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// The imports a verified transcript records: `key_imported` (with the material id from
/// `import_verified` when the answer was lost), `key_rotated` (when the material became
/// current) and targets the closing record says are done with a material no record of this
/// run names (`done`, `imported_unrecorded`: a resumed run).
fn claims_of(file: &Path, ceremony_id: &str, bytes: &[u8]) -> Vec<Claim> {
    let records: Vec<Value> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    let kind = records
        .first()
        .and_then(|r| text(&r["data"]["kind"]))
        .unwrap_or_else(|| "import".to_string());
    let mut claims: Vec<Claim> = Vec::new();
    // target_index → position in `claims` of its key_imported claim.
    let mut by_target: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &records {
        let d = &r["data"];
        let Some(at) = time_of(r) else { continue };
        match r["type"].as_str() {
            Some("key_imported") => {
                let (Some(key_arn), Some(import_type)) =
                    (text(&d["key_arn"]), text(&d["import_type"]))
                else {
                    continue;
                };
                let first_import = kind != "rotate" && import_type == "NEW_KEY_MATERIAL";
                if let Some(i) = d["target_index"].as_u64() {
                    by_target.insert(i, claims.len());
                }
                claims.push(Claim {
                    file: file.to_path_buf(),
                    ceremony_id: ceremony_id.to_string(),
                    kind: kind.clone(),
                    key_arn,
                    key_material_id: text(&d["key_material_id"]),
                    imported_at: at,
                    current_since: first_import.then_some(at),
                    import_type,
                    expiration_model: text(&d["expiration_model"]),
                    valid_to: d["valid_to"].as_str().and_then(crate::rfc3339::parse),
                });
            }
            Some("import_verified") => {
                let found = d["target_index"]
                    .as_u64()
                    .and_then(|i| by_target.get(&i))
                    .and_then(|&i| claims.get_mut(i));
                if let Some(c) = found
                    && c.key_material_id.is_none()
                    && c.current_since.is_some()
                {
                    // A first import's material is the key's current one right after it.
                    c.key_material_id = text(&d["current_key_material_id"]);
                }
            }
            Some("key_rotated") => {
                let (Some(key_arn), Some(id)) = (text(&d["key_arn"]), text(&d["key_material_id"]))
                else {
                    continue;
                };
                match claims.iter_mut().find(|c| {
                    c.key_arn == key_arn && c.key_material_id.as_deref() == Some(id.as_str())
                }) {
                    Some(c) => c.current_since = Some(at),
                    None => claims.push(Claim {
                        current_since: Some(at),
                        ..Claim::named_by(file, ceremony_id, &kind, key_arn, id, at)
                    }),
                }
            }
            Some("ceremony_finished") => {
                for t in d["targets"].as_array().into_iter().flatten() {
                    let status = t["status"].as_str().unwrap_or_default();
                    let (Some(key_arn), Some(id)) =
                        (text(&t["key_arn"]), text(&t["key_material_id"]))
                    else {
                        continue;
                    };
                    if !matches!(status, "done" | "imported_unrecorded")
                        || claims.iter().any(|c| {
                            c.key_arn == key_arn
                                && c.key_material_id.as_deref() == Some(id.as_str())
                        })
                    {
                        continue;
                    }
                    claims.push(Claim::named_by(file, ceremony_id, &kind, key_arn, id, at));
                }
            }
            _ => {}
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "docs/examples/fleet-6-targets.jsonl";
    const EXAMPLE_AUDIT: &str = "f2db8f72b376193f07cbb03226c68465e36a165319dfbe161b7767440a99344b";

    fn example() -> Vec<u8> {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE)).unwrap()
    }

    #[test]
    fn a_pinned_transcript_gives_one_claim_per_import() {
        let (entry, claims) = read_one(Path::new(EXAMPLE), &example(), &[EXAMPLE_AUDIT.into()]);
        assert!(entry.verified, "{:?}", entry.problem);
        assert_eq!(claims.len(), 6);
        for c in &claims {
            assert!(
                c.key_arn
                    .starts_with("arn:aws:kms:us-east-1:000000000000:key/")
            );
            assert_eq!(c.key_material_id.as_deref().map(str::len), Some(64));
            assert_eq!(c.current_since, Some(c.imported_at));
            assert_eq!(c.import_type, "NEW_KEY_MATERIAL");
        }
    }

    #[test]
    fn an_unpinned_or_altered_transcript_explains_nothing() {
        let (entry, claims) = read_one(Path::new(EXAMPLE), &example(), &[]);
        assert!(!entry.verified && claims.is_empty());
        assert!(entry.problem.unwrap().contains("pins"));
        let altered = String::from_utf8(example()).unwrap().replacen(
            "\"import_type\":\"NEW_KEY_MATERIAL\"",
            "\"import_type\":\"EXISTING_KEY_MATERIAL\"",
            1,
        );
        let (entry, claims) = read_one(
            Path::new(EXAMPLE),
            altered.as_bytes(),
            &[EXAMPLE_AUDIT.into()],
        );
        assert!(!entry.verified && claims.is_empty());
        assert!(entry.problem.unwrap().contains("does not verify"));
    }
}
