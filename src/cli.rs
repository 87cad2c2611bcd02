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
    /// Print the least-privilege IAM policy (JSON) for the role that runs the ceremony in
    /// FILE, or with `--inventory` the read-only policy an inventory needs. Never calls AWS.
    Policy {
        /// The ceremony file (TOML).
        #[arg(required_unless_present = "inventory", conflicts_with = "inventory")]
        file: Option<PathBuf>,
        /// The read-only policy `byok inventory` needs.
        #[arg(long)]
        inventory: bool,
    },
    /// List every EXTERNAL KMS key of the regions with one status each (compliant,
    /// rotation-due-soon, rotation-overdue, expiring-soon, expired, pending-import, no-policy,
    /// unexplained) under a rotation policy, and match each key's materials to the verified
    /// transcripts of the ceremonies that imported them. Read only. Exit 0 all compliant, 10
    /// something needs attention, 11 something overdue, expired or unexplained.
    Inventory(InventoryArgs),
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
    /// Verify a transcript offline. Exit 0 valid and pinned, 1 invalid, 8 valid but the
    /// audit key was not pinned from outside the transcript.
    Verify {
        /// The transcript (JSON Lines).
        transcript: PathBuf,
        #[command(flatten)]
        pins: PinArgs,
    },
    /// Verify a transcript and show it for people (HTML) or machines (JSON). Same pins and
    /// exit codes as `verify`.
    Report {
        /// The transcript (JSON Lines).
        transcript: PathBuf,
        #[command(flatten)]
        pins: PinArgs,
        /// Write one self-contained HTML page (no JavaScript, no network; prints on A4).
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
        /// Print the report as JSON (schema in docs/report.md) on stdout.
        #[arg(long)]
        json: bool,
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

/// `byok inventory`.
#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// A region to list (repeatable). Default: the configured region (AWS_REGION, profile).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// The rotation policy (TOML, format in docs/inventory.md). Without it every key is
    /// `no-policy` and expiries warn 30 days ahead.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Verify every `*.jsonl` transcript in DIR under the policy's pinned audit keys and
    /// match each key's materials to the ceremonies that imported them.
    #[arg(long, value_name = "DIR")]
    pub transcripts: Option<PathBuf>,
    /// Also trust transcripts signed by this audit key (SPKI SHA-256 from a paper record;
    /// repeatable), besides the policy's `[transcripts] audit_key_sha256`.
    #[arg(long = "audit-key-sha256", value_name = "HEX")]
    pub audit_keys: Vec<String>,
    /// Output: a table for people, or json, csv, prometheus, config-evaluations.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::inventory::render::Format,
    /// How many KMS requests may be in flight at once (each is also paced to KMS's quotas).
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// ListKeys page size (tests make a small fleet span many pages).
    #[arg(long, hide = true, default_value_t = 1000,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub list_keys_limit: i32,
    /// ListAliases page size.
    #[arg(long, hide = true, default_value_t = 100,
          value_parser = clap::value_parser!(i32).range(1..=100))]
    pub list_aliases_limit: i32,
}

/// What an auditor pins from outside the transcript (the paper record): `verify` and `report`.
#[derive(Debug, Clone, Default, Args)]
pub struct PinArgs {
    /// The audit key's SPKI SHA-256 from a source you trust (e.g. the paper record).
    #[arg(long, value_name = "HEX")]
    pub audit_key_sha256: Option<String>,
    /// A TOML pin file (format in docs/transcript.md): audit key, ceremony file SHA-256,
    /// custodians and quorum, as written on the paper record.
    #[arg(long, value_name = "FILE", alias = "pins")]
    pub pin_file: Option<PathBuf>,
    /// The approved ceremony file: the one embedded in the transcript must be byte-identical.
    #[arg(long, value_name = "FILE")]
    pub ceremony_file: Option<PathBuf>,
    /// A custodian's approval-key SPKI SHA-256, `NAME=HEX` (repeatable): the transcript's
    /// ceremony file must pin exactly this key for NAME.
    #[arg(long, value_name = "NAME=HEX")]
    pub custodian: Vec<String>,
    /// The smallest quorum the auditor accepts: a rehearsal or a smaller quorum is invalid.
    #[arg(long, value_name = "M")]
    pub require_quorum: Option<usize>,
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
