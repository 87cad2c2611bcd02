//! The earlier transcript a ceremony builds on (`[source]` in the ceremony file): verified in
//! full under the ceremony's audit key, closed by `ceremony_finished`, and pinned by the
//! SHA-256 of its last line (the fingerprint written on paper when it ended). Only then are
//! its facts read: its ceremony id and kind, and what each target ended with (key ARN,
//! KeyMaterialId, KCV and the label of its kept key).
//!
//! Kinds that build on an earlier ceremony (`reimport`, `rollback`) read their facts from
//! here and from nowhere else: a reimport the kept keys, a rollback the aliases the source
//! moved (`alias_updated`). This module never touches the HSM or KMS.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::Error;
use crate::text::escape;
use crate::transcript::RecordType;
use crate::transcript::payload::{AliasUpdated, KeyImported, KeyKept, SourceSwap, SourceVerified};
use crate::transcript::verify::{self, VerifyOptions};

use super::refused;

/// What the source transcript says of one of its targets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceTarget {
    /// The target's index in the source ceremony.
    pub index: u64,
    /// The key ARN the source imported into.
    pub key_arn: String,
    /// The KeyMaterialId KMS returned for the import (or, when its answer was lost, the one
    /// the source's `ceremony_finished` gives).
    pub key_material_id: Option<String>,
    /// The ImportType the source sent.
    pub import_type: Option<String>,
    /// The label of the kept copy (`key_kept`), when the source kept the key.
    pub kept_label: Option<String>,
    /// The kept copy's KCV (`key_kept`): the KCV of the material KMS holds.
    pub kept_kcv: Option<String>,
    /// The target's status in `ceremony_finished` (`imported`, `rotated`, …).
    pub status: String,
}

/// A verified source transcript.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as the ceremony file wrote it.
    pub path_as_written: String,
    pub last_line_sha256: String,
    pub ceremony_id: String,
    pub kind: String,
    /// Its `ceremony_started.strategy` (a rotation), if any.
    pub strategy: Option<String>,
    pub records: u64,
    pub format_version: u64,
    /// Whether its ceremony file turned dual control on.
    pub dual_control: bool,
    /// Every target that has an entry in its final record, by index.
    pub targets: BTreeMap<u64, SourceTarget>,
    /// Every alias it moved (`alias_updated`), in order.
    pub swaps: Vec<SourceSwap>,
}

impl Source {
    /// Reads `path`, verifies it under `audit_key_sha256` (not truncated: it must end with
    /// `ceremony_finished`, or, when `aborted_too`, with `ceremony_aborted`) and checks that
    /// its last line's SHA-256 is `last_line_sha256`. `as_written` is the path as the
    /// ceremony file gives it, for messages and the record.
    pub fn load(
        path: &Path,
        as_written: &str,
        last_line_sha256: &str,
        audit_key_sha256: &str,
        aborted_too: bool,
    ) -> Result<Source, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            what: format!(
                "cannot read the source transcript {as_written} ({})",
                path.display()
            ),
            source,
        })?;
        let opts = VerifyOptions {
            audit_key_sha256: Some(audit_key_sha256.to_string()),
            allow_truncated: false,
            ..VerifyOptions::default()
        };
        // Whatever comes from the transcript is printed escaped: it was written by whoever held
        // the audit key, and must not drive the operator's terminal.
        let as_written = &*escape(as_written);
        let report = verify::verify_bytes(&bytes, &opts).map_err(|invalid| {
            refused(format!(
                "the source transcript {as_written} is INVALID at {}; byok builds only on a transcript that verifies under this ceremony's audit key (hsm.audit_key_sha256)",
                escape(&invalid.to_string())
            ))
        })?;
        if !report
            .last_line_sha256
            .eq_ignore_ascii_case(last_line_sha256)
        {
            return Err(refused(format!(
                "the source transcript {as_written} ends with a line whose SHA-256 is {}, but source.last_line_sha256 pins {}; use the transcript whose fingerprint is on paper",
                report.last_line_sha256,
                last_line_sha256.to_ascii_lowercase()
            )));
        }
        if report.outcome != RecordType::CeremonyFinished
            && !(aborted_too && report.outcome == RecordType::CeremonyAborted)
        {
            return Err(refused(format!(
                "the source transcript {as_written} ends with {}, not ceremony_finished; byok builds only on a ceremony that finished",
                report.outcome
            )));
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut kind = "import".to_string();
        let mut strategy = None;
        let mut swaps = Vec::new();
        let mut targets: BTreeMap<u64, SourceTarget> = BTreeMap::new();
        for t in &report.targets {
            targets.insert(
                t.index,
                SourceTarget {
                    index: t.index,
                    key_arn: t.key_arn.clone().unwrap_or_default(),
                    key_material_id: t.key_material_id.clone(),
                    status: t.status.clone(),
                    ..SourceTarget::default()
                },
            );
        }
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            // Every line verified above; a line that does not parse cannot be here.
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let data = record["data"].clone();
            match record["type"].as_str().and_then(RecordType::parse) {
                Some(RecordType::CeremonyStarted) => {
                    if let Some(k) = data["kind"].as_str() {
                        kind = k.to_string();
                    }
                    strategy = data["strategy"].as_str().map(str::to_string);
                }
                Some(RecordType::KeyImported) => {
                    let r: KeyImported = typed(as_written, data)?;
                    if let Some(t) = targets.get_mut(&r.target_index) {
                        t.import_type = Some(r.import_type);
                        if r.key_material_id.is_some() {
                            t.key_material_id = r.key_material_id;
                        }
                    }
                }
                Some(RecordType::AliasUpdated) => {
                    let r: AliasUpdated = typed(as_written, data)?;
                    swaps.push(SourceSwap {
                        alias: r.alias,
                        from_key_arn: r.from_key_arn,
                        to_key_arn: r.to_key_arn,
                    });
                }
                Some(RecordType::KeyKept) => {
                    let r: KeyKept = typed(as_written, data)?;
                    if let Some(t) = targets.get_mut(&r.target_index) {
                        t.kept_label = Some(r.label);
                        t.kept_kcv = Some(r.kcv);
                    }
                }
                _ => {}
            }
        }
        let source = Source {
            path_as_written: as_written.to_string(),
            last_line_sha256: report.last_line_sha256,
            ceremony_id: report.ceremony_id,
            kind,
            strategy,
            records: report.records as u64,
            format_version: report.version,
            dual_control: report.quorum.is_some(),
            targets,
            swaps,
        };
        source.plain_text()?;
        Ok(source)
    }

    /// Refuses a source whose facts are not plain text (a control or bidi character in an id,
    /// label, alias or ARN): every later message prints them, and byok matches them against
    /// the token and KMS. The message shows the value escaped.
    fn plain_text(&self) -> Result<(), Error> {
        let mut facts: Vec<(String, &str)> = vec![
            ("ceremony_id".into(), &self.ceremony_id),
            ("kind".into(), &self.kind),
        ];
        if let Some(s) = &self.strategy {
            facts.push(("strategy".into(), s));
        }
        for t in self.targets.values() {
            let i = t.index;
            facts.push((format!("target {i} key_arn"), &t.key_arn));
            facts.push((format!("target {i} status"), &t.status));
            for (what, v) in [
                ("key_material_id", &t.key_material_id),
                ("import_type", &t.import_type),
                ("kept label", &t.kept_label),
                ("kept kcv", &t.kept_kcv),
            ] {
                if let Some(v) = v {
                    facts.push((format!("target {i} {what}"), v));
                }
            }
        }
        for s in &self.swaps {
            for v in [&s.alias, &s.from_key_arn, &s.to_key_arn] {
                facts.push(("an alias move".into(), v));
            }
        }
        match facts
            .iter()
            .find_map(|(what, v)| crate::text::forbidden_char(v).map(|(at, c)| (what, v, at, c)))
        {
            None => Ok(()),
            Some((what, v, at, c)) => Err(refused(format!(
                "the source transcript {} records {what} \"{}\", whose character {} is U+{:04X}, not plain text; byok builds only on a transcript whose names and ids are plain text",
                self.path_as_written,
                escape(v),
                at + 1,
                c as u32
            ))),
        }
    }

    /// The source's targets that kept a key whose material KMS holds, with everything a
    /// reimport needs (KeyMaterialId, kept label and KCV).
    pub fn kept(&self) -> impl Iterator<Item = &SourceTarget> {
        self.targets.values().filter(|t| {
            t.kept_label.is_some()
                && t.kept_kcv.is_some()
                && t.key_material_id.is_some()
                && matches!(t.status.as_str(), "imported" | "rotated")
        })
    }

    /// The `source_verified` record.
    pub fn record(&self) -> SourceVerified {
        SourceVerified {
            transcript: self.path_as_written.clone(),
            last_line_sha256: self.last_line_sha256.clone(),
            ceremony_id: self.ceremony_id.clone(),
            kind: self.kind.clone(),
            strategy: self.strategy.clone(),
            records: self.records,
            format_version: self.format_version,
            dual_control: self.dual_control,
            kept_targets: self
                .kept()
                .map(|t| crate::transcript::payload::SourceKept {
                    target_index: t.index,
                    key_arn: t.key_arn.clone(),
                    key_material_id: t.key_material_id.clone().unwrap_or_default(),
                    kcv: t.kept_kcv.clone().unwrap_or_default(),
                    kept_label: t.kept_label.clone().unwrap_or_default(),
                })
                .collect(),
            swaps: self.swaps.clone(),
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(as_written: &str, data: Value) -> Result<T, Error> {
    serde_json::from_value(data).map_err(|e| {
        refused(format!(
            "the source transcript {} has a record byok cannot read: {}",
            escape(as_written),
            escape(&e.to_string())
        ))
    })
}

/// The key id of a KMS key ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID` → `ID`).
pub fn key_id_of(arn: &str) -> Option<&str> {
    arn.rsplit_once(":key/").map(|(_, id)| id)
}

/// The region and account of a KMS key ARN.
pub fn region_account_of(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.split(':');
    let (_arn, _aws, _kms) = (parts.next()?, parts.next()?, parts.next()?);
    Some((parts.next()?, parts.next()?))
}

/// Whether `target_arn` is the source's key `source_arn` itself, or a multi-Region replica of
/// it: the same `mrk-` key id and account, in another region.
pub fn same_key_or_replica(source_arn: &str, target_arn: &str) -> Option<&'static str> {
    if source_arn == target_arn {
        return Some("same key");
    }
    let (Some(a), Some(b)) = (key_id_of(source_arn), key_id_of(target_arn)) else {
        return None;
    };
    let (Some((ra, acct_a)), Some((rb, acct_b))) =
        (region_account_of(source_arn), region_account_of(target_arn))
    else {
        return None;
    };
    (a == b && a.starts_with("mrk-") && acct_a == acct_b && ra != rb)
        .then_some("multi-Region replica")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_shares_the_mrk_id_and_account_in_another_region() {
        let p = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd";
        assert_eq!(same_key_or_replica(p, p), Some("same key"));
        assert_eq!(
            same_key_or_replica(p, "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd"),
            Some("multi-Region replica")
        );
        // Another account, another id, or a single-Region key of the same id elsewhere.
        assert_eq!(
            same_key_or_replica(p, "arn:aws:kms:eu-west-1:444455556666:key/mrk-1234abcd"),
            None
        );
        assert_eq!(
            same_key_or_replica(p, "arn:aws:kms:eu-west-1:111122223333:key/mrk-9999"),
            None
        );
        let single = "arn:aws:kms:us-east-1:111122223333:key/1234abcd";
        assert_eq!(
            same_key_or_replica(single, "arn:aws:kms:eu-west-1:111122223333:key/1234abcd"),
            None
        );
    }
}
