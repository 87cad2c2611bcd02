//! Step `reconcile` of a resumed run (`byok run FILE --resume OLD`): the earlier transcript is
//! verified under the same audit key and must come from the same ceremony file; then every
//! target is reconciled with KMS before anyone approves anything:
//!
//! - imported and recorded earlier, and Enabled in KMS: `done`, skipped;
//! - Enabled in KMS but not recorded as imported (e.g. killed between ImportKeyMaterial's
//!   answer and its record): `imported_unrecorded`, shown to the custodians, recorded, and never
//!   imported twice;
//! - created by the earlier run (recorded, or found by its creation tag when CreateKey's answer
//!   was lost) but not imported: `created`, the key is reused, never created twice;
//! - anything else: `pending`, run in this ceremony under fresh approvals.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::Error;
use crate::kms::Kms;
use crate::spec::Ceremony;
use crate::transcript::RecordType;
use crate::transcript::payload::{Resumes, TargetReconciled};
use crate::transcript::verify::{self, VerifyOptions};

use super::preflight::{CREATED_BY_TAG, created_by};
use super::target::Status;
use super::{Run, Step, refused};

/// What the earlier transcript says of one target.
#[derive(Debug, Clone, Default)]
struct EarlierTarget {
    arn: Option<String>,
    created_arn: Option<String>,
    imported: bool,
    done: bool,
    /// The label of the kept copy the earlier run made.
    kept: Option<String>,
    /// The earlier run's approved import statement listed it: KMS may hold its material, and
    /// a kept copy may exist even if no record says so (a kill right after the copy).
    approved: bool,
    notes: Vec<String>,
}

/// The transcript a run resumes.
pub(crate) struct Earlier {
    pub link: Resumes,
    targets: BTreeMap<usize, EarlierTarget>,
}

impl Earlier {
    /// The token label the earlier run kept for target `index`, if it kept one.
    pub fn kept_label(&self, index: usize) -> Option<&str> {
        self.targets.get(&index).and_then(|t| t.kept.as_deref())
    }

    /// Whether the earlier run's approved import statement listed target `index`.
    pub fn approved(&self, index: usize) -> bool {
        self.targets.get(&index).is_some_and(|t| t.approved)
    }
}

impl Earlier {
    /// Verifies `path` (pinned to the ceremony file's audit key; a transcript cut off by a
    /// crash is accepted) and reads what it says of each target.
    pub fn load(path: &Path, ceremony: &Ceremony) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            what: format!("cannot read the transcript to resume, {}", path.display()),
            source,
        })?;
        let opts = VerifyOptions {
            audit_key_sha256: Some(ceremony.hsm.audit_key_sha256.clone()),
            allow_truncated: true,
            ..VerifyOptions::default()
        };
        let report = verify::verify_bytes(&bytes, &opts).map_err(|invalid| {
            refused(format!(
                "the transcript to resume, {}, is INVALID at {}; byok resumes only a transcript that verifies under this ceremony's audit key",
                path.display(),
                crate::text::escape(&invalid.to_string())
            ))
        })?;
        // Versions 2 and 3 record targets alike; version 1 has one target and no target list.
        if report.version < 2 {
            return Err(refused(format!(
                "{} is a format-version-{} transcript (one target, byok 0.1); it cannot be resumed: check its key in KMS and start a new ceremony",
                path.display(),
                report.version
            )));
        }
        if report.ceremony_file_sha256 != ceremony.source.sha256 {
            return Err(refused(format!(
                "{} was made from a different ceremony file (SHA-256 {}, this one is {}); resume with the same file, byte for byte",
                path.display(),
                report.ceremony_file_sha256,
                ceremony.source.sha256
            )));
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut targets: BTreeMap<usize, EarlierTarget> = BTreeMap::new();
        for line in text.split('\n').take(report.records) {
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let kind = record["type"].as_str().and_then(RecordType::parse);
            let data = &record["data"];
            if kind == Some(RecordType::ImportConfirmed) {
                for t in data["statement"]["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(i) = t["target_index"].as_u64() {
                        targets.entry(i as usize).or_default().approved = true;
                    }
                }
                continue;
            }
            let Some(index) = data["target_index"].as_u64().map(|i| i as usize) else {
                continue;
            };
            let t = targets.entry(index).or_default();
            if let Some(arn) = data["key_arn"].as_str().filter(|a| !a.is_empty()) {
                t.arn = Some(arn.to_string());
            }
            match kind {
                Some(RecordType::KeyCreated) => {
                    t.created_arn = data["key_arn"].as_str().map(str::to_string);
                    t.notes.push("key_created".into());
                }
                Some(RecordType::KeyImported) => {
                    t.imported = true;
                    t.notes.push("key_imported".into());
                }
                Some(RecordType::ImportReconciled) => {
                    let outcome = data["outcome"].as_str().unwrap_or("unknown");
                    t.imported |= outcome == "imported";
                    t.notes.push(format!(
                        "import_reconciled {}",
                        crate::text::escape(outcome)
                    ));
                }
                Some(RecordType::ImportVerified) => t.notes.push("import_verified".into()),
                Some(RecordType::KeyKept) => {
                    t.kept = data["label"].as_str().map(str::to_string);
                    t.notes.push("key_kept".into());
                }
                Some(RecordType::TargetReconciled) => {
                    let status = data["status"].as_str().unwrap_or("");
                    t.done |= matches!(status, "done" | "imported_unrecorded");
                    if status == "created" {
                        t.created_arn = data["key_arn"].as_str().map(str::to_string);
                    }
                    t.notes
                        .push(format!("target_reconciled {}", crate::text::escape(status)));
                }
                _ => {}
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Earlier {
            link: Resumes {
                transcript_name: name,
                last_line_sha256: report.last_line_sha256,
                records: report.records as u64,
                closed: report.closed,
            },
            targets,
        })
    }
}

/// Step `reconcile` (only when resuming).
pub(super) fn targets(run: &mut Run<'_>) -> Result<(), Error> {
    let Some(earlier) = run.earlier.take() else {
        return Ok(());
    };
    let result = reconcile_all(run, &earlier);
    run.earlier = Some(earlier);
    result
}

fn reconcile_all(run: &mut Run<'_>, earlier: &Earlier) -> Result<(), Error> {
    run.enter(Step::Reconcile)?;
    run.prompter.say(&format!(
        "  resuming {} ({} records, {}), last line SHA-256 {}",
        earlier.link.transcript_name,
        earlier.link.records,
        if earlier.link.closed {
            "closed"
        } else {
            "cut off"
        },
        earlier.link.last_line_sha256
    ));
    let kms = run.kms;
    for index in 0..run.targets.len() {
        let before = earlier.targets.get(&index).cloned().unwrap_or_default();
        let spec = run.targets[index].spec.clone();
        let lookup = before.arn.clone().unwrap_or_else(|| spec.key.clone());
        let info = match kms.describe_key(&lookup) {
            Ok(info) => Some(info),
            Err(e) if e.is_code("NotFoundException") => None,
            Err(e) => {
                run.fail_at(index);
                return Err(e.into());
            }
        };
        let mut reuse = None;
        let status = match (&info, before.imported || before.done) {
            (Some(i), true) if i.state == "Enabled" => "done",
            (Some(i), true) => {
                run.fail_at(index);
                return Err(refused(format!(
                    "the earlier transcript records target {index} ({}) as imported, but KMS shows key {} in state {}; investigate before resuming",
                    spec.key, i.arn, i.state
                )));
            }
            (None, true) => {
                run.fail_at(index);
                return Err(refused(format!(
                    "the earlier transcript records target {index} ({}) as imported, but KMS does not find the key; investigate before resuming",
                    spec.key
                )));
            }
            // Only material the earlier run was approved to import is that run's.
            (Some(i), false) if i.state == "Enabled" && earlier.approved(index) => {
                "imported_unrecorded"
            }
            (Some(i), false) => {
                if let Some(label) = &spec.keep_key_label
                    && i.state != "Enabled"
                    && run.hsm.label_exists(label)?
                {
                    run.fail_at(index);
                    return Err(refused(format!(
                        "a kept copy {label:?} exists for target {index} ({}), but KMS shows key {} in state {}, without that material: the copy is stale; have the HSM officer check and destroy it, then resume",
                        spec.key, i.arn, i.state
                    )));
                }
                "pending"
            }
            (None, false) => match &spec.create {
                None => "pending",
                Some(create) => {
                    reuse = match &before.created_arn {
                        Some(arn) => Some(arn.clone()),
                        None => {
                            let tagged = kms.find_tagged_keys(
                                CREATED_BY_TAG,
                                &created_by(&run.ceremony.id, &create.alias),
                            )?;
                            match tagged.as_slice() {
                                [] => None,
                                [one] => Some(one.clone()),
                                many => {
                                    run.fail_at(index);
                                    return Err(refused(format!(
                                        "{} keys carry the creation tag of target {index} ({}): {}; keep one, schedule the others for deletion, then resume",
                                        many.len(),
                                        create.alias,
                                        many.join(", ")
                                    )));
                                }
                            }
                        }
                    };
                    if reuse.is_some() {
                        "created"
                    } else {
                        "pending"
                    }
                }
            },
        };
        let reused_info = match &reuse {
            Some(arn) => Some(kms.describe_key(arn)?),
            None => None,
        };
        let shown = info.as_ref().or(reused_info.as_ref());
        let t = &mut run.targets[index];
        t.arn = shown.map(|i| i.arn.clone());
        t.reuse_created = reuse;
        t.status = match status {
            "done" => Status::DoneEarlier,
            "imported_unrecorded" => Status::ImportedUnrecorded,
            _ => Status::NotStarted,
        };
        if status == "done" {
            t.kcv = None;
        }
        let record = TargetReconciled {
            target_index: index as u64,
            key_arn: t.arn.clone(),
            status: status.into(),
            key_state: shown.map(|i| i.state.clone()),
            current_key_material_id: shown.and_then(|i| i.current_key_material_id.clone()),
            earlier: before.notes.clone(),
        };
        run.record(&record)?;
        let line = format!(
            "  [{index}] {:<40} {:<20} {}",
            spec.key,
            status,
            shown.map(|i| i.state.as_str()).unwrap_or("(no key yet)")
        );
        if status == "imported_unrecorded" {
            run.prompter.warn(&format!(
                "{} — KMS holds material the earlier transcript does not record as imported (the run was cut off after ImportKeyMaterial); it is recorded and will not be imported again",
                line.trim()
            ));
        } else {
            run.prompter.say(&line);
        }
    }
    Ok(())
}
