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
    let c = crate::spec::load(file, crate::clock::now()?)?;
    out(&ceremony::plan::render(&c));
    // The value record 0 carries as `ceremony_file_sha256`, for the paper record.
    out(&format!("ceremony file SHA-256: {}", c.source.sha256));
    out(&format!("{}: valid", file.display()));
    Ok(exit::OK)
}

/// `byok policy FILE` or `byok policy --inventory`.
pub fn policy(file: Option<&Path>, inventory: bool) -> Result<i32, Error> {
    let policy = match (file, inventory) {
        (Some(file), false) => {
            crate::policy::for_ceremony(&crate::spec::load(file, crate::clock::now()?)?)
        }
        _ => crate::policy::for_inventory(),
    };
    out(&serde_json::to_string_pretty(&policy).unwrap_or_default());
    Ok(exit::OK)
}

/// `byok run FILE [--transcript PATH] [--resume OLD] [--kms-concurrency N]`.
pub fn run(file: &Path, transcript: Option<&Path>, options: &RunOptions) -> Result<i32, Error> {
    // Decisions on the file (valid_to) use the decision clock; record times stay real.
    let now = OffsetDateTime::now_utc();
    let c = crate::spec::load(file, crate::clock::now()?)?;
    if crate::clock::is_shifted() {
        eprintln!(
            "byok: {} is set: the ceremony file was checked against it; transcript times are the real time",
            crate::clock::BYOK_NOW
        );
    }
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

/// A pin file (`--pin-file`): what the paper record says, for `verify` and `report`. Format in
/// docs/transcript.md ("Pins").
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PinFile {
    audit_key_sha256: String,
    ceremony_file_sha256: Option<String>,
    require_quorum: Option<usize>,
    #[serde(default)]
    custodians: std::collections::BTreeMap<String, String>,
}

/// `HEX` as 64 lowercase hex digits, or a usage error naming `what`.
fn sha256_pin(what: &str, hex: &str) -> Result<String, Error> {
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(Error::Usage {
            message: format!(
                "{what} must be 64 hex digits (a SHA-256 as byok prints it), found {:?}",
                crate::text::escape(hex)
            ),
        })
    }
}

/// Sets `slot` to `value`, or fails when a pin given twice (flag and pin file) disagrees.
fn pin_once<T: PartialEq + std::fmt::Display>(
    slot: &mut Option<T>,
    value: T,
    what: &str,
) -> Result<(), Error> {
    match slot {
        Some(old) if *old != value => Err(Error::Usage {
            message: format!(
                "{what} is pinned twice with different values ({old} and {value}); give one value"
            ),
        }),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// The auditor's pins (`--audit-key-sha256`, `--pin-file`, `--ceremony-file`, `--custodian`,
/// `--require-quorum`) as [`VerifyOptions`]: shared by `verify` and `report`. Bad input (not
/// hex, no `=`, an unreadable or malformed file, two pins of one thing that disagree) is a
/// usage error (exit 2) that says what to fix.
pub fn verify_options(pins: &PinArgs) -> Result<VerifyOptions, Error> {
    let mut audit = match &pins.audit_key_sha256 {
        Some(hex) => Some(sha256_pin("--audit-key-sha256", hex)?),
        None => None,
    };
    let mut file_sha256 = None;
    let mut quorum = pins.require_quorum;
    let mut custodians: Vec<(String, String)> = Vec::new();
    let mut add_custodian = |name: &str, hex: &str, what: &str| -> Result<(), Error> {
        if name.trim().is_empty() {
            return Err(Error::Usage {
                message: format!("{what}: the custodian's name is empty; write NAME=HEX"),
            });
        }
        let fp = sha256_pin(&format!("{what} ({})", crate::text::escape(name)), hex)?;
        match custodians.iter().find(|(n, _)| n == name) {
            Some((_, old)) if *old != fp => Err(Error::Usage {
                message: format!(
                    "custodian {} is pinned twice with different keys ({old} and {fp}); give one",
                    crate::text::escape(name)
                ),
            }),
            Some(_) => Ok(()),
            None => {
                custodians.push((name.to_string(), fp));
                Ok(())
            }
        }
    };
    for c in &pins.custodian {
        let Some((name, hex)) = c.split_once('=') else {
            return Err(Error::Usage {
                message: format!(
                    "--custodian {}: expected NAME=HEX, e.g. --custodian Alice=<the SHA-256 of Alice's approval key>",
                    crate::text::escape(c)
                ),
            });
        };
        add_custodian(name, hex, "--custodian")?;
    }
    if let Some(path) = &pins.ceremony_file {
        let bytes = std::fs::read(path).map_err(|e| Error::Usage {
            message: format!(
                "--ceremony-file {}: cannot read it ({e}); give the approved ceremony file",
                path.display()
            ),
        })?;
        file_sha256 = Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    }
    if let Some(path) = &pins.pin_file {
        let what = format!("--pin-file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| Error::Usage {
            message: format!("{what}: cannot read it ({e})"),
        })?;
        let file: PinFile = toml::from_str(&text).map_err(|e| Error::Usage {
            message: format!(
                "{what}: {}; the format is in docs/transcript.md (Pins)",
                e.message()
            ),
        })?;
        let fp = sha256_pin(&format!("{what}: audit_key_sha256"), &file.audit_key_sha256)?;
        pin_once(&mut audit, fp, "the audit key SHA-256")?;
        if let Some(hex) = &file.ceremony_file_sha256 {
            let fp = sha256_pin(&format!("{what}: ceremony_file_sha256"), hex)?;
            pin_once(&mut file_sha256, fp, "the ceremony file SHA-256")?;
        }
        if let Some(m) = file.require_quorum {
            pin_once(&mut quorum, m, "the required quorum")?;
        }
        for (name, hex) in &file.custodians {
            add_custodian(name, hex, &format!("{what}: [custodians]"))?;
        }
    }
    if quorum.is_some_and(|m| m < 2) {
        return Err(Error::Usage {
            message:
                "--require-quorum must be at least 2: dual control means two or more custodians"
                    .into(),
        });
    }
    Ok(VerifyOptions {
        audit_key_sha256: audit,
        ceremony_file_sha256: file_sha256,
        custodians,
        require_quorum: quorum,
        allow_truncated: false,
    })
}

/// `byok verify TRANSCRIPT [pins]`: exit 0 valid and the audit key pinned, 8 valid but not
/// pinned, 1 invalid.
pub fn verify(path: &Path, pins: &PinArgs) -> Result<i32, Error> {
    let opts = verify_options(pins)?;
    let result = verify::verify_file(path, &opts).map_err(|source| Error::Io {
        what: format!("cannot read transcript {}", path.display()),
        source,
    })?;
    match result {
        Ok(report) => {
            for line in verify_lines(path, &report, &opts) {
                out(&line);
            }
            if report.audit_key_pinned_externally {
                Ok(exit::OK)
            } else {
                out(&format!(
                    "{}: valid in itself, but NOT PINNED: the audit key was checked only against the ceremony file inside the transcript, which its writer chose; pass --audit-key-sha256 HEX (or --pin-file FILE) with the audit key SHA-256 from the paper record (exit {})",
                    path.display(),
                    exit::NOT_PINNED
                ));
                Ok(exit::NOT_PINNED)
            }
        }
        Err(invalid) => {
            out(&format!(
                "{}: INVALID at {}",
                path.display(),
                crate::text::escape(&invalid.to_string())
            ));
            Ok(exit::INVALID_TRANSCRIPT)
        }
    }
}

/// What `byok verify` prints for a valid transcript. Everything taken from the transcript is
/// escaped ([`crate::text::escape`]): its writer must not be able to steer the terminal.
fn verify_lines(path: &Path, report: &verify::Report, opts: &VerifyOptions) -> Vec<String> {
    use crate::text::escape as e;
    let field = |v: &serde_json::Value, name: &str| e(v[name].as_str().unwrap_or("?")).into_owned();
    let mut lines = vec![
        format!("{}: valid", path.display()),
        format!("  ceremony        {}", e(&report.ceremony_id)),
        format!("  records         {}", report.records),
        format!("  outcome         {}", report.outcome),
        format!("  format version  {}", report.version),
    ];
    if let Some(id) = &report.run_id {
        lines.push(format!("  run id          {}", e(id)));
    }
    lines.push(format!(
        "  ceremony file   SHA-256 {}",
        e(&report.ceremony_file_sha256)
    ));
    if report.outcome == crate::transcript::RecordType::CeremonyAborted {
        lines.push(format!(
            "  stopped at      {} ({}): {}",
            field(&report.outcome_data, "step"),
            field(&report.outcome_data, "error_class"),
            field(&report.outcome_data, "message")
        ));
    }
    if let Some(r) = &report.resumes {
        lines.push(format!(
            "  resumes         {} ({} records, {}), last line SHA-256 {}",
            e(&r.transcript_name),
            r.records,
            if r.closed { "closed" } else { "cut off" },
            e(&r.last_line_sha256)
        ));
    }
    if let Some(s) = &report.source {
        lines.push(format!(
            "  source          {} (ceremony {}, kind {}, {} records), last line SHA-256 {}",
            e(&s.transcript),
            e(&s.ceremony_id),
            e(&s.kind),
            s.records,
            e(&s.last_line_sha256)
        ));
    }
    if let Some(w) = &report.kms_identity {
        lines.push(format!(
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
            lines.push(format!(
                "  key             {}",
                field(&report.outcome_data, "key_arn")
            ));
            lines.push(format!(
                "  kcv             {}",
                field(&report.outcome_data, "kcv")
            ));
        }
    } else {
        lines.push(format!("  targets         {}", report.targets.len()));
        for t in &report.targets {
            lines.push(format!(
                "    {:>4} {:<20} {} key {} kcv {}",
                t.index,
                e(&t.status),
                e(&t.key),
                e(t.key_arn.as_deref().unwrap_or("-")),
                e(t.kcv.as_deref().unwrap_or("-"))
            ));
        }
    }
    match report.quorum {
        Some(m) => lines.push(format!(
            "  dual control    {m} distinct custodians per approval point"
        )),
        None => {
            lines.push("  dual control    OFF (REHEARSAL): no custodian approved anything".into())
        }
    }
    for (name, fp) in &report.custodians {
        lines.push(format!(
            "  custodian       {} key SHA-256 {}",
            e(name),
            e(fp)
        ));
    }
    for (point, names) in &report.approvals {
        let names: Vec<String> = names.iter().map(|n| e(n).into_owned()).collect();
        lines.push(format!("  approved        {point}: {}", names.join(", ")));
    }
    for (point, digest) in &report.statements {
        lines.push(format!("  statement       {point} SHA-256 {}", e(digest)));
    }
    if report.version < 4 && report.quorum.is_some() {
        lines.push(
            "  note            format version < 4: the approvals carry no run id, so they are not tied to this one run (an approval from another run of the same file would count)".into(),
        );
    }
    lines.push(format!(
        "  audit key       SHA-256 {}",
        report.audit_key_sha256
    ));
    lines.extend(pinned_lines(opts));
    lines.push(format!(
        "  last line       SHA-256 {}",
        report.last_line_sha256
    ));
    lines
}

/// What the auditor pinned from outside the transcript, one line each.
fn pinned_lines(opts: &VerifyOptions) -> Vec<String> {
    let mut lines = Vec::new();
    match &opts.audit_key_sha256 {
        Some(fp) => lines.push(format!("  pinned          audit key SHA-256 {fp}")),
        None => lines.push(
            "  pinned          NOT the audit key (no --audit-key-sha256 or --pin-file)".into(),
        ),
    }
    if let Some(fp) = &opts.ceremony_file_sha256 {
        lines.push(format!(
            "  pinned          ceremony file SHA-256 {fp} (byte-identical)"
        ));
    }
    for (name, fp) in &opts.custodians {
        lines.push(format!(
            "  pinned          custodian {} key SHA-256 {fp}",
            crate::text::escape(name)
        ));
    }
    if let Some(m) = opts.require_quorum {
        lines.push(format!("  pinned          quorum of at least {m}"));
    }
    lines
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

/// `byok inventory`: exit 0 all compliant, 10 attention, 11 action (docs/inventory.md).
pub fn inventory(args: &crate::cli::InventoryArgs) -> Result<i32, Error> {
    use crate::inventory::{self, judge, ledger, render, rules};
    let now = crate::clock::now()?;
    let policy = match &args.policy {
        Some(path) => rules::load(path)?,
        None => rules::RotationPolicy::default(),
    };
    let mut audit_keys = policy.audit_keys.clone();
    for hex in &args.audit_keys {
        let fp = sha256_pin("--audit-key-sha256", hex)?;
        if !audit_keys.contains(&fp) {
            audit_keys.push(fp);
        }
    }
    if args.transcripts.is_some() && audit_keys.is_empty() {
        return Err(Error::Usage {
            message: "--transcripts needs the audit keys to trust: list them in the policy's [transcripts] audit_key_sha256 or give --audit-key-sha256".into(),
        });
    }
    let ledger = args
        .transcripts
        .as_deref()
        .map(|dir| ledger::read_dir(dir, &audit_keys))
        .transpose()?;
    let mut regions: Vec<String> = Vec::new();
    for r in &args.regions {
        if r.is_empty()
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::Usage {
                message: format!(
                    "--region {}: not a region name (like eu-west-1)",
                    crate::text::escape(r)
                ),
            });
        }
        if !regions.contains(r) {
            regions.push(r.clone());
        }
    }
    if regions.is_empty() {
        regions.push(
            crate::kms::aws::configured_region().ok_or_else(|| Error::Usage {
                message: "no region: give --region (repeatable) or set AWS_REGION".into(),
            })?,
        );
    }
    let aws = AwsKms::new(&regions[0]).map_err(Error::Inventory)?;
    let kms = crate::kms::PacedFleet::new(&aws, policy.rates.clone(), &regions[0]);
    let limits = inventory::PageLimits {
        keys: args.list_keys_limit,
        aliases: args.list_aliases_limit,
    };
    let observation = inventory::observe(&kms, &regions, usize::from(args.concurrency), limits)
        .map_err(Error::Inventory)?;
    let gone = match &ledger {
        Some(l) => inventory::look_for_missing(&kms, &observation, l).map_err(Error::Inventory)?,
        None => Vec::new(),
    };
    let keys = judge::judge_all(&observation, ledger.as_ref(), &gone, &policy, now);
    let inv = render::Inventory {
        generated_at: now,
        clock_shifted: crate::clock::is_shifted(),
        regions: &regions,
        policy: args.policy.as_deref(),
        listed: observation.listed,
        keys: &keys,
        transcripts: ledger.as_ref().map(|l| l.transcripts.as_slice()),
    };
    let colour = args.format == render::Format::Table && console::Term::stdout().is_term();
    let text = render::render(&inv, args.format, colour);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Io {
            what: "cannot write the inventory to stdout".into(),
            source,
        })?;
    if kms.throttled() > 0 {
        eprintln!(
            "byok: KMS throttled {} requests; byok backed off and retried them",
            kms.throttled()
        );
    }
    Ok(render::exit_code(inv.class()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::RecordType;
    use crate::transcript::payload::TargetOutcome;

    /// Names, ids and keys from a transcript are written by whoever holds the audit key: an
    /// escape sequence or a line break in them must reach the terminal as visible text.
    #[test]
    fn what_verify_prints_from_a_transcript_is_escaped() {
        let hostile = "Alice\u{1b}[2K\r\ndual control    OFF\u{202e}";
        let report = verify::Report {
            version: 4,
            records: 3,
            ceremony_id: hostile.into(),
            ceremony_file_sha256: "ab".repeat(32),
            closed: true,
            resumes: None,
            targets: vec![TargetOutcome {
                index: 0,
                key: hostile.into(),
                key_arn: Some(hostile.into()),
                status: hostile.into(),
                key_material_id: None,
                kcv: Some(hostile.into()),
            }],
            audit_key_sha256: "cd".repeat(32),
            outcome: RecordType::CeremonyAborted,
            outcome_data: serde_json::json!({"step": hostile, "error_class": hostile, "message": hostile}),
            last_line_sha256: "ef".repeat(32),
            audit_key_pinned_externally: true,
            quorum: Some(2),
            approvals: vec![("plan".into(), vec![hostile.into()])],
            source: None,
            run_id: Some(hostile.into()),
            statements: vec![("plan".into(), hostile.into())],
            custodians: vec![(hostile.into(), hostile.into())],
            kms_identity: None,
        };
        let opts = VerifyOptions {
            custodians: vec![(hostile.into(), "12".repeat(32))],
            ..VerifyOptions::default()
        };
        let lines = verify_lines(Path::new("t.jsonl"), &report, &opts);
        let text = lines.join("\n");
        assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{202e}'));
        assert_eq!(
            text.lines().count(),
            lines.len(),
            "no line of output holds a line break"
        );
        assert!(text.contains("Alice\\u{1b}[2K\\u{d}\\u{a}dual control    OFF\\u{202e}"));
    }
}
