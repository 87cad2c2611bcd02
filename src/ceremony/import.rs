//! Steps `import`, `keep` and `verify`, per target: ImportKeyMaterial (sent exactly once),
//! the token copy of material KMS now holds, and DescribeKey with an Encrypt/Decrypt round trip.
//!
//! The import's outcome is never guessed. When ImportKeyMaterial gets no answer (timeout, lost
//! connection) or a server error, byok asks KMS (DescribeKey; ListKeyRotations where KMS serves
//! it) whether the material arrived and records `imported`, `not_imported` or `unknown` with
//! the evidence. Material that KMS holds, or may hold, is copied to the token when the ceremony
//! keeps keys; the copy is never made, nor the session key kept, when KMS says the material is
//! not there.

use std::sync::mpsc::Sender;

use crate::error::Error;
use crate::kms::{Expiration, ImportToken, ImportType, KeyInfo, Kms, KmsError, Operation};
use crate::transcript::payload::{
    ImportReconciled, ImportVerified, KeptAttributes, KeyImported, KeyKept,
};

use crate::spec::Kind;

use super::target::Status;
use super::{Run, Step, pool, refused, sha256_hex};

struct Job {
    index: usize,
    arn: String,
    token: ImportToken,
    blob: Vec<u8>,
    challenge: Vec<u8>,
    /// A rotation: the material current before it (the key is Enabled already).
    rotating: Option<Option<String>>,
    /// A reimport: the KeyMaterialId sent with EXISTING_KEY_MATERIAL.
    existing: Option<String>,
}

/// What KMS says about an import whose answer was lost.
struct Reconciliation {
    outcome: &'static str,
    key_state: Option<String>,
    current_key_material_id: Option<String>,
    materials: Vec<String>,
    evidence: Vec<String>,
    /// A rotation: the PENDING_ROTATION material that the lost import made.
    new_material: Option<String>,
}

enum Event {
    Imported {
        index: usize,
        key_material_id: Option<String>,
    },
    Reconciled {
        index: usize,
        error: KmsError,
        found: Reconciliation,
    },
    ImportFailed {
        index: usize,
        error: KmsError,
    },
    Verified {
        index: usize,
        after: KeyInfo,
        challenge_sha256: String,
        ciphertext_sha256: String,
        round_trip_ok: bool,
        decrypt_key: String,
    },
    VerifyFailed {
        index: usize,
        error: KmsError,
    },
}

/// The error for parameters past their `ParametersValidTo`.
pub(super) fn expired(valid_to: time::OffsetDateTime) -> Error {
    refused(format!(
        "the import parameters expired at {}; run the ceremony again (with --resume) to get fresh parameters",
        crate::rfc3339::format(valid_to)
    ))
}

pub(super) fn targets(run: &mut Run<'_>) -> Result<(), Error> {
    run.enter(Step::Import)?;
    let c = run.ceremony;
    // The guards LocalStack does not enforce, checked once more right before the writes.
    if let Expiration::Expires { valid_to } = c.import.expiration {
        crate::spec::check_valid_to(valid_to, (run.now)())
            .map_err(|why| refused(format!("import.valid_to: {why}")))?;
    }
    let mut jobs = Vec::new();
    for t in run.targets.iter().filter(|t| t.status == Status::Wrapped) {
        if let Some(valid_to) = t.parameters_valid_to
            && valid_to <= (run.now)()
        {
            return Err(expired(valid_to));
        }
        let (Some(arn), Some(token), Some(blob)) = (&t.arn, &t.token, &t.blob) else {
            continue;
        };
        jobs.push(Job {
            index: t.spec.index,
            arn: arn.clone(),
            token: ImportToken::new(token.as_bytes().to_vec()),
            blob: blob.clone(),
            challenge: Vec::new(),
            // A new-material rotation's import does not make its material current.
            rotating: match c.import.kind {
                Kind::Rotate { .. } => Some(t.previous_material.clone()),
                Kind::Import | Kind::AliasSwap { .. } | Kind::Rollback | Kind::Reimport => None,
            },
            existing: t.reimport.as_ref().map(|r| r.key_material_id.clone()),
        });
    }
    for job in &mut jobs {
        job.challenge = run.hsm.random(32)?;
    }
    if jobs.len() > 1 {
        let least = c
            .kms
            .rates
            .least_time(&[(Operation::ImportKeyMaterial, jobs.len())]);
        run.prompter.say(&format!(
            "  {} imports; at KMS's pace this takes at least {} s",
            jobs.len(),
            least.as_secs()
        ));
    }
    let expiration = c.import.expiration;
    let kms = run.kms;
    let description = c.import.kind.key_material_description();
    let work = |job: Job, tx: &Sender<Event>| import_one(kms, expiration, description, job, tx);
    let total = jobs.len();
    let progress = run.prompter.progress(
        &format!("waiting for KMS: ImportKeyMaterial and verification of {total} target(s)"),
        (total > 1).then_some(total as u64),
    );
    let result = pool::run(run.concurrency, jobs, work, |event| {
        // A target is finished when its verification (or its failure) is in.
        if matches!(
            event,
            Event::Verified { .. } | Event::VerifyFailed { .. } | Event::ImportFailed { .. }
        ) {
            progress.inc(1);
        }
        handle(run, event)
    });
    progress.finish();
    result
}

/// One target's import, reconciliation when needed, and verification (worker thread). False
/// when the target failed.
fn import_one(
    kms: &dyn Kms,
    expiration: Expiration,
    description: Option<&str>,
    job: Job,
    tx: &Sender<Event>,
) -> bool {
    let index = job.index;
    let import_type = match &job.existing {
        Some(id) => ImportType::ExistingKeyMaterial {
            key_material_id: id,
        },
        None => ImportType::NewKeyMaterial,
    };
    match kms.import_key_material(
        &job.arn,
        &job.token,
        &job.blob,
        expiration,
        import_type,
        description,
    ) {
        Ok(key_material_id) => {
            crate::failpoint::hit("import", "answered");
            let _ = tx.send(Event::Imported {
                index,
                key_material_id,
            });
        }
        Err(error) if error.outcome_unknown() => {
            let found = reconcile(kms, &job.arn, job.rotating.as_ref());
            let imported = found.outcome == "imported";
            let _ = tx.send(Event::Reconciled {
                index,
                error,
                found,
            });
            if !imported {
                return false;
            }
        }
        Err(error) => {
            let _ = tx.send(Event::ImportFailed { index, error });
            return false;
        }
    }
    let verified = (|| {
        let after = kms.describe_key(&job.arn)?;
        let ciphertext = kms.encrypt(&job.arn, &job.challenge)?;
        let (plaintext, decrypt_key) = kms.decrypt(&job.arn, &ciphertext)?;
        Ok::<_, KmsError>(Event::Verified {
            index,
            after,
            challenge_sha256: sha256_hex(&job.challenge),
            ciphertext_sha256: sha256_hex(&ciphertext),
            round_trip_ok: plaintext == job.challenge,
            decrypt_key,
        })
    })();
    let ok = matches!(
        verified,
        Ok(Event::Verified {
            round_trip_ok: true,
            ..
        })
    );
    let _ = tx.send(verified.unwrap_or_else(|error| Event::VerifyFailed { index, error }));
    ok
}

/// Asks KMS whether an import whose answer was lost arrived.
///
/// For a rotation (`rotating` = the material current before), the key was Enabled already, so
/// its state proves nothing: only a PENDING_ROTATION material that is not the previous one,
/// listed by ListKeyRotations, shows the import arrived.
fn reconcile(kms: &dyn Kms, arn: &str, rotating: Option<&Option<String>>) -> Reconciliation {
    let mut found = Reconciliation {
        outcome: "unknown",
        key_state: None,
        current_key_material_id: None,
        materials: Vec::new(),
        evidence: Vec::new(),
        new_material: None,
    };
    match kms.describe_key(arn) {
        Ok(info) => {
            found.outcome = match info.state.as_str() {
                _ if rotating.is_some() => "unknown",
                // The key was PendingImport at the preflight: only this import enables it.
                "Enabled" => "imported",
                "PendingImport" => "not_imported",
                _ => "unknown",
            };
            found.evidence.push(format!(
                "DescribeKey: KeyState {} (PendingImport before this import), Enabled {}",
                info.state, info.enabled
            ));
            found.key_state = Some(info.state);
            found.current_key_material_id = info.current_key_material_id;
        }
        Err(e) => found
            .evidence
            .push(format!("DescribeKey failed: {}", e.code_and_message())),
    }
    match kms.list_key_materials(arn) {
        Ok(list) => {
            if let Some(previous) = rotating {
                let pending = list.iter().find(|m| {
                    m.key_material_state.as_deref() == Some("PENDING_ROTATION")
                        && Some(&m.key_material_id) != previous.as_ref()
                });
                match pending {
                    Some(m) => {
                        found.outcome = "imported";
                        found.new_material = Some(m.key_material_id.clone());
                    }
                    // No new material waits for rotation: this import did not arrive.
                    None => found.outcome = "not_imported",
                }
            }
            found.materials = list
                .iter()
                .map(|m| {
                    format!(
                        "{} {} {}",
                        m.key_material_id,
                        m.import_state.as_deref().unwrap_or("-"),
                        m.key_material_state.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            found.evidence.push(format!(
                "ListKeyRotations: {} key material(s)",
                found.materials.len()
            ));
        }
        Err(e) => found.evidence.push(format!(
            "ListKeyRotations not available: {}",
            e.code_and_message()
        )),
    }
    found
}

fn handle(run: &mut Run<'_>, event: Event) -> Result<(), Error> {
    let c = run.ceremony;
    match event {
        Event::Imported {
            index,
            key_material_id,
        } => {
            run.step = Step::Import;
            let t = &mut run.targets[index];
            t.status = Status::Imported;
            t.key_material_id.clone_from(&key_material_id);
            let record = KeyImported {
                target_index: index as u64,
                key_arn: t.arn.clone().unwrap_or_default(),
                key_material_id,
                import_type: match &t.reimport {
                    Some(r) => ImportType::ExistingKeyMaterial {
                        key_material_id: &r.key_material_id,
                    },
                    None => ImportType::NewKeyMaterial,
                }
                .name()
                .into(),
                key_material_description: c
                    .import
                    .kind
                    .key_material_description()
                    .map(str::to_string),
                expiration_model: c.import.expiration.model().into(),
                valid_to: c.import.expiration.valid_to().map(crate::rfc3339::format),
                blob_sha256: t.blob_sha256.clone().unwrap_or_default(),
                import_token_sha256: t
                    .token
                    .as_ref()
                    .map(ImportToken::sha256_hex)
                    .unwrap_or_default(),
            };
            run.record(&record)?;
            keep(run, index)
        }
        Event::Reconciled {
            index,
            error,
            found,
        } => {
            run.step = Step::Import;
            let t = &run.targets[index];
            let record = ImportReconciled {
                target_index: index as u64,
                key_arn: t.arn.clone().unwrap_or_default(),
                outcome: found.outcome.into(),
                error: error.code_and_message(),
                key_state: found.key_state,
                current_key_material_id: found.current_key_material_id.clone(),
                key_materials: found.materials,
                evidence: found.evidence,
                blob_sha256: t.blob_sha256.clone().unwrap_or_default(),
                import_token_sha256: t
                    .token
                    .as_ref()
                    .map(ImportToken::sha256_hex)
                    .unwrap_or_default(),
            };
            run.record(&record)?;
            let name = run.targets[index].name().to_string();
            match found.outcome {
                "imported" => {
                    run.prompter.warn(&format!(
                        "[{index}] {name}: ImportKeyMaterial's answer was lost ({}); KMS shows the material imported, so it is recorded as imported and not sent again",
                        error.code_and_message()
                    ));
                    run.targets[index].status = Status::Imported;
                    run.targets[index].key_material_id =
                        found.new_material.or(found.current_key_material_id);
                    keep(run, index)
                }
                "not_imported" => {
                    run.targets[index].status = Status::Failed;
                    run.fail_at(index);
                    Err(refused(format!(
                        "ImportKeyMaterial for {name} got no answer ({}); KMS shows the key still PendingImport, so nothing was imported; run the ceremony again with --resume",
                        error.code_and_message()
                    )))
                }
                _ => {
                    // KMS may hold the material: keep the escrow copy if the ceremony keeps keys.
                    run.targets[index].status = Status::Uncertain;
                    run.fail_at(index);
                    let kept = keep(run, index);
                    let err = refused(format!(
                        "ImportKeyMaterial for {name} got no answer ({}) and KMS could not say whether the material arrived; check the key in KMS (DescribeKey) before anything else, then run again with --resume",
                        error.code_and_message()
                    ));
                    kept.and(Err(err))
                }
            }
        }
        Event::ImportFailed { index, error } => {
            run.targets[index].status = Status::Failed;
            run.step = Step::Import;
            run.fail_at(index);
            Err(error.into())
        }
        Event::Verified {
            index,
            after,
            challenge_sha256,
            ciphertext_sha256,
            round_trip_ok,
            decrypt_key,
        } => {
            run.step = Step::Verify;
            verified(
                run,
                index,
                after,
                challenge_sha256,
                ciphertext_sha256,
                round_trip_ok,
                decrypt_key,
            )
        }
        Event::VerifyFailed { index, error } => {
            run.step = Step::Verify;
            run.fail_at(index);
            Err(error.into())
        }
    }
}

/// Step `keep`: the token copy of material KMS holds (or may hold), when the ceremony keeps
/// keys; its attributes are recorded as the token reports them.
fn keep(run: &mut Run<'_>, index: usize) -> Result<(), Error> {
    let t = &run.targets[index];
    let (Some(label), Some(key)) = (t.spec.keep_key_label.clone(), t.key) else {
        return Ok(());
    };
    run.step = Step::Keep;
    let copy = run.hsm.keep_copy(key, &label)?;
    run.targets[index].kept = Some(label.clone());
    let a = run.hsm.key_attributes(copy)?;
    let t = &run.targets[index];
    let record = KeyKept {
        target_index: index as u64,
        key_arn: t.arn.clone().unwrap_or_default(),
        label: label.clone(),
        handle: run.hsm.raw_handle(copy),
        kcv: t.kcv.clone().unwrap_or_default(),
        attributes: KeptAttributes {
            token: a.token,
            private: a.private,
            sensitive: a.sensitive,
            extractable: a.extractable,
            wrap_with_trusted: a.wrap_with_trusted,
            modifiable: a.modifiable,
            encrypt: a.encrypt,
            decrypt: a.decrypt,
            sign: a.sign,
            verify: a.verify,
            wrap: a.wrap,
            unwrap: a.unwrap,
            derive: a.derive,
            copyable: a.copyable,
        },
    };
    run.record(&record)?;
    let mut weak = Vec::new();
    for (bad, what) in [
        (!a.token, "not a token object"),
        (!a.sensitive, "not sensitive"),
        (!a.wrap_with_trusted, "wrappable by untrusted keys"),
        (a.modifiable, "modifiable"),
        (a.encrypt || a.decrypt, "usable for encryption"),
        (
            a.sign || a.verify || a.derive,
            "usable for MACs or derivation",
        ),
        (a.wrap || a.unwrap, "usable for wrapping"),
        (
            a.copyable == Some(true),
            "copyable (a copy could be given other attributes)",
        ),
    ] {
        if bad {
            weak.push(what);
        }
    }
    if weak.is_empty() {
        run.prompter.say(&format!(
            "  [{index}] kept on the token as {label:?}: wrap-with-trusted only, not modifiable{}",
            match a.copyable {
                Some(false) => ", not copyable",
                _ => "",
            }
        ));
    } else {
        run.prompter.warn(&format!(
            "[{index}] the token kept {label:?} but reports it {}; see docs/hsm-compatibility.md",
            weak.join(", ")
        ));
    }
    Ok(())
}

fn verified(
    run: &mut Run<'_>,
    index: usize,
    after: KeyInfo,
    challenge_sha256: String,
    ciphertext_sha256: String,
    round_trip_ok: bool,
    decrypt_key: String,
) -> Result<(), Error> {
    let c = run.ceremony;
    let arn = run.targets[index].arn.clone().unwrap_or_default();
    let mut problems = Vec::new();
    if !(after.enabled && after.state == "Enabled") {
        problems.push(format!("state {} (enabled {})", after.state, after.enabled));
    }
    if after.origin != "EXTERNAL" {
        problems.push(format!("origin {}", after.origin));
    }
    let wanted = c.import.expiration.model();
    if after.expiration_model.as_deref() != Some(wanted) {
        problems.push(format!(
            "expiration model {}, requested {wanted}",
            after
                .expiration_model
                .as_deref()
                .unwrap_or("(none reported)")
        ));
    }
    if let (Some(want), Some(got)) = (c.import.expiration.valid_to(), after.valid_to)
        && want.unix_timestamp() != got.unix_timestamp()
    {
        problems.push(format!(
            "ValidTo {}, requested {}",
            crate::rfc3339::format(got),
            crate::rfc3339::format(want)
        ));
    }
    let mut warnings = Vec::new();
    if c.import.expiration.valid_to().is_some() && after.valid_to.is_none() {
        let w = "KMS did not report ValidTo for material imported with KEY_MATERIAL_EXPIRES (real AWS KMS always does; LocalStack drops it)";
        run.prompter.warn(w);
        warnings.push(w.to_string());
    }
    if !round_trip_ok {
        problems.push("the Encrypt/Decrypt round trip returned different bytes".into());
    }
    if decrypt_key != arn {
        problems.push(format!("Decrypt used key {decrypt_key}"));
    }
    // A reimport: KMS recomputes the KeyMaterialId from the key and the material and must
    // have found the source's (what it returned, or, after a lost answer, the current one).
    if let Some(r) = &run.targets[index].reimport {
        let got = run.targets[index]
            .key_material_id
            .clone()
            .or_else(|| after.current_key_material_id.clone());
        if got.as_deref() != Some(r.key_material_id.as_str()) {
            problems.push(format!(
                "KMS reports KeyMaterialId {}, but the source's is {}",
                got.as_deref().unwrap_or("(none)"),
                r.key_material_id
            ));
        }
    }
    run.record(&ImportVerified {
        target_index: index as u64,
        key_arn: arn.clone(),
        key_state: after.state.clone(),
        enabled: after.enabled,
        origin: after.origin.clone(),
        expiration_model: after.expiration_model.clone(),
        valid_to_reported: after.valid_to.map(crate::rfc3339::format),
        current_key_material_id: after.current_key_material_id.clone(),
        round_trip: if round_trip_ok { "ok" } else { "failed" }.into(),
        challenge_sha256,
        ciphertext_sha256,
        problems: problems.clone(),
        warnings,
    })?;
    if !problems.is_empty() {
        run.fail_at(index);
        return Err(refused(format!(
            "the import into {arn} did not verify: {}; inspect the key in KMS before using it",
            problems.join("; ")
        )));
    }
    let t = &mut run.targets[index];
    t.status = Status::Verified;
    // A first import's material is the current one; a rotation's is not current yet.
    if t.key_material_id.is_none() && !matches!(c.import.kind, Kind::Rotate { .. }) {
        t.key_material_id = after.current_key_material_id;
    }
    run.prompter.say(&format!(
        "  [{index}] {arn}: imported; Enabled, EXTERNAL, expiry as requested; round trip ok"
    ));
    Ok(())
}
