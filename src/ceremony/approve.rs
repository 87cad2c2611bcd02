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
use crate::spec::{Custodian, DualControl};
use crate::transcript::payload::{Approval, ApprovalFailed, Declined, ImportConfirmed};

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
        run_id: Some(run.run_id.clone()),
    };
    let human = super::plan::approval_view(
        c,
        &run.targets,
        run.earlier
            .as_ref()
            .map(|e| e.link.transcript_name.as_str()),
        run.whereabouts.as_ref(),
    );
    let value = quorum::to_value(&statement).map_err(|e| refused(e.to_string()))?;
    approve(run, quorum::PLAN, value, &human)?;
    Ok(())
}

/// Import parameters that expire within this margin after the approval are not used: KMS
/// needs them valid when ImportKeyMaterial arrives.
pub const PARAMETERS_MARGIN_SECONDS: i64 = 60;

/// How many times the import statement is put to the custodians again because parameters
/// expired while they deliberated, before byok gives up.
const REAPPROVALS: usize = 3;

/// Step `confirm_import`: the statement lists every wrapped target. When import parameters
/// expire while the custodians deliberate, byok fetches new ones, wraps the same keys again and
/// asks for the approval again: an approval of the old statement does not carry over.
pub(super) fn import(run: &mut Run<'_>, test: &crate::wrap::SelfTest) -> Result<(), Error> {
    run.enter(Step::ConfirmImport)?;
    for round in 0..=REAPPROVALS {
        let Some((value, approved_by)) = import_once(run)? else {
            return Ok(());
        };
        let limit = (run.now)() + time::Duration::seconds(PARAMETERS_MARGIN_SECONDS);
        let stale: Vec<usize> = run
            .targets
            .iter()
            .filter(|t| t.status == Status::Wrapped)
            .filter(|t| t.parameters_valid_to.is_some_and(|v| v <= limit))
            .map(|t| t.spec.index)
            .collect();
        if stale.is_empty() {
            let c = run.ceremony;
            let statement_sha256 =
                quorum::statement_sha256(&value).map_err(|e| refused(e.to_string()))?;
            return run.record(&ImportConfirmed {
                approved_by,
                dual_control: !matches!(c.dual_control, DualControl::Off),
                statement: value,
                statement_sha256,
            });
        }
        if round == REAPPROVALS {
            break;
        }
        run.prompter.warn(&format!(
            "the import parameters of {} target(s) expired, or expire within {PARAMETERS_MARGIN_SECONDS} s, while the statement was being approved; byok fetches new ones, wraps the same keys again, and asks for the import approval again (the approval just given does not carry over)",
            stale.len()
        ));
        run.approvals.retain(|(point, _)| point != quorum::IMPORT);
        super::prepare::refresh(run, test, &stale)?;
        run.enter(Step::ConfirmImport)?;
    }
    Err(refused(format!(
        "the import parameters expired {} times while the statement was being approved; KMS's ParametersValidTo is too short for this ceremony's approvals: approve faster, or check the KMS endpoint",
        REAPPROVALS + 1
    )))
}

/// One round of the import approval: the statement of every wrapped target, approved. None
/// when nothing is left to import.
fn import_once(run: &mut Run<'_>) -> Result<Option<(Value, Vec<String>)>, Error> {
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
            key_material_id: t.reimport.as_ref().map(|r| r.key_material_id.clone()),
        });
    }
    if targets.is_empty() {
        run.prompter
            .say("  nothing to import in this run: every target is already done");
        return Ok(None);
    }
    let statement = ImportStatement {
        point: quorum::IMPORT.into(),
        ceremony_id: c.id.clone(),
        expiration_model: c.import.expiration.model().into(),
        valid_to: c.import.expiration.valid_to().map(crate::rfc3339::format),
        targets,
        kind: match c.import.kind {
            crate::spec::Kind::Import | crate::spec::Kind::Rollback => None,
            crate::spec::Kind::Rotate { .. } | crate::spec::Kind::AliasSwap { .. } => {
                Some("rotate".into())
            }
            crate::spec::Kind::Reimport => Some("reimport".into()),
        },
        key_material_description: c.import.kind.key_material_description().map(str::to_string),
        source_last_line_sha256: run.source.as_ref().map(|s| s.last_line_sha256.clone()),
        run_id: Some(run.run_id.clone()),
    };
    let value = quorum::to_value(&statement).map_err(|e| refused(e.to_string()))?;
    let what = match &run.source {
        Some(source) => format!(
            "import the kept key material of ceremony {} (source transcript {}, last line SHA-256 {}) again into these KMS keys, as EXISTING_KEY_MATERIAL with the KeyMaterialId listed per key",
            source.ceremony_id, source.path_as_written, source.last_line_sha256
        ),
        None => "import the wrapped key material into these KMS keys".to_string(),
    };
    let human = format!("  What you approve: {what}\n{}", quorum::describe(&value));
    let approved_by = approve(run, quorum::IMPORT, value.clone(), &human)?;
    Ok(Some((value, approved_by)))
}

/// An approval point: the quorum of custodians (or, in a rehearsal, the operator) approves
/// `statement`, after seeing `human` (what the statement means) and its SHA-256 on a line of
/// its own. Returns who approved.
///
/// A custodian chosen by mistake goes back to the list (nothing recorded). A decline is
/// recorded only when the custodian signs it on their own token. A custodian who cannot sign
/// (PIN wrong every attempt, PIN locked, token or key missing) is recorded in
/// `approval_failed` and left out; another custodian may step in while the quorum is still
/// reachable.
pub(super) fn approve(
    run: &mut Run<'_>,
    point: &'static str,
    statement: Value,
    human: &str,
) -> Result<Vec<String>, Error> {
    let digest = quorum::statement_sha256(&statement).map_err(|e| refused(e.to_string()))?;
    let (quorum_size, custodians) = match &run.ceremony.dual_control {
        DualControl::Off => {
            run.prompter.warn(
                "REHEARSAL: dual control is OFF in this ceremony file; the operator alone approves",
            );
            run.prompter.say(human);
            if point == quorum::PLAN {
                return Ok(Vec::new());
            }
            run.prompter
                .say(&format!("  Statement ({point}) SHA-256:\n    {digest}"));
            let (id, question) = match point {
                quorum::ROTATE => (
                    "confirm-rotate",
                    "Make the imported material current (RotateKeyOnDemand)?",
                ),
                quorum::SWAP => (
                    "confirm-swap",
                    "Point these aliases at the other keys (UpdateAlias)?",
                ),
                _ => ("confirm-import", "Import this key material into KMS?"),
            };
            if !run.prompter.confirm(id, question)? {
                return Err(Error::Declined {
                    what: format!("the {point} confirmation"),
                });
            }
            let by = vec![run.ceremony.operator.clone()];
            run.approvals.push((point.to_string(), by.clone()));
            return Ok(by);
        }
        DualControl::Quorum { quorum, custodians } => (*quorum, custodians),
    };
    let signed = quorum::signed_bytes(&statement).map_err(|e| refused(e.to_string()))?;
    run.prompter.say(human);
    run.prompter.say(&format!(
        "  {quorum_size} of {} custodians must approve this {point} statement. Its SHA-256:\n    {digest}",
        custodians.len(),
    ));
    let mut approved: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    while approved.len() < quorum_size {
        let remaining: Vec<&Custodian> = custodians
            .iter()
            .filter(|k| !approved.contains(&k.name) && !failed.contains(&k.name))
            .collect();
        let need = quorum_size - approved.len();
        if remaining.len() < need {
            return Err(refused(format!(
                "the {point} quorum can no longer be reached: {} approved, {} could not sign ({}), {} remain and {need} more approvals are needed",
                approved.len(),
                failed.len(),
                failed.join(", "),
                remaining.len()
            )));
        }
        let names: Vec<String> = remaining.iter().map(|k| k.name.clone()).collect();
        let pick = run.prompter.select(
            &format!("approver-{point}"),
            &format!(
                "Custodian approving the {point} ({} of {quorum_size})",
                approved.len() + 1
            ),
            &names,
        )?;
        let custodian = remaining[pick];
        let answer = run.prompter.confirm_or_back(
            &format!("approve-{point}"),
            &format!(
                "{}: approve the {point} statement whose SHA-256 is shown above? (Escape: back to the list)",
                custodian.name
            ),
        )?;
        let yes = match answer {
            None => {
                run.prompter.say(&format!(
                    "  back to the custodian list; nothing recorded for {}",
                    custodian.name
                ));
                continue;
            }
            Some(yes) => yes,
        };
        let (action, to_sign) = if yes {
            ("approve", signed.clone())
        } else {
            run.prompter.say(&format!(
                "  {} declines: the decline is recorded only when signed on {}'s own token",
                custodian.name, custodian.name
            ));
            let decline = quorum::decline_statement(point, &digest, Some(&run.run_id));
            let bytes = quorum::signed_bytes(&decline).map_err(|e| refused(e.to_string()))?;
            ("decline", bytes)
        };
        let signature = match custodian_signature(run, custodian, &to_sign)? {
            Signed::Yes(s) => s,
            Signed::Failed { attempts, error } => {
                failed.push(custodian.name.clone());
                let remaining: Vec<String> = custodians
                    .iter()
                    .filter(|k| !approved.contains(&k.name) && !failed.contains(&k.name))
                    .map(|k| k.name.clone())
                    .collect();
                let reachable = remaining.len() >= quorum_size - approved.len();
                run.record(&ApprovalFailed {
                    point: point.into(),
                    custodian: custodian.name.clone(),
                    action: action.into(),
                    pin_attempts: attempts as u64,
                    error: super::chain(&error),
                    approved_so_far: approved.clone(),
                    remaining: remaining.clone(),
                    quorum_reachable: reachable,
                })?;
                run.prompter.warn(&format!(
                    "{} could not sign: {}. Recorded. {}",
                    custodian.name,
                    super::chain(&error),
                    if reachable {
                        format!(
                            "Another custodian may step in ({} of {quorum_size} approved; {} remain).",
                            approved.len(),
                            remaining.join(", ")
                        )
                    } else {
                        "The quorum can no longer be reached.".to_string()
                    }
                ));
                continue;
            }
        };
        quorum::check_approval(
            &custodian.name,
            &custodian.public_key_sha256,
            &signature.spki,
            &to_sign,
            &signature.signature,
        )
        .map_err(|e| refused(e.to_string()))?;
        if !yes {
            run.record(&Declined {
                point: point.into(),
                custodian: custodian.name.clone(),
                statement: statement.clone(),
                statement_sha256: digest.clone(),
                signed_by: Some("custodian_token".into()),
                decline: Some(quorum::decline_statement(point, &digest, Some(&run.run_id))),
                public_key: Some(super::b64(&signature.spki)),
                signature: Some(super::b64(&signature.signature)),
            })?;
            return Err(Error::Declined {
                what: format!("the {point} approval by {}", custodian.name),
            });
        }
        run.record(&Approval {
            point: point.into(),
            custodian: custodian.name.clone(),
            public_key: super::b64(&signature.spki),
            public_key_sha256: crate::ecdsa::fingerprint(&signature.spki),
            statement: statement.clone(),
            statement_sha256: digest.clone(),
            signature: super::b64(&signature.signature),
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

/// The outcome of asking a custodian to sign.
enum Signed {
    Yes(crate::hsm::ApprovalSignature),
    /// The custodian could not sign; another may step in.
    Failed {
        attempts: usize,
        error: HsmError,
    },
}

/// The custodian's PIN and signature on their own token. A wrong PIN is asked again only at a
/// terminal (line-protocol answers may be written in advance), at most [`PIN_ATTEMPTS`] times.
fn custodian_signature(
    run: &mut Run<'_>,
    custodian: &Custodian,
    signed: &[u8],
) -> Result<Signed, Error> {
    let attempts = if run.prompter.interactive() {
        PIN_ATTEMPTS
    } else {
        1
    };
    let mut attempt = 1;
    loop {
        let pin = run.prompter.secret(
            "custodian-pin",
            &format!("PIN for {}'s token ({})", custodian.name, custodian.token),
        )?;
        let result = run.custodians.sign_approval(
            custodian.module.as_ref(),
            &custodian.token,
            &custodian.key_label,
            &pin,
            signed,
        );
        drop(pin);
        match result {
            Ok(s) => return Ok(Signed::Yes(s)),
            Err(HsmError::PinIncorrect { token }) if attempt < attempts => {
                run.prompter.warn(&format!(
                    "the PIN for {}'s token {token:?} is incorrect (attempt {attempt} of {attempts}); try again",
                    custodian.name
                ));
                attempt += 1;
            }
            Err(error @ HsmError::PinIncorrect { .. })
            | Err(error @ HsmError::PinLocked { .. }) => {
                return Ok(Signed::Failed {
                    attempts: attempt,
                    error,
                });
            }
            Err(error @ HsmError::TokenNotFound { .. }) => {
                return Ok(Signed::Failed { attempts: 0, error });
            }
            Err(error @ HsmError::KeyNotFound { .. }) => {
                return Ok(Signed::Failed {
                    attempts: attempt,
                    error,
                });
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// What an approval point after the import (`rotate`, `swap`) confirms: who approved, whether
/// dual control was on, the statement and its SHA-256, for the point's `*_confirmed` record.
pub(super) struct Confirmed {
    pub approved_by: Vec<String>,
    pub dual_control: bool,
    pub statement: serde_json::Value,
    pub statement_sha256: String,
}

/// The quorum (or, in a rehearsal, the operator) approves `statement` at `point`, after
/// seeing `what` (what it means, in words) above the statement in words.
pub(super) fn confirm<S: serde::Serialize>(
    run: &mut Run<'_>,
    point: &'static str,
    statement: &S,
    what: &str,
) -> Result<Confirmed, Error> {
    let value = quorum::to_value(statement).map_err(|e| refused(e.to_string()))?;
    let human = format!("{what}\n{}", quorum::describe(&value));
    let approved_by = approve(run, point, value.clone(), &human)?;
    let statement_sha256 = quorum::statement_sha256(&value).map_err(|e| refused(e.to_string()))?;
    Ok(Confirmed {
        approved_by,
        dual_control: !matches!(run.ceremony.dual_control, DualControl::Off),
        statement: value,
        statement_sha256,
    })
}
