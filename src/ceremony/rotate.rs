//! Steps `confirm_rotate` and `rotate` (`kind = "rotate"`). After the imports, the quorum
//! approves the rotate statement, which names per target the material that becomes current.
//! Then, per target: RotateKeyOnDemand, sent once (a lost answer is settled by asking
//! DescribeKey, never by sending it again), and the checks that the imported material is
//! current, that the probe encrypted before the rotation still decrypts, and that a new
//! Encrypt/Decrypt round trip works.

use std::sync::mpsc::Sender;

use crate::error::Error;
use crate::kms::{KeyInfo, Kms, KmsError};
use crate::quorum::{self, RotateStatement, RotateTarget};
use crate::spec::Kind;
use crate::transcript::payload::{KeyRotated, RotateConfirmed, RotationVerified};

use super::target::Status;
use super::{Run, Step, pool, refused};

struct Job {
    index: usize,
    arn: String,
    new_material: String,
    probe: Vec<u8>,
    probe_ciphertext: Vec<u8>,
    challenge: Vec<u8>,
}

enum Event {
    Rotated {
        index: usize,
        outcome: &'static str,
        evidence: Vec<String>,
    },
    Verified {
        index: usize,
        after: KeyInfo,
        previous_probe_decrypts: bool,
        round_trip_ok: bool,
    },
    Failed {
        index: usize,
        error: KmsError,
        evidence: Vec<String>,
    },
}

/// Both steps; nothing for a ceremony of another kind.
pub(super) fn targets(run: &mut Run<'_>) -> Result<(), Error> {
    let c = run.ceremony;
    if !matches!(c.import.kind, Kind::Rotate { .. }) {
        return Ok(());
    }
    run.enter(Step::ConfirmRotate)?;
    let mut entries = Vec::new();
    for t in run
        .targets
        .iter()
        .filter(|t| matches!(t.status, Status::Imported | Status::Verified))
    {
        let (Some(arn), Some(id)) = (&t.arn, &t.key_material_id) else {
            return Err(refused(format!(
                "KMS reported no KeyMaterialId for target {} ({}), so byok cannot name the material to make current; check the key with ListKeyRotations before rotating it by hand",
                t.spec.index, t.spec.key
            )));
        };
        entries.push(RotateTarget {
            target_index: t.spec.index as u64,
            key_arn: arn.clone(),
            previous_key_material_id: t.previous_material.clone(),
            key_material_id: id.clone(),
        });
    }
    if entries.is_empty() {
        run.prompter.say("  nothing to rotate in this run");
        return Ok(());
    }
    let statement = RotateStatement {
        point: quorum::ROTATE.into(),
        ceremony_id: c.id.clone(),
        targets: entries,
        run_id: Some(run.run_id.clone()),
    };
    let confirmed = super::approve::confirm(
        run,
        quorum::ROTATE,
        &statement,
        "  What you approve: make the imported material current in these keys (RotateKeyOnDemand).\n  The previous material stays in each key and still decrypts what it encrypted.",
    )?;
    run.record(&RotateConfirmed {
        approved_by: confirmed.approved_by,
        dual_control: confirmed.dual_control,
        statement: confirmed.statement,
        statement_sha256: confirmed.statement_sha256,
    })?;

    run.enter(Step::Rotate)?;
    let mut jobs = Vec::new();
    for entry in &statement.targets {
        let index = entry.target_index as usize;
        let Some((probe, probe_ciphertext)) = run.targets[index].probe.clone() else {
            return Err(refused(format!(
                "target {index} has no probe from the preflight; this is a bug in byok"
            )));
        };
        jobs.push(Job {
            index,
            arn: entry.key_arn.clone(),
            new_material: entry.key_material_id.clone(),
            probe,
            probe_ciphertext,
            challenge: run.hsm.random(32)?,
        });
    }
    let total = jobs.len();
    let progress = run.prompter.progress(
        &format!("waiting for KMS: RotateKeyOnDemand and verification of {total} target(s)"),
        (total > 1).then_some(total as u64),
    );
    let kms = run.kms;
    let work = |job: Job, tx: &Sender<Event>| rotate_one(kms, job, tx);
    let result = pool::run(run.concurrency, jobs, work, |event| {
        if matches!(event, Event::Verified { .. } | Event::Failed { .. }) {
            progress.inc(1);
        }
        handle(run, event)
    });
    progress.finish();
    result
}

/// One target's rotation and its checks (worker thread). False when the target failed.
fn rotate_one(kms: &dyn Kms, job: Job, tx: &Sender<Event>) -> bool {
    let index = job.index;
    let rotated = match kms.rotate_key_on_demand(&job.arn) {
        Ok(()) => Ok(("rotated", Vec::new())),
        Err(error) if error.outcome_unknown() => {
            // Never sent again: ask KMS which material is current now.
            let mut evidence = vec![format!(
                "RotateKeyOnDemand got no answer: {}",
                error.code_and_message()
            )];
            match kms.describe_key(&job.arn) {
                Ok(info) if info.current_key_material_id.as_deref() == Some(&job.new_material) => {
                    evidence.push(format!(
                        "DescribeKey: CurrentKeyMaterialId {} is the imported material",
                        job.new_material
                    ));
                    Ok(("reconciled", evidence))
                }
                Ok(info) => {
                    evidence.push(format!(
                        "DescribeKey: CurrentKeyMaterialId {}, not the imported {}",
                        info.current_key_material_id.as_deref().unwrap_or("(none)"),
                        job.new_material
                    ));
                    Err((error, evidence))
                }
                Err(e) => {
                    evidence.push(format!("DescribeKey failed: {}", e.code_and_message()));
                    Err((error, evidence))
                }
            }
        }
        Err(error) => Err((error, Vec::new())),
    };
    match rotated {
        Ok((outcome, evidence)) => {
            let _ = tx.send(Event::Rotated {
                index,
                outcome,
                evidence,
            });
        }
        Err((error, evidence)) => {
            let _ = tx.send(Event::Failed {
                index,
                error,
                evidence,
            });
            return false;
        }
    }
    let checked = (|| {
        let after = kms.describe_key(&job.arn)?;
        let (old, _) = kms.decrypt(&job.arn, &job.probe_ciphertext)?;
        let ciphertext = kms.encrypt(&job.arn, &job.challenge)?;
        let (plain, _) = kms.decrypt(&job.arn, &ciphertext)?;
        Ok::<_, KmsError>(Event::Verified {
            index,
            after,
            previous_probe_decrypts: old == job.probe,
            round_trip_ok: plain == job.challenge,
        })
    })();
    let ok = matches!(
        checked,
        Ok(Event::Verified {
            previous_probe_decrypts: true,
            round_trip_ok: true,
            ..
        })
    );
    let _ = tx.send(checked.unwrap_or_else(|error| Event::Failed {
        index,
        error,
        evidence: Vec::new(),
    }));
    ok
}

fn handle(run: &mut Run<'_>, event: Event) -> Result<(), Error> {
    run.step = Step::Rotate;
    match event {
        Event::Rotated {
            index,
            outcome,
            evidence,
        } => {
            let t = &mut run.targets[index];
            t.status = Status::Rotated;
            let record = KeyRotated {
                target_index: index as u64,
                key_arn: t.arn.clone().unwrap_or_default(),
                key_material_id: t.key_material_id.clone().unwrap_or_default(),
                outcome: outcome.into(),
                evidence,
            };
            run.record(&record)
        }
        Event::Verified {
            index,
            after,
            previous_probe_decrypts,
            round_trip_ok,
        } => {
            let t = &run.targets[index];
            let arn = t.arn.clone().unwrap_or_default();
            let mut problems = Vec::new();
            if after.current_key_material_id != t.key_material_id {
                problems.push(format!(
                    "CurrentKeyMaterialId is {}, not the imported {}",
                    after.current_key_material_id.as_deref().unwrap_or("(none)"),
                    t.key_material_id.as_deref().unwrap_or("(none)")
                ));
            }
            if !(after.enabled && after.state == "Enabled") {
                problems.push(format!("state {} (enabled {})", after.state, after.enabled));
            }
            if !previous_probe_decrypts {
                problems.push(
                    "the probe encrypted before the rotation no longer decrypts to itself".into(),
                );
            }
            if !round_trip_ok {
                problems.push("a new Encrypt/Decrypt round trip returned different bytes".into());
            }
            run.record(&RotationVerified {
                target_index: index as u64,
                key_arn: arn.clone(),
                current_key_material_id: after.current_key_material_id.clone(),
                previous_key_material_id: t.previous_material.clone(),
                previous_probe_decrypts,
                round_trip: if round_trip_ok { "ok" } else { "failed" }.into(),
                problems: problems.clone(),
            })?;
            if !problems.is_empty() {
                run.fail_at(index);
                return Err(refused(format!(
                    "the rotation of {arn} did not verify: {}; inspect the key in KMS before using it",
                    problems.join("; ")
                )));
            }
            run.prompter.say(&format!(
                "  [{index}] {arn}: rotated; the imported material is current, the old probe decrypts, round trip ok"
            ));
            Ok(())
        }
        Event::Failed {
            index,
            error,
            evidence,
        } => {
            run.fail_at(index);
            if evidence.is_empty() {
                return Err(error.into());
            }
            // The outcome was asked of KMS: the answer goes into the abort record's message.
            let arn = run.targets[index].name().to_string();
            Err(refused(format!(
                "RotateKeyOnDemand for {arn} has an unknown outcome, and it is never sent again: {}; check the key's CurrentKeyMaterialId (DescribeKey) and ListKeyRotations before anything else (docs/rotation.md)",
                evidence.join("; ")
            )))
        }
    }
}
