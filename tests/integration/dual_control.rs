//! Dual control through the `byok` binary: custodian tokens of the implementation under test
//! (SoftHSM, or kryoptic with `BYOK_TEST_TOKEN=kryoptic`), LocalStack KMS.

use crate::common::{
    SoftHsm, TestKms, TokenKind, assert_contains, byok, ceremony_for, records, run_ceremony as run,
    stderr, stdout,
};

fn types(recs: &[serde_json::Value]) -> Vec<&str> {
    recs.iter().map(|r| r["type"].as_str().unwrap()).collect()
}

struct Case {
    hsm: SoftHsm,
    kms: TestKms,
    arn: String,
    file: std::path::PathBuf,
    transcript: std::path::PathBuf,
}

fn case(extra: &[(&str, &str)]) -> Case {
    case_on(TokenKind::under_test(), extra)
}

fn case_on(kind: TokenKind, extra: &[(&str, &str)]) -> Case {
    let hsm = SoftHsm::of_kind(kind);
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, extra);
    let transcript = hsm.path("t.jsonl");
    Case {
        hsm,
        kms,
        arn,
        file,
        transcript,
    }
}

#[test]
fn a_single_import_approval_never_imports() {
    let c = case(&[]);
    let answers = format!("{}{}", c.hsm.through_plan(), c.hsm.approve(&["Alice"]));
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "standard input closed while waiting for approver-import",
    );
    let recs = records(&c.transcript);
    let t = types(&recs);
    assert!(!t.contains(&"key_imported"));
    assert_eq!(t.iter().filter(|t| **t == "approval").count(), 3);
    assert_eq!(recs.last().unwrap()["type"], "ceremony_aborted");
    assert_eq!(recs.last().unwrap()["data"]["step"], "confirm_import");
    assert_eq!(c.kms.state(&c.arn), "PendingImport");
}

#[test]
fn an_over_long_answer_is_one_refused_answer_never_split_into_more() {
    let c = case(&[]);
    // A 5000-byte custodian name. Split into 1024-byte answers, it would be refused as not one
    // of the options; it must be refused whole, as too long, at approver-plan.
    let answers = format!(
        "{}\n{}\n{}",
        c.hsm.pin,
        "Alice".repeat(1000),
        c.hsm.all_answers()
    );
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "answer to approver-plan is longer than 1024 bytes, the limit for one answer; the whole line was discarded",
    );
    let recs = records(&c.transcript);
    assert_eq!(recs.last().unwrap()["type"], "ceremony_aborted");
    assert_eq!(recs.last().unwrap()["data"]["step"], "approve_plan");
    assert_eq!(recs.last().unwrap()["data"]["error_class"], "input");
    assert_eq!(c.kms.state(&c.arn), "PendingImport");
}

#[test]
fn a_custodian_who_approved_is_not_offered_again() {
    let c = case(&[]);
    let answers = format!(
        "{}{}Alice\n",
        c.hsm.through_plan(),
        c.hsm.approve(&["Alice"])
    );
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_contains(
        &err,
        "byok? select approver-plan: Custodian approving the plan (2 of 2) [Bob|Carol]",
    );
    assert_contains(
        &err,
        "byok? select approver-import: Custodian approving the import (2 of 2) [Bob|Carol]",
    );
    assert_contains(
        &err,
        "answer to approver-import must be exactly one of the options shown in brackets",
    );
    assert_eq!(c.kms.state(&c.arn), "PendingImport");
    assert_eq!(
        records(&c.transcript).last().unwrap()["type"],
        "ceremony_aborted"
    );
}

#[test]
fn going_back_from_a_wrong_name_records_nothing() {
    let c = case(&[]);
    let answers = format!(
        "{}\nAlice\nback\n{}{}",
        c.hsm.pin,
        c.hsm.approve(&["Bob", "Carol"]),
        c.hsm.approve(&["Alice", "Carol"])
    );
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "back to the custodian list; nothing recorded for Alice",
    );
    // Alice is offered again after going back.
    assert_eq!(
        stderr(&out)
            .matches("Custodian approving the plan (1 of 2) [Alice|Bob|Carol]")
            .count(),
        2
    );
    let recs = records(&c.transcript);
    assert!(!types(&recs).contains(&"declined"));
    assert!(!types(&recs).contains(&"approval_failed"));
    let plan: Vec<&str> = recs
        .iter()
        .filter(|r| r["type"] == "approval" && r["data"]["point"] == "plan")
        .map(|r| r["data"]["custodian"].as_str().unwrap())
        .collect();
    assert_eq!(plan, ["Bob", "Carol"]);
    assert_eq!(c.kms.state(&c.arn), "Enabled");
}

/// In the line protocol a wrong custodian PIN is final for that custodian (the next answers
/// were written for later prompts): it is recorded, and another custodian steps in.
#[test]
fn a_custodian_whose_pin_fails_is_recorded_and_another_steps_in() {
    let c = case(&[]);
    let answers = format!(
        "{}\nAlice\nyes\n00000000\n{}{}",
        c.hsm.pin,
        c.hsm.approve(&["Bob", "Carol"]),
        c.hsm.approve(&["Alice", "Carol"])
    );
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("try again"), "{err}");
    assert_contains(
        &err,
        "Another custodian may step in (0 of 2 approved; Bob, Carol remain)",
    );
    assert_contains(
        &err,
        "byok? select approver-plan: Custodian approving the plan (1 of 2) [Bob|Carol]",
    );
    let recs = records(&c.transcript);
    let failed: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["type"] == "approval_failed")
        .collect();
    assert_eq!(failed.len(), 1);
    let f = &failed[0]["data"];
    assert_eq!(f["custodian"], "Alice");
    assert_eq!(f["point"], "plan");
    assert_eq!(f["action"], "approve");
    assert_eq!(f["pin_attempts"], 1);
    assert_eq!(f["quorum_reachable"], true);
    assert_eq!(f["remaining"], serde_json::json!(["Bob", "Carol"]));
    assert_contains(f["error"].as_str().unwrap(), "is incorrect");
    // Alice may still approve the import: a failure counts only at its own approval point.
    assert_eq!(c.kms.state(&c.arn), "Enabled");
    let v = byok()
        .arg("verify")
        .arg(&c.transcript)
        .arg("--audit-key-sha256")
        .arg(&c.hsm.audit_sha256)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert_contains(&stdout(&v), "approved        plan: Bob, Carol");
    crate::common::reference_verify(&c.transcript, &c.hsm.audit_sha256);
}

#[test]
fn when_failed_pins_leave_no_quorum_the_ceremony_stops_before_any_change() {
    let c = case(&[]);
    let bob = c.hsm.custodian("Bob");
    let answers = format!("{}\nAlice\nyes\n1\nBob\nyes\n2{}\n", c.hsm.pin, bob.pin);
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "the plan quorum can no longer be reached: 0 approved, 2 could not sign (Alice, Bob), 1 remain and 2 more approvals are needed",
    );
    let recs = records(&c.transcript);
    let failed: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["type"] == "approval_failed")
        .map(|r| &r["data"])
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["quorum_reachable"], true);
    assert_eq!(failed[1]["quorum_reachable"], false);
    assert_eq!(failed[1]["remaining"], serde_json::json!(["Carol"]));
    assert_eq!(recs.last().unwrap()["data"]["step"], "approve_plan");
    assert!(!types(&recs).contains(&"import_parameters"));
    assert_eq!(c.kms.state(&c.arn), "PendingImport");
}

/// kryoptic locks a user PIN after 10 failed logins (SoftHSM 2.6 never locks one).
#[test]
fn a_locked_custodian_pin_is_recorded_and_another_custodian_steps_in() {
    let c = case_on(TokenKind::Kryoptic, &[]);
    let alice = c.hsm.custodian("Alice");
    let lock = |pin: &str| {
        std::process::Command::new("pkcs11-tool")
            .args(["--module", &TokenKind::Kryoptic.module()])
            .args(["--token-label", &alice.token, "--login", "--pin", pin])
            .arg("--list-objects")
            .env("KRYOPTIC_CONF", &c.hsm.conf)
            .output()
            .expect("pkcs11-tool (opensc) must be installed")
    };
    for _ in 0..10 {
        assert!(!lock("00000000").status.success());
    }
    // Now even the right PIN is refused: the token says CKR_PIN_LOCKED.
    assert_contains(&stderr(&lock(&alice.pin)), "CKR_PIN_LOCKED");
    let answers = format!(
        "{}\nAlice\nyes\n{}\n{}{}",
        c.hsm.pin,
        alice.pin,
        c.hsm.approve(&["Bob", "Carol"]),
        c.hsm.approve(&["Bob", "Carol"])
    );
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "Alice could not sign: the PIN for token \"cust-alice\" is locked after too many wrong attempts; the token's security officer must unlock it. Recorded.",
    );
    let recs = records(&c.transcript);
    let failed = recs
        .iter()
        .find(|r| r["type"] == "approval_failed")
        .expect("approval_failed");
    assert_contains(failed["data"]["error"].as_str().unwrap(), "is locked");
    assert!(
        !recs
            .iter()
            .any(|r| r["type"] == "approval" && r["data"]["custodian"] == "Alice")
    );
    assert_eq!(c.kms.state(&c.arn), "Enabled");
}

#[test]
fn a_custodian_declining_aborts_with_a_decline_signed_on_their_token() {
    let c = case(&[]);
    let bob = c.hsm.custodian("Bob");
    let answers = format!("{}\nBob\nno\n{}\n", c.hsm.pin, bob.pin);
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let recs = records(&c.transcript);
    let n = recs.len();
    let d = &recs[n - 2]["data"];
    assert_eq!(recs[n - 2]["type"], "declined");
    assert_eq!(d["custodian"], "Bob");
    assert_eq!(d["point"], "plan");
    assert_eq!(d["signed_by"], "custodian_token");
    // The signature is by Bob's key as his token holds it (read back, not byok's record).
    let spki = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        d["public_key"].as_str().unwrap(),
    )
    .unwrap();
    let on_token = c.hsm.pair_on_token(&bob.token, &bob.pin, "byok-approval");
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&spki)),
        on_token.public_key_sha256
    );
    assert_eq!(recs[n - 1]["data"]["step"], "approve_plan");
    assert!(!types(&recs).contains(&"import_parameters"));
    let v = byok()
        .arg("verify")
        .arg(&c.transcript)
        .arg("--audit-key-sha256")
        .arg(&c.hsm.audit_sha256)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    crate::common::reference_verify(&c.transcript, &c.hsm.audit_sha256);
}

#[test]
fn a_token_whose_key_does_not_match_the_pin_is_refused() {
    let pinned = format!("\"{}\"", "ab".repeat(32));
    let c = case(&[("custodian[1].public_key_sha256", &pinned)]);
    let answers = format!("{}\n{}", c.hsm.pin, c.hsm.approve(&["Alice", "Bob"]));
    let out = run(&c.hsm, &c.file, &c.transcript, &answers);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "the approval key on Bob's token has SHA-256 {}, but the ceremony file pins {}",
            c.hsm.custodian("Bob").sha256,
            "ab".repeat(32)
        ),
    );
}

/// `lines` with `edit` applied to the data of record `i`, and record `i` and every later one
/// re-signed with the real audit key on the token and re-chained, as the holder of the HSM PIN
/// could: the forgery passes every record signature and the hash chain, so only the approval
/// rule can catch it.
fn resigned(c: &Case, lines: &[&str], i: usize, edit: impl Fn(&mut serde_json::Value)) -> String {
    use sha2::Digest as _;
    let hsm = c.hsm.open_logged_in();
    let signer = byok::audit::HsmSigner::open(&hsm, "byok-audit", &c.hsm.audit_sha256).unwrap();
    let mut out: Vec<String> = lines[..i].iter().map(|l| l.to_string()).collect();
    for (seq, line) in lines.iter().enumerate().skip(i) {
        let mut r: serde_json::Value = serde_json::from_str(line).unwrap();
        if seq == i {
            edit(&mut r["data"]);
        }
        let prev = hex::encode(sha2::Sha256::digest(out[seq - 1].as_bytes()));
        let kind: byok::transcript::record::RecordType =
            serde_json::from_value(r["type"].clone()).unwrap();
        out.push(
            byok::transcript::encode_record_version(
                &signer,
                r["v"].as_u64().unwrap(),
                seq as u64,
                &prev,
                r["time"].as_str().unwrap(),
                kind,
                r["data"].clone(),
            )
            .unwrap(),
        );
    }
    out.join("\n") + "\n"
}

#[test]
fn editing_an_approval_in_a_real_transcript_is_detected_on_its_line() {
    let c = case(&[]);
    let out = run(&c.hsm, &c.file, &c.transcript, &c.hsm.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&c.transcript).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("\"type\":\"approval\"") && l.contains("\"point\":\"import\""))
        .unwrap();
    // The real transcript re-signed unchanged verifies: the re-signing itself is sound.
    let path = c.hsm.path("resigned.jsonl");
    std::fs::write(&path, resigned(&c, &lines, i, |_| {})).unwrap();
    let v = byok()
        .arg("verify")
        .arg(&path)
        .args(["--audit-key-sha256", &c.hsm.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: [(&str, &str, Edit); 2] = [
        (
            "Alice's approval claimed for Carol",
            "approval: the approval key on Carol's token has SHA-256",
            Box::new(|d| {
                assert_eq!(d["custodian"], "Alice");
                d["custodian"] = "Carol".into();
            }),
        ),
        (
            "Alice's approval signature altered",
            "approval: Alice's signature does not verify under the pinned key",
            Box::new(|d| {
                let sig = d["signature"].as_str().unwrap().to_string();
                assert!(sig.starts_with("ME"), "{sig}");
                d["signature"] = sig.replacen("ME", "MF", 1).into();
            }),
        ),
    ];
    for (what, rule, edit) in edits {
        let path = c.hsm.path("edited.jsonl");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, resigned(&c, &lines, i, edit)).unwrap();
        let v = byok()
            .arg("verify")
            .arg(&path)
            .args(["--audit-key-sha256", &c.hsm.audit_sha256])
            .output()
            .unwrap();
        assert_eq!(v.status.code(), Some(1), "{what}: {}", stdout(&v));
        let said = stdout(&v);
        assert_contains(&said, &format!("INVALID at line {}:", i + 1));
        // Rejected by the approval rule, not by the record signature or the chain.
        assert!(
            !said.contains("bad signature: the record was not signed"),
            "{what}: {said}"
        );
        assert_contains(&said, rule);
    }
}
