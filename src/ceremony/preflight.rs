//! Step `kms_preflight`: every target's key is checked with DescribeKey (EXTERNAL,
//! SYMMETRIC_DEFAULT, PendingImport) before the plan approval ([`before_approval`], read
//! only), so that nobody approves a plan a key cannot carry out. A target with `create = true`
//! whose alias does not exist yet is created after the plan approval (CreateKey with Origin
//! EXTERNAL, then CreateAlias) as the first part of its job in [`super::prepare`], and checked
//! then; a created key is tagged so that a resumed run finds it even when CreateKey's answer
//! was lost, and never creates it twice.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::kms::{KeyInfo, Kms, KmsError};
use crate::spec::Kind;
use crate::transcript::payload::{KeyCreated, KmsPreflight, RotationPreflight};

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
    /// The key ARN when the target's key was checked before the plan approval.
    pub checked: Option<String>,
    /// A rotation: the random probe to encrypt under the current material.
    probe: Option<Vec<u8>>,
    /// An alias swap: the new key's description and tags (created, never aliased here).
    swap: Option<(String, BTreeMap<String, String>)>,
}

/// byok's limit on on-demand rotations per key: the API reference's 10 (the developer guide
/// says 25; byok takes the lower, and KMS's own refusal still applies). KMS reports no quota
/// for it through the KMS API.
pub const ROTATION_LIMIT: u64 = 10;

/// What a rotation's preflight found besides DescribeKey.
pub(super) struct RotationFound {
    /// ListKeyRotations' materials, or None when KMS does not serve it.
    materials: Option<Vec<crate::kms::KeyMaterialInfo>>,
    probe: Vec<u8>,
    ciphertext: Vec<u8>,
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
    /// A rotation's key: DescribeKey, ListKeyRotations and the probe.
    ForRotation {
        index: usize,
        info: KeyInfo,
        found: RotationFound,
    },
    /// A `create = true` target whose alias does not exist yet.
    ToCreate {
        index: usize,
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
            checked: (t.status == Status::Checked)
                .then(|| t.arn.clone())
                .flatten(),
            probe: None,
            swap: t.swap_tags.clone().map(|tags| {
                let description = t
                    .spec
                    .swap
                    .as_ref()
                    .and_then(|s| s.description.clone())
                    .unwrap_or_else(|| {
                        format!(
                            "byok {}: replaces {} behind {}",
                            run.ceremony.id,
                            t.alias_from.as_deref().unwrap_or("?"),
                            t.spec.key
                        )
                    });
                (description, tags)
            }),
        })
        .collect()
}

/// Before the plan approval: DescribeKey of every target still to import (read only, on the
/// KMS worker threads), recorded and checked against the preflight rules. Stops at the first
/// key that cannot take the import, before anyone is asked to approve anything.
pub(super) fn before_approval(run: &mut Run<'_>) -> Result<(), Error> {
    run.enter(Step::KmsPreflight)?;
    super::identity::check(run)?;
    let mut jobs = jobs(run);
    let rotating = matches!(run.ceremony.import.kind, Kind::Rotate { .. });
    if rotating {
        for job in &mut jobs {
            job.probe = Some(run.hsm.random(32)?);
        }
    }
    let kms = run.kms;
    let progress = run.prompter.progress(
        &format!("DescribeKey of {} target key(s)", jobs.len()),
        (jobs.len() > 1).then_some(jobs.len() as u64),
    );
    let work = |job: Job, tx: &std::sync::mpsc::Sender<Event>| {
        let index = job.index;
        let event = match kms.describe_key(&job.key) {
            Ok(info) if rules_for(&info, rotating).is_err() => Event::Described { index, info },
            Ok(info) => match job.probe {
                Some(probe) => {
                    // Read only: the key's materials, and a probe under the current one.
                    let materials = match kms.list_key_materials(&info.arn) {
                        Ok(list) => Some(list),
                        // LocalStack answers InternalFailure ("not yet emulated").
                        Err(e) if not_served(&e) => None,
                        Err(error) => {
                            let _ = tx.send(Event::Failed { index, error });
                            return false;
                        }
                    };
                    match kms.encrypt(&info.arn, &probe) {
                        Ok(ciphertext) => Event::ForRotation {
                            index,
                            info,
                            found: RotationFound {
                                materials,
                                probe,
                                ciphertext,
                            },
                        },
                        Err(error) => Event::Failed { index, error },
                    }
                }
                None => Event::Described { index, info },
            },
            Err(e) if job.create.is_some() && e.is_code("NotFoundException") => {
                Event::ToCreate { index }
            }
            Err(error) => Event::Failed { index, error },
        };
        let ok = !matches!(event, Event::Failed { .. });
        let _ = tx.send(event);
        ok
    };
    let result = super::pool::run(run.concurrency, jobs, work, |event| {
        progress.inc(1);
        handle(run, event)
    });
    progress.finish();
    result
}

/// Creates the key when asked, then DescribeKey (worker thread).
pub(super) fn check_one(kms: &dyn Kms, ceremony_id: &str, job: Job) -> Event {
    let index = job.index;
    let failed = |error| Event::Failed { index, error };
    // An alias swap: a new key with the previous key's tags; its alias moves only after the
    // swap approval.
    if let Some((description, tags)) = job.swap {
        return match kms.create_key(&description, &tags) {
            Ok(info) => Event::Created {
                index,
                info,
                reused: false,
                description,
                tags,
            },
            Err(error) => failed(error),
        };
    }
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
        Event::ForRotation { index, info, found } => {
            described(run, index, info.clone())?;
            rotation(run, index, &info, found)
        }
        Event::ToCreate { index } => {
            let t = &run.targets[index];
            run.prompter.say(&format!(
                "  [{index}] {}: no such alias yet; the key is created after the plan approval",
                t.spec.key
            ));
            Ok(())
        }
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
    let rotating = matches!(run.ceremony.import.kind, Kind::Rotate { .. });
    if let Err(e) = rules_for(&info, rotating) {
        run.fail_at(index);
        return Err(e);
    }
    run.targets[index].status = Status::Checked;
    run.prompter.say(&format!(
        "  [{index}] {}: EXTERNAL, SYMMETRIC_DEFAULT, {}",
        info.arn, info.state
    ));
    Ok(())
}

/// A rotation's preflight: records what the key holds and the probe, and refuses a key at the
/// on-demand rotation limit.
fn rotation(
    run: &mut Run<'_>,
    index: usize,
    info: &KeyInfo,
    found: RotationFound,
) -> Result<(), Error> {
    // Materials that were ever current: the first, and one per on-demand rotation.
    let rotations = found.materials.as_ref().map(|list| {
        let settled = list
            .iter()
            .filter(|m| {
                matches!(
                    m.key_material_state.as_deref(),
                    Some("CURRENT" | "NON_CURRENT")
                )
            })
            .count();
        settled.saturating_sub(1) as u64
    });
    let pending: Vec<String> = found
        .materials
        .iter()
        .flatten()
        .filter(|m| {
            m.key_material_state
                .as_deref()
                .is_some_and(|s| s.starts_with("PENDING"))
        })
        .map(|m| m.key_material_id.clone())
        .collect();
    run.record(&RotationPreflight {
        target_index: index as u64,
        key_arn: info.arn.clone(),
        current_key_material_id: info.current_key_material_id.clone(),
        key_materials: found.materials.as_ref().map(|l| l.len() as u64),
        rotations_so_far: rotations,
        rotation_limit: ROTATION_LIMIT,
        probe_sha256: super::sha256_hex(&found.probe),
        probe_ciphertext_sha256: super::sha256_hex(&found.ciphertext),
    })?;
    if !pending.is_empty() {
        // A lost import answer must never be taken for such a material (step import).
        run.fail_at(index);
        return Err(refused(format!(
            "key {} already holds material waiting for rotation ({}), from an earlier, interrupted import; make it current or find out where it came from before rotating again (docs/rotation.md)",
            info.arn,
            pending.join(", ")
        )));
    }
    match rotations {
        Some(n) if n >= ROTATION_LIMIT => {
            run.fail_at(index);
            return Err(refused(format!(
                "key {} has been rotated on demand {n} times, at byok's limit of {ROTATION_LIMIT} (KMS's API reference); it cannot take another rotation: import into a new EXTERNAL key instead and move the alias to it (docs/rotation.md)",
                info.arn
            )));
        }
        Some(_) => {}
        None => run.prompter.warn(&format!(
            "[{index}] {}: KMS does not list this key's materials (ListKeyRotations), so byok cannot count its rotations against the limit of {ROTATION_LIMIT}; RotateKeyOnDemand will refuse if the key is at KMS's limit",
            info.arn
        )),
    }
    let t = &mut run.targets[index];
    t.previous_material = info.current_key_material_id.clone();
    t.probe = Some((found.probe, found.ciphertext));
    Ok(())
}

/// Whether ListKeyRotations' error means the endpoint does not serve it (LocalStack), rather
/// than a refusal (access denied) or a failure that must stop the ceremony.
fn not_served(e: &crate::kms::KmsError) -> bool {
    e.code.as_deref().is_some_and(|c| {
        matches!(
            c,
            "InternalFailure" | "UnsupportedOperationException" | "NotImplemented"
        )
    })
}

/// The preflight rules of the ceremony's kind.
pub(super) fn rules_for(info: &KeyInfo, rotating: bool) -> Result<(), Error> {
    if !rotating {
        return rules(info);
    }
    let arn = &info.arn;
    if info.origin != "EXTERNAL" {
        return Err(refused(format!(
            "key {arn} has Origin {}; only EXTERNAL keys take imported material, and a rotation puts new material into one",
            info.origin
        )));
    }
    if info.key_spec != "SYMMETRIC_DEFAULT" {
        return Err(refused(format!(
            "key {arn} has KeySpec {}; byok rotates SYMMETRIC_DEFAULT keys only",
            info.key_spec
        )));
    }
    if info.multi_region == Some(true) {
        // AWS never copies imported material between regions: the same material must be
        // imported into every replica before the primary rotates, which byok does not do yet.
        return Err(refused(format!(
            "key {arn} is a multi-Region key; rotating it needs the new material imported into every replica (EXISTING_KEY_MATERIAL) before RotateKeyOnDemand on the primary, which this version of byok does not do (docs/rotation.md)"
        )));
    }
    if info.state != "Enabled" {
        let why = match info.state.as_str() {
            "Disabled" => "enable it first (a rotation must not wake a key someone disabled)",
            "PendingDeletion" => "cancel the deletion first, or leave it",
            "PendingImport" => {
                "it holds no material (or lost one): import into it (kind = \"import\") instead"
            }
            _ => "a rotation needs an Enabled key",
        };
        return Err(refused(format!(
            "key {arn} is in state {}, expected Enabled for a rotation: {why}",
            info.state
        )));
    }
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
