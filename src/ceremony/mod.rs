//! The step engine: runs a validated ceremony against an [`Hsm`], a [`Kms`] and a [`Prompter`],
//! writing one signed transcript record per step.
//!
//! The engine talks only to those traits, never to a crate. Every failure after the transcript
//! has started (including a declined confirmation and Ctrl-C) destroys the HSM objects the
//! ceremony created and closes the transcript with `ceremony_aborted`. The engine never writes
//! a PIN, key material or the import token anywhere.

pub mod plan;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::Error;
use crate::hsm::{AesKeyKind, CustodianTokens, Hsm, HsmError, HsmSigner, KeyRef};
use crate::kms::{Expiration, ImportParameters, Kms};
use crate::prompt::Prompter;
use crate::quorum;
use crate::spec::Ceremony;
use crate::spec::DualControl;
use crate::transcript::{RecordSigner, RecordType, TranscriptWriter};
use crate::wrap::{self, WrapLocation, WrappingPublicKey};

/// PIN attempts before the login step gives up.
pub const PIN_ATTEMPTS: usize = 3;

/// The steps of an import ceremony, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    OpenHsm,
    ApprovePlan,
    KmsPreflight,
    CapabilityCheck,
    ImportParameters,
    Generate,
    Wrap,
    ConfirmImport,
    Import,
    Verify,
    Cleanup,
    Finish,
}

impl Step {
    /// Name used in messages and in `ceremony_aborted.data.step`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::OpenHsm => "open_hsm",
            Step::ApprovePlan => "approve_plan",
            Step::KmsPreflight => "kms_preflight",
            Step::CapabilityCheck => "capability_check",
            Step::ImportParameters => "import_parameters",
            Step::Generate => "generate",
            Step::Wrap => "wrap",
            Step::ConfirmImport => "confirm_import",
            Step::Import => "import",
            Step::Verify => "verify",
            Step::Cleanup => "cleanup",
            Step::Finish => "finish",
        }
    }

    /// Heading shown to the operator.
    fn heading(self) -> &'static str {
        match self {
            Step::Start => "Start",
            Step::OpenHsm => "Open the HSM",
            Step::ApprovePlan => "Approve the plan (dual control)",
            Step::KmsPreflight => "Check the KMS key",
            Step::CapabilityCheck => "Prove the token's wrap (known-answer test)",
            Step::ImportParameters => "Get import parameters from KMS",
            Step::Generate => "Generate AES-256 in the HSM",
            Step::Wrap => "Wrap the key for KMS",
            Step::ConfirmImport => "Approve the import",
            Step::Import => "Import into KMS",
            Step::Verify => "Verify the import",
            Step::Cleanup => "Clean up HSM objects",
            Step::Finish => "Finish",
        }
    }
}

/// What a finished ceremony produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub transcript: PathBuf,
    /// SHA-256 of the last transcript line: the fingerprint to write on paper.
    pub last_line_sha256: String,
    pub key_arn: String,
    pub key_material_id: Option<String>,
    /// Hex key check value of the imported material.
    pub kcv: String,
    /// Who approved each approval point, in order.
    pub approvals: Vec<(String, Vec<String>)>,
}

/// The systems a ceremony runs against.
pub struct Env<'a> {
    pub hsm: &'a dyn Hsm,
    pub kms: &'a dyn Kms,
    /// The custodians' tokens, for dual-control approvals.
    pub custodians: &'a dyn CustodianTokens,
    pub prompter: &'a mut dyn Prompter,
    /// The clock (injectable so tests can run at a chosen time).
    pub now: &'a dyn Fn() -> OffsetDateTime,
}

/// Default transcript path: `<ceremony id>-<UTC time>.transcript.jsonl` in the current directory.
pub fn default_transcript_path(ceremony: &Ceremony, now: OffsetDateTime) -> PathBuf {
    let t = now.to_offset(time::UtcOffset::UTC);
    PathBuf::from(format!(
        "{}-{:04}{:02}{:02}T{:02}{:02}{:02}Z.transcript.jsonl",
        ceremony.id,
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// Runs the ceremony. On error after the transcript started, the transcript ends with
/// `ceremony_aborted` and the error says where.
pub fn run(ceremony: &Ceremony, env: Env<'_>, transcript: &Path) -> Result<Outcome, Error> {
    let before = |step: Step, source: Error| Error::Step {
        step,
        transcript: None,
        source: Box::new(source),
    };
    // Refuse an existing transcript before asking anyone for anything.
    if transcript.exists() {
        return Err(before(
            Step::Start,
            crate::transcript::TranscriptError::Exists {
                path: transcript.to_path_buf(),
            }
            .into(),
        ));
    }
    let Env {
        hsm,
        kms,
        custodians,
        prompter,
        now,
    } = env;

    heading(prompter, Step::OpenHsm);
    let desc = hsm.description();
    prompter.say(&format!(
        "  module {} ({} {}), token {:?} serial {}",
        desc.module_path,
        desc.module_manufacturer,
        desc.module_version,
        desc.token_label,
        desc.token_serial
    ));
    login(hsm, prompter, &desc.token_label).map_err(|e| before(Step::OpenHsm, e))?;
    let signer = HsmSigner::open(
        hsm,
        &ceremony.hsm.audit_key_label,
        &ceremony.hsm.audit_key_sha256,
    )
    .map_err(|e| before(Step::OpenHsm, e.into()))?;
    let writer = TranscriptWriter::create(transcript).map_err(|e| before(Step::Start, e.into()))?;

    let mut run = Run {
        ceremony,
        hsm,
        kms,
        custodians,
        prompter,
        now,
        signer: &signer,
        writer,
        step: Step::Start,
        created: Vec::new(),
        kept: None,
        imported: false,
        approvals: Vec::new(),
    };
    match run.steps() {
        Ok(outcome) => Ok(outcome),
        Err(error) => Err(run.abort(error)),
    }
}

fn heading(prompter: &mut dyn Prompter, step: Step) {
    prompter.say(&format!("\n== {} ==", step.heading()));
}

fn login(hsm: &dyn Hsm, prompter: &mut dyn Prompter, token: &str) -> Result<(), Error> {
    let mut attempt = 1;
    loop {
        let pin = prompter.secret("hsm-pin", &format!("User PIN for HSM token {token:?}"))?;
        match hsm.login(&pin) {
            Err(crate::hsm::HsmError::PinIncorrect { token }) if attempt < PIN_ATTEMPTS => {
                prompter.warn(&format!(
                    "the PIN for token {token:?} is incorrect (attempt {attempt} of {PIN_ATTEMPTS}); try again"
                ));
                attempt += 1;
            }
            result => return Ok(result?),
        }
    }
}

struct Run<'a> {
    ceremony: &'a Ceremony,
    hsm: &'a dyn Hsm,
    kms: &'a dyn Kms,
    custodians: &'a dyn CustodianTokens,
    prompter: &'a mut dyn Prompter,
    now: &'a dyn Fn() -> OffsetDateTime,
    signer: &'a HsmSigner<'a>,
    writer: TranscriptWriter,
    step: Step,
    /// Objects this ceremony created and has not destroyed yet.
    created: Vec<KeyRef>,
    /// The generated key when it is kept as a token object.
    kept: Option<(KeyRef, String)>,
    /// Set once ImportKeyMaterial succeeded: from then on the kept key is KMS's escrow copy.
    imported: bool,
    /// Who approved each approval point so far.
    approvals: Vec<(String, Vec<String>)>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Run<'_> {
    fn enter(&mut self, step: Step) -> Result<(), Error> {
        if crate::cancel::is_cancelled() {
            return Err(crate::prompt::PromptError::Cancelled {
                id: format!("step {}", step.name()),
            }
            .into());
        }
        self.step = step;
        heading(self.prompter, step);
        Ok(())
    }

    fn record(&mut self, kind: RecordType, data: Value) -> Result<(), Error> {
        self.writer.append(self.signer, kind, data)?;
        Ok(())
    }

    fn steps(&mut self) -> Result<Outcome, Error> {
        let c = self.ceremony;

        // 1. start
        self.step = Step::Start;
        self.record(
            RecordType::CeremonyStarted,
            json!({
                "tool": "byok",
                "tool_version": env!("CARGO_PKG_VERSION"),
                "ceremony_id": c.id,
                "description": c.description,
                "operator": c.operator,
                "ceremony_file_name": c.source.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                "ceremony_file": c.source.text,
                "ceremony_file_sha256": c.source.sha256,
                "audit_key_label": c.hsm.audit_key_label,
                "audit_public_key": b64(self.signer.public_key_spki_der()),
                "audit_key_sha256": self.signer.fingerprint(),
                "dual_control": match &c.dual_control {
                    DualControl::Off => json!({
                        "enabled": false,
                        "warning": "REHEARSAL: dual control is off; the operator alone confirms the import",
                    }),
                    DualControl::Quorum { quorum, custodians } => json!({
                        "enabled": true,
                        "quorum": quorum,
                        "custodians": custodians.iter().map(|k| json!({
                            "name": k.name,
                            "public_key_sha256": k.public_key_sha256,
                        })).collect::<Vec<_>>(),
                    }),
                },
            }),
        )?;

        // 2. open the HSM (the login happened before the transcript could be signed)
        self.step = Step::OpenHsm;
        let d = self.hsm.description().clone();
        self.record(
            RecordType::HsmOpened,
            json!({
                "module_path": d.module_path,
                "module_manufacturer": d.module_manufacturer,
                "module_description": d.module_description,
                "module_version": d.module_version,
                "cryptoki_version": d.cryptoki_version,
                "token_label": d.token_label,
                "token_serial": d.token_serial,
                "token_model": d.token_model,
                "token_manufacturer": d.token_manufacturer,
                "login": "user",
            }),
        )?;

        // 2b. the plan, approved before anything changes in the HSM or KMS
        self.enter(Step::ApprovePlan)?;
        let plan = quorum::plan_statement(
            &c.id,
            &c.source.sha256,
            &self.signer.fingerprint(),
            &c.kms.key,
        );
        self.approve(quorum::PLAN, plan)?;

        // 3. KMS preflight
        self.enter(Step::KmsPreflight)?;
        let info = self.kms.describe_key(&c.kms.key)?;
        self.record(
            RecordType::KmsPreflight,
            json!({
                "requested_key": c.kms.key,
                "region": c.kms.region,
                "key_arn": info.arn,
                "origin": info.origin,
                "key_spec": info.key_spec,
                "key_usage": info.key_usage,
                "key_state": info.state,
                "enabled": info.enabled,
            }),
        )?;
        preflight(&info)?;
        let arn = info.arn.clone();
        self.prompter.say(&format!(
            "  {arn}: EXTERNAL, SYMMETRIC_DEFAULT, PendingImport"
        ));

        // 4. capability check
        self.enter(Step::CapabilityCheck)?;
        let algorithm = c.import.algorithm;
        let location = c.import.wrap;
        let mut hardening = None;
        if location == WrapLocation::Host {
            self.prompter.warn(
                "wrap = \"host\": the key material will leave the HSM in plaintext and be wrapped \
                 by byok in locked memory. Use this only when the token cannot wrap with the \
                 required algorithm.",
            );
            hardening = Some(crate::secure::harden_process());
        }
        let test = wrap::self_test(self.hsm, algorithm, location)?;
        self.record(
            RecordType::CapabilityChecked,
            json!({
                "algorithm": algorithm.kms_name(),
                "location": location.name(),
                "mechanism": test.mechanism,
                "known_answer_key_bits": test.kat_key_bits,
                "known_answer_test": "pass",
                "rejected": test.rejected,
                "process_hardening": hardening.map(|h| json!({
                    "core_dumps_disabled": h.core_dumps_disabled,
                    "not_dumpable": h.not_dumpable,
                })),
            }),
        )?;
        self.prompter.say(&format!(
            "  {} at {} ({}): known-answer test passed",
            algorithm,
            location.name(),
            test.mechanism
        ));

        // 5. import parameters
        self.enter(Step::ImportParameters)?;
        let spec = c.import.key_spec;
        let params = self.kms.get_parameters_for_import(&arn, algorithm, spec)?;
        let public_key_sha256 = sha256_hex(&params.public_key_der);
        self.record(
            RecordType::ImportParameters,
            json!({
                "key_arn": params.key_id,
                "wrapping_algorithm": algorithm.kms_name(),
                "wrapping_key_spec": spec.kms_name(),
                "public_key_sha256": public_key_sha256,
                "public_key_der_length": params.public_key_der.len(),
                "import_token_sha256": params.import_token.sha256_hex(),
                "parameters_valid_to": crate::transcript::format_rfc3339(params.parameters_valid_to),
            }),
        )?;
        let public = self.check_parameters(&arn, &params)?;

        // 6. generate
        self.enter(Step::Generate)?;
        let kind = match (location, &c.hsm.keep_key_label) {
            (WrapLocation::Host, _) => AesKeyKind::Extractable,
            (WrapLocation::Hsm, Some(label)) => AesKeyKind::SensitiveToken {
                label: label.clone(),
            },
            (WrapLocation::Hsm, None) => AesKeyKind::Sensitive,
        };
        let key = self.hsm.generate_aes256(kind.clone())?;
        match &kind {
            AesKeyKind::SensitiveToken { label } => self.kept = Some((key, label.clone())),
            _ => self.created.push(key),
        }
        let length = self.hsm.key_length(key)?;
        if length != 32 {
            return Err(Error::Refused {
                reason: format!(
                    "the HSM generated a {length}-byte key; KMS SYMMETRIC_DEFAULT needs exactly 32 bytes"
                ),
            });
        }
        let kcv = hex::encode(self.hsm.key_check_value(key)?);
        self.record(
            RecordType::KeyGenerated,
            json!({
                "handle": self.hsm.raw_handle(key),
                "label": kind.label(),
                "key_type": "AES",
                "value_length": length,
                "token_object": matches!(kind, AesKeyKind::SensitiveToken { .. }),
                "sensitive": !matches!(kind, AesKeyKind::Extractable),
                "kcv": kcv,
                "kcv_method": "AES-ECB of one zero block, first 3 bytes",
            }),
        )?;
        self.prompter
            .say(&format!("  AES-256 generated, KCV {kcv}"));

        // 7. wrap
        self.enter(Step::Wrap)?;
        let (blob, mechanism, memory_locked) = match location {
            WrapLocation::Hsm => {
                // An in-HSM known-answer test always proves a plan; never fall back to the host.
                let plan = test.plan.ok_or_else(|| Error::Refused {
                    reason: format!(
                        "the known-answer test proved no way to do {algorithm} inside the HSM; run `byok probe`"
                    ),
                })?;
                let wrapping = self
                    .hsm
                    .import_rsa_public_key(&public.modulus(), &public.exponent())?;
                self.created.push(wrapping);
                // Exactly the plan the known-answer test proved on this token.
                let blob = wrap::wrap_in_hsm(self.hsm, plan, wrapping, key)?;
                (blob, plan.mechanism(), None)
            }
            WrapLocation::Host => {
                let material = self.hsm.extract_key_value(key)?;
                let locked = material.is_locked();
                let blob = wrap::host_wrap(&material, &public, algorithm)?;
                drop(material);
                (blob, test.mechanism.clone(), Some(locked))
            }
        };
        let expected_len = algorithm.blob_len(public.bits());
        if blob.len() != expected_len {
            return Err(Error::Refused {
                reason: format!(
                    "the wrapped blob has {} bytes, expected {expected_len} for {algorithm} with RSA-{}; the token did not wrap as KMS expects",
                    blob.len(),
                    public.bits()
                ),
            });
        }
        let blob_sha256 = sha256_hex(&blob);
        self.record(
            RecordType::KeyWrapped,
            json!({
                "location": location.name(),
                "mechanism": mechanism,
                "wrapping_algorithm": algorithm.kms_name(),
                "oaep_hash": algorithm.oaep_hash().name(),
                "aes_key_wrap": algorithm.is_rsa_aes().then_some("RFC 5649"),
                "wrapping_public_key_sha256": public_key_sha256,
                "blob_sha256": blob_sha256,
                "blob_length": blob.len(),
                "host_memory_locked": memory_locked,
            }),
        )?;

        // 8. confirmation
        self.enter(Step::ConfirmImport)?;
        let valid_to = c
            .import
            .expiration
            .valid_to()
            .map(crate::transcript::format_rfc3339);
        let statement = quorum::import_statement(&quorum::ImportFacts {
            ceremony_id: c.id.clone(),
            key_arn: arn.clone(),
            wrapping_algorithm: algorithm.kms_name().into(),
            wrapping_key_spec: spec.kms_name().into(),
            wrapping_public_key_sha256: public_key_sha256.clone(),
            blob_sha256: blob_sha256.clone(),
            kcv: kcv.clone(),
            expiration_model: c.import.expiration.model().into(),
            valid_to: valid_to.clone(),
        });
        let approved_by = self.approve(quorum::IMPORT, statement.clone())?;
        self.record(
            RecordType::ImportConfirmed,
            json!({
                "approved_by": approved_by,
                "dual_control": !matches!(c.dual_control, DualControl::Off),
                "statement": statement,
                "statement_sha256": quorum::statement_sha256(&statement)
                    .map_err(|e| Error::Refused { reason: e.to_string() })?,
            }),
        )?;

        // 9. import, with the guards LocalStack does not enforce
        self.enter(Step::Import)?;
        if let Expiration::Expires { valid_to } = c.import.expiration {
            crate::spec::check_valid_to(valid_to, (self.now)()).map_err(|why| Error::Refused {
                reason: format!("import.valid_to: {why}"),
            })?;
        }
        if params.parameters_valid_to <= (self.now)() {
            return Err(expired(&params));
        }
        let material_id =
            self.kms
                .import_key_material(&arn, &params.import_token, &blob, c.import.expiration)?;
        self.imported = true;
        self.record(
            RecordType::KeyImported,
            json!({
                "key_arn": arn,
                "key_material_id": material_id,
                "expiration_model": c.import.expiration.model(),
                "valid_to": valid_to,
                "blob_sha256": blob_sha256,
                "import_token_sha256": params.import_token.sha256_hex(),
            }),
        )?;

        // 10. verify
        self.enter(Step::Verify)?;
        let after = self.kms.describe_key(&arn)?;
        let valid_to_reported = after.valid_to.map(crate::transcript::format_rfc3339);
        let mut problems = Vec::new();
        if !(after.enabled && after.state == "Enabled") {
            problems.push(format!("state {} (enabled {})", after.state, after.enabled));
        }
        if after.origin != "EXTERNAL" {
            problems.push(format!("origin {}", after.origin));
        }
        if after.expiration_model.as_deref() != Some(c.import.expiration.model()) {
            problems.push(format!(
                "expiration model {:?}, requested {}",
                after.expiration_model,
                c.import.expiration.model()
            ));
        }
        if let (Some(want), Some(got)) = (c.import.expiration.valid_to(), after.valid_to)
            && want.unix_timestamp() != got.unix_timestamp()
        {
            problems.push(format!(
                "ValidTo {}, requested {}",
                crate::transcript::format_rfc3339(got),
                crate::transcript::format_rfc3339(want)
            ));
        }
        let mut warnings = Vec::new();
        if c.import.expiration.valid_to().is_some() && after.valid_to.is_none() {
            let w = "KMS did not report ValidTo for material imported with KEY_MATERIAL_EXPIRES (real AWS KMS always does; LocalStack drops it)";
            self.prompter.warn(w);
            warnings.push(w);
        }
        let challenge = self.hsm.random(32)?;
        let ciphertext = self.kms.encrypt(&arn, &challenge)?;
        let (plaintext, decrypt_key) = self.kms.decrypt(&arn, &ciphertext)?;
        if plaintext != challenge {
            problems.push("the Encrypt/Decrypt round trip returned different bytes".into());
        }
        if decrypt_key != arn {
            problems.push(format!("Decrypt used key {decrypt_key}"));
        }
        self.record(
            RecordType::ImportVerified,
            json!({
                "key_arn": arn,
                "key_state": after.state,
                "enabled": after.enabled,
                "origin": after.origin,
                "expiration_model": after.expiration_model,
                "valid_to_reported": valid_to_reported,
                "current_key_material_id": after.current_key_material_id,
                "round_trip": if plaintext == challenge { "ok" } else { "failed" },
                "challenge_sha256": sha256_hex(&challenge),
                "ciphertext_sha256": sha256_hex(&ciphertext),
                "problems": problems,
                "warnings": warnings,
            }),
        )?;
        if !problems.is_empty() {
            return Err(Error::Refused {
                reason: format!(
                    "the import did not verify: {}; inspect the key in KMS before using it",
                    problems.join("; ")
                ),
            });
        }
        self.prompter
            .say("  Enabled, EXTERNAL, expiry as requested; Encrypt/Decrypt round trip ok");

        // 11. cleanup
        self.enter(Step::Cleanup)?;
        let destroyed = self.destroy_created()?;
        let kept = match self.kept.take() {
            Some((key, label)) => {
                self.hsm.seal_key(key)?;
                Some(
                    json!({"label": label, "handle": self.hsm.raw_handle(key), "extractable": false}),
                )
            }
            None => None,
        };
        self.record(
            RecordType::CleanupDone,
            json!({ "destroyed_handles": destroyed, "kept_key": kept }),
        )?;

        // 12. finish
        self.enter(Step::Finish)?;
        let records = self.writer.len() + 1;
        self.record(
            RecordType::CeremonyFinished,
            json!({
                "key_arn": arn,
                "key_material_id": material_id,
                "kcv": kcv,
                "records": records,
            }),
        )?;
        let last = self.last_line_sha256()?;
        Ok(Outcome {
            transcript: self.writer.path().to_path_buf(),
            last_line_sha256: last,
            key_arn: arn,
            key_material_id: material_id,
            kcv,
            approvals: std::mem::take(&mut self.approvals),
        })
    }

    /// An approval point: the quorum of custodians (or, in a rehearsal, the operator) approves
    /// `statement`. Returns who approved. Every approval and refusal is recorded.
    fn approve(&mut self, point: &'static str, statement: Value) -> Result<Vec<String>, Error> {
        let digest = quorum::statement_sha256(&statement).map_err(|e| Error::Refused {
            reason: e.to_string(),
        })?;
        let (quorum_size, custodians) = match &self.ceremony.dual_control {
            DualControl::Off => {
                self.prompter.warn(
                    "REHEARSAL: dual control is OFF in this ceremony file; the operator alone approves",
                );
                if point == quorum::PLAN {
                    return Ok(Vec::new());
                }
                self.prompter.say(&format!(
                    "  Statement ({point}), SHA-256 {digest}:\n{}",
                    quorum::describe(&statement)
                ));
                if !self
                    .prompter
                    .confirm("confirm-import", "Import this key material into KMS?")?
                {
                    return Err(Error::Declined {
                        what: "the import confirmation".into(),
                    });
                }
                let by = vec![self.ceremony.operator.clone()];
                self.approvals.push((point.to_string(), by.clone()));
                return Ok(by);
            }
            DualControl::Quorum { quorum, custodians } => (*quorum, custodians),
        };
        let signed = quorum::signed_bytes(&statement).map_err(|e| Error::Refused {
            reason: e.to_string(),
        })?;
        self.prompter.say(&format!(
            "  {quorum_size} of {} custodians must approve this statement ({point}), SHA-256 {digest}:\n{}",
            custodians.len(),
            quorum::describe(&statement)
        ));
        let names: Vec<String> = custodians.iter().map(|k| k.name.clone()).collect();
        let mut approved: Vec<String> = Vec::new();
        while approved.len() < quorum_size {
            let pick = self.prompter.select(
                &format!("approver-{point}"),
                &format!(
                    "Custodian approving the {point} ({} of {quorum_size})",
                    approved.len() + 1
                ),
                &names,
            )?;
            let custodian = &custodians[pick];
            if approved.contains(&custodian.name) {
                self.prompter.warn(&format!(
                    "{} has already approved this statement; a different custodian must approve ({} of {quorum_size} so far)",
                    custodian.name,
                    approved.len()
                ));
                continue;
            }
            let yes = self.prompter.confirm(
                &format!("approve-{point}"),
                &format!(
                    "{}, do you approve this {point} statement (SHA-256 {digest})?",
                    custodian.name
                ),
            )?;
            if !yes {
                self.record(
                    RecordType::Declined,
                    json!({
                        "point": point,
                        "custodian": custodian.name,
                        "statement": statement,
                        "statement_sha256": digest,
                    }),
                )?;
                return Err(Error::Declined {
                    what: format!("the {point} approval by {}", custodian.name),
                });
            }
            let approval = self.custodian_signature(custodian, &signed)?;
            quorum::check_approval(
                &custodian.name,
                &custodian.public_key_sha256,
                &approval.spki,
                &signed,
                &approval.signature,
            )
            .map_err(|e| Error::Refused {
                reason: e.to_string(),
            })?;
            self.record(
                RecordType::Approval,
                json!({
                    "point": point,
                    "custodian": custodian.name,
                    "public_key": b64(&approval.spki),
                    "public_key_sha256": crate::ecdsa::fingerprint(&approval.spki),
                    "statement": statement,
                    "statement_sha256": digest,
                    "signature": b64(&approval.signature),
                }),
            )?;
            approved.push(custodian.name.clone());
            self.prompter.say(&format!(
                "  approved by {} ({} of {quorum_size})",
                custodian.name,
                approved.len()
            ));
        }
        self.approvals.push((point.to_string(), approved.clone()));
        Ok(approved)
    }

    /// The custodian's PIN (with retries) and signature on their own token.
    fn custodian_signature(
        &mut self,
        custodian: &crate::spec::Custodian,
        signed: &[u8],
    ) -> Result<crate::hsm::ApprovalSignature, Error> {
        let mut attempt = 1;
        loop {
            let pin = self.prompter.secret(
                "custodian-pin",
                &format!("PIN for {}'s token ({})", custodian.name, custodian.token),
            )?;
            match self.custodians.sign_approval(
                &custodian.token,
                &custodian.key_label,
                &pin,
                signed,
            ) {
                Err(HsmError::PinIncorrect { token }) if attempt < PIN_ATTEMPTS => {
                    self.prompter.warn(&format!(
                        "the PIN for {}'s token {token:?} is incorrect (attempt {attempt} of {PIN_ATTEMPTS}); try again",
                        custodian.name
                    ));
                    attempt += 1;
                }
                result => return Ok(result?),
            }
        }
    }

    fn check_parameters(
        &self,
        arn: &str,
        params: &ImportParameters,
    ) -> Result<WrappingPublicKey, Error> {
        if params.key_id != arn {
            return Err(Error::Refused {
                reason: format!(
                    "GetParametersForImport answered for key {}, not {arn}; the public key and import token must come from one response for the target key",
                    params.key_id
                ),
            });
        }
        if params.parameters_valid_to <= (self.now)() {
            return Err(expired(params));
        }
        Ok(WrappingPublicKey::from_spki_der(
            &params.public_key_der,
            self.ceremony.import.key_spec,
        )?)
    }

    fn destroy_created(&mut self) -> Result<Vec<u64>, Error> {
        let mut destroyed = Vec::new();
        while let Some(key) = self.created.pop() {
            let raw = self.hsm.raw_handle(key);
            self.hsm.destroy(key)?;
            destroyed.push(raw);
        }
        destroyed.sort_unstable();
        Ok(destroyed)
    }

    fn last_line_sha256(&self) -> Result<String, Error> {
        let text = std::fs::read(self.writer.path()).map_err(|source| Error::Io {
            what: format!(
                "cannot read back transcript {}",
                self.writer.path().display()
            ),
            source,
        })?;
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
        Ok(sha256_hex(last))
    }

    /// Cleans up and closes the transcript with `ceremony_aborted`; returns the error to report.
    fn abort(&mut self, error: Error) -> Error {
        let step = self.step;
        let mut destroyed = Vec::new();
        let mut cleanup_errors = Vec::new();
        let mut pending: Vec<KeyRef> = std::mem::take(&mut self.created);
        let mut kept = Value::Null;
        if let Some((key, label)) = self.kept.take() {
            if self.imported {
                // KMS already holds this material: the token copy is its escrow, keep it.
                kept = json!({"label": label, "handle": self.hsm.raw_handle(key)});
            } else {
                // Nothing was imported: an aborted ceremony keeps nothing.
                pending.push(key);
            }
        }
        for key in pending.into_iter().rev() {
            let raw = self.hsm.raw_handle(key);
            match self.hsm.destroy(key) {
                Ok(()) => destroyed.push(raw),
                Err(e) => cleanup_errors.push(format!("handle {raw}: {e}")),
            }
        }
        destroyed.sort_unstable();
        let message = chain(&error);
        let recorded = self.record(
            RecordType::CeremonyAborted,
            json!({
                "step": step.name(),
                "error_class": error.class().as_str(),
                "message": message,
                "destroyed_handles": destroyed,
                "kept_key": kept,
                "material_imported": self.imported,
                "cleanup_errors": cleanup_errors,
            }),
        );
        self.prompter
            .warn(&format!("the ceremony stopped at step `{}`", step.name()));
        let wrapped = Error::Step {
            step,
            transcript: Some(self.writer.path().to_path_buf()),
            source: Box::new(error),
        };
        match recorded {
            Ok(()) => wrapped,
            // The abort itself could not be recorded: report that, with the original cause.
            Err(e) => Error::Step {
                step,
                transcript: None,
                source: Box::new(Error::Io {
                    what: format!(
                        "{wrapped}; and the ceremony_aborted record could not be written: {e}"
                    ),
                    source: std::io::Error::other("transcript not closed"),
                }),
            },
        }
    }
}

fn expired(params: &ImportParameters) -> Error {
    Error::Refused {
        reason: format!(
            "the import parameters expired at {}; run the ceremony again to get fresh parameters",
            crate::transcript::format_rfc3339(params.parameters_valid_to)
        ),
    }
}

/// The KMS preflight rules.
fn preflight(info: &crate::kms::KeyInfo) -> Result<(), Error> {
    let arn = &info.arn;
    if info.origin != "EXTERNAL" {
        return Err(Error::Refused {
            reason: format!(
                "key {arn} has Origin {}; only keys created with Origin EXTERNAL accept imported material: create one (aws kms create-key --origin EXTERNAL) and set kms.key to it",
                info.origin
            ),
        });
    }
    if info.key_spec != "SYMMETRIC_DEFAULT" {
        return Err(Error::Refused {
            reason: format!(
                "key {arn} has KeySpec {}; byok imports AES-256 material into SYMMETRIC_DEFAULT keys only",
                info.key_spec
            ),
        });
    }
    if info.state != "PendingImport" {
        let next = match info.state.as_str() {
            "Enabled" | "Disabled" => {
                "it already holds key material; this ceremony imports into a new EXTERNAL key only"
            }
            "PendingDeletion" => "cancel the deletion or use another key",
            _ => "use a key in state PendingImport",
        };
        return Err(Error::Refused {
            reason: format!(
                "key {arn} is in state {}, expected PendingImport: {next}",
                info.state
            ),
        });
    }
    Ok(())
}

/// An error and its causes on one line, for the abort record.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
