//! The subcommands: each builds the real HSM, KMS and prompt objects and calls the library.
//!
//! Results go to stdout (what scripts read); progress, prompts and warnings go to stderr.

use std::io::Write;
use std::path::Path;

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::ceremony::{self, Env, RunOptions};
use crate::cli::{PinArgs, TokenArgs};
use crate::error::{Error, exit};
use crate::hsm::pkcs11::{HSM_MODULE_SETTING, Modules};
use crate::hsm::{Hsm, ModuleSource, Pkcs11Custodians, Pkcs11Hsm, TokenSelector};
use crate::kms::AwsKms;
use crate::prompt::{self, Prompter};
use crate::step::Step;
use crate::transcript::verify::{self, VerifyOptions};
use crate::wrap;

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

/// `byok check FILE`.
pub fn check(file: &Path) -> Result<i32, Error> {
    let c = crate::spec::load(file, OffsetDateTime::now_utc())?;
    out(&ceremony::plan::render(&c));
    // The value record 0 carries as `ceremony_file_sha256`, for the paper record.
    out(&format!("ceremony file SHA-256: {}", c.source.sha256));
    out(&format!("{}: valid", file.display()));
    Ok(exit::OK)
}

/// `byok run FILE [--transcript PATH] [--resume OLD] [--kms-concurrency N]`.
pub fn run(file: &Path, transcript: Option<&Path>, options: &RunOptions) -> Result<i32, Error> {
    let now = OffsetDateTime::now_utc();
    let c = crate::spec::load(file, now)?;
    // An endpoint left in the environment stops the run before anything is asked.
    crate::kms::endpoint::from_env(c.kms.endpoint.as_deref())?;
    let transcript = match transcript {
        Some(p) => p.to_path_buf(),
        None => ceremony::default_transcript_path(&c, now),
    };
    crate::cancel::install().map_err(|source| Error::Io {
        what: "cannot install the Ctrl-C handler".into(),
        source,
    })?;
    let mut prompter = prompt::for_stdin();
    prompter.say(&format!(
        "byok {}: ceremony {} from {} ({} target{})\ntranscript: {}",
        env!("CARGO_PKG_VERSION"),
        c.id,
        file.display(),
        c.targets.len(),
        if c.targets.len() == 1 { "" } else { "s" },
        transcript.display()
    ));
    if let Some(old) = &options.resume {
        prompter.say(&format!("resuming: {}", old.display()));
    }
    let stop = |step, e: Error| Error::Step {
        step,
        transcript: None,
        source: Box::new(e),
    };
    let module = c
        .hsm
        .module_path()
        .map_err(|e| stop(Step::OpenHsm, e.into()))?;
    // Every module path is resolved, and every module loaded, before the first prompt: a bad
    // path stops the run here, before anyone types a PIN.
    let own = c
        .custodian_module_paths()
        .map_err(|e| stop(Step::OpenHsm, e.into()))?;
    let mut modules = Modules::default();
    let hsm_module = modules
        .load(&module, HSM_MODULE_SETTING)
        .map_err(|e| stop(Step::OpenHsm, e.into()))?;
    let hsm =
        Pkcs11Hsm::open(hsm_module, &c.hsm.token).map_err(|e| stop(Step::OpenHsm, e.into()))?;
    let mut custodian_tokens = Pkcs11Custodians::for_hsm(&hsm);
    for (i, source, path) in own {
        let setting = match &source {
            ModuleSource::Path(_) => format!("custodian[{i}].module"),
            ModuleSource::Env(var) => format!("custodian[{i}].module_env (${var})"),
        };
        let loaded = modules
            .load(&path, &setting)
            .map_err(|e| stop(Step::OpenHsm, e.into()))?;
        let shared = std::sync::Arc::ptr_eq(&loaded, &hsm.module());
        if let crate::spec::DualControl::Quorum { custodians, .. } = &c.dual_control
            && let Some(k) = custodians.get(i)
        {
            prompter.say(&format!(
                "custodian {}: token module {}{}",
                k.name,
                path.display(),
                if shared { " (the HSM's module)" } else { "" }
            ));
        }
        custodian_tokens = custodian_tokens.with_module(source, loaded);
    }
    let kms = AwsKms::for_ceremony(&c.kms.region, c.kms.call_timeout, c.kms.endpoint.as_deref())
        .map_err(|e| stop(Step::KmsPreflight, e.into()))?;
    let clock = OffsetDateTime::now_utc;
    let outcome = ceremony::run(
        &c,
        Env {
            hsm: &hsm,
            kms: &kms,
            custodians: &custodian_tokens,
            prompter: prompter.as_mut(),
            now: &clock,
        },
        &transcript,
        options,
    )?;
    prompter.say("\nCeremony finished.");
    let rehearsal = matches!(c.dual_control, crate::spec::DualControl::Off);
    if rehearsal {
        prompter.warn("no approvals were collected: dual control was OFF (rehearsal)");
        out(
            "REHEARSAL: dual control was OFF; no custodian approved anything. This ceremony proves nothing about dual control.",
        );
    }
    for (point, names) in &outcome.approvals {
        prompter.say(&format!("  {point:<8} approved by {}", names.join(", ")));
    }
    for t in &outcome.targets {
        out(&format!(
            "target {}: {} {} key {} kcv {} key material id {}",
            t.index,
            t.key,
            t.status,
            t.key_arn.as_deref().unwrap_or("-"),
            t.kcv.as_deref().unwrap_or("-"),
            t.key_material_id.as_deref().unwrap_or("-")
        ));
    }
    if let [only] = outcome.targets.as_slice() {
        out(&format!("key: {}", only.key_arn.as_deref().unwrap_or("-")));
        if let Some(id) = &only.key_material_id {
            out(&format!("key material id: {id}"));
        }
        out(&format!("kcv: {}", only.kcv.as_deref().unwrap_or("-")));
    }
    out(&format!("transcript: {}", outcome.transcript.display()));
    out(&format!(
        "transcript fingerprint (SHA-256 of the last line; write it down): {}",
        outcome.last_line_sha256
    ));
    Ok(exit::OK)
}

/// `byok verify TRANSCRIPT [--audit-key-sha256 HEX]`.
pub fn verify(path: &Path, pins: &PinArgs) -> Result<i32, Error> {
    let audit_key_sha256 = pins.audit_key_sha256.as_deref();
    if let Some(fp) = audit_key_sha256
        && (fp.len() != 64 || !fp.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(Error::Usage {
            message: format!(
                "--audit-key-sha256 must be 64 hex digits (the SHA-256 printed by `byok audit-key create`), found {fp:?}"
            ),
        });
    }
    let opts = VerifyOptions {
        audit_key_sha256: audit_key_sha256.map(str::to_string),
        allow_truncated: false,
    };
    let result = verify::verify_file(path, &opts).map_err(|source| Error::Io {
        what: format!("cannot read transcript {}", path.display()),
        source,
    })?;
    match result {
        Ok(report) => {
            out(&format!("{}: valid", path.display()));
            out(&format!("  ceremony        {}", report.ceremony_id));
            out(&format!("  records         {}", report.records));
            out(&format!("  outcome         {}", report.outcome));
            out(&format!("  format version  {}", report.version));
            if report.outcome == crate::transcript::RecordType::CeremonyAborted {
                out(&format!(
                    "  stopped at      {} ({}): {}",
                    report.outcome_data["step"].as_str().unwrap_or("?"),
                    report.outcome_data["error_class"].as_str().unwrap_or("?"),
                    report.outcome_data["message"].as_str().unwrap_or("?")
                ));
            }
            if let Some(r) = &report.resumes {
                out(&format!(
                    "  resumes         {} ({} records, {}), last line SHA-256 {}",
                    r.transcript_name,
                    r.records,
                    if r.closed { "closed" } else { "cut off" },
                    r.last_line_sha256
                ));
            }
            if let Some(s) = &report.source {
                out(&format!(
                    "  source          {} (ceremony {}, kind {}, {} records), last line SHA-256 {}",
                    s.transcript, s.ceremony_id, s.kind, s.records, s.last_line_sha256
                ));
            }
            if let Some(w) = &report.kms_identity {
                let e = |s: &str| crate::text::escape(s).into_owned();
                out(&format!(
                    "  ran at          KMS {} ({}), STS {}; account {}{} as {}",
                    e(&w.endpoint),
                    if w.endpoint_overridden {
                        "named in the ceremony file"
                    } else {
                        "AWS"
                    },
                    e(&w.sts_endpoint),
                    e(&w.account),
                    if w.pinned_account.is_some() {
                        " (pinned)"
                    } else {
                        " (not pinned)"
                    },
                    e(&w.caller_arn)
                ));
            }
            if report.version == 1 {
                if report.outcome != crate::transcript::RecordType::CeremonyAborted {
                    out(&format!(
                        "  key             {}",
                        report.outcome_data["key_arn"].as_str().unwrap_or("?")
                    ));
                    out(&format!(
                        "  kcv             {}",
                        report.outcome_data["kcv"].as_str().unwrap_or("?")
                    ));
                }
            } else {
                out(&format!("  targets         {}", report.targets.len()));
                for t in &report.targets {
                    out(&format!(
                        "    {:>4} {:<20} {} key {} kcv {}",
                        t.index,
                        t.status,
                        t.key,
                        t.key_arn.as_deref().unwrap_or("-"),
                        t.kcv.as_deref().unwrap_or("-")
                    ));
                }
            }
            match report.quorum {
                Some(m) => out(&format!(
                    "  dual control    {m} distinct custodians per approval point"
                )),
                None => out("  dual control    OFF (REHEARSAL): no custodian approved anything"),
            }
            for (point, names) in &report.approvals {
                out(&format!("  approved        {point}: {}", names.join(", ")));
            }
            out(&format!(
                "  audit key       SHA-256 {}",
                report.audit_key_sha256
            ));
            if !report.audit_key_pinned_externally {
                out(
                    "  note            the audit key was checked only against the ceremony file inside the transcript; pass --audit-key-sha256 from a record you trust",
                );
            }
            out(&format!(
                "  last line       SHA-256 {}",
                report.last_line_sha256
            ));
            Ok(exit::OK)
        }
        Err(invalid) => {
            out(&format!("{}: INVALID at {invalid}", path.display()));
            Ok(exit::INVALID_TRANSCRIPT)
        }
    }
}

/// The verifier's options from the auditor's pins. Only `--audit-key-sha256` takes effect
/// here; the other pins are refused until the verifier checks them (issue 11).
pub fn verify_options(pins: &PinArgs) -> Result<VerifyOptions, Error> {
    let audit_key_sha256 = pins.audit_key_sha256.as_deref();
    if let Some(fp) = audit_key_sha256
        && (fp.len() != 64 || !fp.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(Error::Usage {
            message: format!(
                "--audit-key-sha256 must be 64 hex digits (the SHA-256 printed by `byok audit-key create`), found {:?}",
                crate::text::escape(fp)
            ),
        });
    }
    if pins.pin_file.is_some()
        || pins.ceremony_file.is_some()
        || !pins.custodian.is_empty()
        || pins.require_quorum.is_some()
    {
        return Err(Error::Usage {
            message: "--pin-file, --ceremony-file, --custodian and --require-quorum are not checked by this build yet; pin the audit key with --audit-key-sha256".into(),
        });
    }
    Ok(VerifyOptions {
        audit_key_sha256: audit_key_sha256.map(str::to_ascii_lowercase),
        allow_truncated: false,
    })
}

/// `byok report TRANSCRIPT [pins] [--html OUT] [--json]`: the verdict (exit codes as
/// `verify`) and what the transcript says, as text, one HTML page, or JSON (docs/report.md).
pub fn report(path: &Path, pins: &PinArgs, html: Option<&Path>, json: bool) -> Result<i32, Error> {
    let opts = verify_options(pins)?;
    let bytes = std::fs::read(path).map_err(|source| crate::report::ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let report = crate::report::build(
        &bytes,
        &path.display().to_string(),
        &opts,
        crate::report::Pins::from_args(pins),
    );
    if let Some(out_path) = html {
        crate::report::html::write(&report, out_path)?;
    }
    if json {
        out(&crate::report::to_json(&report));
    } else {
        out(&crate::report::text::summary(&report));
        if let Some(out_path) = html {
            out(&format!("  html report     {}", out_path.display()));
        }
    }
    Ok(report.verdict.exit_code)
}

fn open_token(args: &TokenArgs) -> Result<Pkcs11Hsm, Error> {
    let selector = match (&args.token_label, &args.token_serial) {
        (Some(l), _) => TokenSelector::Label(l.clone()),
        (None, Some(s)) => TokenSelector::Serial(s.clone()),
        // clap requires one of the two.
        (None, None) => TokenSelector::Label(String::new()),
    };
    Ok(Pkcs11Hsm::open_path(&args.module, &selector)?)
}

fn ask_pin(prompter: &mut dyn Prompter, hsm: &dyn Hsm) -> Result<SecretString, Error> {
    Ok(prompter.secret(
        "hsm-pin",
        &format!("User PIN for token {:?}", hsm.description().token_label),
    )?)
}

/// `byok probe`.
pub fn probe(args: &TokenArgs) -> Result<i32, Error> {
    let hsm = open_token(args)?;
    let mut prompter = prompt::for_stdin();
    let pin = ask_pin(prompter.as_mut(), &hsm)?;
    hsm.login(&pin)?;
    drop(pin);
    let d = hsm.description();
    out(&format!(
        "module {} ({} {}); token {:?} serial {} model {}",
        d.module_path,
        d.module_manufacturer,
        d.module_version,
        d.token_label,
        d.token_serial,
        d.token_model
    ));
    // The ceremony file's default wrapping key size: the largest, the one a token is most
    // likely to refuse.
    let lines = wrap::probe(&hsm, wrap::WrappingKeySpec::Rsa4096);
    for line in &lines {
        out(&line.to_string());
    }
    if lines
        .iter()
        .any(|l| matches!(l.outcome, wrap::ProbeOutcome::Mismatch { .. }))
    {
        prompter.warn(
            "the token produced a wrap that does not unwrap as requested (MISMATCH above): do not trust it for that algorithm",
        );
    }
    Ok(exit::OK)
}

/// The usage of a new key pair as the token reported it, for stderr.
fn usage_summary(usage: &crate::hsm::KeyPairUsage) -> String {
    format!("Usage read back from the token (sign/verify only): {usage}")
}

/// `byok audit-key create`.
pub fn audit_key_create(args: &TokenArgs, label: &str) -> Result<i32, Error> {
    let hsm = open_token(args)?;
    let mut prompter = prompt::for_stdin();
    let pin = ask_pin(prompter.as_mut(), &hsm)?;
    hsm.login(&pin)?;
    drop(pin);
    let pair = hsm.generate_ec_key_pair(label)?;
    let fp = crate::ecdsa::fingerprint(&pair.spki);
    prompter.say(&format!(
        "Created EC P-256 audit key {label:?} on token {:?}. Pin it in ceremony files:\n  audit_key_label = {label:?}\n  audit_key_sha256 = \"{fp}\"",
        hsm.description().token_label
    ));
    prompter.say(&usage_summary(&pair.usage));
    out(&fp);
    Ok(exit::OK)
}

/// `byok custodian enroll`: a custodian's approval key on their own token.
pub fn custodian_enroll(args: &TokenArgs, name: &str, label: &str) -> Result<i32, Error> {
    if name.trim().is_empty() {
        return Err(Error::Usage {
            message: "--name must name the custodian, as approvals will show it".into(),
        });
    }
    let hsm = open_token(args)?;
    let mut prompter = prompt::for_stdin();
    let pin = ask_pin(prompter.as_mut(), &hsm)?;
    hsm.login(&pin)?;
    drop(pin);
    let pair = hsm.generate_ec_key_pair(label)?;
    let fp = crate::ecdsa::fingerprint(&pair.spki);
    let d = hsm.description();
    prompter.say(&usage_summary(&pair.usage));
    prompter.say(&format!(
        "Created EC P-256 approval key {label:?} for {name} on token {:?} (serial {}). Paste into ceremony files:",
        d.token_label, d.token_serial
    ));
    out(&format!(
        "[[custodian]]\nname = {name:?}\ntoken_label = {:?}\nkey_label = {label:?}\npublic_key_sha256 = \"{fp}\"",
        d.token_label
    ));
    Ok(exit::OK)
}
