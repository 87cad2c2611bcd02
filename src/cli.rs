//! Command-line interface (clap derive). No logic here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Guided BYOK key ceremonies from a PKCS#11 HSM into AWS KMS, with a signed, hash-chained
/// audit transcript.
#[derive(Debug, Parser)]
#[command(name = "byok", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate a ceremony file strictly, and print its plan.
    Check {
        /// The ceremony file (TOML).
        file: PathBuf,
    },
    /// Run a ceremony.
    Run {
        /// The ceremony file (TOML).
        file: PathBuf,
        /// Where to write the transcript (never overwritten). Default:
        /// `<ceremony id>-<UTC time>.transcript.jsonl` in the current directory.
        #[arg(long)]
        transcript: Option<PathBuf>,
        /// Continue an interrupted run of the same ceremony file: verify its transcript, ask
        /// KMS where each target stands, and do the rest under fresh approvals in a new
        /// transcript that links to it.
        #[arg(long, value_name = "OLD_TRANSCRIPT")]
        resume: Option<PathBuf>,
        /// How many targets' KMS calls may run at once (1 = one target at a time, in order).
        /// The HSM work stays on one session, one target at a time.
        #[arg(long, value_name = "N", default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(1..=64))]
        kms_concurrency: u16,
    },
    /// Verify a transcript offline. Exit 0 valid, 1 invalid.
    Verify {
        /// The transcript (JSON Lines).
        transcript: PathBuf,
        /// The audit key's SPKI SHA-256 from a source you trust (e.g. the paper record).
        #[arg(long, value_name = "HEX")]
        audit_key_sha256: Option<String>,
    },
    /// Report which wrapping algorithms a token can do inside the HSM, and why not.
    Probe {
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Manage the transcript-signing (audit) key.
    #[command(subcommand)]
    AuditKey(AuditKeyCommand),
    /// Manage custodians' approval keys (dual control).
    #[command(subcommand)]
    Custodian(CustodianCommand),
}

#[derive(Debug, Subcommand)]
pub enum CustodianCommand {
    /// Create a custodian's EC P-256 approval key pair on their own token and print the TOML
    /// snippet (fingerprint included) for ceremony files; refuses if the label exists.
    Enroll {
        #[command(flatten)]
        token: TokenArgs,
        /// The custodian's name, as ceremony files and approvals show it.
        #[arg(long)]
        name: String,
        /// Label of the new key pair.
        #[arg(long, default_value = "byok-approval")]
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditKeyCommand {
    /// Create an EC P-256 audit key pair on a token and print its SPKI SHA-256 (refuses if the
    /// label exists).
    Create {
        #[command(flatten)]
        token: TokenArgs,
        /// Label of the new key pair.
        #[arg(long, default_value = "byok-audit")]
        label: String,
    },
}

/// Which module and token.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// PKCS#11 module path.
    #[arg(long, env = "BYOK_PKCS11_MODULE")]
    pub module: PathBuf,
    /// Token label.
    #[arg(
        long,
        conflicts_with = "token_serial",
        required_unless_present = "token_serial"
    )]
    pub token_label: Option<String>,
    /// Token serial number.
    #[arg(long)]
    pub token_serial: Option<String>,
}
