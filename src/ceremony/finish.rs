//! Steps `cleanup` and `finish`, and the abort path: session objects destroyed, kept token
//! copies listed, and the last record says where every target stands.

use crate::error::Error;
use crate::hsm::KeyRef;
use crate::transcript::payload::{CeremonyAborted, CeremonyFinished, CleanupDone};

use super::target::Status;
use super::{Outcome, Run, Step, chain};

/// Step `cleanup`: every session object this ceremony created is destroyed.
pub(super) fn cleanup(run: &mut Run<'_>) -> Result<(), Error> {
    run.enter(Step::Cleanup)?;
    let mut destroyed = Vec::new();
    while let Some(key) = run.created.pop() {
        let raw = run.hsm.raw_handle(key);
        run.hsm.destroy(key)?;
        destroyed.push(raw);
    }
    destroyed.sort_unstable();
    let kept_keys = kept(run);
    run.record(&CleanupDone {
        destroyed_handles: destroyed,
        kept_keys,
    })
}

fn kept(run: &Run<'_>) -> Vec<String> {
    run.targets.iter().filter_map(|t| t.kept.clone()).collect()
}

/// Step `finish`: `ceremony_finished`, and what the operator writes on paper.
pub(super) fn finish(run: &mut Run<'_>) -> Result<Outcome, Error> {
    run.enter(Step::Finish)?;
    let targets: Vec<_> = run
        .targets
        .iter()
        .map(super::target::TargetState::outcome)
        .collect();
    let records = run.writer.len() + 1;
    run.record(&CeremonyFinished {
        targets: targets.clone(),
        records,
    })?;
    Ok(Outcome {
        transcript: run.writer.path().to_path_buf(),
        last_line_sha256: run.writer.last_line_sha256().to_string(),
        targets,
        approvals: std::mem::take(&mut run.approvals),
    })
}

impl Run<'_> {
    /// Destroys the session objects and closes the transcript with `ceremony_aborted`;
    /// returns the error to report.
    pub(super) fn abort(&mut self, error: Error) -> Error {
        let step = self.failed_step.unwrap_or(self.step);
        let mut destroyed = Vec::new();
        let mut cleanup_errors = Vec::new();
        // Session objects only: a kept token copy exists only for material KMS holds (or may
        // hold), and is its escrow.
        let pending: Vec<KeyRef> = std::mem::take(&mut self.created);
        for key in pending.into_iter().rev() {
            let raw = self.hsm.raw_handle(key);
            match self.hsm.destroy(key) {
                Ok(()) => destroyed.push(raw),
                Err(e) => cleanup_errors.push(format!("handle {raw}: {e}")),
            }
        }
        destroyed.sort_unstable();
        let targets: Vec<_> = self
            .targets
            .iter()
            .map(super::target::TargetState::outcome)
            .collect();
        let record = CeremonyAborted {
            step: step.name().into(),
            target_index: self.failed_target.map(|i| i as u64),
            error_class: error.class().as_str().into(),
            message: chain(&error),
            destroyed_handles: destroyed,
            kept_keys: kept(self),
            cleanup_errors,
            targets,
        };
        // Nothing to close before record 0 exists (the writer then has written nothing).
        let recorded = if self.writer.is_empty() {
            Ok(())
        } else {
            self.record(&record)
        };
        self.prompter
            .warn(&format!("the ceremony stopped at step `{}`", step.name()));
        let mut summary: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !matches!(t.status, Status::NotStarted))
            .map(|t| format!("[{}] {}: {}", t.spec.index, t.name(), t.outcome().status))
            .collect();
        let not_started = self
            .targets
            .iter()
            .filter(|t| t.status == Status::NotStarted)
            .count();
        if not_started > 0 {
            summary.push(format!("{not_started} not started"));
        }
        self.prompter
            .say(&format!("  targets: {}", summary.join("; ")));
        match recorded {
            Ok(()) => Error::Step {
                step,
                transcript: (!self.writer.is_empty()).then(|| self.writer.path().to_path_buf()),
                source: Box::new(error),
            },
            // The abort itself could not be recorded: say so, with the original cause. The
            // transcript was started (no record is attempted before record 0).
            Err(e) => Error::StepUnrecorded {
                step,
                transcript: self.writer.path().to_path_buf(),
                record_error: chain(&e),
                source: Box::new(error),
            },
        }
    }
}
