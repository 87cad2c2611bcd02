//! The two approval points: `approve_plan` (the whole target list, before anything changes)
//! and `confirm_import` (every wrapped target at once, before any ImportKeyMaterial).
//!
//! At each point a quorum of distinct custodians signs the statement on their own tokens; in a
//! rehearsal (dual control off) the operator alone confirms the import. Every approval and
//! refusal is recorded.

use serde_json::Value;

use crate::error::Error;
use crate::hsm::HsmError;
use crate::quorum::{self, ImportStatement, ImportTarget, PlanStatement};
use crate::spec::DualControl;
use crate::transcript::payload::{Approval, Declined, ImportConfirmed};

use super::target::Status;
use super::{PIN_ATTEMPTS, Run, Step, refused};

/// Step `approve_plan`.
pub(super) fn plan(run: &mut Run<'_>) -> Result<(), Error> {
    run.enter(Step::ApprovePlan)?;
    let c = run.ceremony;
    let statement = PlanStatement {
        point: quorum::PLAN.into(),
        ceremony_id: c.id.clone(),
        ceremony_file_sha256: c.source.sha256.clone(),
        audit_key_sha256: run.signer.fingerprint(),
        targets: c.targets.iter().map(|t| t.key.clone()).collect(),
        resumes: run
            .earlier
            .as_ref()
            .map(|e| e.link.last_line_sha256.clone()),
    };
    let pending = run.pending().len();
    run.prompter.say(&format!(
        "  {} target{} ({} to import in this run)",
        c.targets.len(),
        if c.targets.len() == 1 { "" } else { "s" },
        pending
    ));
    let value = quorum::to_value(&statement).map_err(|e| refused(e.to_string()))?;
    approve(run, quorum::PLAN, value)?;
    Ok(())
}

/// Step `confirm_import`: the statement lists every wrapped target.
pub(super) fn import(run: &mut Run<'_>) -> Result<(), Error> {
    run.enter(Step::ConfirmImport)?;
    let c = run.ceremony;
    let mut targets = Vec::new();
    for t in run.targets.iter().filter(|t| t.status == Status::Wrapped) {
        let (Some(arn), Some(blob), Some(token), Some(kcv), Some(pk)) = (
            &t.arn,
            &t.blob_sha256,
            &t.token,
            &t.kcv,
            &t.public_key_sha256,
        ) else {
            return Err(refused(format!(
                "target {} ({}) is wrapped but its facts are incomplete; this is a bug in byok",
                t.spec.index, t.spec.key
            )));
        };
        targets.push(ImportTarget {
            target_index: t.spec.index as u64,
            key_arn: arn.clone(),
            wrapping_algorithm: c.import.algorithm.kms_name().into(),
            wrapping_key_spec: c.import.key_spec.kms_name().into(),
            wrapping_public_key_sha256: pk.clone(),
            blob_sha256: blob.clone(),
            import_token_sha256: token.sha256_hex(),
            kcv: kcv.clone(),
        });
    }
    if targets.is_empty() {
        run.prompter
            .say("  nothing to import in this run: every target is already done");
        return Ok(());
    }
    let statement = ImportStatement {
        point: quorum::IMPORT.into(),
        ceremony_id: c.id.clone(),
        expiration_model: c.import.expiration.model().into(),
        valid_to: c.import.expiration.valid_to().map(crate::rfc3339::format),
        targets,
    };
    let value = quorum::to_value(&statement).map_err(|e| refused(e.to_string()))?;
    let approved_by = approve(run, quorum::IMPORT, value.clone())?;
    let statement_sha256 = quorum::statement_sha256(&value).map_err(|e| refused(e.to_string()))?;
    run.record(&ImportConfirmed {
        approved_by,
        dual_control: !matches!(c.dual_control, DualControl::Off),
        statement: value,
        statement_sha256,
    })
}

/// An approval point: the quorum of custodians (or, in a rehearsal, the operator) approves
/// `statement`. Returns who approved.
fn approve(run: &mut Run<'_>, point: &'static str, statement: Value) -> Result<Vec<String>, Error> {
    let digest = quorum::statement_sha256(&statement).map_err(|e| refused(e.to_string()))?;
    let (quorum_size, custodians) = match &run.ceremony.dual_control {
        DualControl::Off => {
            run.prompter.warn(
                "REHEARSAL: dual control is OFF in this ceremony file; the operator alone approves",
            );
            if point == quorum::PLAN {
                return Ok(Vec::new());
            }
            run.prompter.say(&format!(
                "  Statement ({point}), SHA-256 {digest}:\n{}",
                quorum::describe(&statement)
            ));
            if !run
                .prompter
                .confirm("confirm-import", "Import this key material into KMS?")?
            {
                return Err(Error::Declined {
                    what: "the import confirmation".into(),
                });
            }
            let by = vec![run.ceremony.operator.clone()];
            run.approvals.push((point.to_string(), by.clone()));
            return Ok(by);
        }
        DualControl::Quorum { quorum, custodians } => (*quorum, custodians),
    };
    let signed = quorum::signed_bytes(&statement).map_err(|e| refused(e.to_string()))?;
    run.prompter.say(&format!(
        "  {quorum_size} of {} custodians must approve this statement ({point}), SHA-256 {digest}:\n{}",
        custodians.len(),
        quorum::describe(&statement)
    ));
    let names: Vec<String> = custodians.iter().map(|k| k.name.clone()).collect();
    let mut approved: Vec<String> = Vec::new();
    while approved.len() < quorum_size {
        let pick = run.prompter.select(
            &format!("approver-{point}"),
            &format!(
                "Custodian approving the {point} ({} of {quorum_size})",
                approved.len() + 1
            ),
            &names,
        )?;
        let custodian = &custodians[pick];
        if approved.contains(&custodian.name) {
            run.prompter.warn(&format!(
                "{} has already approved this statement; a different custodian must approve ({} of {quorum_size} so far)",
                custodian.name,
                approved.len()
            ));
            continue;
        }
        let yes = run.prompter.confirm(
            &format!("approve-{point}"),
            &format!(
                "{}, do you approve this {point} statement (SHA-256 {digest})?",
                custodian.name
            ),
        )?;
        if !yes {
            run.record(&Declined {
                point: point.into(),
                custodian: custodian.name.clone(),
                statement: statement.clone(),
                statement_sha256: digest.clone(),
            })?;
            return Err(Error::Declined {
                what: format!("the {point} approval by {}", custodian.name),
            });
        }
        let approval = custodian_signature(run, custodian, &signed)?;
        quorum::check_approval(
            &custodian.name,
            &custodian.public_key_sha256,
            &approval.spki,
            &signed,
            &approval.signature,
        )
        .map_err(|e| refused(e.to_string()))?;
        run.record(&Approval {
            point: point.into(),
            custodian: custodian.name.clone(),
            public_key: super::b64(&approval.spki),
            public_key_sha256: crate::ecdsa::fingerprint(&approval.spki),
            statement: statement.clone(),
            statement_sha256: digest.clone(),
            signature: super::b64(&approval.signature),
        })?;
        approved.push(custodian.name.clone());
        run.prompter.say(&format!(
            "  approved by {} ({} of {quorum_size})",
            custodian.name,
            approved.len()
        ));
    }
    run.approvals.push((point.to_string(), approved.clone()));
    Ok(approved)
}

/// The custodian's PIN (with retries) and signature on their own token.
fn custodian_signature(
    run: &mut Run<'_>,
    custodian: &crate::spec::Custodian,
    signed: &[u8],
) -> Result<crate::hsm::ApprovalSignature, Error> {
    let mut attempt = 1;
    loop {
        let pin = run.prompter.secret(
            "custodian-pin",
            &format!("PIN for {}'s token ({})", custodian.name, custodian.token),
        )?;
        match run.custodians.sign_approval(
            custodian.module.as_ref(),
            &custodian.token,
            &custodian.key_label,
            &pin,
            signed,
        ) {
            Err(HsmError::PinIncorrect { token }) if attempt < PIN_ATTEMPTS => {
                run.prompter.warn(&format!(
                    "the PIN for {}'s token {token:?} is incorrect (attempt {attempt} of {PIN_ATTEMPTS}); try again",
                    custodian.name
                ));
                attempt += 1;
            }
            result => return Ok(result?),
        }
    }
}
