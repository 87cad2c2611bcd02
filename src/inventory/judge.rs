//! One status per key, with the reason: the rotation policy applied to what KMS shows and
//! what the verified transcripts recorded. The rules, in the order they are tried (the first
//! that holds is the key's status), are in docs/inventory.md ("Statuses").

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::ledger::{Claim, Ledger};
use super::rules::RotationPolicy;
use super::{Observation, ObservedKey};

/// A key's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Compliant,
    NoPolicy,
    RotationDueSoon,
    ExpiringSoon,
    PendingImport,
    RotationOverdue,
    Expired,
    Unexplained,
}

impl Status {
    /// Every status, in the order reports count them.
    pub const ALL: [Status; 8] = [
        Status::Compliant,
        Status::RotationDueSoon,
        Status::RotationOverdue,
        Status::ExpiringSoon,
        Status::Expired,
        Status::PendingImport,
        Status::NoPolicy,
        Status::Unexplained,
    ];

    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::RotationDueSoon => "rotation-due-soon",
            Status::RotationOverdue => "rotation-overdue",
            Status::ExpiringSoon => "expiring-soon",
            Status::Expired => "expired",
            Status::PendingImport => "pending-import",
            Status::NoPolicy => "no-policy",
            Status::Unexplained => "unexplained",
        }
    }

    /// What it asks of people: nothing, attention (exit 10) or action (exit 11).
    pub fn class(self) -> Class {
        match self {
            Status::Compliant => Class::Ok,
            Status::RotationDueSoon
            | Status::ExpiringSoon
            | Status::PendingImport
            | Status::NoPolicy => Class::Attention,
            Status::RotationOverdue | Status::Expired | Status::Unexplained => Class::Action,
        }
    }
}

/// How urgent a finding is; the inventory's exit code is its worst one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Ok,
    Attention,
    Action,
}

/// A finding beside the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// `rotation-limit-near`, `replica-missing-material` or `replica-expiry-differs`.
    pub name: &'static str,
    pub reason: String,
}

/// One material of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialReport {
    pub key_material_id: String,
    /// ListKeyRotations' KeyMaterialState, `CURRENT` from DescribeKey, or None (unknown).
    pub state: Option<String>,
    pub import_state: Option<String>,
    pub expiration_model: Option<String>,
    pub valid_to: Option<OffsetDateTime>,
    /// When it became current, as known.
    pub current_since: Option<OffsetDateTime>,
    /// When a transcript recorded its import.
    pub imported_at: Option<OffsetDateTime>,
    pub rotation_type: Option<String>,
    /// `kms` (ListKeyRotations or DescribeKey) or `transcript` (KMS did not list materials).
    pub source: &'static str,
    /// The verified transcripts that record its import.
    pub transcripts: Vec<String>,
}

/// One key's line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyReport {
    pub region: String,
    pub key_id: String,
    pub arn: String,
    pub aliases: Vec<String>,
    /// KeyState, or `NotFound` (`Unlisted`) for a key a transcript names that KMS does not
    /// have (that ListKeys did not list).
    pub state: String,
    pub enabled: bool,
    pub multi_region_role: Option<String>,
    pub primary_arn: Option<String>,
    pub replica_arns: Vec<String>,
    pub creation_date: Option<OffsetDateTime>,
    pub current_key_material_id: Option<String>,
    pub expiration_model: Option<String>,
    /// DescribeKey's ValidTo (the earliest across materials).
    pub valid_to: Option<OffsetDateTime>,
    pub tags: BTreeMap<String, String>,
    pub materials: Vec<MaterialReport>,
    /// `kms` when ListKeyRotations answered, else `transcripts`.
    pub materials_source: &'static str,
    /// Why ListKeyRotations gave nothing, when it did not.
    pub materials_note: Option<String>,
    pub rule: Option<String>,
    pub max_age_days: Option<u32>,
    pub warn_days: Option<u32>,
    /// Days since the current material became current.
    pub age_days: Option<f64>,
    /// Where that date comes from: `kms-rotation-date`, `transcript` or `key-creation-date`
    /// (an upper bound: the material cannot be older than its key).
    pub age_basis: Option<&'static str>,
    /// Days until the earliest expiry of any material (negative once past).
    pub days_to_expiry: Option<f64>,
    pub on_demand_rotations: Option<u32>,
    pub status: Status,
    pub reason: String,
    pub flags: Vec<Flag>,
}

impl KeyReport {
    /// The worst of its status and flags.
    pub fn class(&self) -> Class {
        let flags = if self.flags.is_empty() {
            Class::Ok
        } else {
            Class::Attention
        };
        self.status.class().max(flags)
    }

    /// A line for a key a transcript names and the listing did not show (`NotFound` or
    /// `Unlisted`), not one KMS listed.
    pub fn only_in_transcripts(&self) -> bool {
        matches!(self.state.as_str(), "NotFound" | "Unlisted")
    }

    /// The alias people know it by, else its key id.
    pub fn display_name(&self) -> &str {
        self.aliases
            .first()
            .map_or(self.key_id.as_str(), String::as_str)
    }
}

const DAY: f64 = 86_400.0;

fn days(d: time::Duration) -> f64 {
    d.as_seconds_f64() / DAY
}

fn date(t: OffsetDateTime) -> String {
    crate::rfc3339::format(t)
}

/// Judges every observed key, and adds a `NotFound` line for each key a verified transcript
/// names that KMS no longer has (`gone`: ARN and what DescribeKey said).
pub fn judge_all(
    observation: &Observation,
    ledger: Option<&Ledger>,
    gone: &[(String, String)],
    policy: &RotationPolicy,
    now: OffsetDateTime,
) -> Vec<KeyReport> {
    let mut reports: Vec<KeyReport> = observation
        .keys
        .iter()
        .map(|k| judge(k, ledger, policy, now))
        .collect();
    replica_flags(&mut reports);
    for (arn, said) in gone {
        let claims: Vec<&Claim> = ledger
            .map(|l| l.claims_on(arn).collect())
            .unwrap_or_default();
        let by: Vec<String> = claims.iter().map(|c| claim_name(c)).collect();
        reports.push(KeyReport {
            region: arn.split(':').nth(3).unwrap_or_default().to_string(),
            key_id: arn.rsplit('/').next().unwrap_or_default().to_string(),
            arn: arn.clone(),
            aliases: Vec::new(),
            // DescribeKey's NotFoundException, or a key KMS describes but ListKeys did not list.
            state: if said.starts_with("NotFoundException") {
                "NotFound".into()
            } else {
                "Unlisted".into()
            },
            enabled: false,
            multi_region_role: None,
            primary_arn: None,
            replica_arns: Vec::new(),
            creation_date: None,
            current_key_material_id: None,
            expiration_model: None,
            valid_to: None,
            tags: BTreeMap::new(),
            materials: claims
                .iter()
                .filter_map(|c| {
                    Some(MaterialReport {
                        key_material_id: c.key_material_id.clone()?,
                        state: None,
                        import_state: None,
                        expiration_model: c.expiration_model.clone(),
                        valid_to: c.valid_to,
                        current_since: c.current_since,
                        imported_at: Some(c.imported_at),
                        rotation_type: None,
                        source: "transcript",
                        transcripts: vec![claim_name(c)],
                    })
                })
                .collect(),
            materials_source: "transcripts",
            materials_note: None,
            rule: None,
            max_age_days: None,
            warn_days: None,
            age_days: None,
            age_basis: None,
            days_to_expiry: None,
            on_demand_rotations: None,
            status: Status::Unexplained,
            reason: format!(
                "{} records an import into this key, but KMS does not show the key ({})",
                by.join(", "),
                crate::text::escape(said)
            ),
            flags: Vec::new(),
        });
    }
    reports
}

fn claim_name(c: &Claim) -> String {
    let file = c
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{file} ({})", c.ceremony_id)
}

/// The key's materials: ListKeyRotations' when KMS serves it, else the transcripts' plus
/// DescribeKey's current one.
fn materials(k: &ObservedKey, claims: &[&Claim]) -> Vec<MaterialReport> {
    let recorded = |id: &str| -> Vec<&&Claim> {
        claims
            .iter()
            .filter(|c| c.key_material_id.as_deref() == Some(id))
            .collect()
    };
    let earliest = |cs: &[&&Claim], f: &dyn Fn(&Claim) -> Option<OffsetDateTime>| {
        cs.iter().filter_map(|c| f(c)).min()
    };
    let current = k.detail.info.current_key_material_id.as_deref();
    match &k.rotations {
        Ok(rotations) => rotations
            .iter()
            .map(|r| {
                let cs = recorded(&r.key_material_id);
                MaterialReport {
                    key_material_id: r.key_material_id.clone(),
                    state: r.key_material_state.clone(),
                    import_state: r.import_state.clone(),
                    expiration_model: r.expiration_model.clone(),
                    valid_to: r.valid_to,
                    current_since: r
                        .rotation_date
                        .or_else(|| earliest(&cs, &|c| c.current_since)),
                    imported_at: earliest(&cs, &|c| Some(c.imported_at)),
                    rotation_type: r.rotation_type.clone(),
                    source: "kms",
                    transcripts: cs.iter().map(|c| claim_name(c)).collect(),
                }
            })
            .collect(),
        Err(_) => {
            let mut ids: Vec<String> = claims
                .iter()
                .filter_map(|c| c.key_material_id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            let mut out: Vec<MaterialReport> = ids
                .iter()
                .map(|id| {
                    let cs = recorded(id);
                    MaterialReport {
                        key_material_id: id.clone(),
                        state: (Some(id.as_str()) == current).then(|| "CURRENT".to_string()),
                        import_state: None,
                        expiration_model: cs.iter().find_map(|c| c.expiration_model.clone()),
                        valid_to: earliest(&cs, &|c| c.valid_to),
                        current_since: earliest(&cs, &|c| c.current_since),
                        imported_at: earliest(&cs, &|c| Some(c.imported_at)),
                        rotation_type: None,
                        source: "transcript",
                        transcripts: cs.iter().map(|c| claim_name(c)).collect(),
                    }
                })
                .collect();
            if let Some(id) = current
                && !ids.iter().any(|i| i == id)
            {
                out.push(MaterialReport {
                    key_material_id: id.to_string(),
                    state: Some("CURRENT".into()),
                    import_state: None,
                    expiration_model: k.detail.info.expiration_model.clone(),
                    valid_to: k.detail.info.valid_to,
                    current_since: None,
                    imported_at: None,
                    rotation_type: None,
                    source: "kms",
                    transcripts: Vec::new(),
                });
            }
            out
        }
    }
}

/// Judges one key.
pub fn judge(
    k: &ObservedKey,
    ledger: Option<&Ledger>,
    policy: &RotationPolicy,
    now: OffsetDateTime,
) -> KeyReport {
    let info = &k.detail.info;
    let claims: Vec<&Claim> = ledger
        .map(|l| l.claims_on(&info.arn).collect())
        .unwrap_or_default();
    let materials = materials(k, &claims);
    let rule = policy.rule_for(&k.aliases, &k.tags);
    let current = info.current_key_material_id.clone().or_else(|| {
        materials
            .iter()
            .find(|m| m.state.as_deref() == Some("CURRENT"))
            .map(|m| m.key_material_id.clone())
    });
    let current_material = current
        .as_deref()
        .and_then(|id| materials.iter().find(|m| m.key_material_id == id));

    // Age of the current material: since KMS's RotationDate, else since the transcript saw it
    // become current (or imported), else since the key was created (an upper bound).
    let kms_date = match &k.rotations {
        Ok(r) => current.as_deref().and_then(|id| {
            r.iter()
                .find(|r| r.key_material_id == id)
                .and_then(|r| r.rotation_date)
        }),
        Err(_) => None,
    };
    let recorded_date = current_material.and_then(|m| {
        let cs: Vec<&&Claim> = claims
            .iter()
            .filter(|c| c.key_material_id.as_deref() == Some(m.key_material_id.as_str()))
            .collect();
        cs.iter()
            .filter_map(|c| c.current_since)
            .min()
            .or_else(|| cs.iter().map(|c| c.imported_at).min())
    });
    let (since, age_basis) = match (kms_date, recorded_date, current.is_some()) {
        (Some(t), _, _) => (Some(t), Some("kms-rotation-date")),
        (None, Some(t), _) => (Some(t), Some("transcript")),
        (None, None, true) => (k.detail.creation_date, Some("key-creation-date")),
        (None, None, false) => (None, None),
    };
    let age_basis = since.and(age_basis);
    let age_days = since.map(|s| days(now - s));

    // Expiry: every material's ValidTo, and DescribeKey's (the earliest).
    let expiry = materials
        .iter()
        .filter_map(|m| m.valid_to.map(|t| (t, Some(m.key_material_id.as_str()))))
        .chain(info.valid_to.map(|t| (t, None)))
        .min_by_key(|(t, _)| *t);
    let days_to_expiry = expiry.map(|(t, _)| days(t - now));

    let on_demand_rotations = match &k.rotations {
        Ok(r) => Some(
            r.iter()
                .filter(|r| r.rotation_type.as_deref() == Some("ON_DEMAND"))
                .count() as u32,
        ),
        Err(_) if ledger.is_some() => Some(
            claims
                .iter()
                .filter(|c| c.kind == "rotate" && c.current_since.is_some())
                .count() as u32,
        ),
        Err(_) => None,
    };

    // Provenance, when transcripts were given.
    let mut unexplained: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if ledger.is_some() {
        if let Some(id) = &current
            && !claims
                .iter()
                .any(|c| c.key_material_id.as_deref() == Some(id.as_str()))
        {
            unexplained.push(format!(
                "its current material {id} is recorded by no verified transcript"
            ));
        }
        for c in &claims {
            match (&c.key_material_id, &k.rotations) {
                (Some(id), Ok(r)) if !r.iter().any(|r| &r.key_material_id == id) => unexplained
                    .push(format!(
                        "{} records material {id} imported into this key, which KMS does not list",
                        claim_name(c)
                    )),
                (Some(id), Err(_)) if Some(id) != current.as_ref() => notes.push(format!(
                    "KMS cannot confirm material {id} of {} (no ListKeyRotations)",
                    claim_name(c)
                )),
                (None, _) => notes.push(format!(
                    "{} records an import whose KeyMaterialId it never learned",
                    claim_name(c)
                )),
                _ => {}
            }
        }
    }

    let expiry_window = rule.map_or(policy.expiry_warning_days, |r| r.expiry_warning_days);
    let (status, mut reason) = if !unexplained.is_empty() {
        (Status::Unexplained, unexplained.join("; "))
    } else if let Some((t, id)) = expiry.filter(|(t, _)| *t <= now) {
        (
            Status::Expired,
            match id {
                Some(id) => format!("material {id} expired at {}", date(t)),
                None => format!("DescribeKey's ValidTo {} has passed", date(t)),
            },
        )
    } else if info.state == "PendingImport" {
        (
            Status::PendingImport,
            if claims.is_empty() {
                "the key holds no usable material (PendingImport)".to_string()
            } else {
                "the key holds no usable material (PendingImport) although a transcript recorded an import: its material was deleted or expired".to_string()
            },
        )
    } else if let (Some(r), Some(age)) = (rule, age_days)
        && age > f64::from(r.max_age_days)
    {
        (
            Status::RotationOverdue,
            format!(
                "current material is {} days old{}, over the {} days of rule {}",
                age.floor(),
                basis_words(age_basis),
                r.max_age_days,
                r.name
            ),
        )
    } else if let Some((t, id)) = expiry.filter(|(t, _)| days(*t - now) <= f64::from(expiry_window))
    {
        (
            Status::ExpiringSoon,
            format!(
                "{} expires at {}, within {} days",
                id.map_or("the key's material".to_string(), |i| format!(
                    "material {i}"
                )),
                date(t),
                expiry_window
            ),
        )
    } else if let (Some(r), Some(age)) = (rule, age_days)
        && age > f64::from(r.max_age_days - r.warn_days)
    {
        (
            Status::RotationDueSoon,
            format!(
                "current material is {} days old{}; rule {} rotates at {} days",
                age.floor(),
                basis_words(age_basis),
                r.name,
                r.max_age_days
            ),
        )
    } else if let Some(r) = rule {
        match age_days {
            Some(age) => (
                Status::Compliant,
                format!(
                    "current material is {} days old{}, within the {} days of rule {}",
                    age.floor(),
                    basis_words(age_basis),
                    r.max_age_days,
                    r.name
                ),
            ),
            None => (
                Status::Compliant,
                format!("rule {}: no current material to age", r.name),
            ),
        }
    } else {
        (
            Status::NoPolicy,
            "no rule of the rotation policy matches its aliases or tags".to_string(),
        )
    };
    if !matches!(info.state.as_str(), "Enabled" | "PendingImport") {
        reason.push_str(&format!(" (the key is {})", info.state));
    }
    if ledger.is_none() {
        notes.push("provenance not checked (no --transcripts)".into());
    }
    if !notes.is_empty() {
        reason.push_str("; ");
        reason.push_str(&notes.join("; "));
    }

    let mut flags = Vec::new();
    if let Some(n) = on_demand_rotations
        && policy.rotation_limit.saturating_sub(n) <= policy.rotation_limit_warning
    {
        flags.push(Flag {
            name: "rotation-limit-near",
            reason: format!("{n} of {} on-demand rotations used", policy.rotation_limit),
        });
    }

    KeyReport {
        region: k.region.clone(),
        key_id: info.key_id.clone(),
        arn: info.arn.clone(),
        aliases: k.aliases.clone(),
        state: info.state.clone(),
        enabled: info.enabled,
        multi_region_role: k.detail.multi_region_role.clone(),
        primary_arn: k.detail.primary_arn.clone(),
        replica_arns: k.detail.replica_arns.clone(),
        creation_date: k.detail.creation_date,
        current_key_material_id: current,
        expiration_model: info.expiration_model.clone(),
        valid_to: info.valid_to,
        tags: k.tags.clone(),
        materials,
        materials_source: if k.rotations.is_ok() {
            "kms"
        } else {
            "transcripts"
        },
        materials_note: k.rotations.as_ref().err().cloned(),
        rule: rule.map(|r| r.name.clone()),
        max_age_days: rule.map(|r| r.max_age_days),
        warn_days: rule.map(|r| r.warn_days),
        age_days,
        age_basis,
        days_to_expiry,
        on_demand_rotations,
        status,
        reason,
        flags,
    }
}

fn basis_words(basis: Option<&str>) -> &'static str {
    match basis {
        Some("key-creation-date") => {
            " at most (counted from the key's creation: no transcript or KMS date for the material)"
        }
        _ => "",
    }
}

/// Multi-Region keys: a replica must hold every material its primary holds, with the same
/// expiry. A material stuck in PENDING_MULTI_REGION_IMPORT_AND_ROTATION says one does not.
fn replica_flags(reports: &mut [KeyReport]) {
    let by_arn: BTreeMap<String, usize> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| (r.arn.clone(), i))
        .collect();
    let mut add: Vec<(usize, Flag)> = Vec::new();
    for (pi, p) in reports.iter().enumerate() {
        if p.multi_region_role.as_deref() != Some("PRIMARY") {
            continue;
        }
        for m in &p.materials {
            if m.state.as_deref() == Some("PENDING_MULTI_REGION_IMPORT_AND_ROTATION") {
                add.push((
                    pi,
                    Flag {
                        name: "replica-missing-material",
                        reason: format!(
                            "material {} waits in PENDING_MULTI_REGION_IMPORT_AND_ROTATION: a replica lacks it",
                            m.key_material_id
                        ),
                    },
                ));
            }
        }
        for replica in &p.replica_arns {
            let Some(&ri) = by_arn.get(replica) else {
                continue;
            };
            let r = &reports[ri];
            let lacks: Vec<&str> = if p.materials_source == "kms" && r.materials_source == "kms" {
                p.materials
                    .iter()
                    .filter(|pm| {
                        !r.materials.iter().any(|rm| {
                            rm.key_material_id == pm.key_material_id
                                && rm.import_state.as_deref() != Some("PENDING_IMPORT")
                        })
                    })
                    .map(|m| m.key_material_id.as_str())
                    .collect()
            } else {
                match (&p.current_key_material_id, &r.current_key_material_id) {
                    (Some(pc), rc) if rc.as_ref() != Some(pc) => vec![pc.as_str()],
                    _ => Vec::new(),
                }
            };
            if !lacks.is_empty() {
                let reason = format!("replica {} lacks material {}", r.arn, lacks.join(", "));
                add.push((
                    pi,
                    Flag {
                        name: "replica-missing-material",
                        reason: reason.clone(),
                    },
                ));
                add.push((
                    ri,
                    Flag {
                        name: "replica-missing-material",
                        reason,
                    },
                ));
            }
            let differ: Vec<String> = p
                .materials
                .iter()
                .filter_map(|pm| {
                    let rm = r
                        .materials
                        .iter()
                        .find(|rm| rm.key_material_id == pm.key_material_id)?;
                    (rm.valid_to != pm.valid_to).then(|| {
                        format!(
                            "material {} expires {} in the primary, {} in replica {}",
                            pm.key_material_id,
                            pm.valid_to.map_or("never".into(), date),
                            rm.valid_to.map_or("never".into(), date),
                            r.arn
                        )
                    })
                })
                .collect();
            if !differ.is_empty() {
                let reason = differ.join("; ");
                add.push((
                    pi,
                    Flag {
                        name: "replica-expiry-differs",
                        reason: reason.clone(),
                    },
                ));
                add.push((
                    ri,
                    Flag {
                        name: "replica-expiry-differs",
                        reason,
                    },
                ));
            }
        }
    }
    // One flag of each name per key, its reasons joined.
    for (i, f) in add {
        match reports[i].flags.iter_mut().find(|g| g.name == f.name) {
            Some(g) if !g.reason.contains(&f.reason) => {
                g.reason.push_str("; ");
                g.reason.push_str(&f.reason);
            }
            Some(_) => {}
            None => reports[i].flags.push(f),
        }
    }
}
