//! Steps `open_hsm` and `start`: log in, find and prove the audit key, refuse kept-key labels
//! that exist, then write record 0 (the ceremony file, the audit key, the targets) and the
//! token's identity.

use crate::audit::HsmSigner;
use crate::error::Error;
use crate::hsm::{Hsm, HsmError};
use crate::prompt::Prompter;
use crate::spec::{Ceremony, DualControl};
use crate::transcript::payload::{
    CeremonyStarted, CustodianPin, DualControlRecord, HsmOpened, TargetEntry,
};

use super::{PIN_ATTEMPTS, Run, Step};

/// Logs in to the HSM and opens the audit signer. Nothing is recorded yet: the transcript
/// cannot be signed before this succeeds.
pub(super) fn open<'h>(
    ceremony: &Ceremony,
    hsm: &'h dyn Hsm,
    prompter: &mut dyn Prompter,
    earlier: Option<&super::reconcile::Earlier>,
) -> Result<(HsmSigner<'h>, Option<crate::hsm::KeyRef>), Error> {
    prompter.say(&format!("\n== {} ==", Step::OpenHsm.heading()));
    let desc = hsm.description();
    prompter.say(&format!(
        "  module {} ({} {}), token {:?} serial {}",
        desc.module_path,
        desc.module_manufacturer,
        desc.module_version,
        desc.token_label,
        desc.token_serial
    ));
    // A reimport: the Security Officer makes the one key a kept key can be wrapped under
    // (CKA_TRUSTED), as a public session object, and logs out before the user logs in.
    let trusted = if ceremony.import.kind == crate::spec::Kind::Reimport {
        Some(trusted_transfer_key(hsm, prompter, &desc.token_label)?)
    } else {
        None
    };
    let logged_in = login(hsm, prompter, &desc.token_label);
    if let (Err(_), Some(key)) = (&logged_in, trusted) {
        // Not logged in: nothing else will destroy it before the session closes.
        let _ = hsm.destroy(key);
    }
    logged_in?;
    let signer = HsmSigner::open(
        hsm,
        &ceremony.hsm.audit_key_label,
        &ceremony.hsm.audit_key_sha256,
    )?;
    // A kept copy is made only after its import; an existing label must stop the ceremony
    // now, before anyone approves anything, not then. (A resumed run expects the copies the
    // earlier run made: recorded, or possibly made for a target it was approved to import;
    // step `reconcile` refuses such a copy when KMS lacks its material.)
    for t in &ceremony.targets {
        let kept_earlier = earlier.is_some_and(|e| {
            e.kept_label(t.index) == t.keep_key_label.as_deref() || e.approved(t.index)
        });
        if let Some(label) = &t.keep_key_label
            && !kept_earlier
            && hsm.label_exists(label)?
        {
            return Err(HsmError::LabelExists {
                label: label.clone(),
                token: desc.token_label.clone(),
            }
            .into());
        }
    }
    Ok((signer, trusted))
}

/// A reimport: the Security Officer's PIN (asked once; never stored or logged), the SO's
/// login, the trusted transfer key, and the SO's logout.
fn trusted_transfer_key(
    hsm: &dyn Hsm,
    prompter: &mut dyn Prompter,
    token: &str,
) -> Result<crate::hsm::KeyRef, Error> {
    prompter.say(
        "  kind = \"reimport\": the token's Security Officer makes a trusted transfer key (CKA_TRUSTED, a session object) so that the kept keys can be copied into session keys inside the HSM",
    );
    let pin = prompter.secret(
        "hsm-so-pin",
        &format!("Security Officer PIN for HSM token {token:?}"),
    )?;
    let result = hsm.login_so(&pin);
    drop(pin);
    result?;
    let key = hsm.generate_trusted_transfer_key();
    // The SO logs out whatever happened; the user logs in next.
    let out = hsm.logout();
    let key = key?;
    if let Err(e) = out {
        let _ = hsm.destroy(key);
        return Err(e.into());
    }
    Ok(key)
}

/// A wrong PIN is asked again only at a terminal: line-protocol answers may be written in
/// advance, and a retry would take the next answer (a name, "yes") as a PIN.
fn login(hsm: &dyn Hsm, prompter: &mut dyn Prompter, token: &str) -> Result<(), Error> {
    let attempts = if prompter.interactive() {
        PIN_ATTEMPTS
    } else {
        1
    };
    let mut attempt = 1;
    loop {
        let pin = prompter.secret("hsm-pin", &format!("User PIN for HSM token {token:?}"))?;
        let result = hsm.login(&pin);
        drop(pin);
        match result {
            Err(HsmError::PinIncorrect { token }) if attempt < attempts => {
                prompter.warn(&format!(
                    "the PIN for token {token:?} is incorrect (attempt {attempt} of {attempts}); try again"
                ));
                attempt += 1;
            }
            result => return Ok(result?),
        }
    }
}

/// Records 0 and 1: `ceremony_started` and `hsm_opened`.
pub(super) fn record(run: &mut Run<'_>) -> Result<(), Error> {
    let c = run.ceremony;
    run.step = Step::Start;
    let dual_control = match &c.dual_control {
        DualControl::Off => DualControlRecord {
            enabled: false,
            quorum: None,
            custodians: Vec::new(),
            warning: Some(
                "REHEARSAL: dual control is off; the operator alone confirms the import".into(),
            ),
        },
        DualControl::Quorum { quorum, custodians } => DualControlRecord {
            enabled: true,
            quorum: Some(*quorum as u64),
            custodians: custodians
                .iter()
                .map(|k| CustodianPin {
                    name: k.name.clone(),
                    public_key_sha256: k.public_key_sha256.clone(),
                })
                .collect(),
            warning: None,
        },
    };
    let started = CeremonyStarted {
        tool: "byok".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        ceremony_id: c.id.clone(),
        description: c.description.clone(),
        operator: c.operator.clone(),
        ceremony_file_name: c
            .source
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        ceremony_file: c.source.text.clone(),
        ceremony_file_sha256: c.source.sha256.clone(),
        audit_key_label: c.hsm.audit_key_label.clone(),
        audit_public_key: super::b64(crate::transcript::RecordSigner::public_key_spki_der(
            run.signer,
        )),
        audit_key_sha256: run.signer.fingerprint(),
        dual_control,
        targets: c
            .targets
            .iter()
            .map(|t| TargetEntry {
                index: t.index as u64,
                key: t.key.clone(),
                region: t.region.clone(),
                create: t.create.is_some(),
                keep_key_label: t.keep_key_label.clone(),
                previous_key: t.swap.as_ref().map(|s| s.previous_key.clone()),
            })
            .collect(),
        kms_concurrency: run.concurrency as u64,
        resumes: run.earlier.as_ref().map(|e| e.link.clone()),
        kind: Some(c.import.kind.name().into()),
        strategy: c.import.kind.strategy().map(str::to_string),
        run_id: Some(run.run_id.clone()),
    };
    run.record(&started)?;

    run.step = Step::OpenHsm;
    let d = run.hsm.description().clone();
    let usage = run.hsm.ec_key_pair_usage(&c.hsm.audit_key_label)?;
    if !usage.is_sign_only() {
        run.prompter.warn(&format!(
            "the audit key {:?} can do more than sign ({usage}); re-create it with `byok audit-key create` (byok 0.3 makes sign-only pairs) and pin the new key",
            c.hsm.audit_key_label
        ));
    }
    run.record(&HsmOpened {
        module_path: d.module_path,
        module_manufacturer: d.module_manufacturer,
        module_description: d.module_description,
        module_version: d.module_version,
        cryptoki_version: d.cryptoki_version,
        token_label: d.token_label,
        token_serial: d.token_serial,
        token_model: d.token_model,
        token_manufacturer: d.token_manufacturer,
        // A reimport: the Security Officer logged in first, made the trusted transfer key and
        // logged out (open_hsm).
        login: if run.trusted.is_some() {
            "security_officer_then_user".into()
        } else {
            "user".into()
        },
        audit_key_sign_only: Some(usage.is_sign_only()),
        audit_key_usage: Some(usage.to_string()),
    })?;
    // kind = "reimport" or "rollback": the source transcript, verified before the run started.
    if let Some(source) = &run.source {
        run.step = Step::SourceCheck;
        let record = source.record();
        let what = if run.ceremony.import.kind == crate::spec::Kind::Rollback {
            format!("{} alias move(s)", record.swaps.len())
        } else {
            format!("{} kept key(s)", record.kept_targets.len())
        };
        run.prompter.say(&format!(
            "  source transcript {} (ceremony {}, kind {}, {} records): valid under this audit key, last line SHA-256 {} as pinned; {what}",
            record.transcript,
            record.ceremony_id,
            record.kind,
            record.records,
            record.last_line_sha256,
        ));
        run.record(&record)?;
    }
    Ok(())
}
