//! Alias moves: `kind = "rotate"` with `strategy = "alias-swap"`, and `kind = "rollback"`.
//!
//! - [`source`] (rollback): the `[source]` transcript ([`super::source`], verified before the
//!   run started and recorded as `source_verified`) must be a dual-controlled alias swap that
//!   moved every target alias; each goes back to the key the source moved it from.
//! - [`preflight`] (before the plan approval, read only): DescribeKey of each alias, which must
//!   name the key the file (`previous_key`) or the source says; the previous key's tags
//!   (alias-swap, to copy onto the new key) or the state of the key to restore (rollback).
//! - [`targets`] (after the imports, or straight after the plan approval for a rollback): the
//!   quorum approves the swap statement, then per target UpdateAlias, sent once (a lost answer
//!   is settled by DescribeKey of the alias, never by sending it again), and the checks that
//!   the alias names the new key, that both keys are Enabled, and that an Encrypt through the
//!   alias is answered by the new key.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

use crate::error::Error;
use crate::kms::{KeyInfo, Kms, KmsError};
use crate::quorum::{self, SwapStatement, SwapTarget};
use crate::spec::{DualControl, Kind};
use crate::transcript::payload::{AliasPreflight, AliasUpdated, AliasVerified, SwapConfirmed};

use super::preflight::{CREATED_BY_TAG, created_by, rules_for};
use super::target::Status;
use super::{Run, Step, pool, refused};

/// Rollback: what the `[source]` transcript (loaded and verified before the run started,
/// recorded as `source_verified` after `hsm_opened`) must be, and which key each target alias
/// goes back to.
pub(super) fn source(run: &mut Run<'_>) -> Result<(), Error> {
    let c = run.ceremony;
    if c.import.kind != Kind::Rollback {
        return Ok(());
    }
    run.step = Step::SourceCheck;
    let Some(src) = &run.source else {
        return Err(refused(
            "a rollback without a verified [source] transcript; this is a bug in byok".into(),
        ));
    };
    let name = &src.path_as_written;
    if src.kind != "rotate" || src.strategy.as_deref() != Some("alias-swap") {
        return Err(refused(format!(
            "the source transcript {name} is of a kind = {:?} ceremony (strategy {}); a rollback undoes a kind = \"rotate\", strategy = \"alias-swap\" ceremony (docs/rotation.md says what to do after a new-material rotation)",
            src.kind,
            src.strategy.as_deref().unwrap_or("none")
        )));
    }
    // A rehearsal's transcript is signed by the audit key alone: whoever holds the HSM PIN
    // could write one. Only a rehearsal may roll one back.
    if !src.dual_control && !matches!(c.dual_control, DualControl::Off) {
        return Err(refused(format!(
            "the source transcript {name} is of a rehearsal (dual control off), which the audit key alone signed; a dual-controlled rollback works only from a dual-controlled alias swap"
        )));
    }
    let swaps = src.swaps.clone();
    let ceremony_id = src.ceremony_id.clone();
    // Every target must be an alias the source moved, and it goes back where it came from.
    for t in &mut run.targets {
        let Some(swap) = swaps.iter().find(|s| s.alias == t.spec.key) else {
            return Err(refused(format!(
                "target {} ({}) is not an alias the source ceremony {ceremony_id} moved; a rollback moves back only the aliases its source moved ({})",
                t.spec.index,
                t.spec.key,
                swaps
                    .iter()
                    .map(|s| s.alias.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        t.alias_from = Some(swap.to_key_arn.clone());
        t.alias_to = Some(swap.from_key_arn.clone());
    }
    Ok(())
}

struct PreJob {
    index: usize,
    alias: String,
    expected: String,
    /// Rollback: the key to restore.
    restore: Option<String>,
}

enum PreEvent {
    Checked {
        index: usize,
        info: KeyInfo,
        tags: BTreeMap<String, String>,
        restore: Option<Box<KeyInfo>>,
    },
    Failed {
        index: usize,
        error: KmsError,
    },
}

/// Step `kms_preflight` of an alias move (read only, before the plan approval).
pub(super) fn preflight(run: &mut Run<'_>) -> Result<(), Error> {
    run.enter(Step::KmsPreflight)?;
    super::identity::check(run)?;
    let mut jobs = Vec::new();
    for t in &run.targets {
        let expected = match (&t.spec.swap, &t.alias_from) {
            (Some(swap), _) => swap.previous_key.clone(),
            (None, Some(from)) => from.clone(),
            (None, None) => {
                return Err(refused(format!(
                    "target {} has neither previous_key nor a source alias move; this is a bug in byok",
                    t.spec.index
                )));
            }
        };
        jobs.push(PreJob {
            index: t.spec.index,
            alias: t.spec.key.clone(),
            expected,
            restore: t.alias_to.clone(),
        });
    }
    let kms = run.kms;
    let progress = run.prompter.progress(
        &format!("DescribeKey of {} alias(es)", jobs.len()),
        (jobs.len() > 1).then_some(jobs.len() as u64),
    );
    let work = |job: PreJob, tx: &Sender<PreEvent>| {
        let index = job.index;
        let event = (|| {
            let info = kms.describe_key(&job.alias)?;
            let mut tags = BTreeMap::new();
            let mut restore = None;
            match &job.restore {
                // Rollback: the key to restore (also when the alias names it already).
                Some(arn) if info.arn == job.expected || info.arn == *arn => {
                    restore = Some(Box::new(kms.describe_key(arn)?));
                }
                None if info.arn == job.expected => {
                    tags = kms.list_resource_tags(&info.arn)?;
                }
                _ => {}
            }
            Ok::<_, KmsError>(PreEvent::Checked {
                index,
                info,
                tags,
                restore,
            })
        })()
        .unwrap_or_else(|error| PreEvent::Failed { index, error });
        let ok = matches!(event, PreEvent::Checked { .. });
        let _ = tx.send(event);
        ok
    };
    let result = pool::run(run.concurrency, jobs, work, |event| {
        progress.inc(1);
        checked(run, event)
    });
    progress.finish();
    result
}

fn checked(run: &mut Run<'_>, event: PreEvent) -> Result<(), Error> {
    run.step = Step::KmsPreflight;
    let (index, info, tags, restore) = match event {
        PreEvent::Checked {
            index,
            info,
            tags,
            restore,
        } => (index, info, tags, restore),
        PreEvent::Failed { index, error } => {
            run.fail_at(index);
            return Err(error.into());
        }
    };
    let c = run.ceremony;
    let t = &run.targets[index];
    let alias = t.spec.key.clone();
    let expected = match &t.spec.swap {
        Some(swap) => swap.previous_key.clone(),
        None => t.alias_from.clone().unwrap_or_default(),
    };
    run.record(&AliasPreflight {
        target_index: index as u64,
        alias: alias.clone(),
        alias_key_arn: info.arn.clone(),
        alias_key_state: info.state.clone(),
        alias_key_enabled: info.enabled,
        alias_key_origin: info.origin.clone(),
        expected_key_arn: expected.clone(),
        tags: tags.clone(),
        restore_key_arn: restore.as_ref().map(|r| r.arn.clone()),
        restore_key_state: restore.as_ref().map(|r| r.state.clone()),
        restore_key_enabled: restore.as_ref().map(|r| r.enabled),
    })?;
    let fail = |run: &mut Run<'_>, why: String| {
        run.fail_at(index);
        Err(refused(why))
    };
    // A rollback run again after an interruption: an alias already back on the key it came
    // from is done, and left alone.
    if let (Kind::Rollback, Some(restore)) = (&c.import.kind, &restore)
        && info.arn == restore.arn
    {
        let t = &mut run.targets[index];
        t.status = Status::DoneEarlier;
        t.arn = Some(restore.arn.clone());
        run.prompter.say(&format!(
            "  [{index}] {alias}: names {} already, the key the source moved it from: moved back earlier, nothing to do",
            info.arn
        ));
        return Ok(());
    }
    if info.arn != expected {
        let named = if c.import.kind == Kind::Rollback {
            "the key the source ceremony moved it to"
        } else {
            "previous_key in the ceremony file"
        };
        return fail(
            run,
            format!(
                "{alias} names key {}, not {expected} ({named}); someone moved it since: find out who and why before moving it again",
                info.arn
            ),
        );
    }
    match (&c.import.kind, restore) {
        (Kind::Rollback, Some(restore)) => {
            if !(restore.enabled && restore.state == "Enabled") {
                return fail(
                    run,
                    format!(
                        "the key {alias} would go back to, {}, is in state {} (enabled {}); an alias must not name a key that cannot decrypt: enable it first (or cancel its deletion)",
                        restore.arn, restore.state, restore.enabled
                    ),
                );
            }
            run.targets[index].status = Status::Checked;
            run.prompter.say(&format!(
                "  [{index}] {alias}: names {} now; goes back to {} (Enabled)",
                info.arn, restore.arn
            ));
        }
        (Kind::AliasSwap { .. }, None) => {
            if let Err(e) = rules_for(&info, true) {
                run.fail_at(index);
                return Err(e);
            }
            let t = &mut run.targets[index];
            let mut all = tags;
            if let Some(swap) = &t.spec.swap {
                all.extend(swap.tags.clone());
            }
            all.insert(CREATED_BY_TAG.into(), created_by(&c.id, &alias));
            t.swap_tags = Some(all);
            t.alias_from = Some(info.arn.clone());
            run.prompter.say(&format!(
                "  [{index}] {alias}: names {} (Enabled, EXTERNAL); a new key replaces it after the plan approval",
                info.arn
            ));
        }
        _ => {
            return fail(
                run,
                format!("target {index}: an alias move without its keys; this is a bug in byok"),
            );
        }
    }
    Ok(())
}

struct Job {
    index: usize,
    alias: String,
    from: String,
    to: String,
    challenge: Vec<u8>,
}

enum Event {
    Updated {
        index: usize,
        outcome: &'static str,
        evidence: Vec<String>,
    },
    Verified {
        index: usize,
        alias_key: String,
        to_state: String,
        from_state: String,
        round_trip_ok: bool,
    },
    Failed {
        index: usize,
        error: Box<Error>,
        /// UpdateAlias may have moved the alias: KMS could not tell.
        uncertain: bool,
    },
}

/// Steps `confirm_swap` and `swap`; nothing for a ceremony that moves no alias.
pub(super) fn targets(run: &mut Run<'_>) -> Result<(), Error> {
    let c = run.ceremony;
    if !c.import.kind.moves_aliases() {
        return Ok(());
    }
    run.enter(Step::ConfirmSwap)?;
    let ready = |s: Status| match c.import.kind {
        Kind::Rollback => s == Status::Checked,
        _ => s == Status::Verified,
    };
    let mut entries = Vec::new();
    for t in run.targets.iter().filter(|t| ready(t.status)) {
        let to = match c.import.kind {
            Kind::Rollback => t.alias_to.clone(),
            _ => t.arn.clone(),
        };
        let (Some(from), Some(to)) = (t.alias_from.clone(), to) else {
            return Err(refused(format!(
                "target {} ({}) has no key to move its alias to; this is a bug in byok",
                t.spec.index, t.spec.key
            )));
        };
        entries.push(SwapTarget {
            target_index: t.spec.index as u64,
            alias: t.spec.key.clone(),
            from_key_arn: from,
            to_key_arn: to,
        });
    }
    if entries.is_empty() {
        run.prompter.say("  no alias to move in this run");
        return Ok(());
    }
    let statement = SwapStatement {
        point: quorum::SWAP.into(),
        ceremony_id: c.id.clone(),
        kind: c.import.kind.name().into(),
        targets: entries,
        run_id: Some(run.run_id.clone()),
    };
    let confirmed = super::approve::confirm(
        run,
        quorum::SWAP,
        &statement,
        "  What you approve: point each alias at another key (UpdateAlias).\n  The key it leaves stays Enabled and still decrypts what it encrypted; callers that name the alias use the other key from now on.",
    )?;
    run.record(&SwapConfirmed {
        approved_by: confirmed.approved_by,
        dual_control: confirmed.dual_control,
        statement: confirmed.statement,
        statement_sha256: confirmed.statement_sha256,
    })?;

    run.enter(Step::Swap)?;
    let mut jobs = Vec::new();
    for entry in &statement.targets {
        jobs.push(Job {
            index: entry.target_index as usize,
            alias: entry.alias.clone(),
            from: entry.from_key_arn.clone(),
            to: entry.to_key_arn.clone(),
            challenge: run.hsm.random(32)?,
        });
    }
    let total = jobs.len();
    let progress = run.prompter.progress(
        &format!("waiting for KMS: UpdateAlias and verification of {total} alias(es)"),
        (total > 1).then_some(total as u64),
    );
    let kms = run.kms;
    let work = |job: Job, tx: &Sender<Event>| move_one(kms, job, tx);
    let result = pool::run(run.concurrency, jobs, work, |event| {
        if matches!(event, Event::Verified { .. } | Event::Failed { .. }) {
            progress.inc(1);
        }
        handle(run, &statement, event)
    });
    progress.finish();
    result
}

/// One alias's move and its checks (worker thread). False when the target failed.
fn move_one(kms: &dyn Kms, job: Job, tx: &Sender<Event>) -> bool {
    let index = job.index;
    let failed = |error: Error| Event::Failed {
        index,
        error: Box::new(error),
        uncertain: false,
    };
    // Read again just before the write: the alias must still name the key the custodians
    // approved moving it from.
    match kms.describe_key(&job.alias) {
        Ok(info) if info.arn == job.from => {}
        Ok(info) => {
            let _ = tx.send(failed(refused(format!(
                "{} names {} now, not {} as approved; someone moved it during the ceremony: it was not touched",
                job.alias, info.arn, job.from
            ))));
            return false;
        }
        Err(e) => {
            let _ = tx.send(failed(e.into()));
            return false;
        }
    }
    let updated = match kms.update_alias(&job.alias, &job.to) {
        Ok(()) => Ok(("updated", Vec::new())),
        Err(error) if error.outcome_unknown() => {
            // Never sent again: ask KMS which key the alias names now.
            let mut evidence = vec![format!(
                "UpdateAlias got no answer: {}",
                error.code_and_message()
            )];
            match kms.describe_key(&job.alias) {
                Ok(info) if info.arn == job.to => {
                    evidence.push(format!("DescribeKey: {} names {}", job.alias, job.to));
                    Ok(("reconciled", evidence))
                }
                Ok(info) => {
                    evidence.push(format!(
                        "DescribeKey: {} names {}, not {}",
                        job.alias, info.arn, job.to
                    ));
                    Err((error, evidence))
                }
                Err(e) => {
                    evidence.push(format!("DescribeKey failed: {}", e.code_and_message()));
                    Err((error, evidence))
                }
            }
        }
        Err(error) => Err((error, Vec::new())),
    };
    match updated {
        Ok((outcome, evidence)) => {
            let _ = tx.send(Event::Updated {
                index,
                outcome,
                evidence,
            });
        }
        Err((error, evidence)) if evidence.is_empty() => {
            let _ = tx.send(failed(error.into()));
            return false;
        }
        Err((_, evidence)) => {
            let _ = tx.send(Event::Failed {
                index,
                error: Box::new(refused(format!(
                    "UpdateAlias of {} has an unknown outcome, and it is never sent again: {}; check which key the alias names (DescribeKey) before anything else",
                    job.alias,
                    evidence.join("; ")
                ))),
                uncertain: true,
            });
            return false;
        }
    }
    let checked = (|| {
        let after = kms.describe_key(&job.alias)?;
        let to = kms.describe_key(&job.to)?;
        let from = kms.describe_key(&job.from)?;
        let ciphertext = kms.encrypt(&job.alias, &job.challenge)?;
        // Decrypt naming the key the alias should name: KMS refuses a ciphertext of another key.
        let round_trip_ok = match kms.decrypt(&job.to, &ciphertext) {
            Ok((plain, key)) => plain == job.challenge && key == job.to,
            Err(e) if e.is_code("IncorrectKeyException") => false,
            Err(e) => return Err(e),
        };
        Ok::<_, KmsError>(Event::Verified {
            index,
            alias_key: after.arn,
            to_state: to.state,
            from_state: from.state,
            round_trip_ok,
        })
    })();
    let ok = matches!(
        checked,
        Ok(Event::Verified {
            round_trip_ok: true,
            ..
        })
    );
    let _ = tx.send(checked.unwrap_or_else(|error| failed(error.into())));
    ok
}

fn handle(run: &mut Run<'_>, statement: &SwapStatement, event: Event) -> Result<(), Error> {
    run.step = Step::Swap;
    let entry = |index: usize| {
        statement
            .targets
            .iter()
            .find(|t| t.target_index == index as u64)
            .cloned()
    };
    match event {
        Event::Updated {
            index,
            outcome,
            evidence,
        } => {
            let Some(e) = entry(index) else {
                return Err(refused(format!(
                    "target {index} moved but not in the swap statement; this is a bug in byok"
                )));
            };
            let t = &mut run.targets[index];
            t.status = match run.ceremony.import.kind {
                // A rollback's outcome names the key the alias names again.
                Kind::Rollback => {
                    t.arn = Some(e.to_key_arn.clone());
                    Status::RolledBack
                }
                _ => Status::Swapped,
            };
            run.record(&AliasUpdated {
                target_index: index as u64,
                alias: e.alias,
                from_key_arn: e.from_key_arn,
                to_key_arn: e.to_key_arn,
                outcome: outcome.into(),
                evidence,
            })
        }
        Event::Verified {
            index,
            alias_key,
            to_state,
            from_state,
            round_trip_ok,
        } => {
            let Some(e) = entry(index) else {
                return Err(refused(format!(
                    "target {index} verified but not in the swap statement; this is a bug in byok"
                )));
            };
            let mut problems = Vec::new();
            if alias_key != e.to_key_arn {
                problems.push(format!(
                    "{} names {alias_key}, not {}",
                    e.alias, e.to_key_arn
                ));
            }
            if to_state != "Enabled" {
                problems.push(format!("the key it names is {to_state}, not Enabled"));
            }
            if from_state != "Enabled" {
                problems.push(format!("the key it left is {from_state}, not Enabled"));
            }
            if !round_trip_ok {
                problems.push(format!(
                    "an Encrypt through {} was not answered by {} (or did not decrypt to itself)",
                    e.alias, e.to_key_arn
                ));
            }
            run.record(&AliasVerified {
                target_index: index as u64,
                alias: e.alias.clone(),
                alias_key_arn: alias_key,
                to_key_arn: e.to_key_arn.clone(),
                to_key_state: to_state,
                from_key_arn: e.from_key_arn.clone(),
                from_key_state: from_state,
                round_trip: if round_trip_ok { "ok" } else { "failed" }.into(),
                problems: problems.clone(),
            })?;
            if !problems.is_empty() {
                run.fail_at(index);
                return Err(refused(format!(
                    "the move of {} did not verify: {}; inspect the alias and both keys in KMS",
                    e.alias,
                    problems.join("; ")
                )));
            }
            run.prompter.say(&format!(
                "  [{index}] {}: now names {}; {} stays Enabled; round trip through the alias ok",
                e.alias, e.to_key_arn, e.from_key_arn
            ));
            Ok(())
        }
        Event::Failed {
            index,
            error,
            uncertain,
        } => {
            run.fail_at(index);
            if uncertain {
                run.targets[index].status = Status::Uncertain;
            }
            Err(*error)
        }
    }
}
