//! The `byok` binary: parse the command line, run the subcommand, print the error chain and
//! return the documented exit code (see `byok::error::exit`).

use std::process::ExitCode;

use clap::Parser;

use byok::cli::{AuditKeyCommand, Cli, Command, CustodianCommand};
use byok::commands;

fn main() -> ExitCode {
    // Before anything is read or asked: no core dump, not dumpable (PINs are typed into this
    // process; see docs/threat-model.md).
    byok::secure::harden_process();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check { file } => commands::check(file),
        Command::Policy { file, inventory } => commands::policy(file.as_deref(), *inventory),
        Command::Inventory(args) => commands::inventory(args),
        Command::Run {
            file,
            transcript,
            resume,
            kms_concurrency,
        } => commands::run(
            file,
            transcript.as_deref(),
            &byok::ceremony::RunOptions {
                kms_concurrency: usize::from(*kms_concurrency),
                resume: resume.clone(),
            },
        ),
        Command::Verify { transcript, pins } => commands::verify(transcript, pins),
        Command::Report {
            transcript,
            pins,
            html,
            json,
        } => commands::report(transcript, pins, html.as_deref(), *json),
        Command::Probe { token } => commands::probe(token),
        Command::AuditKey(AuditKeyCommand::Create { token, label }) => {
            commands::audit_key_create(token, label)
        }
        Command::Custodian(CustodianCommand::Enroll { token, name, label }) => {
            commands::custodian_enroll(token, name, label)
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}
