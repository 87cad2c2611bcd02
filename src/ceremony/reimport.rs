//! `kind = "reimport"`: the steps that differ from an import.
//!
//! Before the plan approval ([`check_kept`], step `kept_key_check`), each target is matched
//! with a target of the `[source]` transcript that kept its key (the same key ARN, or a
//! multi-Region replica of it: the same `mrk-` key id in another region), the kept key is
//! found on the token by the label the source recorded, copied into a session key inside the
//! HSM under the Security Officer's trusted transfer key, and its KCV is computed now. A KCV
//! that differs from the source's stops the ceremony before anyone approves anything and
//! before any KMS write. From there the session copy takes the place of a generated key: it is
//! wrapped under KMS's public key and imported with ImportType EXISTING_KEY_MATERIAL and the
//! source's KeyMaterialId.
//!
//! Nothing here returns or records key material: only labels, handles and KCVs.

use crate::error::Error;
use crate::transcript::payload::KeptKeyChecked;

use super::source::same_key_or_replica;
use super::target::Status;
use super::{Run, Step, refused};

/// What a reimport target takes from its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReimportFrom {
    /// The source target's index and key ARN.
    pub source_index: u64,
    pub source_key_arn: String,
    /// The kept key's label and the KCV the source recorded (equal to the KCV now).
    pub label: String,
    pub kcv: String,
    /// The KeyMaterialId sent with EXISTING_KEY_MATERIAL.
    pub key_material_id: String,
    /// `same key` or `multi-Region replica`.
    pub relation: &'static str,
}

/// Step `kept_key_check` (reimport only), after `kms_preflight` and before `approve_plan`.
pub(super) fn check_kept(run: &mut Run<'_>) -> Result<(), Error> {
    let Some(source) = run.source.clone() else {
        return Ok(());
    };
    run.enter(Step::KeptKeyCheck)?;
    let Some(trusted) = run.trusted else {
        return Err(refused(
            "a reimport has no trusted transfer key from the Security Officer; this is a bug in byok".into(),
        ));
    };
    let indices: Vec<usize> = run
        .targets
        .iter()
        .filter(|t| t.status == Status::Checked)
        .map(|t| t.spec.index)
        .collect();
    let result = (|| {
        for index in indices {
            run.step = Step::KeptKeyCheck;
            let arn = run.targets[index].arn.clone().unwrap_or_default();
            // The source's kept targets whose key this is, or of which it is a replica.
            let matches: Vec<_> = source
                .kept()
                .filter_map(|s| same_key_or_replica(&s.key_arn, &arn).map(|r| (s.clone(), r)))
                .collect();
            let (from, relation) = match matches.as_slice() {
                [one] => one.clone(),
                [] => {
                    run.fail_at(index);
                    let kept: Vec<String> = source.kept().map(|s| s.key_arn.clone()).collect();
                    return Err(refused(format!(
                        "target {index} ({}) is key {arn}, which is neither a key the source transcript {} kept material of nor a multi-Region replica of one (kept: {}); a reimport puts back only material its source imported and kept",
                        run.targets[index].spec.key,
                        source.path_as_written,
                        if kept.is_empty() {
                            "none".to_string()
                        } else {
                            kept.join(", ")
                        }
                    )));
                }
                _ => {
                    run.fail_at(index);
                    return Err(refused(format!(
                        "target {index} ({arn}) matches {} targets of the source transcript; this is a bug in the source or in byok",
                        matches.len()
                    )));
                }
            };
            let (Some(label), Some(kcv_source), Some(key_material_id)) = (
                from.kept_label.clone(),
                from.kept_kcv.clone(),
                from.key_material_id.clone(),
            ) else {
                return Err(refused(format!(
                    "source target {} lacks a kept label, KCV or KeyMaterialId; this is a bug in byok",
                    from.index
                )));
            };
            let kept = run
                .hsm
                .find_kept_key(&label)
                .inspect_err(|_| run.fail_at(index))?;
            let copy = run
                .hsm
                .copy_kept_to_session(trusted, kept)
                .inspect_err(|_| run.fail_at(index))?;
            run.created.push(copy);
            run.targets[index].key = Some(copy);
            let kcv_now = hex::encode(run.hsm.key_check_value(copy)?);
            let matches = kcv_now == kcv_source;
            run.record(&KeptKeyChecked {
                target_index: index as u64,
                key_arn: arn.clone(),
                source_target_index: from.index,
                source_key_arn: from.key_arn.clone(),
                relation: relation.into(),
                key_material_id: key_material_id.clone(),
                label: label.clone(),
                kept_handle: run.hsm.raw_handle(kept),
                session_handle: run.hsm.raw_handle(copy),
                kcv_now: kcv_now.clone(),
                kcv_source: kcv_source.clone(),
                matches,
                kcv_method: "AES-ECB of one zero block, first 3 bytes".into(),
            })?;
            if !matches {
                run.fail_at(index);
                return Err(refused(format!(
                    "the kept key {label:?} on this token has KCV {kcv_now}, but the source transcript recorded {kcv_source} for {}; it is not the material KMS held: nothing was sent to KMS. Check that this is the token of the source ceremony",
                    from.key_arn
                )));
            }
            run.prompter.say(&format!(
                "  [{index}] {arn}: kept key {label:?} ({relation} of source target {}), KCV {kcv_now} matches the source; KeyMaterialId {key_material_id}",
                from.index
            ));
            let t = &mut run.targets[index];
            t.kcv = Some(kcv_now);
            t.reimport = Some(ReimportFrom {
                source_index: from.index,
                source_key_arn: from.key_arn,
                label,
                kcv: kcv_source,
                key_material_id,
                relation,
            });
        }
        Ok(())
    })();
    // The trusted transfer key has done its work: no later step may wrap anything under it.
    let destroyed = run.hsm.destroy(trusted);
    if destroyed.is_ok() {
        run.created.retain(|k| *k != trusted);
    }
    run.trusted = None;
    result?;
    Ok(destroyed?)
}
