//! Lifecycle rules driven in-process through a KMS double in front of real LocalStack (the HSM
//! is the real token under test), for what LocalStack cannot be made to do: import parameters
//! that expire while the custodians deliberate (LocalStack's are valid for 100 days), and a key
//! at the on-demand rotation limit (LocalStack does not serve ListKeyRotations).

use std::collections::HashSet;
use std::sync::Mutex;

use byok::ceremony::{self};
use byok::kms::{AwsKms, ImportParameters, KeyMaterialInfo, Kms, KmsError};
use byok::prompt::Answer;
use byok::wrap::{WrappingAlgorithm, WrappingKeySpec};
use time::OffsetDateTime;

use crate::common::{
    SoftHsm, TestKms, approve_answers, ceremony_for, reference_verify, run_in_process,
    run_with_stdin, stderr,
};

/// LocalStack with two changes: the first GetParametersForImport of each key answers a
/// ParametersValidTo 30 s ahead; ListKeyRotations answers `materials` materials when set.
struct Tweaked {
    real: AwsKms,
    short: Mutex<HashSet<String>>,
    materials: Option<usize>,
    /// The last listed material waits for rotation (an earlier, interrupted import).
    pending: bool,
    /// RotateKeyOnDemand is carried out but its answer is lost; the calls are counted.
    lose_rotate: bool,
    rotations: std::sync::atomic::AtomicUsize,
}

impl Kms for Tweaked {
    crate::common::forward_kms!(
        whereabouts,
        describe_key,
        create_key,
        create_alias,
        update_alias,
        list_resource_tags,
        find_tagged_keys,
        import_key_material,
        encrypt,
        decrypt
    );
    fn get_parameters_for_import(
        &self,
        key_arn: &str,
        a: WrappingAlgorithm,
        s: WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError> {
        let mut params = self.real.get_parameters_for_import(key_arn, a, s)?;
        if self.short.lock().unwrap().insert(key_arn.to_string()) {
            params.parameters_valid_to = OffsetDateTime::now_utc() + time::Duration::seconds(30);
        }
        Ok(params)
    }
    fn list_key_materials(&self, key_arn: &str) -> Result<Vec<KeyMaterialInfo>, KmsError> {
        match self.materials {
            Some(n) => Ok((0..n)
                .map(|i| KeyMaterialInfo {
                    key_material_id: format!("{i:064x}"),
                    import_state: Some("IMPORTED".into()),
                    key_material_state: Some(
                        match (i + 1 == n, self.pending) {
                            (true, true) => "PENDING_ROTATION",
                            (true, false) => "CURRENT",
                            _ => "NON_CURRENT",
                        }
                        .into(),
                    ),
                })
                .collect()),
            None => self.real.list_key_materials(key_arn),
        }
    }
    fn rotate_key_on_demand(&self, key_arn: &str) -> Result<(), KmsError> {
        self.rotations
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.real.rotate_key_on_demand(key_arn)?;
        if self.lose_rotate {
            return Err(KmsError {
                operation: "RotateKeyOnDemand",
                failure: byok::kms::KmsFailure::NoAnswer,
                code: None,
                status: None,
                message: "timed out after 30 s (test double)".into(),
            });
        }
        Ok(())
    }
}

/// A key whose first material byok imported (a real 2-of-3 ceremony), and a rotate ceremony
/// file for it. Returns the key ARN and the file.
fn imported_then_rotating(token: &SoftHsm, kms: &TestKms) -> (String, std::path::PathBuf) {
    let (arn, alias) = kms.external_key();
    let import = ceremony_for(token, "demo-softhsm.toml", &alias, &[]);
    let mut cmd = token.byok();
    cmd.arg("run")
        .arg(&import)
        .arg("--transcript")
        .arg(token.path("import.jsonl"));
    let out = run_with_stdin(cmd, &token.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    let file = ceremony_for(
        token,
        "demo-softhsm.toml",
        &alias,
        &[("ceremony.kind", "\"rotate\"")],
    );
    (arn, file)
}

fn of<'a>(recs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    recs.iter()
        .filter(|r| r["type"] == kind)
        .map(|r| &r["data"])
        .collect()
}

#[test]
fn parameters_that_expire_during_the_import_approval_are_fetched_again_and_approved_again() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&token, "demo-softhsm.toml", &alias, &[]);
    let t = token.path("t.jsonl");
    let double = Tweaked {
        real: AwsKms::new("us-east-1").unwrap(),
        short: Mutex::new(HashSet::new()),
        materials: None,
        pending: false,
        lose_rotate: false,
        rotations: Default::default(),
    };
    let mut answers = vec![Answer::Secret("hsm-pin", token.pin.clone())];
    answers.extend(approve_answers(&token, "plan", &["Alice", "Bob"]));
    answers.extend(approve_answers(&token, "import", &["Alice", "Carol"]));
    // The first import approval is of parameters that are about to expire: asked again.
    answers.extend(approve_answers(&token, "import", &["Bob", "Carol"]));
    let (result, said, recs) = run_in_process(&token, &file, &t, &double, answers);
    let outcome = result.unwrap_or_else(|e| panic!("{}", ceremony::chain(&e)));
    assert!(
        said.iter()
            .any(|s| s.contains("asks for the import approval again")),
        "{said:?}"
    );
    // One key, generated once, with two sets of parameters and two wraps.
    assert_eq!(of(&recs, "key_generated").len(), 1);
    let params = of(&recs, "import_parameters");
    let wraps = of(&recs, "key_wrapped");
    assert_eq!((params.len(), wraps.len()), (2, 2));
    assert_ne!(
        params[0]["import_token_sha256"],
        params[1]["import_token_sha256"]
    );
    // The confirmed statement is the second one, approved by the second pair.
    let confirmed = &of(&recs, "import_confirmed")[0];
    assert_eq!(
        confirmed["approved_by"],
        serde_json::json!(["Bob", "Carol"])
    );
    let entry = &confirmed["statement"]["targets"][0];
    assert_eq!(
        entry["import_token_sha256"],
        params[1]["import_token_sha256"]
    );
    assert_eq!(entry["blob_sha256"], wraps[1]["blob_sha256"]);
    assert_eq!(
        outcome.approvals,
        vec![
            (
                "plan".to_string(),
                vec!["Alice".to_string(), "Bob".to_string()]
            ),
            (
                "import".to_string(),
                vec!["Bob".to_string(), "Carol".to_string()]
            ),
        ]
    );
    // KMS holds the material and uses it.
    assert_eq!(kms.state(&arn), "Enabled");
    assert!(kms.round_trip(&arn));
    let v = token
        .byok()
        .arg("verify")
        .arg(&t)
        .args(["--audit-key-sha256", &token.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    reference_verify(&t, &token.audit_sha256);
}

#[test]
fn a_key_at_the_rotation_limit_is_refused_before_any_approval() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, file) = imported_then_rotating(&token, &kms);
    let before = kms.current_material(&arn);
    // A rotation, with KMS listing 11 materials: 10 rotations so far.
    let double = Tweaked {
        real: AwsKms::new("us-east-1").unwrap(),
        short: Mutex::new(HashSet::new()),
        materials: Some(11),
        pending: false,
        lose_rotate: false,
        rotations: Default::default(),
    };
    let t = token.path("rotate.jsonl");
    let answers = vec![Answer::Secret("hsm-pin", token.pin.clone())];
    let (result, _, recs) = run_in_process(&token, &file, &t, &double, answers);
    let err = result.expect_err("refused");
    assert_eq!(err.exit_code(), byok::error::exit::PRECONDITION);
    assert!(
        ceremony::chain(&err)
            .contains("has been rotated on demand 10 times, at byok's limit of 10"),
        "{}",
        ceremony::chain(&err)
    );
    let pre = &of(&recs, "rotation_preflight")[0];
    assert_eq!(pre["key_materials"], 11);
    assert_eq!(pre["rotations_so_far"], 10);
    assert_eq!(pre["rotation_limit"], 10);
    assert!(of(&recs, "approval").is_empty());
    assert_eq!(recs.last().unwrap()["data"]["step"], "kms_preflight");
    // Nothing changed in KMS.
    assert_eq!(kms.current_material(&arn), before);
}

#[test]
fn a_key_with_material_already_waiting_for_rotation_is_refused_before_any_approval() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, file) = imported_then_rotating(&token, &kms);
    let double = Tweaked {
        real: AwsKms::new("us-east-1").unwrap(),
        short: Mutex::new(HashSet::new()),
        materials: Some(2),
        pending: true,
        lose_rotate: false,
        rotations: Default::default(),
    };
    let t = token.path("rotate.jsonl");
    let answers = vec![Answer::Secret("hsm-pin", token.pin.clone())];
    let (result, _, recs) = run_in_process(&token, &file, &t, &double, answers);
    let err = result.expect_err("refused");
    assert_eq!(err.exit_code(), byok::error::exit::PRECONDITION);
    assert!(
        ceremony::chain(&err).contains("already holds material waiting for rotation"),
        "{}",
        ceremony::chain(&err)
    );
    // One settled material: no rotation counted for the pending one.
    let pre = &of(&recs, "rotation_preflight")[0];
    assert_eq!(pre["rotations_so_far"], 0);
    assert!(of(&recs, "approval").is_empty());
    assert_eq!(kms.state(&arn), "Enabled");
}

#[test]
fn a_lost_rotate_key_on_demand_answer_is_asked_of_kms_never_resent() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, file) = imported_then_rotating(&token, &kms);
    let before = kms.current_material(&arn);
    let double = Tweaked {
        real: AwsKms::new("us-east-1").unwrap(),
        // Parameters of the usual validity: the key counts as already shortened once.
        short: Mutex::new(HashSet::from([arn.clone()])),
        materials: None,
        pending: false,
        lose_rotate: true,
        rotations: Default::default(),
    };
    let mut answers = vec![Answer::Secret("hsm-pin", token.pin.clone())];
    answers.extend(approve_answers(&token, "plan", &["Alice", "Bob"]));
    answers.extend(approve_answers(&token, "import", &["Alice", "Carol"]));
    answers.extend(approve_answers(&token, "rotate", &["Bob", "Carol"]));
    let t = token.path("rotate.jsonl");
    let (result, _, recs) = run_in_process(&token, &file, &t, &double, answers);
    result.unwrap_or_else(|e| panic!("{}", ceremony::chain(&e)));
    assert_eq!(
        double.rotations.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "RotateKeyOnDemand is sent once, never again"
    );
    let rotated = of(&recs, "key_rotated");
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0]["outcome"], "reconciled");
    let evidence = rotated[0]["evidence"].to_string();
    assert!(
        evidence.contains("RotateKeyOnDemand got no answer"),
        "{evidence}"
    );
    assert!(evidence.contains("is the imported material"), "{evidence}");
    // What KMS says: the imported material is current, and it is not the one before.
    let imported = of(&recs, "key_imported")[0]["key_material_id"].clone();
    let now = kms.current_material(&arn);
    assert_ne!(now, before);
    assert_eq!(now.as_deref(), imported.as_str());
    assert_eq!(
        of(&recs, "rotation_verified")[0]["problems"],
        serde_json::json!([])
    );
    reference_verify(&t, &token.audit_sha256);
}
