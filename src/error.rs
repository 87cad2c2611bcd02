//! The top-level error, its classes and the documented exit codes.
//!
//! Each concern has its own error type (spec, HSM, KMS, wrap, transcript, prompt); this module
//! joins them and adds where in the ceremony a failure happened. No error carries a secret.

use std::path::PathBuf;

use crate::step::Step;

/// Exit codes of the `byok` binary (also listed in the README and `docs/runbook.md`).
pub mod exit {
    /// Success; for `verify`, the transcript is valid.
    pub const OK: i32 = 0;
    /// `verify`: the transcript is invalid, or not what the auditor's pins say.
    pub const INVALID_TRANSCRIPT: i32 = 1;
    /// Bad input: command line (for `verify` and `report`, a malformed pin or an unreadable
    /// pin or ceremony file), ceremony file, existing output path, unanswered prompt.
    pub const INPUT: i32 = 2;
    /// A precondition does not hold: key state, token capability, expired parameters.
    pub const PRECONDITION: i32 = 3;
    /// The HSM failed: module, token, PIN, a PKCS#11 call, a self-test.
    pub const HSM: i32 = 4;
    /// KMS failed or was unreachable, or answered something unusable.
    pub const KMS: i32 = 5;
    /// Stopped by a person: a declined confirmation or Ctrl-C.
    pub const ABORTED: i32 = 6;
    /// The transcript or another file could not be written.
    pub const IO: i32 = 7;
    /// `verify` and `report`: the transcript is valid in itself, but no audit key was pinned
    /// from outside it (`--audit-key-sha256` or `--pin-file`), so it proves nothing about
    /// who wrote it.
    pub const NOT_PINNED: i32 = 8;
    /// `inventory`: nothing overdue, expired or unexplained, but something needs attention:
    /// a rotation or an expiry due soon, a key PendingImport or under no rule, or a flag
    /// (rotation limit near, a multi-Region replica out of step).
    pub const ATTENTION: i32 = 10;
    /// `inventory`: a key's rotation is overdue, a material expired, a key's material is
    /// unexplained (or a transcript's import is not in KMS), or a transcript in DIR does not
    /// verify under the pinned audit keys.
    pub const ACTION: i32 = 11;
}

/// Which kind of failure: recorded in `ceremony_aborted` and mapped to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Input,
    Precondition,
    Hsm,
    Kms,
    Aborted,
    Io,
}

impl ErrorClass {
    /// The name written in `ceremony_aborted.data.error_class`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Input => "input",
            ErrorClass::Precondition => "precondition",
            ErrorClass::Hsm => "hsm",
            ErrorClass::Kms => "kms",
            ErrorClass::Aborted => "aborted",
            ErrorClass::Io => "io",
        }
    }

    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Input => exit::INPUT,
            ErrorClass::Precondition => exit::PRECONDITION,
            ErrorClass::Hsm => exit::HSM,
            ErrorClass::Kms => exit::KMS,
            ErrorClass::Aborted => exit::ABORTED,
            ErrorClass::Io => exit::IO,
        }
    }
}

/// Anything byok can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Clock(#[from] crate::clock::ClockError),
    #[error(transparent)]
    Hsm(#[from] crate::hsm::HsmError),
    #[error(transparent)]
    Kms(#[from] crate::kms::KmsError),
    /// An endpoint override the ceremony file does not name.
    #[error(transparent)]
    Endpoint(#[from] crate::kms::endpoint::EndpointError),
    #[error(transparent)]
    Wrap(#[from] crate::wrap::WrapError),
    #[error(transparent)]
    Transcript(#[from] crate::transcript::TranscriptError),
    #[error(transparent)]
    Prompt(#[from] crate::prompt::PromptError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// A KMS call of `byok inventory` failed: the run stops (a report that left a key out
    /// would say it is fine). Worded for an inventory, not a ceremony.
    #[error("{}", crate::inventory::failure_message(.0))]
    Inventory(crate::kms::KmsError),
    #[error(transparent)]
    RotationPolicy(#[from] crate::inventory::rules::PolicyFileError),
    #[error(transparent)]
    Ledger(#[from] crate::inventory::ledger::LedgerError),
    /// A bad command-line value.
    #[error("{message}")]
    Usage { message: String },
    /// A check before a change refused to go on.
    #[error("{reason}")]
    Refused { reason: String },
    /// The operator answered no.
    #[error("{what} was declined; nothing was imported")]
    Declined { what: String },
    /// A ceremony step failed; the transcript (if started) ends with `ceremony_aborted`.
    #[error("{}", step_message(*step, transcript.as_ref()))]
    Step {
        step: Step,
        transcript: Option<PathBuf>,
        #[source]
        source: Box<Error>,
    },
    /// A ceremony step failed after the transcript started, and its `ceremony_aborted` record
    /// could not be written either (e.g. a full disk): the transcript has no terminal record.
    #[error(
        "ceremony stopped at step `{}`; transcript {} was started but has no ceremony_aborted record, because writing it failed too ({record_error}): free space where the transcript is, keep the file as it is (`byok verify` reports it unfinished), and check each target's key state in KMS before running again",
        step.name(),
        transcript.display()
    )]
    StepUnrecorded {
        step: Step,
        transcript: PathBuf,
        /// Why the `ceremony_aborted` record could not be written (the whole error chain).
        record_error: String,
        /// Why the step failed.
        #[source]
        source: Box<Error>,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn step_message(step: Step, transcript: Option<&PathBuf>) -> String {
    match transcript {
        Some(p) => format!(
            "ceremony stopped at step `{}`; transcript {} ends with a ceremony_aborted record",
            step.name(),
            p.display()
        ),
        None => format!(
            "ceremony stopped at step `{}` before a transcript was started",
            step.name()
        ),
    }
}

impl Error {
    /// The class of the innermost cause.
    pub fn class(&self) -> ErrorClass {
        use crate::kms::KmsFailure;
        use crate::wrap::WrapError;
        match self {
            Error::Spec(_) => ErrorClass::Input,
            Error::Clock(_) => ErrorClass::Input,
            Error::Hsm(_) => ErrorClass::Hsm,
            Error::Kms(k) => match k.failure {
                KmsFailure::Unreachable
                | KmsFailure::NoAnswer
                | KmsFailure::Service
                | KmsFailure::BadResponse => ErrorClass::Kms,
            },
            Error::Endpoint(_) => ErrorClass::Input,
            Error::Wrap(w) => match w {
                WrapError::Unsupported { .. } => ErrorClass::Precondition,
                WrapError::BadPublicKey(_)
                | WrapError::NotRsa { .. }
                | WrapError::WrongKeySize { .. } => ErrorClass::Kms,
                WrapError::Mismatch { .. } | WrapError::HostWrap { .. } | WrapError::Hsm(_) => {
                    ErrorClass::Hsm
                }
            },
            Error::Transcript(t) => match t {
                crate::transcript::TranscriptError::Exists { .. } => ErrorClass::Input,
                crate::transcript::TranscriptError::Sign { .. } => ErrorClass::Hsm,
                _ => ErrorClass::Io,
            },
            Error::Prompt(p) => match p {
                crate::prompt::PromptError::Cancelled { .. } => ErrorClass::Aborted,
                _ => ErrorClass::Input,
            },
            Error::Report(r) => match r {
                crate::report::ReportError::Write { .. } => ErrorClass::Io,
                _ => ErrorClass::Input,
            },
            Error::Inventory(_) => ErrorClass::Kms,
            Error::RotationPolicy(_) | Error::Ledger(_) => ErrorClass::Input,
            Error::Usage { .. } => ErrorClass::Input,
            Error::Refused { .. } => ErrorClass::Precondition,
            Error::Declined { .. } => ErrorClass::Aborted,
            Error::Step { source, .. } => source.class(),
            // The transcript is incomplete: that is what the operator must see first.
            Error::StepUnrecorded { .. } => ErrorClass::Io,
            Error::Io { .. } => ErrorClass::Io,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        self.class().exit_code()
    }
}
