//! `byok inventory`. In process, against a KMS double that serves what LocalStack does not
//! (ListKeyRotations with materials, rotation dates and per-material expiry, multi-Region
//! replicas): every status and flag, every output format parsed by a real parser (JSON, CSV,
//! Prometheus through prometheus_client, Config evaluations), exit classes, pagination of
//! 1,000 keys. Through the `byok` binary against LocalStack: a fleet of 32 keys in two regions
//! imported by real ceremonies, judged at shifted clocks (BYOK_NOW), with a Disabled, a
//! PendingImport, an unexplained key and a transcript whose key is gone; 1,000 keys listed
//! over many pages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use byok::inventory::judge::{self, KeyReport, Status};
use byok::inventory::ledger::{Claim, Ledger, TranscriptEntry};
use byok::inventory::render::{self, Format, Inventory};
use byok::inventory::rules::{self, RotationPolicy};
use byok::inventory::{self, PageLimits};
use byok::kms::fleet::{AliasEntry, FleetKms, KeyDetail, PacedFleet, Page, Rotation};
use byok::kms::{KeyInfo, KmsError, KmsFailure, Operation, Rates};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::common::{
    SoftHsm, TestKms, assert_contains, ceremony_pinned_as, rand_u32, require_env, stderr, stdout,
};

const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);
const A: &str = "eu-central-1";
const B: &str = "us-west-2";

fn day(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// Every operation far above what a test reaches: the double answers at once.
fn fast() -> Rates {
    Rates::new(Operation::ALL.iter().map(|o| (*o, 1_000_000.0)).collect())
}

struct FakeKey {
    region: String,
    detail: KeyDetail,
    tags: Vec<(String, String)>,
    /// None: ListKeyRotations answers InternalFailure, as LocalStack does.
    rotations: Option<Vec<Rotation>>,
}

/// An in-process KMS with ListKeyRotations, paging every list at the limit asked.
#[derive(Default)]
struct Fake {
    keys: Vec<FakeKey>,
    aliases: Vec<(String, AliasEntry)>,
    calls: Mutex<BTreeMap<&'static str, usize>>,
    /// DescribeKey answers ThrottlingException this many more times.
    throttle: std::sync::atomic::AtomicUsize,
    /// DescribeKey of this key answers AccessDeniedException.
    deny: Option<String>,
}

fn not_found(op: &'static str, arn: &str) -> KmsError {
    KmsError {
        operation: op,
        failure: KmsFailure::Service,
        code: Some("NotFoundException".into()),
        status: Some(400),
        message: format!("Key '{arn}' does not exist"),
    }
}

fn page<T: Clone>(all: &[T], marker: Option<&str>, limit: i32) -> Page<T> {
    let start: usize = marker.map_or(0, |m| m.parse().unwrap());
    let end = (start + limit as usize).min(all.len());
    Page {
        items: all[start..end].to_vec(),
        next: (end < all.len()).then(|| end.to_string()),
    }
}

impl Fake {
    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }
    fn calls(&self, op: &str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }
    fn key(&self, arn: &str) -> Option<&FakeKey> {
        self.keys.iter().find(|k| k.detail.info.arn == arn)
    }
}

impl FleetKms for Fake {
    fn list_keys_page(
        &self,
        region: &str,
        marker: Option<&str>,
        limit: i32,
    ) -> Result<Page<String>, KmsError> {
        self.count("ListKeys");
        let all: Vec<String> = self
            .keys
            .iter()
            .filter(|k| k.region == region)
            .map(|k| k.detail.info.arn.clone())
            .collect();
        Ok(page(&all, marker, limit))
    }
    fn list_aliases_page(
        &self,
        region: &str,
        marker: Option<&str>,
        limit: i32,
    ) -> Result<Page<AliasEntry>, KmsError> {
        self.count("ListAliases");
        let all: Vec<AliasEntry> = self
            .aliases
            .iter()
            .filter(|(r, _)| r == region)
            .map(|(_, a)| a.clone())
            .collect();
        Ok(page(&all, marker, limit))
    }
    fn describe_key_detail(&self, key_arn: &str) -> Result<KeyDetail, KmsError> {
        self.count("DescribeKey");
        use std::sync::atomic::Ordering;
        if self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(KmsError {
                operation: "DescribeKey",
                failure: KmsFailure::Service,
                code: Some("ThrottlingException".into()),
                status: Some(400),
                message: "Rate exceeded".into(),
            });
        }
        if self.deny.as_deref() == Some(key_arn) {
            return Err(KmsError {
                operation: "DescribeKey",
                failure: KmsFailure::Service,
                code: Some("AccessDeniedException".into()),
                status: Some(400),
                message: format!("not authorized to perform kms:DescribeKey on {key_arn}"),
            });
        }
        self.key(key_arn)
            .map(|k| k.detail.clone())
            .ok_or_else(|| not_found("DescribeKey", key_arn))
    }
    fn tags_page(
        &self,
        key_arn: &str,
        marker: Option<&str>,
    ) -> Result<Page<(String, String)>, KmsError> {
        self.count("ListResourceTags");
        let k = self
            .key(key_arn)
            .ok_or_else(|| not_found("ListResourceTags", key_arn))?;
        Ok(page(&k.tags, marker, 1))
    }
    fn rotations_page(
        &self,
        key_arn: &str,
        marker: Option<&str>,
    ) -> Result<Page<Rotation>, KmsError> {
        self.count("ListKeyRotations");
        let k = self
            .key(key_arn)
            .ok_or_else(|| not_found("ListKeyRotations", key_arn))?;
        match &k.rotations {
            Some(r) => Ok(page(r, marker, 4)),
            None => Err(KmsError {
                operation: "ListKeyRotations",
                failure: KmsFailure::Service,
                code: Some("InternalFailure".into()),
                status: Some(500),
                message: "not yet emulated".into(),
            }),
        }
    }
}

fn arn(region: &str, id: &str) -> String {
    format!("arn:aws:kms:{region}:111122223333:key/{id}")
}

/// A 64-hex KeyMaterialId made from a short name.
fn mid(name: &str) -> String {
    let hex = hex::encode(name.as_bytes());
    format!("{hex:0<64}")
}

fn material(name: &str, state: &str) -> Rotation {
    Rotation {
        key_material_id: mid(name),
        description: None,
        import_state: Some("IMPORTED".into()),
        key_material_state: Some(state.into()),
        expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
        valid_to: None,
        rotation_date: None,
        rotation_type: None,
    }
}

/// Builds the double's keys, aliases and the transcripts' claims.
struct Fleet {
    fake: Fake,
    claims: Vec<Claim>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            fake: Fake::default(),
            claims: Vec::new(),
        }
    }

    /// An EXTERNAL key `id` in `region` named `alias`, created `age` days before NOW.
    fn key(
        &mut self,
        region: &str,
        id: &str,
        alias: &str,
        age: i64,
        state: &str,
        rotations: Option<Vec<Rotation>>,
    ) -> String {
        let arn = arn(region, id);
        let current = rotations.as_ref().and_then(|r| {
            r.iter()
                .find(|m| m.key_material_state.as_deref() == Some("CURRENT"))
                .map(|m| m.key_material_id.clone())
        });
        let valid_to = rotations
            .as_ref()
            .and_then(|r| r.iter().filter_map(|m| m.valid_to).min());
        self.fake.keys.push(FakeKey {
            region: region.into(),
            detail: KeyDetail {
                info: KeyInfo {
                    arn: arn.clone(),
                    key_id: id.into(),
                    origin: "EXTERNAL".into(),
                    key_spec: "SYMMETRIC_DEFAULT".into(),
                    key_usage: "ENCRYPT_DECRYPT".into(),
                    state: state.into(),
                    enabled: state == "Enabled",
                    expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
                    valid_to,
                    current_key_material_id: current,
                    multi_region: Some(false),
                },
                creation_date: Some(NOW - day(age)),
                multi_region_role: None,
                primary_arn: None,
                replica_arns: Vec::new(),
            },
            tags: vec![
                ("team".into(), "payments".into()),
                ("owner".into(), "sec".into()),
            ],
            rotations,
        });
        if !alias.is_empty() {
            self.fake.aliases.push((
                region.into(),
                AliasEntry {
                    name: alias.into(),
                    target_key_id: Some(id.into()),
                },
            ));
        }
        arn
    }

    /// A verified transcript's import of `material` into `arn`, `age` days before NOW.
    fn claim(&mut self, arn: &str, material: &str, age: i64) {
        self.claims.push(Claim {
            file: PathBuf::from("t/ceremony.transcript.jsonl"),
            ceremony_id: "fleet-2029".into(),
            kind: "import".into(),
            key_arn: arn.into(),
            key_material_id: Some(mid(material)),
            imported_at: NOW - day(age),
            current_since: Some(NOW - day(age)),
            import_type: "NEW_KEY_MATERIAL".into(),
            expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
            valid_to: None,
        });
    }

    fn ledger(&self) -> Ledger {
        Ledger {
            transcripts: vec![TranscriptEntry {
                file: PathBuf::from("t/ceremony.transcript.jsonl"),
                verified: true,
                ceremony_id: Some("fleet-2029".into()),
                audit_key_sha256: Some("ab".repeat(32)),
                problem: None,
                claims: self.claims.len(),
            }],
            claims: self.claims.clone(),
        }
    }
}

fn policy() -> RotationPolicy {
    rules::parse(
        Path::new("policy.toml"),
        r#"version = 1
[defaults]
expiry_warning_days = 30
rotation_limit = 10
rotation_limit_warning = 2
[[rule]]
name = "production"
alias = "alias/*-prod"
max_age_days = 365
warn_days = 30
[[rule]]
name = "development"
alias = "alias/*-dev"
max_age_days = 730
warn_days = 60
"#,
    )
    .unwrap()
}

/// The fleet of the statuses test: 34 keys in two regions, one AWS_KMS key, one gone.
fn status_fleet() -> (Fleet, String) {
    let mut f = Fleet::new();
    // Compliant: one material, imported 100 days ago (the transcript's date).
    let k = f.key(
        A,
        "fresh",
        "alias/pay-prod",
        100,
        "Enabled",
        Some(vec![material("fresh", "CURRENT")]),
    );
    f.claim(&k, "fresh", 100);
    // Rotated 400 days ago, on demand: KMS's RotationDate ages the material.
    let mut cur = material("old-b", "CURRENT");
    cur.rotation_date = Some(NOW - day(400));
    cur.rotation_type = Some("ON_DEMAND".into());
    let k = f.key(
        A,
        "old",
        "alias/old-prod",
        800,
        "Enabled",
        Some(vec![material("old-a", "NON_CURRENT"), cur]),
    );
    f.claim(&k, "old-a", 800);
    f.claim(&k, "old-b", 401);
    // Rotated 350 days ago: due within the 30-day warning.
    let mut cur = material("due", "CURRENT");
    cur.rotation_date = Some(NOW - day(350));
    cur.rotation_type = Some("ON_DEMAND".into());
    let k = f.key(
        A,
        "due",
        "alias/due-prod",
        500,
        "Enabled",
        Some(vec![material("due0", "NON_CURRENT"), cur]),
    );
    f.claim(&k, "due0", 500);
    f.claim(&k, "due", 350);
    // The current material never expires, a NON_CURRENT one expires in 10 days.
    let mut old = material("exp-old", "NON_CURRENT");
    old.expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
    old.valid_to = Some(NOW + day(10));
    let mut cur = material("exp-new", "CURRENT");
    cur.rotation_date = Some(NOW - day(5));
    cur.rotation_type = Some("ON_DEMAND".into());
    let k = f.key(
        B,
        "expiring",
        "alias/exp-dev",
        40,
        "Enabled",
        Some(vec![old, cur]),
    );
    f.claim(&k, "exp-old", 40);
    f.claim(&k, "exp-new", 5);
    // Its only material expired yesterday: KMS made the key PendingImport.
    let mut gone = material("lapsed", "CURRENT");
    gone.expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
    gone.valid_to = Some(NOW - day(1));
    gone.import_state = Some("PENDING_IMPORT".into());
    let k = f.key(
        B,
        "lapsed",
        "alias/lapsed-dev",
        300,
        "PendingImport",
        Some(vec![gone]),
    );
    f.claim(&k, "lapsed", 300);
    // Created, never imported.
    f.key(A, "new", "alias/new-prod", 1, "PendingImport", Some(vec![]));
    // Disabled, with young material: judged like any other key, its state said.
    let k = f.key(
        B,
        "off",
        "alias/off-dev",
        20,
        "Disabled",
        Some(vec![material("off", "CURRENT")]),
    );
    f.claim(&k, "off", 20);
    // No rule matches.
    let k = f.key(
        A,
        "misc",
        "alias/misc",
        20,
        "Enabled",
        Some(vec![material("misc", "CURRENT")]),
    );
    f.claim(&k, "misc", 20);
    // Current material no transcript records.
    f.key(
        A,
        "rogue",
        "alias/rogue-prod",
        10,
        "Enabled",
        Some(vec![material("rogue", "CURRENT")]),
    );
    // A transcript records a material KMS does not list.
    let k = f.key(
        B,
        "ghost",
        "alias/ghost-prod",
        10,
        "Enabled",
        Some(vec![material("ghost", "CURRENT")]),
    );
    f.claim(&k, "ghost", 10);
    f.claim(&k, "phantom", 9);
    // Nine on-demand rotations of ten.
    let mut ms: Vec<Rotation> = (0..10)
        .map(|i| {
            let mut m = material(
                &format!("busy{i}"),
                if i == 9 { "CURRENT" } else { "NON_CURRENT" },
            );
            if i > 0 {
                m.rotation_date = Some(NOW - day(10 - i));
                m.rotation_type = Some("ON_DEMAND".into());
            }
            m
        })
        .collect();
    ms.rotate_left(3);
    let k = f.key(A, "busy", "alias/busy-dev", 30, "Enabled", Some(ms));
    for i in 0..10 {
        f.claim(&k, &format!("busy{i}"), 10 - i);
    }
    // A multi-Region pair: the replica lacks the primary's new material (stuck in
    // PENDING_MULTI_REGION_IMPORT_AND_ROTATION) and holds the first with another expiry.
    let mut p1 = material("mr1", "CURRENT");
    p1.valid_to = Some(NOW + day(200));
    p1.expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
    let p2 = material("mr2", "PENDING_MULTI_REGION_IMPORT_AND_ROTATION");
    let primary = f.key(
        A,
        "mrk-1",
        "alias/mr-prod",
        50,
        "Enabled",
        Some(vec![p1.clone(), p2]),
    );
    let mut r1 = p1;
    r1.valid_to = Some(NOW + day(100));
    let replica = f.key(B, "mrk-1", "alias/mr-prod", 50, "Enabled", Some(vec![r1]));
    for (k, role) in [(&primary, "PRIMARY"), (&replica, "REPLICA")] {
        let d = &mut f
            .fake
            .keys
            .iter_mut()
            .find(|x| &x.detail.info.arn == k)
            .unwrap()
            .detail;
        d.multi_region_role = Some(role.into());
        d.primary_arn = Some(primary.clone());
        d.info.multi_region = Some(true);
        if role == "PRIMARY" {
            d.replica_arns = vec![replica.clone()];
        }
    }
    for k in [&primary, &replica] {
        f.claim(k, "mr1", 50);
        f.claim(k, "mr2", 5);
    }
    // Twenty more compliant keys, ten per region.
    for i in 0..20 {
        let region = if i % 2 == 0 { A } else { B };
        let id = format!("svc{i}");
        let k = f.key(
            region,
            &id,
            &format!("alias/svc{i}-dev"),
            60,
            "Enabled",
            Some(vec![material(&id, "CURRENT")]),
        );
        f.claim(&k, &id, 60);
    }
    // Not EXTERNAL: not in the inventory.
    f.key(
        A,
        "aws-owned",
        "alias/aws-prod",
        10,
        "Enabled",
        Some(vec![]),
    );
    f.fake.keys.last_mut().unwrap().detail.info.origin = "AWS_KMS".into();
    // A transcript's key that KMS no longer has.
    let gone = arn(A, "deleted");
    f.claim(&gone, "deleted", 90);
    (f, gone)
}

fn judged(f: &Fleet, ledger: Option<&Ledger>, limits: PageLimits) -> (Vec<KeyReport>, usize) {
    let kms = PacedFleet::new(&f.fake, fast(), A);
    let regions = [A.to_string(), B.to_string()];
    let obs = inventory::observe(&kms, &regions, 4, limits).unwrap();
    let gone = ledger
        .map(|l| inventory::look_for_missing(&kms, &obs, l).unwrap())
        .unwrap_or_default();
    (
        judge::judge_all(&obs, ledger, &gone, &policy(), NOW),
        obs.listed,
    )
}

fn by_alias<'a>(reports: &'a [KeyReport], alias: &str, region: &str) -> &'a KeyReport {
    reports
        .iter()
        .find(|r| r.aliases.iter().any(|a| a == alias) && r.region == region)
        .unwrap_or_else(|| panic!("no key {alias} in {region}"))
}

#[test]
fn every_status_and_flag_is_judged_from_what_kms_lists_and_the_transcripts_record() {
    let (f, gone) = status_fleet();
    let ledger = f.ledger();
    let (r, listed) = judged(
        &f,
        Some(&ledger),
        PageLimits {
            keys: 5,
            aliases: 3,
        },
    );
    assert_eq!(
        listed, 34,
        "every key of both regions, AWS_KMS one included"
    );
    assert_eq!(r.len(), 33 + 1, "33 EXTERNAL keys and the gone one");
    assert!(r.iter().all(|k| k.key_id != "aws-owned"));
    let status = |alias: &str, region: &str| by_alias(&r, alias, region).status;
    assert_eq!(status("alias/pay-prod", A), Status::Compliant);
    let old = by_alias(&r, "alias/old-prod", A);
    assert_eq!(old.status, Status::RotationOverdue, "{}", old.reason);
    assert_eq!(old.age_basis, Some("kms-rotation-date"));
    assert_eq!(old.age_days.map(f64::round), Some(400.0));
    assert_eq!(status("alias/due-prod", A), Status::RotationDueSoon);
    let exp = by_alias(&r, "alias/exp-dev", B);
    assert_eq!(exp.status, Status::ExpiringSoon, "{}", exp.reason);
    assert_contains(&exp.reason, &mid("exp-old"));
    assert_eq!(exp.days_to_expiry.map(f64::round), Some(10.0));
    let lapsed = by_alias(&r, "alias/lapsed-dev", B);
    assert_eq!(lapsed.status, Status::Expired, "{}", lapsed.reason);
    assert_eq!(status("alias/new-prod", A), Status::PendingImport);
    let off = by_alias(&r, "alias/off-dev", B);
    assert_eq!(
        (off.status, off.state.as_str()),
        (Status::Compliant, "Disabled")
    );
    assert_contains(&off.reason, "(the key is Disabled)");
    assert_eq!(status("alias/misc", A), Status::NoPolicy);
    let rogue = by_alias(&r, "alias/rogue-prod", A);
    assert_eq!(rogue.status, Status::Unexplained);
    assert_contains(&rogue.reason, "recorded by no verified transcript");
    let ghost = by_alias(&r, "alias/ghost-prod", B);
    assert_eq!(ghost.status, Status::Unexplained);
    assert_contains(
        &ghost.reason,
        &format!(
            "{} imported into this key, which KMS does not list",
            mid("phantom")
        ),
    );
    let busy = by_alias(&r, "alias/busy-dev", A);
    assert_eq!(busy.on_demand_rotations, Some(9));
    assert_eq!(
        busy.flags.iter().map(|f| f.name).collect::<Vec<_>>(),
        ["rotation-limit-near"]
    );
    assert_eq!(busy.status, Status::Compliant);
    for region in [A, B] {
        let mr = by_alias(&r, "alias/mr-prod", region);
        let names: Vec<&str> = mr.flags.iter().map(|f| f.name).collect();
        assert!(
            names.contains(&"replica-missing-material"),
            "{region}: {names:?}"
        );
        assert!(
            names.contains(&"replica-expiry-differs"),
            "{region}: {names:?}"
        );
    }
    let g = r.iter().find(|k| k.arn == gone).unwrap();
    assert_eq!(
        (g.status, g.state.as_str()),
        (Status::Unexplained, "NotFound")
    );
    assert_contains(&g.reason, "NotFoundException");
    for i in 0..20 {
        let region = if i % 2 == 0 { A } else { B };
        assert_eq!(
            status(&format!("alias/svc{i}-dev"), region),
            Status::Compliant
        );
    }
    // Every status occurs; the worst class decides the exit code.
    for s in Status::ALL {
        assert!(r.iter().any(|k| k.status == s), "no key is {}", s.as_str());
    }
    let inv = inventory_of(&r, Some(&ledger.transcripts));
    assert_eq!(render::exit_code(inv.class()), 11);
}

fn inventory_of<'a>(
    keys: &'a [KeyReport],
    transcripts: Option<&'a [TranscriptEntry]>,
) -> Inventory<'a> {
    static REGIONS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    Inventory {
        generated_at: NOW,
        clock_shifted: true,
        regions: REGIONS.get_or_init(|| vec![A.to_string(), B.to_string()]),
        policy: Some(Path::new("policy.toml")),
        listed: keys.len(),
        keys,
        transcripts,
    }
}

#[test]
fn exit_codes_separate_attention_from_action() {
    let (f, _) = status_fleet();
    let ledger = f.ledger();
    let (r, _) = judged(&f, Some(&ledger), PageLimits::default());
    let only = |statuses: &[Status]| -> Vec<KeyReport> {
        r.iter()
            .filter(|k| statuses.contains(&k.status) && k.flags.is_empty())
            .cloned()
            .collect()
    };
    let code = |keys: &[KeyReport]| {
        render::exit_code(inventory_of(keys, Some(&ledger.transcripts)).class())
    };
    assert_eq!(code(&only(&[Status::Compliant])), 0);
    assert_eq!(
        code(&only(&[Status::Compliant, Status::RotationDueSoon])),
        10
    );
    assert_eq!(code(&only(&[Status::Compliant, Status::ExpiringSoon])), 10);
    assert_eq!(code(&only(&[Status::Compliant, Status::PendingImport])), 10);
    assert_eq!(code(&only(&[Status::Compliant, Status::NoPolicy])), 10);
    for worst in [
        Status::RotationOverdue,
        Status::Expired,
        Status::Unexplained,
    ] {
        assert_eq!(
            code(&only(&[Status::Compliant, Status::RotationDueSoon, worst])),
            11,
            "{worst:?}"
        );
    }
    // A flag alone asks for attention.
    let flagged: Vec<KeyReport> = r.iter().filter(|k| k.key_id == "busy").cloned().collect();
    assert_eq!(code(&flagged), 10);
    // A transcript that does not verify asks for action.
    let bad = [TranscriptEntry {
        verified: false,
        problem: Some("does not verify".into()),
        ..ledger.transcripts[0].clone()
    }];
    assert_eq!(
        render::exit_code(inventory_of(&only(&[Status::Compliant]), Some(&bad)).class()),
        11
    );
}

#[test]
fn without_list_key_rotations_the_transcripts_date_the_material() {
    let mut f = Fleet::new();
    // LocalStack's way: no ListKeyRotations, DescribeKey names the current material.
    let k = f.key(A, "ls", "alias/ls-prod", 500, "Enabled", None);
    f.fake.keys[0].detail.info.current_key_material_id = Some(mid("ls"));
    f.claim(&k, "ls", 370);
    f.key(A, "untold", "alias/untold-prod", 100, "Enabled", None);
    f.fake.keys[1].detail.info.current_key_material_id = Some(mid("untold"));
    let ledger = f.ledger();
    let (r, _) = judged(&f, Some(&ledger), PageLimits::default());
    let ls = by_alias(&r, "alias/ls-prod", A);
    assert_eq!(ls.materials_source, "transcripts");
    assert_eq!(ls.materials[0].source, "transcript");
    assert_eq!(
        (ls.status, ls.age_basis),
        (Status::RotationOverdue, Some("transcript"))
    );
    assert_eq!(
        by_alias(&r, "alias/untold-prod", A).status,
        Status::Unexplained
    );
    // Without transcripts: the key's creation date bounds the age, and nothing is unexplained.
    let (r, _) = judged(&f, None, PageLimits::default());
    let untold = by_alias(&r, "alias/untold-prod", A);
    assert_eq!(
        (untold.status, untold.age_basis),
        (Status::Compliant, Some("key-creation-date"))
    );
    assert_contains(&untold.reason, "provenance not checked");
    let ls = by_alias(&r, "alias/ls-prod", A);
    assert_eq!(
        ls.status,
        Status::RotationOverdue,
        "500 days from CreationDate: {}",
        ls.reason
    );
}

#[test]
fn a_thousand_keys_are_listed_over_every_page() {
    let mut f = Fleet::new();
    for i in 0..1000 {
        let region = if i < 600 { A } else { B };
        let alias = format!("alias/k{i}-dev");
        f.key(
            region,
            &format!("k{i}"),
            &alias,
            10,
            "Enabled",
            Some(vec![material(&format!("k{i}"), "CURRENT")]),
        );
    }
    let (r, listed) = judged(
        &f,
        None,
        PageLimits {
            keys: 7,
            aliases: 100,
        },
    );
    assert_eq!((listed, r.len()), (1000, 1000));
    let mut ids: Vec<&str> = r.iter().map(|k| k.key_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "each key once");
    assert!(
        r.iter()
            .all(|k| k.aliases.len() == 1 && k.status == Status::Compliant)
    );
    // ceil(600/7) + ceil(400/7) ListKeys pages; 6 + 4 ListAliases pages; one DescribeKey each.
    assert_eq!(f.fake.calls("ListKeys"), 86 + 58);
    assert_eq!(f.fake.calls("ListAliases"), 10);
    assert_eq!(f.fake.calls("DescribeKey"), 1000);
    assert_eq!(
        f.fake.calls("ListResourceTags"),
        2000,
        "two tags, one per page"
    );
}

#[test]
fn throttled_calls_are_retried_and_a_refused_one_stops_the_inventory() {
    let mut f = Fleet::new();
    let mut arns = Vec::new();
    for i in 0..50 {
        arns.push(f.key(
            A,
            &format!("t{i}"),
            "",
            10,
            "Enabled",
            Some(vec![material(&format!("t{i}"), "CURRENT")]),
        ));
    }
    f.fake
        .throttle
        .store(5, std::sync::atomic::Ordering::SeqCst);
    let kms = PacedFleet::new(&f.fake, fast(), A);
    let obs = inventory::observe(&kms, &[A.to_string()], 4, PageLimits::default()).unwrap();
    assert_eq!(obs.keys.len(), 50, "every key despite the throttling");
    assert_eq!(kms.throttled(), 5);
    assert_eq!(f.fake.calls("DescribeKey"), 55);
    // A key policy that refuses the inventory role: no report that leaves the key out.
    f.fake.deny = Some(arns[17].clone());
    let kms = PacedFleet::new(&f.fake, fast(), A);
    let e = inventory::observe(&kms, &[A.to_string()], 4, PageLimits::default()).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("AccessDeniedException"));
    assert_contains(
        &byok::inventory::failure_message(&e),
        "`byok policy --inventory`",
    );
}

#[test]
fn every_format_parses() {
    let (f, _) = status_fleet();
    let ledger = f.ledger();
    let (r, _) = judged(&f, Some(&ledger), PageLimits::default());
    let inv = inventory_of(&r, Some(&ledger.transcripts));

    // JSON: the documented schema, one entry per key.
    let text = render::render(&inv, Format::Json, false);
    assert_matches_schema(&text);
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["schema"], "byok.inventory/1");
    assert_eq!(json["summary"]["exit_code"], 11);
    assert_eq!(json["keys"].as_array().unwrap().len(), r.len());
    for k in json["keys"].as_array().unwrap() {
        for member in [
            "region",
            "key_id",
            "arn",
            "aliases",
            "state",
            "multi_region",
            "current_key_material_id",
            "materials",
            "materials_source",
            "tags",
            "age_days",
            "age_basis",
            "days_to_expiry",
            "status",
            "reason",
            "flags",
        ] {
            assert!(k.get(member).is_some(), "{member} missing in {k}");
        }
        let s = k["status"].as_str().unwrap();
        assert!(Status::ALL.iter().any(|x| x.as_str() == s), "{s}");
    }
    let busy = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == "busy")
        .unwrap();
    assert_eq!(busy["materials"].as_array().unwrap().len(), 10);
    assert_eq!(busy["flags"][0]["flag"], "rotation-limit-near");
    assert_eq!(json["transcripts"][0]["verified"], true);

    // CSV: a real RFC 4180 reader, one record per key, the header's columns.
    let text = render::render(&inv, Format::Csv, false);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header[0], "region");
    let status_col = header.iter().position(|h| h == "status").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), r.len());
    for (row, k) in rows.iter().zip(&r) {
        assert_eq!(row.len(), header.len());
        assert_eq!(&row[status_col], k.status.as_str());
    }

    // Prometheus: prometheus_client's parser (tests/tools/parse_prometheus.py).
    let families = parse_prometheus(&render::render(&inv, Format::Prometheus, false));
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let status = family("byok_key_status");
    assert_eq!(status["type"], "gauge");
    let ones: Vec<&Value> = status["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["value"] == 1.0)
        .collect();
    assert_eq!(ones.len(), r.len(), "one status per key");
    let age = family("byok_key_material_age_days");
    let old = age["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["labels"]["alias"] == "alias/old-prod")
        .unwrap();
    assert_eq!(old["value"].as_f64().map(f64::round), Some(400.0));
    let expiry = family("byok_key_material_expiry_days");
    assert!(
        expiry["samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["labels"]["alias"] == "alias/exp-dev")
    );
    let totals = family("byok_inventory_keys");
    let total: f64 = totals["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert_eq!(total as usize, r.len());

    // Config evaluations: what PutEvaluations takes.
    let evals: Value =
        serde_json::from_str(&render::render(&inv, Format::ConfigEvaluations, false)).unwrap();
    let evals = evals.as_array().unwrap();
    assert_eq!(
        evals.len(),
        r.len() - 1,
        "the gone key has no Config resource"
    );
    for e in evals {
        let obj = e.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "Annotation",
                "ComplianceResourceId",
                "ComplianceResourceType",
                "ComplianceType",
                "OrderingTimestamp"
            ]
        );
        assert_eq!(e["ComplianceResourceType"], "AWS::KMS::Key");
        assert!(matches!(
            e["ComplianceType"].as_str(),
            Some("COMPLIANT" | "NON_COMPLIANT")
        ));
        let note = e["Annotation"].as_str().unwrap();
        assert!(!note.is_empty() && note.chars().count() <= 256, "{note}");
        assert!(byok::rfc3339::parse(e["OrderingTimestamp"].as_str().unwrap()).is_some());
    }
    let of = |id: &str| {
        evals
            .iter()
            .find(|e| e["ComplianceResourceId"] == id)
            .unwrap()["ComplianceType"]
            .clone()
    };
    assert_eq!(of("fresh"), "COMPLIANT");
    assert_eq!(of("due"), "COMPLIANT");
    assert_eq!(of("old"), "NON_COMPLIANT");
    assert_eq!(of("rogue"), "NON_COMPLIANT");
    assert_eq!(of("misc"), "NON_COMPLIANT");

    // The table: no colour unless asked, colour when asked.
    let plain = render::render(&inv, Format::Table, false);
    assert!(!plain.contains('\u{1b}'));
    assert_contains(&plain, "rotation-overdue");
    assert!(render::render(&inv, Format::Table, true).contains("\u{1b}["));
}

/// Runs `tests/tools/TOOL` (with `args`, relative to the repository) under the LocalStack
/// venv's Python, `input` on its stdin.
fn python_tool(tool: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new(require_env("BYOK_LOCALSTACK_PYTHON"))
        .arg(root.join("tests/tools").join(tool))
        .args(args.iter().map(|a| root.join(a)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Checks a `--format json` document against docs/inventory.schema.json with the `jsonschema`
/// package (tests/tools/validate_json_schema.py).
fn assert_matches_schema(json: &str) {
    let out = python_tool(
        "validate_json_schema.py",
        &["docs/inventory.schema.json"],
        json,
    );
    assert!(
        out.status.success(),
        "the JSON does not match docs/inventory.schema.json:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Families parsed by prometheus_client, as tests/tools/parse_prometheus.py prints them.
fn parse_prometheus(text: &str) -> Vec<Value> {
    let out = python_tool("parse_prometheus.py", &[], text);
    assert!(
        out.status.success(),
        "prometheus_client refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

const EXAMPLE_AUDIT: &str = "f2db8f72b376193f07cbb03226c68465e36a165319dfbe161b7767440a99344b";

/// A rotation policy file for the LocalStack runs: `prefix`'s prod and dev keys, both audit
/// keys pinned, rates raised (LocalStack is not AWS: nothing to share the quota with).
fn policy_file(
    dir: &Path,
    name: &str,
    prefix: &str,
    audit: &str,
    expiry_warning_days: u32,
) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"version = 1
[defaults]
expiry_warning_days = {expiry_warning_days}
[[rule]]
name = "prod"
alias = "alias/{prefix}-*-prod"
max_age_days = 365
warn_days = 30
[[rule]]
name = "dev"
alias = "alias/{prefix}-*-dev"
max_age_days = 730
warn_days = 60
[rates]
ListKeys = 10000
ListAliases = 10000
DescribeKey = 10000
ListResourceTags = 10000
ListKeyRotations = 10000
[transcripts]
audit_key_sha256 = ["{audit}", "{EXAMPLE_AUDIT}"]
"#
        ),
    )
    .unwrap();
    path
}

/// Makes this test's LocalStack calls (its own, byok's and the ceremonies') those of a fresh
/// account: LocalStack takes a 12-digit access key id as the account id. An inventory lists
/// whole regions, and the suite shares one LocalStack between tests and between the SoftHSM
/// and kryoptic passes: in an account of its own, a region holds only this test's keys.
fn use_fresh_account() -> String {
    let account = format!(
        "{:06}{:06}",
        100_000 + rand_u32() % 900_000,
        rand_u32() % 1_000_000
    );
    // SAFETY: (edition 2024 `set_var`) nextest runs each test in its own process, and this
    // runs first, before the test starts any thread or reads the environment elsewhere.
    unsafe { std::env::set_var("AWS_ACCESS_KEY_ID", &account) };
    account
}

/// `byok inventory ARGS` with `BYOK_NOW` when given: exit code and stdout.
fn inventory_cli(args: &[&str], now: Option<OffsetDateTime>) -> (i32, String) {
    let mut cmd = crate::common::byok();
    cmd.arg("inventory").args(args);
    if let Some(t) = now {
        cmd.env("BYOK_NOW", byok::rfc3339::format(t).replace(".000Z", "Z"));
    }
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        matches!(code, 0 | 10 | 11),
        "byok inventory {args:?} failed ({code}): {}",
        stderr(&out)
    );
    (code, stdout(&out))
}

/// The status of each key of a JSON inventory, by alias (or ARN when it has none).
fn statuses(json: &str) -> BTreeMap<String, Value> {
    let v: Value = serde_json::from_str(json).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let name = k["aliases"][0]
                .as_str()
                .unwrap_or(k["arn"].as_str().unwrap());
            (name.to_string(), k.clone())
        })
        .collect()
}

/// One fleet ceremony through the binary: `services` × `environments` keys created in
/// `region` as `alias/<prefix>-<service>-<environment>` and imported; its transcript at `out`.
fn fleet_ceremony(
    hsm: &SoftHsm,
    region: &str,
    prefix: &str,
    services: &[&str],
    environments: &[&str],
    extra: &[(&str, &str)],
    out: &Path,
) {
    let region = format!("\"{region}\"");
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    let list = |xs: &[&str]| {
        format!(
            "[{}]",
            xs.iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let (services, environments) = (list(services), list(environments));
    let mut set = vec![
        ("kms.region", region.as_str()),
        ("targets.key", key.as_str()),
        ("targets.services", services.as_str()),
        ("targets.environments", environments.as_str()),
        ("import.wrapping_key_spec", "\"RSA_2048\""),
        (
            "kms.rates",
            "{ GetParametersForImport = 1000, ImportKeyMaterial = 1000, CreateKey = 1000, CreateAlias = 1000 }",
        ),
    ];
    set.extend_from_slice(extra);
    let name = format!("{prefix}.toml");
    let file = ceremony_pinned_as(hsm, "fleet-product.toml", &name, &set);
    let run = crate::common::run_ceremony(hsm, &file, out, &hsm.all_answers());
    assert!(run.status.success(), "{}\n{}", stdout(&run), stderr(&run));
}

#[test]
fn a_two_region_fleet_is_judged_at_shifted_clocks_against_localstack() {
    let account = use_fresh_account();
    let hsm = SoftHsm::new();
    let (ra, rb) = ("ap-southeast-2", "sa-east-1");
    let p = format!("i{:08x}", rand_u32());
    let dir = hsm.path("transcripts");
    std::fs::create_dir(&dir).unwrap();
    let services: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let services: Vec<&str> = services.iter().map(String::as_str).collect();
    // Region A: 24 keys, material that does not expire; region B: 6 prod keys whose material
    // expires in 20 days (LocalStack drops ValidTo: the transcript is where it is known).
    fleet_ceremony(
        &hsm,
        ra,
        &p,
        &services,
        &["dev", "prod", "sandbox"],
        &[],
        &dir.join("a.jsonl"),
    );
    let expiring = ["e0", "e1", "e2", "e3", "e4", "e5"];
    fleet_ceremony(
        &hsm,
        rb,
        &p,
        &expiring,
        &["prod"],
        &[
            ("import.expiration", "\"KEY_MATERIAL_EXPIRES\""),
            ("import.valid_for", "\"20d\""),
        ],
        &dir.join("b.jsonl"),
    );
    // Imported by a ceremony whose transcript is not in DIR: unexplained.
    fleet_ceremony(
        &hsm,
        ra,
        &p,
        &["rogue"],
        &["prod"],
        &[],
        &hsm.path("elsewhere.jsonl"),
    );
    // Created and never imported; and one imported key disabled.
    let kms_a = TestKms::in_region(ra);
    let (pending_arn, pending_alias) = kms_a.external_key();
    assert!(
        pending_arn.starts_with(&format!("arn:aws:kms:{ra}:{account}:key/")),
        "{pending_arn}"
    );
    let disabled = format!("alias/{p}-s0-dev");
    kms_a
        .rt
        .block_on(kms_a.client.disable_key().key_id(&disabled).send())
        .unwrap();
    assert_eq!(kms_a.state(&disabled), "Disabled");
    // A transcript whose keys are gone: the sample ceremony's, from another LocalStack.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/fleet-6-targets.jsonl"),
        dir.join("sample.jsonl"),
    )
    .unwrap();
    let policy = policy_file(hsm.dir.path(), "policy.toml", &p, &hsm.audit_sha256, 30);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--region",
            ra,
            "--region",
            rb,
            "--format",
            "json",
            "--transcripts",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(dir.display().to_string());
        a.push("--policy".into());
        a.push(policy.display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&str], now: Option<OffsetDateTime>| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        inventory_cli(&a, now)
    };
    let real_now = OffsetDateTime::now_utc();

    // Now: prod and dev compliant, sandbox under no rule, B's material expiring.
    let (code, json) = run(&[], None);
    assert_eq!(code, 11, "the rogue key is unexplained");
    assert_matches_schema(&json);
    let keys = statuses(&json);
    let mine: Vec<&String> = keys
        .keys()
        .filter(|a| a.starts_with(&format!("alias/{p}-")))
        .collect();
    assert_eq!(mine.len(), 24 + 6 + 1, "{mine:?}");
    assert!(keys.len() >= 32, "the fleet is at least 32 keys");
    let status = |keys: &BTreeMap<String, Value>, alias: &str| {
        keys[alias]["status"].as_str().unwrap().to_string()
    };
    for s in &services {
        assert_eq!(status(&keys, &format!("alias/{p}-{s}-prod")), "compliant");
        assert_eq!(status(&keys, &format!("alias/{p}-{s}-dev")), "compliant");
        assert_eq!(
            status(&keys, &format!("alias/{p}-{s}-sandbox")),
            "no-policy"
        );
    }
    // B's keys: in region B, their material dated and its expiry known from the transcript.
    for s in &expiring {
        let k = &keys[&format!("alias/{p}-{s}-prod")];
        let k = if k["region"] == rb { k } else { panic!("{k}") };
        assert_eq!(k["status"], "expiring-soon", "{}", k["reason"]);
        let days = k["days_to_expiry"].as_f64().unwrap();
        assert!((19.0..=20.0).contains(&days), "{days}");
        assert_eq!(k["materials_source"], "transcripts");
        assert_eq!(k["materials"][0]["source"], "transcript");
        assert_eq!(
            k["materials"][0]["transcripts"][0]
                .as_str()
                .map(|t| t.starts_with("b.jsonl")),
            Some(true)
        );
        // The material matched is the one KMS says is current.
        let kms_b = TestKms::in_region(rb);
        assert_eq!(
            kms_b
                .current_material(k["arn"].as_str().unwrap())
                .as_deref(),
            k["current_key_material_id"].as_str()
        );
    }
    let off = &keys[&disabled];
    assert_eq!(
        (off["state"].as_str(), off["status"].as_str()),
        (Some("Disabled"), Some("compliant"))
    );
    assert_eq!(status(&keys, &pending_alias), "pending-import");
    assert_eq!(keys[&pending_alias]["arn"], pending_arn);
    let rogue = &keys[&format!("alias/{p}-rogue-prod")];
    assert_eq!(rogue["status"], "unexplained");
    assert_contains(
        rogue["reason"].as_str().unwrap(),
        "recorded by no verified transcript",
    );
    // The sample's keys are in us-east-1, which this run does not list: not reported here.
    assert!(keys.values().all(|k| k["state"] != "NotFound"));
    let v: Value = serde_json::from_str(&json).unwrap();
    let verified: Vec<bool> = v["transcripts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["verified"].as_bool().unwrap())
        .collect();
    assert_eq!(
        verified,
        [true, true, true],
        "a.jsonl, b.jsonl and the sample verify under the pins"
    );

    // 340 days on: prod rotations due within 30 days, B's material expired.
    let (code, json) = run(&[], Some(real_now + day(340)));
    assert_eq!(code, 11);
    let keys = statuses(&json);
    for s in &services[6..] {
        assert_eq!(
            status(&keys, &format!("alias/{p}-{s}-prod")),
            "rotation-due-soon"
        );
        assert_eq!(status(&keys, &format!("alias/{p}-{s}-dev")), "compliant");
    }
    for s in &expiring {
        assert_eq!(status(&keys, &format!("alias/{p}-{s}-prod")), "expired");
    }
    // 400 days on: prod overdue, dev not yet due.
    let (_, json) = run(&[], Some(real_now + day(400)));
    let keys = statuses(&json);
    assert_eq!(
        status(&keys, &format!("alias/{p}-s7-prod")),
        "rotation-overdue"
    );
    assert_eq!(status(&keys, &format!("alias/{p}-s7-dev")), "compliant");
    // 690 days on: dev due within its 60 days.
    let (_, json) = run(&[], Some(real_now + day(690)));
    assert_eq!(
        status(&statuses(&json), &format!("alias/{p}-s7-dev")),
        "rotation-due-soon"
    );

    // Exit codes of region B alone: 10 while its material expires within the window; 0 with
    // no expiry window (nothing else is due).
    let b_only = |policy: &Path| {
        let d = dir.display().to_string();
        let pol = policy.display().to_string();
        inventory_cli(
            &[
                "--region",
                rb,
                "--transcripts",
                &d,
                "--policy",
                &pol,
                "--format",
                "csv",
            ],
            None,
        )
    };
    let (code, csv_text) = b_only(&policy);
    assert_eq!(code, 10, "{csv_text}");
    let quiet = policy_file(hsm.dir.path(), "quiet.toml", &p, &hsm.audit_sha256, 0);
    let (code, csv_text) = b_only(&quiet);
    assert_eq!(code, 0, "{csv_text}");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 6);

    // Prometheus and Config evaluations of the whole fleet, through the binary.
    let pol = policy.display().to_string();
    let (_, prom) = inventory_cli(
        &[
            "--region",
            ra,
            "--region",
            rb,
            "--policy",
            &pol,
            "--format",
            "prometheus",
        ],
        None,
    );
    let families = parse_prometheus(&prom);
    assert!(families.iter().any(|f| f["name"] == "byok_key_status"));
    let (_, evals) = inventory_cli(
        &[
            "--region",
            ra,
            "--region",
            rb,
            "--policy",
            &pol,
            "--format",
            "config-evaluations",
        ],
        None,
    );
    let evals: Value = serde_json::from_str(&evals).unwrap();
    assert!(evals.as_array().unwrap().len() >= 32);

    // The sample transcript's keys, looked for in us-east-1: gone, so unexplained.
    let only_sample = hsm.path("sample-only");
    std::fs::create_dir(&only_sample).unwrap();
    std::fs::copy(dir.join("sample.jsonl"), only_sample.join("sample.jsonl")).unwrap();
    let d = only_sample.display().to_string();
    let (code, json) = inventory_cli(
        &[
            "--region",
            "us-east-1",
            "--transcripts",
            &d,
            "--policy",
            &pol,
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(code, 11);
    let v: Value = serde_json::from_str(&json).unwrap();
    let gone: Vec<&Value> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "NotFound")
        .collect();
    assert_eq!(gone.len(), 6, "the sample ceremony's six keys");
    for k in gone {
        assert_eq!(k["status"], "unexplained");
        assert_contains(k["reason"].as_str().unwrap(), "NotFoundException");
    }
}

#[test]
fn a_thousand_localstack_keys_are_listed_over_many_pages() {
    use_fresh_account();
    let region = "ca-central-1";
    let kms = TestKms::in_region(region);
    assert_eq!(kms_key_count(&kms), 0, "a fresh account");
    let mut arns = Vec::new();
    for i in 0..1000 {
        let out = kms
            .rt
            .block_on(
                kms.client
                    .create_key()
                    .origin(aws_sdk_kms::types::OriginType::External)
                    .send(),
            )
            .unwrap();
        let arn = out.key_metadata().unwrap().arn().unwrap().to_string();
        if i % 10 == 0 {
            kms.rt
                .block_on(
                    kms.client
                        .create_alias()
                        .alias_name(format!("alias/page-{i}"))
                        .target_key_id(&arn)
                        .send(),
                )
                .unwrap();
        }
        arns.push(arn);
    }
    let listed = kms_key_count(&kms);
    assert_eq!(listed, 1000);
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), "policy.toml", "none", &"00".repeat(32), 30);
    let pol = policy.display().to_string();
    let (code, json) = inventory_cli(
        &[
            "--region",
            region,
            "--policy",
            &pol,
            "--format",
            "json",
            "--list-keys-limit",
            "100",
            "--list-aliases-limit",
            "30",
        ],
        None,
    );
    assert_eq!(code, 10, "every key PendingImport");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["summary"]["listed"].as_u64(), Some(listed as u64));
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), listed, "every EXTERNAL key, each once");
    let ids: std::collections::BTreeSet<&str> =
        keys.iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), listed);
    for arn in &arns {
        assert!(
            ids.contains(arn.rsplit('/').next().unwrap()),
            "{arn} missing"
        );
    }
    // Aliases came through ListAliases' pages too.
    let aliased = keys
        .iter()
        .filter(|k| !k["aliases"].as_array().unwrap().is_empty())
        .count();
    assert!(aliased >= 100, "{aliased}");
}

/// ListKeys of the region, every page, straight from the SDK.
fn kms_key_count(kms: &TestKms) -> usize {
    let mut n = 0;
    let mut marker = None;
    loop {
        let page = kms
            .rt
            .block_on(kms.client.list_keys().limit(1000).set_marker(marker).send())
            .unwrap();
        n += page.keys().len();
        match page.next_marker().filter(|_| page.truncated()) {
            Some(m) => marker = Some(m.to_string()),
            None => return n,
        }
    }
}
