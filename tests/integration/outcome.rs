//! Outcomes the engine must never guess, driven in-process through a KMS double in front of
//! real LocalStack (the HSM is the real token under test): a failure on target 4 of 6, and an
//! ImportKeyMaterial whose answer is lost while KMS cannot say, or says no.
//!
//! Each test loads the PKCS#11 module in its own process (cargo-nextest).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use byok::ceremony::{self, Env, RunOptions};
use byok::hsm::{Pkcs11Custodians, Pkcs11Hsm, TokenSelector};
use byok::kms::{
    AwsKms, Expiration, ImportToken, ImportType, KeyInfo, KeyMaterialInfo, Kms, KmsError,
    KmsFailure,
};
use byok::prompt::{Answer, ScriptedPrompter};
use time::OffsetDateTime;

use crate::common::{
    SoftHsm, TestKms, assert_contains, ceremony_pinned, rand_u32, run_with_stdin, stderr, stdout,
};

/// What the double does to ImportKeyMaterial.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// KMS refuses the import of this ARN's target (400 IncorrectKeyMaterialException).
    RefuseTarget,
    /// The import reaches KMS, its answer is lost, and KMS cannot be asked afterwards.
    LoseAnswerAndKms,
    /// The import never reaches KMS, and its "answer" is a timeout.
    NeverSent,
}

struct Double {
    real: AwsKms,
    fault: Fault,
    target: String,
    imported: AtomicBool,
}

fn no_answer(operation: &'static str) -> KmsError {
    KmsError {
        operation,
        failure: KmsFailure::NoAnswer,
        code: None,
        status: None,
        message: "operation timeout (all attempts including retries) occurred after 3s".into(),
    }
}

impl Kms for Double {
    crate::common::forward_kms!(
        whereabouts,
        create_key,
        create_alias,
        update_alias,
        list_resource_tags,
        find_tagged_keys,
        get_parameters_for_import,
        encrypt,
        decrypt,
        rotate_key_on_demand
    );
    fn describe_key(&self, key: &str) -> Result<KeyInfo, KmsError> {
        if self.fault == Fault::LoseAnswerAndKms && self.imported.load(Ordering::SeqCst) {
            return Err(no_answer("DescribeKey"));
        }
        self.real.describe_key(key)
    }
    fn import_key_material(
        &self,
        key_arn: &str,
        token: &ImportToken,
        blob: &[u8],
        e: Expiration,
        t: ImportType,
        d: Option<&str>,
    ) -> Result<Option<String>, KmsError> {
        match self.fault {
            Fault::RefuseTarget if key_arn == self.target => Err(KmsError {
                operation: "ImportKeyMaterial",
                failure: KmsFailure::Service,
                code: Some("IncorrectKeyMaterialException".into()),
                status: Some(400),
                message: "injected on target 3".into(),
            }),
            Fault::LoseAnswerAndKms => {
                self.real
                    .import_key_material(key_arn, token, blob, e, t, d)?;
                self.imported.store(true, Ordering::SeqCst);
                Err(no_answer("ImportKeyMaterial"))
            }
            Fault::NeverSent => Err(no_answer("ImportKeyMaterial")),
            Fault::RefuseTarget => self.real.import_key_material(key_arn, token, blob, e, t, d),
        }
    }
    fn list_key_materials(&self, key_arn: &str) -> Result<Vec<KeyMaterialInfo>, KmsError> {
        if self.fault == Fault::LoseAnswerAndKms {
            return Err(no_answer("ListKeyRotations"));
        }
        self.real.list_key_materials(key_arn)
    }
}

/// Every answer of a 2-of-3 ceremony, for the scripted prompter.
fn answers(token: &SoftHsm) -> Vec<Answer> {
    let mut answers = vec![Answer::Secret("hsm-pin", token.pin.clone())];
    for (point, names) in [("plan", ["Alice", "Bob"]), ("import", ["Alice", "Carol"])] {
        for name in names {
            let (select, approve) = match point {
                "plan" => ("approver-plan", "approve-plan"),
                _ => ("approver-import", "approve-import"),
            };
            answers.push(Answer::Select(select, name.into()));
            answers.push(Answer::Confirm(approve, true));
            answers.push(Answer::Secret(
                "custodian-pin",
                token.custodian(name).pin.clone(),
            ));
        }
    }
    answers
}

/// A product ceremony with `services` x ["x"], created keys, kept copies.
fn file(token: &SoftHsm, services: &str) -> (PathBuf, String) {
    let prefix = format!("o{:08x}", rand_u32());
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    let keep = format!("\"{prefix}-kept-{{service}}\"");
    let file = ceremony_pinned(
        token,
        "fleet-product.toml",
        &[
            ("targets.key", key.as_str()),
            ("targets.services", services),
            ("targets.environments", "[\"x\"]"),
            ("hsm.keep_key_label", keep.as_str()),
        ],
    );
    (file, prefix)
}

/// Runs the ceremony in-process against `double(target 3's ARN)`; returns the error and the
/// records. The module is unloaded before returning.
fn run_in_process(
    token: &SoftHsm,
    file: &Path,
    transcript: &Path,
    fault: Fault,
    target: String,
    concurrency: usize,
) -> (byok::Error, Vec<serde_json::Value>) {
    token.use_in_process();
    let c = byok::spec::load(file, OffsetDateTime::now_utc()).unwrap();
    let hsm = Pkcs11Hsm::open_path(
        Path::new(&token.kind.module()),
        &TokenSelector::Label("byok-hsm".into()),
    )
    .unwrap();
    let double = Double {
        real: AwsKms::new("us-east-1").unwrap(),
        fault,
        target,
        imported: AtomicBool::new(false),
    };
    let mut prompter = ScriptedPrompter::new(answers(token));
    let custodians = Pkcs11Custodians::for_hsm(&hsm);
    let clock = OffsetDateTime::now_utc;
    let err = ceremony::run(
        &c,
        Env {
            hsm: &hsm,
            kms: &double,
            custodians: &custodians,
            prompter: &mut prompter,
            now: &clock,
        },
        transcript,
        &RunOptions {
            kms_concurrency: concurrency,
            resume: None,
        },
    )
    .unwrap_err();
    drop(custodians);
    drop(hsm);
    let recs = std::fs::read_to_string(transcript)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (err, recs)
}

#[test]
fn a_failure_on_target_4_of_6_leaves_1_to_3_done_5_and_6_not_started_then_resume_does_the_rest() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (file, prefix) = file(&token, "[\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]");
    // Target 4 of 6 (index 3) exists already, so that its ARN is known to the double.
    let (arn_d, _) = kms.external_key();
    let alias_d = format!("alias/{prefix}-d-x");
    kms.rt
        .block_on(
            kms.client
                .create_alias()
                .alias_name(&alias_d)
                .target_key_id(&arn_d)
                .send(),
        )
        .unwrap();
    let t1 = token.path("failed.jsonl");
    let (err, recs) = run_in_process(&token, &file, &t1, Fault::RefuseTarget, arn_d.clone(), 1);
    assert_eq!(err.exit_code(), byok::error::exit::KMS);
    assert!(
        ceremony::chain(&err).contains("IncorrectKeyMaterialException: injected on target 3"),
        "{}",
        ceremony::chain(&err)
    );
    let last = recs.last().unwrap();
    assert_eq!(last["type"], "ceremony_aborted");
    assert_eq!(last["data"]["step"], "import");
    assert_eq!(last["data"]["target_index"], 3);
    let statuses: Vec<&str> = last["data"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "imported",
            "imported",
            "imported",
            "not_imported",
            "not_started",
            "not_started"
        ]
    );
    // KMS agrees.
    let states: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|s| kms.state(&format!("alias/{prefix}-{s}-x")))
        .collect();
    assert_eq!(
        states,
        [
            "Enabled",
            "Enabled",
            "Enabled",
            "PendingImport",
            "PendingImport",
            "PendingImport"
        ]
    );

    // --resume, through the binary, does the rest.
    let t2 = token.path("resumed.jsonl");
    let mut cmd = token.byok();
    cmd.arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(&t2)
        .arg("--resume")
        .arg(&t1);
    let out = run_with_stdin(cmd, &token.all_answers());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    for s in ["a", "b", "c", "d", "e", "f"] {
        let alias = format!("alias/{prefix}-{s}-x");
        assert_eq!(kms.state(&alias), "Enabled", "{alias}");
        assert!(kms.round_trip(&alias));
    }
    let text = std::fs::read_to_string(&t2).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let imported: Vec<u64> = recs
        .iter()
        .filter(|r| r["type"] == "key_imported")
        .map(|r| r["data"]["target_index"].as_u64().unwrap())
        .collect();
    let mut imported = imported;
    imported.sort_unstable();
    assert_eq!(imported, [3, 4, 5], "only the rest is imported");
    let done = recs
        .iter()
        .filter(|r| r["type"] == "target_reconciled" && r["data"]["status"] == "done")
        .count();
    assert_eq!(done, 3);
    let v = crate::common::byok()
        .arg("verify")
        .arg(&t2)
        .args(["--audit-key-sha256", &token.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert_contains(&stdout(&v), "resumes         failed.jsonl");
}

#[test]
fn an_import_kms_cannot_account_for_is_recorded_unknown_and_its_kept_copy_stays() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (file, prefix) = file(&token, "[\"a\"]");
    let t = token.path("unknown.jsonl");
    let (err, recs) = run_in_process(&token, &file, &t, Fault::LoseAnswerAndKms, String::new(), 4);
    assert_eq!(err.exit_code(), byok::error::exit::PRECONDITION);
    assert!(
        ceremony::chain(&err).contains("KMS could not say whether the material arrived"),
        "{}",
        ceremony::chain(&err)
    );
    let reconciled = recs
        .iter()
        .find(|r| r["type"] == "import_reconciled")
        .expect("import_reconciled");
    assert_eq!(reconciled["data"]["outcome"], "unknown");
    let evidence = reconciled["data"]["evidence"].to_string();
    assert!(evidence.contains("DescribeKey failed"), "{evidence}");
    assert_eq!(
        recs.last().unwrap()["data"]["targets"][0]["status"],
        "uncertain"
    );
    // KMS in fact holds the material: the kept copy must exist, sealed.
    assert_eq!(kms.state(&format!("alias/{prefix}-a-x")), "Enabled");
    let kept = token
        .kept_on_token(&format!("{prefix}-kept-a"))
        .expect("the kept copy survives an unknown outcome");
    assert!(kept.wrap_with_trusted && !kept.encrypt, "{kept:?}");
}

#[test]
fn an_import_kms_says_did_not_arrive_keeps_nothing() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (file, prefix) = file(&token, "[\"a\"]");
    let t = token.path("not.jsonl");
    let (err, recs) = run_in_process(&token, &file, &t, Fault::NeverSent, String::new(), 4);
    assert_eq!(err.exit_code(), byok::error::exit::PRECONDITION);
    assert!(
        ceremony::chain(&err).contains("KMS shows the key still PendingImport"),
        "{}",
        ceremony::chain(&err)
    );
    let reconciled = recs
        .iter()
        .find(|r| r["type"] == "import_reconciled")
        .expect("import_reconciled");
    assert_eq!(reconciled["data"]["outcome"], "not_imported");
    assert_eq!(reconciled["data"]["key_state"], "PendingImport");
    assert_eq!(kms.state(&format!("alias/{prefix}-a-x")), "PendingImport");
    assert!(token.kept_on_token(&format!("{prefix}-kept-a")).is_none());
}
