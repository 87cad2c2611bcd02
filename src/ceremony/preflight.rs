//! Step `kms_preflight`: for every target, create the key when asked (CreateKey with Origin
//! EXTERNAL, then CreateAlias) and check it with DescribeKey: EXTERNAL, SYMMETRIC_DEFAULT,
//! PendingImport. It runs on KMS worker threads as the first part of each target's job in
//! [`super::prepare`]; a created key is tagged so that a resumed run finds it even when
//! CreateKey's answer was lost, and never creates it twice.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::kms::{KeyInfo, Kms, KmsError};
use crate::transcript::payload::{KeyCreated, KmsPreflight};

use super::target::Status;
use super::{Run, Step, refused};

/// The tag every key byok creates carries: `<ceremony id> <alias>`.
pub const CREATED_BY_TAG: &str = "byok:ceremony-target";

/// The value of [`CREATED_BY_TAG`] for a target.
pub fn created_by(ceremony_id: &str, alias: &str) -> String {
    format!("{ceremony_id} {alias}")
}

pub(super) struct Job {
    pub index: usize,
    key: String,
    create: Option<crate::spec::CreateSpec>,
    reuse: Option<String>,
}

pub(super) enum Event {
    Created {
        index: usize,
        info: KeyInfo,
        reused: bool,
        description: String,
        tags: BTreeMap<String, String>,
    },
    Described {
        index: usize,
        info: KeyInfo,
    },
    Failed {
        index: usize,
        error: KmsError,
    },
}

/// The preflight of every target still to import, as worker jobs (run by [`super::prepare`],
/// which goes on to each target's import parameters as soon as its key is checked).
pub(super) fn jobs(run: &Run<'_>) -> Vec<Job> {
    run.targets
        .iter()
        .filter(|t| t.to_import())
        .map(|t| Job {
            index: t.spec.index,
            key: t.spec.key.clone(),
            create: t.spec.create.clone(),
            reuse: t.reuse_created.clone(),
        })
        .collect()
}

/// Creates the key when asked, then DescribeKey (worker thread).
pub(super) fn check_one(kms: &dyn Kms, ceremony_id: &str, job: Job) -> Event {
    let index = job.index;
    let failed = |error| Event::Failed { index, error };
    let Some(create) = job.create else {
        return match kms.describe_key(&job.key) {
            Ok(info) => Event::Described { index, info },
            Err(error) => failed(error),
        };
    };
    // An alias that exists already names the key: check it like any other.
    match kms.describe_key(&create.alias) {
        Ok(info) => return Event::Described { index, info },
        Err(e) if e.is_code("NotFoundException") => {}
        Err(error) => return failed(error),
    }
    let mut tags = create.tags.clone();
    tags.insert(
        CREATED_BY_TAG.into(),
        created_by(ceremony_id, &create.alias),
    );
    let (info, reused) = match job.reuse {
        Some(arn) => match kms.describe_key(&arn) {
            Ok(info) => (info, true),
            Err(error) => return failed(error),
        },
        None => match kms.create_key(&create.description, &tags) {
            Ok(info) => (info, false),
            Err(error) => return failed(error),
        },
    };
    crate::failpoint::hit("create", "answered");
    if let Err(error) = kms.create_alias(&create.alias, &info.arn) {
        return failed(error);
    }
    Event::Created {
        index,
        info,
        reused,
        description: create.description,
        tags,
    }
}

/// Records what a worker found and applies the preflight rules (main thread).
pub(super) fn handle(run: &mut Run<'_>, event: Event) -> Result<(), Error> {
    run.step = Step::KmsPreflight;
    match event {
        Event::Created {
            index,
            info,
            reused,
            description,
            tags,
        } => {
            let alias = run.targets[index].spec.key.clone();
            run.record(&KeyCreated {
                target_index: index as u64,
                key_arn: info.arn.clone(),
                key_id: info.key_id.clone(),
                alias: alias.clone(),
                reused,
                description,
                tags,
            })?;
            run.prompter.say(&format!(
                "  [{index}] {alias}: {} {}",
                if reused { "reusing key" } else { "created key" },
                info.arn
            ));
            described(run, index, info)
        }
        Event::Described { index, info } => described(run, index, info),
        Event::Failed { index, error } => {
            run.fail_at(index);
            Err(error.into())
        }
    }
}

fn described(run: &mut Run<'_>, index: usize, info: KeyInfo) -> Result<(), Error> {
    let t = &run.targets[index];
    let record = KmsPreflight {
        target_index: index as u64,
        requested_key: t.spec.key.clone(),
        region: t.spec.region.clone(),
        key_arn: info.arn.clone(),
        origin: info.origin.clone(),
        key_spec: info.key_spec.clone(),
        key_usage: info.key_usage.clone(),
        key_state: info.state.clone(),
        enabled: info.enabled,
    };
    // Two names of one key (an alias and its ARN) would import twice into it.
    let twin = run
        .targets
        .iter()
        .find(|t| t.spec.index != index && t.arn.as_deref() == Some(info.arn.as_str()))
        .map(|t| (t.spec.index, t.spec.key.clone()));
    run.targets[index].arn = Some(info.arn.clone());
    run.record(&record)?;
    if let Some((other, other_key)) = twin {
        run.fail_at(index);
        return Err(refused(format!(
            "targets {other} ({other_key}) and {index} ({}) name the same key {}; list each key once",
            run.targets[index].spec.key, info.arn
        )));
    }
    if let Err(e) = rules(&info) {
        run.fail_at(index);
        return Err(e);
    }
    run.targets[index].status = Status::Checked;
    run.prompter.say(&format!(
        "  [{index}] {}: EXTERNAL, SYMMETRIC_DEFAULT, PendingImport",
        info.arn
    ));
    Ok(())
}

/// The KMS preflight rules.
pub(super) fn rules(info: &KeyInfo) -> Result<(), Error> {
    let arn = &info.arn;
    if info.origin != "EXTERNAL" {
        return Err(refused(format!(
            "key {arn} has Origin {}; only keys created with Origin EXTERNAL accept imported material: create one (aws kms create-key --origin EXTERNAL, or create = true in the ceremony file) and name it as the target",
            info.origin
        )));
    }
    if info.key_spec != "SYMMETRIC_DEFAULT" {
        return Err(refused(format!(
            "key {arn} has KeySpec {}; byok imports AES-256 material into SYMMETRIC_DEFAULT keys only",
            info.key_spec
        )));
    }
    if info.state != "PendingImport" {
        let next = match info.state.as_str() {
            "Enabled" | "Disabled" => {
                "it already holds key material; this ceremony imports into a new EXTERNAL key only"
            }
            "PendingDeletion" => "cancel the deletion or use another key",
            _ => "use a key in state PendingImport",
        };
        return Err(refused(format!(
            "key {arn} is in state {}, expected PendingImport: {next}",
            info.state
        )));
    }
    Ok(())
}
