//! The step engine: runs a validated ceremony for every target against an [`Hsm`], a [`Kms`]
//! and a [`Prompter`], writing one signed transcript record per step and target.
//!
//! `Run::steps` is the whole ceremony in order; each step lives in its own file and returns
//! after recording what it did. The HSM work of all targets runs on this thread, on one PKCS#11
//! session, in the order KMS answers for the targets; the KMS calls of different targets
//! overlap on a few worker
//! threads (`pool`), paced to KMS's quotas ([`crate::kms::Paced`]). Records of different
//! targets may therefore interleave; each one names its target (`target_index`, `key_arn`),
//! and the records of one target are always in step order.
//!
//! Every failure after the transcript has started (a declined approval and Ctrl-C included)
//! destroys the session objects the ceremony created and closes the transcript with
//! `ceremony_aborted`, which says for every target whether it is done, not started or
//! uncertain. The engine never writes a PIN, key material or the import token anywhere.

mod approve;
mod capability;
mod finish;
mod identity;
mod import;
pub mod plan;
mod pool;
pub(crate) mod preflight;
mod prepare;
mod reconcile;
mod reimport;
mod rotate;
pub mod source;
mod start;
mod swap;
pub mod target;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::audit::HsmSigner;
use crate::error::Error;
use crate::hsm::{CustodianTokens, Hsm, KeyRef};
use crate::kms::{Kms, Paced};
use crate::prompt::Prompter;
use crate::spec::Ceremony;
pub use crate::step::Step;
use crate::transcript::{Payload, TranscriptWriter};
use target::TargetState;

/// PIN attempts before the login step gives up.
pub const PIN_ATTEMPTS: usize = 3;

/// Default number of targets whose KMS calls run at once.
pub const DEFAULT_KMS_CONCURRENCY: usize = 4;

/// What a finished ceremony produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub transcript: PathBuf,
    /// SHA-256 of the last transcript line: the fingerprint to write on paper.
    pub last_line_sha256: String,
    /// Every target, in order, with its status, ARN, KeyMaterialId and KCV.
    pub targets: Vec<crate::transcript::payload::TargetOutcome>,
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

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Targets whose KMS calls may run at once (1 = one target at a time).
    pub kms_concurrency: usize,
    /// The transcript of an interrupted run of the same ceremony file to continue.
    pub resume: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            kms_concurrency: DEFAULT_KMS_CONCURRENCY,
            resume: None,
        }
    }
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
pub fn run(
    ceremony: &Ceremony,
    env: Env<'_>,
    transcript: &Path,
    options: &RunOptions,
) -> Result<Outcome, Error> {
    let before = |step: Step, source: Error| Error::Step {
        step,
        transcript: None,
        source: Box::new(source),
    };
    // No core dump and no ptrace-style dump from here on, whatever the wrap mode: PINs are
    // typed into this process from the first prompt on.
    crate::secure::harden_process();
    // An endpoint left in the environment that the ceremony file does not name stops the run
    // before anyone is asked anything.
    let endpoint = crate::kms::endpoint::from_env(ceremony.kms.endpoint.as_deref())
        .map_err(|e| before(Step::Start, e.into()))?;
    // Refuse an existing transcript, and a bad earlier one, before asking anyone anything.
    if options.resume.is_some() {
        let why = match ceremony.import.kind {
            crate::spec::Kind::Import => None,
            crate::spec::Kind::Rotate { .. } => Some(
                "check each target's CurrentKeyMaterialId (DescribeKey) and ListKeyRotations, then run a new rotate ceremony listing only the keys not yet rotated",
            ),
            crate::spec::Kind::AliasSwap { .. } => Some(
                "check which key each alias names (DescribeKey), then run a new alias-swap ceremony for the aliases not yet moved, with previous_key as KMS shows it",
            ),
            crate::spec::Kind::Rollback => Some(
                "run the same rollback file again without --resume: an alias already back on its previous key is done and left alone, the others are moved under fresh approvals",
            ),
            crate::spec::Kind::Reimport => Some(
                "check each target's state in KMS (DescribeKey: Enabled means its material is back), then run a new reimport ceremony, with a new ceremony.id, listing only the keys still PendingImport",
            ),
        };
        if let Some(why) = why {
            return Err(before(
                Step::Start,
                refused(format!(
                    "--resume is not supported for kind = {:?} in this version of byok: {why} (docs/rotation.md)",
                    ceremony.import.kind.name()
                )),
            ));
        }
    }
    // The source transcript is verified before anyone types a PIN: a wrong file, a wrong
    // fingerprint or a tampered transcript stops the ceremony here.
    let source = match &ceremony.source_transcript {
        Some(s) => Some(
            source::Source::load(
                &s.path,
                &s.as_written,
                &s.last_line_sha256,
                &ceremony.hsm.audit_key_sha256,
                // An aborted alias swap says which aliases moved: those can be moved back.
                ceremony.import.kind == crate::spec::Kind::Rollback,
            )
            .map_err(|e| before(Step::SourceCheck, e))?,
        ),
        None => None,
    };
    let writer = TranscriptWriter::create(transcript).map_err(|e| before(Step::Start, e.into()))?;
    let earlier = match &options.resume {
        Some(path) => {
            Some(reconcile::Earlier::load(path, ceremony).map_err(|e| before(Step::Start, e))?)
        }
        None => None,
    };
    let Env {
        hsm,
        kms,
        custodians,
        prompter,
        now,
    } = env;
    let (signer, trusted) = start::open(ceremony, hsm, prompter, earlier.as_ref())
        .map_err(|e| before(Step::OpenHsm, e))?;
    let paced = Paced::new(kms, ceremony.kms.rates.clone(), &ceremony.kms.region);
    let run_id = new_run_id().map_err(|e| before(Step::Start, e))?;
    let mut run = Run {
        ceremony,
        hsm,
        kms: &paced,
        custodians,
        prompter,
        now,
        signer: &signer,
        run_id,
        writer,
        step: Step::Start,
        failed_target: None,
        failed_step: None,
        // The SO's trusted transfer key is destroyed after the kept-key check, or at abort.
        created: trusted.into_iter().collect(),
        targets: ceremony
            .targets
            .iter()
            .cloned()
            .map(TargetState::new)
            .collect(),
        approvals: Vec::new(),
        concurrency: options.kms_concurrency.max(1),
        earlier,
        source,
        trusted,
        endpoint,
        whereabouts: None,
    };
    match run.steps() {
        Ok(outcome) => Ok(outcome),
        Err(error) => Err(run.abort(error)),
    }
}

/// A ceremony in progress: what every step reads and writes.
pub(crate) struct Run<'a> {
    ceremony: &'a Ceremony,
    hsm: &'a dyn Hsm,
    kms: &'a Paced<'a>,
    custodians: &'a dyn CustodianTokens,
    prompter: &'a mut dyn Prompter,
    now: &'a dyn Fn() -> OffsetDateTime,
    signer: &'a HsmSigner<'a>,
    /// 128 random bits (hex) written in record 0 and in every statement custodians sign, so
    /// that an approval from another run of the same file does not count in this one.
    run_id: String,
    writer: TranscriptWriter,
    step: Step,
    /// The target whose step failed first, and that step, for the abort record (events of
    /// targets still in flight are handled after it and move `step` on).
    failed_target: Option<usize>,
    failed_step: Option<Step>,
    /// Session objects this ceremony created and has not destroyed yet.
    created: Vec<KeyRef>,
    targets: Vec<TargetState>,
    /// Who approved each approval point so far.
    approvals: Vec<(String, Vec<String>)>,
    concurrency: usize,
    earlier: Option<reconcile::Earlier>,
    /// `[source]`, verified before the run started (`kind = "reimport"`).
    source: Option<source::Source>,
    /// A reimport's trusted transfer key, made by the Security Officer at `open_hsm`, until
    /// the kept-key check destroys it.
    trusted: Option<KeyRef>,
    /// Where KMS calls go (`[kms] endpoint`) and which environment variables agreed.
    endpoint: crate::kms::endpoint::EndpointChoice,
    /// Where the ceremony runs and as whom, once `kms_identity` is recorded.
    whereabouts: Option<crate::kms::Whereabouts>,
}

impl Run<'_> {
    /// The ceremony, step by step.
    fn steps(&mut self) -> Result<Outcome, Error> {
        start::record(self)?;
        // kind = "rollback": the alias-swap transcript it undoes, verified.
        swap::source(self)?;
        reconcile::targets(self)?;
        let kind = &self.ceremony.import.kind;
        if kind.imports() {
            // What the token and the keys can do is known before anyone approves the plan.
            let test = capability::check(self)?;
            if self.ceremony.import.kind.moves_aliases() {
                swap::preflight(self)?;
            } else {
                preflight::before_approval(self)?;
            }
            // kind = "reimport": every kept key's KCV, computed in the HSM now, matches the
            // source's before anyone approves the plan.
            reimport::check_kept(self)?;
            approve::plan(self)?;
            // Per target: creation (when asked), import parameters, generate, wrap.
            prepare::targets(self, &test)?;
            approve::import(self, &test)?;
            import::targets(self)?;
        } else {
            // A rollback generates and imports nothing: no known-answer test to run.
            swap::preflight(self)?;
            approve::plan(self)?;
        }
        // kind = "rotate": its own approval, then RotateKeyOnDemand and its checks.
        rotate::targets(self)?;
        // Alias-swap and rollback: their own approval, then UpdateAlias and its checks.
        swap::targets(self)?;
        finish::cleanup(self)?;
        finish::finish(self)
    }

    /// Enters `step`: stops first if Ctrl-C arrived, then shows its heading.
    fn enter(&mut self, step: Step) -> Result<(), Error> {
        if crate::cancel::is_cancelled() {
            return Err(crate::prompt::PromptError::Cancelled {
                id: format!("step {}", step.name()),
            }
            .into());
        }
        self.step = step;
        self.prompter.say(&format!("\n== {} ==", step.heading()));
        Ok(())
    }

    /// Appends one signed record.
    fn record<P: Payload>(&mut self, payload: &P) -> Result<(), Error> {
        crate::failpoint::hit("before", P::TYPE.as_str());
        self.writer.append(self.signer, payload)?;
        crate::failpoint::hit("after", P::TYPE.as_str());
        Ok(())
    }

    /// Marks `index` as the target whose step failed, unless an earlier failure was marked:
    /// the abort record names the target of the error it reports.
    fn fail_at(&mut self, index: usize) {
        if self.failed_target.is_none() {
            self.failed_target = Some(index);
            self.failed_step = Some(self.step);
        }
    }
}

/// A fresh run id: 128 bits from the operating system's RNG, as 32 lowercase hex digits.
fn new_run_id() -> Result<String, Error> {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 16];
    rand_core::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Refused {
            reason: format!("the operating system's random number generator failed: {e}"),
        })?;
    Ok(hex::encode(bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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

/// A `Refused` error with `reason`.
fn refused(reason: String) -> Error {
    Error::Refused { reason }
}
