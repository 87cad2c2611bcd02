//! Transcript contract: round trip through the writer and verifier, and tamper detection
//! (each edit detected, the right line named). Uses a software audit key so that these tests
//! pin the format itself; the ceremony tests verify transcripts signed by SoftHSM.
//!
//! The structural tests and `dual` build format-version-1 transcripts (byok 0.1), which
//! `byok verify` must keep verifying; `v2` builds version-2 transcripts from the typed payloads
//! and re-signs every forgery, so each test reaches the rule it names.

use byok::transcript::verify::{Problem, VerifyOptions, verify_bytes};
use byok::transcript::{
    RecordSigner, RecordType, SignError, TranscriptWriter, encode_record_version,
};
use serde_json::json;

/// An ECDSA P-256 key in memory.
pub struct SoftSigner {
    key: ring::signature::EcdsaKeyPair,
    spki: Vec<u8>,
}

impl SoftSigner {
    pub fn new() -> SoftSigner {
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let point = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
        let spki = byok::ecdsa::spki_from_ec_point(&point).unwrap();
        SoftSigner { key, spki }
    }

    pub fn fingerprint(&self) -> String {
        byok::ecdsa::fingerprint(&self.spki)
    }
}

impl RecordSigner for SoftSigner {
    fn public_key_spki_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = ring::rand::SystemRandom::new();
        Ok(self.key.sign(&rng, message).unwrap().as_ref().to_vec())
    }
}

fn ceremony_file(fp: &str) -> String {
    format!("[ceremony]\nid = \"t\"\noperator = \"A\"\n[hsm]\naudit_key_sha256 = \"{fp}\"\n")
}

/// Record 0's data for `signer`.
pub fn started(signer: &SoftSigner) -> serde_json::Value {
    use base64::Engine as _;
    use sha2::Digest as _;
    let file = ceremony_file(&signer.fingerprint());
    json!({
        "ceremony_id": "t",
        "ceremony_file": file,
        "ceremony_file_sha256": hex::encode(sha2::Sha256::digest(file.as_bytes())),
        "audit_public_key": base64::engine::general_purpose::STANDARD.encode(signer.public_key_spki_der()),
    })
}

/// A finished transcript of `middle + 2` records as lines (without newlines).
pub fn build(signer: &SoftSigner, middle: usize) -> Vec<String> {
    use sha2::Digest as _;
    let mut lines = Vec::new();
    let mut prev = "0".repeat(64);
    let mut push = |kind, data, lines: &mut Vec<String>| {
        let seq = lines.len() as u64;
        let line = encode_record_version(
            signer,
            1,
            seq,
            &prev,
            "2026-11-23T12:00:00.000Z",
            kind,
            data,
        )
        .unwrap();
        prev = hex::encode(sha2::Sha256::digest(line.as_bytes()));
        lines.push(line);
    };
    push(RecordType::CeremonyStarted, started(signer), &mut lines);
    for i in 0..middle {
        push(
            RecordType::HsmOpened,
            json!({"i": i, "text": "ünïcødé \u{1}"}),
            &mut lines,
        );
    }
    push(
        RecordType::CeremonyFinished,
        json!({"kcv": "abcdef"}),
        &mut lines,
    );
    lines
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

fn fails_at(bytes: &[u8], opts: &VerifyOptions) -> (usize, Problem) {
    let e = verify_bytes(bytes, opts).expect_err("tampered transcript must fail");
    (e.line, e.problem)
}

#[test]
fn writer_and_verifier_round_trip() {
    use byok::transcript::payload as p;
    let signer = SoftSigner::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut w = TranscriptWriter::create(&path).unwrap();
    // Nothing exists before the first record is written.
    assert!(!path.exists());
    let started = p::CeremonyStarted {
        kind: Some("import".into()),
        run_id: Some("0123456789abcdef0123456789abcdef".into()),
        ..v2::started(&signer, &v2::rehearsal_file(&signer))
    };
    w.append(&signer, &started).unwrap();
    assert!(path.exists());
    // The writer writes the current format (4), whose hsm_opened records the audit key usage.
    let opened = byok::transcript::payload::HsmOpened {
        audit_key_sign_only: Some(true),
        audit_key_usage: Some("private CKA_SIGN=true; public CKA_VERIFY=true".into()),
        ..v2::hsm_opened()
    };
    w.append(&signer, &opened).unwrap();
    let last = w
        .append(
            &signer,
            &p::CeremonyAborted {
                step: "open_hsm".into(),
                target_index: None,
                error_class: "hsm".into(),
                message: "m".into(),
                destroyed_handles: vec![],
                kept_keys: vec![],
                cleanup_errors: vec![],
                targets: vec![p::TargetOutcome {
                    index: 0,
                    key: "alias/x".into(),
                    key_arn: None,
                    status: "not_started".into(),
                    key_material_id: None,
                    kcv: None,
                }],
            },
        )
        .unwrap();
    // Closed: nothing more may be appended.
    assert!(w.append(&signer, &v2::hsm_opened()).is_err());
    let opts = VerifyOptions {
        audit_key_sha256: Some(signer.fingerprint()),
        ..VerifyOptions::default()
    };
    let report = byok::transcript::verify::verify_file(&path, &opts)
        .unwrap()
        .unwrap();
    assert_eq!(report.version, byok::transcript::record::FORMAT_VERSION);
    assert_eq!(report.records, 3);
    assert_eq!(report.ceremony_id, "t");
    assert_eq!(report.outcome, RecordType::CeremonyAborted);
    assert_eq!(report.last_line_sha256, last.line_sha256);
    assert_eq!(report.audit_key_sha256, signer.fingerprint());
    assert_eq!(report.targets[0].status, "not_started");
    // Never overwritten.
    let err = TranscriptWriter::create(&path).err().unwrap();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(w.last_line_sha256() == last.line_sha256);
}

#[test]
fn lines_are_canonical_and_carry_the_documented_members() {
    let signer = SoftSigner::new();
    let lines = build(&signer, 1);
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["data", "prev", "seq", "sig", "time", "type", "v"]);
    assert_eq!(byok::jcs::to_string(&v).unwrap(), lines[1]);
    assert!(lines[1].starts_with("{\"data\":{\"i\":0,\"text\":\"ünïcødé \\u0001\"},\"prev\":\""));
    assert_eq!(v["v"], 1);
    assert_eq!(v["seq"], 1);
}

#[test]
fn editing_one_byte_of_data_is_detected_on_that_line() {
    let signer = SoftSigner::new();
    let mut lines = build(&signer, 3);
    lines[2] = lines[2].replacen("\"i\":1", "\"i\":7", 1);
    assert_eq!(
        fails_at(&join(&lines), &VerifyOptions::default()),
        (3, Problem::BadSignature)
    );
}

#[test]
fn editing_a_signature_is_detected_on_that_line() {
    let signer = SoftSigner::new();
    let mut lines = build(&signer, 3);
    let at = lines[1].find("\"sig\":\"").unwrap() + 20;
    let mut bytes = lines[1].clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    lines[1] = String::from_utf8(bytes).unwrap();
    assert_eq!(
        fails_at(&join(&lines), &VerifyOptions::default()),
        (2, Problem::BadSignature)
    );
}

#[test]
fn dropping_a_line_is_detected_where_it_was() {
    let signer = SoftSigner::new();
    let mut lines = build(&signer, 3);
    lines.remove(2);
    assert_eq!(
        fails_at(&join(&lines), &VerifyOptions::default()),
        (
            3,
            Problem::WrongSeq {
                expected: 2,
                found: "3".into()
            }
        )
    );
}

#[test]
fn swapping_two_lines_is_detected() {
    let signer = SoftSigner::new();
    let mut lines = build(&signer, 3);
    lines.swap(1, 2);
    assert_eq!(
        fails_at(&join(&lines), &VerifyOptions::default()),
        (
            2,
            Problem::WrongSeq {
                expected: 1,
                found: "2".into()
            }
        )
    );
}

#[test]
fn renumbered_lines_break_the_chain() {
    // Dropping a line and re-signing cannot be done without the key; renumbering alone
    // breaks the signature, and a consistent seq with a wrong prev breaks the chain.
    let signer = SoftSigner::new();
    let a = build(&signer, 3);
    let b = build(&signer, 3);
    let mixed = vec![
        a[0].clone(),
        a[1].clone(),
        b[2].clone(),
        a[3].clone(),
        a[4].clone(),
    ];
    assert_eq!(
        fails_at(&join(&mixed), &VerifyOptions::default()),
        (3, Problem::BrokenChain)
    );
}

#[test]
fn truncation_is_detected() {
    let signer = SoftSigner::new();
    let lines = build(&signer, 3);
    // The last record dropped: the transcript no longer ends with a terminal record.
    assert_eq!(
        fails_at(&join(&lines[..4]), &VerifyOptions::default()),
        (
            4,
            Problem::TruncatedEnd {
                last: "hsm_opened".into()
            }
        )
    );
    // Cut in the middle of the last line.
    let bytes = join(&lines);
    assert_eq!(
        fails_at(&bytes[..bytes.len() - 10], &VerifyOptions::default()),
        (5, Problem::TruncatedLine)
    );
    assert_eq!(
        fails_at(b"", &VerifyOptions::default()),
        (0, Problem::Empty)
    );
}

#[test]
fn replacing_the_audit_key_is_detected() {
    let real = SoftSigner::new();
    let forger = SoftSigner::new();
    // A forger re-signs everything with their key but cannot change the pin in the ceremony
    // file without also changing record 0's hash of it: keep the real ceremony file.
    let mut lines = build(&forger, 2);
    let mut v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let real_started = started(&real);
    v["data"]["ceremony_file"] = real_started["ceremony_file"].clone();
    v["data"]["ceremony_file_sha256"] = real_started["ceremony_file_sha256"].clone();
    v.as_object_mut().unwrap().remove("sig");
    let data = v["data"].clone();
    lines[0] = encode_record_version(
        &forger,
        1,
        0,
        &"0".repeat(64),
        "2026-11-23T12:00:00.000Z",
        RecordType::CeremonyStarted,
        data,
    )
    .unwrap();
    let (line, problem) = fails_at(&join(&lines), &VerifyOptions::default());
    assert_eq!(line, 1);
    assert_eq!(
        problem,
        Problem::WrongAuditKey {
            expected: real.fingerprint(),
            found: forger.fingerprint()
        }
    );
    // A fully self-consistent forgery is caught by the auditor's out-of-band pin.
    let forged = build(&forger, 2);
    let opts = VerifyOptions {
        audit_key_sha256: Some(real.fingerprint()),
        ..VerifyOptions::default()
    };
    assert_eq!(
        fails_at(&join(&forged), &opts),
        (
            1,
            Problem::WrongAuditKey {
                expected: real.fingerprint(),
                found: forger.fingerprint()
            }
        )
    );
    assert!(verify_bytes(&join(&forged), &VerifyOptions::default()).is_ok());
}

#[test]
fn every_single_byte_edit_is_detected() {
    let signer = SoftSigner::new();
    let bytes = join(&build(&signer, 2));
    let opts = VerifyOptions {
        audit_key_sha256: Some(signer.fingerprint()),
        ..VerifyOptions::default()
    };
    assert!(verify_bytes(&bytes, &opts).is_ok());
    for i in (0..bytes.len()).step_by(7) {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        assert!(
            verify_bytes(&t, &opts).is_err(),
            "edit at byte {i} went undetected"
        );
    }
}

#[test]
fn records_after_the_end_and_a_second_start_are_refused() {
    let signer = SoftSigner::new();
    let lines = build(&signer, 1);
    let mut more = lines.clone();
    use sha2::Digest as _;
    let prev = hex::encode(sha2::Sha256::digest(lines[2].as_bytes()));
    more.push(
        encode_record_version(
            &signer,
            1,
            3,
            &prev,
            "2026-11-23T12:00:00.000Z",
            RecordType::CeremonyFinished,
            json!({}),
        )
        .unwrap(),
    );
    assert_eq!(
        fails_at(&join(&more), &VerifyOptions::default()),
        (
            4,
            Problem::Misplaced {
                kind: "ceremony_finished".into(),
                why: "nothing may follow ceremony_finished or ceremony_aborted"
            }
        )
    );
}

#[test]
fn verify_cli_names_the_bad_line_and_exits_1() {
    let signer = SoftSigner::new();
    let mut lines = build(&signer, 2);
    lines.remove(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    std::fs::write(&path, join(&lines)).unwrap();
    let out = crate::common::byok()
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        crate::common::stdout(&out).trim(),
        format!(
            "{}: INVALID at line 2: wrong seq: expected 1, found 2",
            path.display()
        )
    );
}

/// Dual-control transcripts built with software keys: the audit key and three custodians.
mod dual {
    use super::*;
    use base64::Engine as _;
    use byok::quorum;
    use sha2::Digest as _;

    pub struct Keys {
        audit: SoftSigner,
        custodians: Vec<(&'static str, SoftSigner)>,
    }

    fn keys() -> Keys {
        Keys {
            audit: SoftSigner::new(),
            custodians: vec![
                ("A", SoftSigner::new()),
                ("B", SoftSigner::new()),
                ("C", SoftSigner::new()),
            ],
        }
    }

    fn file(k: &Keys) -> String {
        let mut f = format!(
            "[ceremony]\nid = \"t\"\noperator = \"O\"\n[hsm]\naudit_key_sha256 = \"{}\"\n[kms]\nkey = \"alias/x\"\n[dual_control]\nquorum = 2\n",
            k.audit.fingerprint()
        );
        for (name, s) in &k.custodians {
            f.push_str(&format!(
                "[[custodian]]\nname = \"{name}\"\npublic_key_sha256 = \"{}\"\n",
                s.fingerprint()
            ));
        }
        f
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// An approval record's data: `by` signs as `name`.
    fn approval(name: &str, by: &SoftSigner, statement: &serde_json::Value) -> serde_json::Value {
        let signed = quorum::signed_bytes(statement).unwrap();
        json!({
            "point": statement["point"],
            "custodian": name,
            "public_key": b64(by.public_key_spki_der()),
            "public_key_sha256": by.fingerprint(),
            "statement": statement,
            "statement_sha256": quorum::statement_sha256(statement).unwrap(),
            "signature": b64(&by.sign(&signed).unwrap()),
        })
    }

    fn facts() -> quorum::v1::ImportFacts {
        quorum::v1::ImportFacts {
            ceremony_id: "t".into(),
            key_arn: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            wrapping_algorithm: "RSAES_OAEP_SHA_1".into(),
            wrapping_key_spec: "RSA_4096".into(),
            wrapping_public_key_sha256: "aa".repeat(32),
            blob_sha256: "bb".repeat(32),
            kcv: "650927".into(),
            expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
            valid_to: None,
        }
    }

    /// The records of a 2-of-3 ceremony; `edit` may change the list before signing.
    fn records(
        k: &Keys,
        edit: impl FnOnce(&mut Vec<(RecordType, serde_json::Value)>),
    ) -> Vec<(RecordType, serde_json::Value)> {
        let file = file(k);
        let file_sha = hex::encode(sha2::Sha256::digest(file.as_bytes()));
        let plan = quorum::v1::plan_statement("t", &file_sha, &k.audit.fingerprint(), "alias/x");
        let f = facts();
        let import = quorum::v1::import_statement(&f);
        let (a, b) = (&k.custodians[0].1, &k.custodians[1].1);
        let mut recs = vec![
            (
                RecordType::CeremonyStarted,
                json!({
                    "ceremony_id": "t", "ceremony_file": file, "ceremony_file_sha256": file_sha,
                    "audit_public_key": b64(k.audit.public_key_spki_der()),
                    "audit_key_sha256": k.audit.fingerprint(),
                }),
            ),
            (RecordType::Approval, approval("A", a, &plan)),
            (RecordType::Approval, approval("B", b, &plan)),
            (RecordType::KmsPreflight, json!({"key_arn": f.key_arn})),
            (
                RecordType::ImportParameters,
                json!({
                    "wrapping_algorithm": f.wrapping_algorithm, "wrapping_key_spec": f.wrapping_key_spec,
                    "public_key_sha256": f.wrapping_public_key_sha256,
                }),
            ),
            (RecordType::KeyGenerated, json!({"kcv": f.kcv})),
            (
                RecordType::KeyWrapped,
                json!({"blob_sha256": f.blob_sha256}),
            ),
            (RecordType::Approval, approval("A", a, &import)),
            (RecordType::Approval, approval("B", b, &import)),
            (
                RecordType::ImportConfirmed,
                json!({"approved_by": ["A", "B"]}),
            ),
            (
                RecordType::KeyImported,
                json!({
                    "key_arn": f.key_arn, "expiration_model": f.expiration_model, "valid_to": null,
                }),
            ),
            (RecordType::CeremonyFinished, json!({"kcv": f.kcv})),
        ];
        edit(&mut recs);
        recs
    }

    fn sign_all(k: &Keys, recs: Vec<(RecordType, serde_json::Value)>) -> Vec<u8> {
        let mut lines = Vec::new();
        let mut prev = "0".repeat(64);
        for (seq, (kind, data)) in recs.into_iter().enumerate() {
            let line = encode_record_version(
                &k.audit,
                1,
                seq as u64,
                &prev,
                "2026-11-23T12:00:00.000Z",
                kind,
                data,
            )
            .unwrap();
            prev = hex::encode(sha2::Sha256::digest(line.as_bytes()));
            lines.push(line);
        }
        join(&lines)
    }

    fn verify(
        k: &Keys,
        edit: impl FnOnce(&mut Vec<(RecordType, serde_json::Value)>),
    ) -> Result<byok::transcript::verify::Report, (usize, Problem)> {
        let bytes = sign_all(k, records(k, edit));
        verify_bytes(
            &bytes,
            &VerifyOptions {
                audit_key_sha256: Some(k.audit.fingerprint()),
                ..VerifyOptions::default()
            },
        )
        .map_err(|e| (e.line, e.problem))
    }

    #[test]
    fn a_two_of_three_transcript_verifies_and_reports_who_approved_what() {
        let k = keys();
        let report = verify(&k, |_| {}).unwrap();
        assert_eq!(report.quorum, Some(2));
        assert_eq!(
            report.approvals,
            vec![
                ("plan".to_string(), vec!["A".to_string(), "B".to_string()]),
                ("import".to_string(), vec!["A".to_string(), "B".to_string()])
            ]
        );
    }

    #[test]
    fn approvals_after_the_step_they_guard_fail() {
        let k = keys();
        let err = verify(&k, |r| {
            let a = r.remove(7);
            let b = r.remove(7);
            r.insert(9, a); // after key_imported (now at index 8)
            r.insert(10, b);
        })
        .unwrap_err();
        assert_eq!(
            err,
            (
                9,
                Problem::QuorumMissing {
                    step: "key_imported".into(),
                    point: "import",
                    need: 2,
                    have: 0
                }
            )
        );
        let err = verify(&k, |r| {
            let plan = r.remove(1);
            r.insert(3, plan); // after kms_preflight
        })
        .unwrap_err();
        assert_eq!(
            err,
            (
                3,
                Problem::QuorumMissing {
                    step: "kms_preflight".into(),
                    point: "plan",
                    need: 2,
                    have: 1
                }
            )
        );
    }

    #[test]
    fn an_edited_custodian_signature_fails_on_its_line() {
        let k = keys();
        let err = verify(&k, |r| {
            let c = &k.custodians[2].1;
            let forged = c.sign(b"something else").unwrap();
            r[8].1["signature"] = json!(b64(&forged));
        })
        .unwrap_err();
        assert_eq!(
            err,
            (
                9,
                Problem::BadApproval("B's signature does not verify under the pinned key".into())
            )
        );
    }

    #[test]
    fn a_replaced_custodian_key_fails_on_its_line() {
        let k = keys();
        let import = quorum::v1::import_statement(&facts());
        let c = &k.custodians[2].1;
        let err = verify(&k, |r| r[8].1 = approval("B", c, &import)).unwrap_err();
        assert_eq!(err.0, 9);
        assert_eq!(
            err.1,
            Problem::BadApproval(format!(
                "the approval key on B's token has SHA-256 {}, but the ceremony file pins {}; use the token that holds the enrolled key",
                c.fingerprint(),
                k.custodians[1].1.fingerprint()
            ))
        );
    }

    #[test]
    fn an_edited_statement_does_not_count_for_the_step() {
        let k = keys();
        // Both custodians validly signed a statement with another KCV than the one generated.
        let mut f = facts();
        f.kcv = "000000".into();
        let other = quorum::v1::import_statement(&f);
        let (a, b) = (&k.custodians[0].1, &k.custodians[1].1);
        let err = verify(&k, |r| {
            r[7].1 = approval("A", a, &other);
            r[8].1 = approval("B", b, &other);
        })
        .unwrap_err();
        assert_eq!(
            err,
            (
                11,
                Problem::QuorumMissing {
                    step: "key_imported".into(),
                    point: "import",
                    need: 2,
                    have: 0
                }
            )
        );
        // A plan statement for another target is refused where it appears.
        let plan = quorum::v1::plan_statement("t", "00", &k.audit.fingerprint(), "alias/other");
        let err = verify(&k, |r| r[1].1 = approval("A", a, &plan)).unwrap_err();
        assert_eq!(
            err,
            (2, Problem::BadApproval("A approved a plan statement that does not match this ceremony (id, file, audit key, targets)".into()))
        );
    }

    #[test]
    fn the_same_custodian_never_counts_twice() {
        let k = keys();
        let a = &k.custodians[0].1;
        let err = verify(&k, |r| {
            let plan = r[1].1["statement"].clone();
            r[2].1 = approval("A", a, &plan);
        })
        .unwrap_err();
        assert_eq!(
            err,
            (
                3,
                Problem::BadApproval("A approved the same plan statement twice".into())
            )
        );
        // An approval by someone not in the ceremony file.
        let err = verify(&k, |r| r[2].1["custodian"] = json!("Mallory")).unwrap_err();
        assert_eq!(
            err,
            (
                3,
                Problem::BadApproval("\"Mallory\" is not a custodian in the ceremony file".into())
            )
        );
    }
}

/// Format-version-2 transcripts built from the typed payloads, signed by software keys. Every
/// forgery is re-signed by the audit key (and the custodians, where it touches a statement), so
/// each test fails on the rule it names, not on a signature.
mod v2 {
    use super::*;
    use base64::Engine as _;
    use byok::quorum::{self, ImportStatement, ImportTarget, PlanStatement};
    use byok::transcript::payload as p;
    use sha2::Digest as _;

    const ARNS: [&str; 2] = [
        "arn:aws:kms:us-east-1:000000000000:key/k0",
        "arn:aws:kms:us-east-1:000000000000:key/k1",
    ];
    const KEYS: [&str; 2] = ["alias/s3-prod", "alias/rds-prod"];

    pub struct Keys {
        audit: SoftSigner,
        custodians: Vec<(&'static str, SoftSigner)>,
    }

    fn keys() -> Keys {
        Keys {
            audit: SoftSigner::new(),
            custodians: vec![
                ("A", SoftSigner::new()),
                ("B", SoftSigner::new()),
                ("C", SoftSigner::new()),
            ],
        }
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn sha(text: &str) -> String {
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    /// A one-target rehearsal file (dual control off).
    pub fn rehearsal_file(audit: &SoftSigner) -> String {
        format!(
            "[ceremony]\nid = \"t\"\ndescription = \"test\"\noperator = \"O\"\n{HSM}audit_key_sha256 = \"{}\"\n[kms]\nregion = \"us-east-1\"\nkey = \"alias/x\"\n{IMPORT}[dual_control]\nenabled = false\n",
            audit.fingerprint()
        )
    }

    /// The HSM part of every test file, valid for `byok check`.
    const HSM: &str = "[hsm]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"byok-hsm\"\naudit_key_label = \"byok-audit\"\n";

    /// The import part of the test files of kinds that import.
    const IMPORT: &str = "[import]\nwrapping_algorithm = \"RSAES_OAEP_SHA_1\"\nwrapping_key_spec = \"RSA_4096\"\nwrap = \"hsm\"\nexpiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"\n";

    fn file(k: &Keys) -> String {
        file_for(k, "import")
    }

    /// A two-target 2-of-3 ceremony file of `kind` (`import`, `rotate` for a new-material
    /// rotation, `reimport` or `rollback`; the last two get their `[source]` from the caller),
    /// valid for `byok check` (verify reads the embedded file by its rules).
    fn file_for(k: &Keys, kind: &str) -> String {
        let mut f = format!(
            "[ceremony]\nid = \"t\"\nkind = \"{kind}\"\ndescription = \"test\"\noperator = \"O\"\n{HSM}audit_key_sha256 = \"{}\"\n[kms]\nregion = \"us-east-1\"\n",
            k.audit.fingerprint()
        );
        if kind == "rotate" {
            f.push_str(&format!(
                "[rotation]\nstrategy = \"new-material\"\nkey_material_description = \"{DESCRIPTION}\"\n"
            ));
        }
        if kind != "rollback" {
            f.push_str(IMPORT);
        }
        f.push_str("[dual_control]\nquorum = 2\n");
        for key in KEYS {
            f.push_str(&format!("[[target]]\nkey = \"{key}\"\n"));
        }
        for (name, s) in &k.custodians {
            f.push_str(&format!(
                "[[custodian]]\nname = \"{name}\"\ntoken_label = \"cust-{name}\"\nkey_label = \"byok-approval\"\npublic_key_sha256 = \"{}\"\n",
                s.fingerprint()
            ));
        }
        f
    }

    /// Record 0 for `file` (its targets are read from the file's kms.key or [[target]] keys).
    pub fn started(audit: &SoftSigner, file: &str) -> p::CeremonyStarted {
        let targets: Vec<String> = file
            .lines()
            .filter_map(|l| l.strip_prefix("key = \""))
            .map(|l| l.trim_end_matches('"').to_string())
            .collect();
        let quorum = byok::spec::pinned_dual_control(file);
        p::CeremonyStarted {
            tool: "byok".into(),
            tool_version: "test".into(),
            ceremony_id: "t".into(),
            description: String::new(),
            operator: "O".into(),
            ceremony_file_name: None,
            ceremony_file: file.to_string(),
            ceremony_file_sha256: sha(file),
            audit_key_label: "a".into(),
            audit_public_key: b64(audit.public_key_spki_der()),
            audit_key_sha256: audit.fingerprint(),
            dual_control: p::DualControlRecord {
                enabled: quorum.is_some(),
                quorum: quorum.as_ref().map(|(m, _)| *m as u64),
                custodians: quorum
                    .map(|(_, list)| {
                        list.into_iter()
                            .map(|(name, fp)| p::CustodianPin {
                                name,
                                public_key_sha256: fp,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                warning: None,
            },
            targets: targets
                .iter()
                .enumerate()
                .map(|(i, key)| p::TargetEntry {
                    index: i as u64,
                    key: key.clone(),
                    region: "us-east-1".into(),
                    create: false,
                    keep_key_label: None,
                    previous_key: None,
                })
                .collect(),
            kms_concurrency: 4,
            resumes: None,
            kind: None,
            strategy: None,
            run_id: None,
        }
    }

    pub fn hsm_opened() -> p::HsmOpened {
        p::HsmOpened {
            module_path: "m".into(),
            module_manufacturer: "m".into(),
            module_description: "m".into(),
            module_version: "1".into(),
            cryptoki_version: "2.40".into(),
            token_label: "byok-hsm".into(),
            token_serial: "1".into(),
            token_model: "m".into(),
            token_manufacturer: "m".into(),
            login: "user".into(),
            audit_key_sign_only: None,
            audit_key_usage: None,
        }
    }

    fn approval(name: &str, by: &SoftSigner, statement: &serde_json::Value) -> p::Approval {
        let signed = quorum::signed_bytes(statement).unwrap();
        p::Approval {
            point: statement["point"].as_str().unwrap().into(),
            custodian: name.into(),
            public_key: b64(by.public_key_spki_der()),
            public_key_sha256: by.fingerprint(),
            statement: statement.clone(),
            statement_sha256: quorum::statement_sha256(statement).unwrap(),
            signature: b64(&by.sign(&signed).unwrap()),
        }
    }

    /// The known-answer test every importing ceremony records before its first wrap.
    pub fn capability_checked() -> p::CapabilityChecked {
        p::CapabilityChecked {
            algorithm: "RSAES_OAEP_SHA_1".into(),
            location: "hsm".into(),
            mechanism: "CKM_RSA_PKCS_OAEP".into(),
            known_answer_key_bits: 2048,
            known_answer_test: "passed".into(),
            rejected: vec![],
            process_hardening: None,
        }
    }

    /// DescribeKey and the round trip after target `i`'s import, all well.
    pub fn import_verified(i: usize) -> p::ImportVerified {
        p::ImportVerified {
            target_index: i as u64,
            key_arn: ARNS[i].into(),
            key_state: "Enabled".into(),
            enabled: true,
            origin: "EXTERNAL".into(),
            expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
            valid_to_reported: None,
            current_key_material_id: None,
            round_trip: "ok".into(),
            challenge_sha256: "cd".repeat(32),
            ciphertext_sha256: "ef".repeat(32),
            problems: vec![],
            warnings: vec![],
        }
    }

    fn v<T: serde::Serialize>(x: &T) -> serde_json::Value {
        serde_json::to_value(x).unwrap()
    }

    fn import_target(i: usize) -> ImportTarget {
        ImportTarget {
            target_index: i as u64,
            key_arn: ARNS[i].into(),
            wrapping_algorithm: "RSAES_OAEP_SHA_1".into(),
            wrapping_key_spec: "RSA_4096".into(),
            wrapping_public_key_sha256: format!("{i}a").repeat(32),
            blob_sha256: format!("{i}b").repeat(32),
            import_token_sha256: format!("{i}c").repeat(32),
            kcv: format!("65092{i}"),
            key_material_id: None,
        }
    }

    type Records = Vec<(RecordType, serde_json::Value)>;

    /// A two-target 2-of-3 ceremony. `statement` may change the import statement before the
    /// custodians sign it; `edit` changes the records before the audit key signs them.
    fn records(
        k: &Keys,
        statement: impl FnOnce(&mut Vec<ImportTarget>),
        edit: impl FnOnce(&mut Records),
    ) -> Records {
        records_of(k, None, statement, edit)
    }

    /// [`records`], for a rotation when `description` is the KeyMaterialDescription: the
    /// import statement and `key_imported` records carry it.
    fn records_of(
        k: &Keys,
        description: Option<&str>,
        statement: impl FnOnce(&mut Vec<ImportTarget>),
        edit: impl FnOnce(&mut Records),
    ) -> Records {
        let kind = if description.is_some() {
            "rotate"
        } else {
            "import"
        };
        records_for(k, &file_for(k, kind), description, |_| {}, statement, edit)
    }

    /// [`records_of`] for the ceremony file `file`; `whole` changes the whole import
    /// statement (after `statement` changed its targets) before the custodians sign it.
    fn records_for(
        k: &Keys,
        file: &str,
        description: Option<&str>,
        whole: impl FnOnce(&mut ImportStatement),
        statement: impl FnOnce(&mut Vec<ImportTarget>),
        edit: impl FnOnce(&mut Records),
    ) -> Records {
        let file = file.to_string();
        let plan = v(&PlanStatement {
            point: "plan".into(),
            ceremony_id: "t".into(),
            ceremony_file_sha256: sha(&file),
            audit_key_sha256: k.audit.fingerprint(),
            targets: KEYS.iter().map(|k| k.to_string()).collect(),
            resumes: None,
            run_id: None,
        });
        let mut targets = vec![import_target(0), import_target(1)];
        statement(&mut targets);
        let mut whole_statement = ImportStatement {
            point: "import".into(),
            ceremony_id: "t".into(),
            expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
            valid_to: None,
            targets,
            kind: description.map(|_| "rotate".to_string()),
            key_material_description: description.map(str::to_string),
            source_last_line_sha256: None,
            run_id: None,
        };
        whole(&mut whole_statement);
        let import = v(&whole_statement);
        let (a, b) = (&k.custodians[0].1, &k.custodians[1].1);
        let mut recs: Records = vec![
            (RecordType::CeremonyStarted, v(&started(&k.audit, &file))),
            (RecordType::HsmOpened, v(&hsm_opened())),
            (RecordType::Approval, v(&approval("A", a, &plan))),
            (RecordType::Approval, v(&approval("B", b, &plan))),
        ];
        for i in 0..2 {
            recs.push((
                RecordType::KmsPreflight,
                v(&p::KmsPreflight {
                    target_index: i as u64,
                    requested_key: KEYS[i].into(),
                    region: "us-east-1".into(),
                    key_arn: ARNS[i].into(),
                    origin: "EXTERNAL".into(),
                    key_spec: "SYMMETRIC_DEFAULT".into(),
                    key_usage: "ENCRYPT_DECRYPT".into(),
                    key_state: "PendingImport".into(),
                    enabled: false,
                }),
            ));
        }
        recs.push((RecordType::CapabilityChecked, v(&capability_checked())));
        for i in 0..2 {
            let t = import_target(i);
            recs.push((
                RecordType::ImportParameters,
                v(&p::ImportParameters {
                    target_index: i as u64,
                    key_arn: t.key_arn.clone(),
                    wrapping_algorithm: t.wrapping_algorithm.clone(),
                    wrapping_key_spec: t.wrapping_key_spec.clone(),
                    public_key_sha256: t.wrapping_public_key_sha256.clone(),
                    public_key_der_length: 550,
                    import_token_sha256: t.import_token_sha256.clone(),
                    parameters_valid_to: "2026-11-24T12:00:00.000Z".into(),
                }),
            ));
            recs.push((
                RecordType::KeyGenerated,
                v(&p::KeyGenerated {
                    target_index: i as u64,
                    key_arn: t.key_arn.clone(),
                    handle: 10 + i as u64,
                    label: "byok-ceremony-key".into(),
                    key_type: "AES".into(),
                    value_length: 32,
                    token_object: false,
                    sensitive: true,
                    kcv: t.kcv.clone(),
                    kcv_method: "AES-ECB of one zero block, first 3 bytes".into(),
                }),
            ));
            recs.push((
                RecordType::KeyWrapped,
                v(&p::KeyWrapped {
                    target_index: i as u64,
                    key_arn: t.key_arn.clone(),
                    location: "hsm".into(),
                    mechanism: "CKM_RSA_PKCS_OAEP".into(),
                    wrapping_algorithm: t.wrapping_algorithm.clone(),
                    oaep_hash: "SHA-1".into(),
                    aes_key_wrap: None,
                    wrapping_public_key_sha256: t.wrapping_public_key_sha256.clone(),
                    blob_sha256: t.blob_sha256.clone(),
                    blob_length: 512,
                    host_memory_locked: None,
                }),
            ));
        }
        recs.push((RecordType::Approval, v(&approval("A", a, &import))));
        recs.push((RecordType::Approval, v(&approval("B", b, &import))));
        recs.push((
            RecordType::ImportConfirmed,
            v(&p::ImportConfirmed {
                approved_by: vec!["A".into(), "B".into()],
                dual_control: true,
                statement: import.clone(),
                statement_sha256: quorum::statement_sha256(&import).unwrap(),
            }),
        ));
        for i in 0..2 {
            let t = import_target(i);
            recs.push((
                RecordType::KeyImported,
                v(&p::KeyImported {
                    target_index: i as u64,
                    key_arn: t.key_arn.clone(),
                    key_material_id: Some("ab".repeat(32)),
                    import_type: "NEW_KEY_MATERIAL".into(),
                    key_material_description: description.map(str::to_string),
                    expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
                    valid_to: None,
                    blob_sha256: t.blob_sha256.clone(),
                    import_token_sha256: t.import_token_sha256.clone(),
                }),
            ));
        }
        for i in 0..2 {
            recs.push((RecordType::ImportVerified, v(&import_verified(i))));
        }
        recs.push((
            RecordType::CleanupDone,
            v(&p::CleanupDone {
                destroyed_handles: vec![10, 11],
                kept_keys: vec![],
            }),
        ));
        recs.push((
            RecordType::CeremonyFinished,
            v(&p::CeremonyFinished {
                targets: (0..2)
                    .map(|i| p::TargetOutcome {
                        index: i as u64,
                        key: KEYS[i].into(),
                        key_arn: Some(ARNS[i].into()),
                        status: "imported".into(),
                        key_material_id: None,
                        kcv: Some(import_target(i).kcv),
                    })
                    .collect(),
                records: 0,
            }),
        ));
        edit(&mut recs);
        recs
    }

    fn sign_all(k: &Keys, recs: Records, version: impl Fn(usize) -> u64) -> Vec<u8> {
        let mut lines = Vec::new();
        let mut prev = "0".repeat(64);
        for (seq, (kind, data)) in recs.into_iter().enumerate() {
            let line = encode_record_version(
                &k.audit,
                version(seq),
                seq as u64,
                &prev,
                "2026-11-23T12:00:00.000Z",
                kind,
                data,
            )
            .unwrap();
            prev = hex::encode(sha2::Sha256::digest(line.as_bytes()));
            lines.push(line);
        }
        join(&lines)
    }

    fn opts(k: &Keys) -> VerifyOptions {
        VerifyOptions {
            audit_key_sha256: Some(k.audit.fingerprint()),
            ..VerifyOptions::default()
        }
    }

    fn verify(
        k: &Keys,
        statement: impl FnOnce(&mut Vec<ImportTarget>),
        edit: impl FnOnce(&mut Records),
    ) -> Result<byok::transcript::verify::Report, (usize, Problem)> {
        let bytes = sign_all(k, records(k, statement, edit), |_| 2);
        verify_bytes(&bytes, &opts(k)).map_err(|e| (e.line, e.problem))
    }

    /// The 1-based line of the first record of `kind` whose target is `index`.
    fn line_of(recs: &Records, kind: RecordType, index: u64) -> usize {
        recs.iter()
            .position(|(t, d)| *t == kind && d["target_index"] == index)
            .unwrap()
            + 1
    }

    #[test]
    fn a_two_target_transcript_verifies_and_reports_each_target() {
        let k = keys();
        let report = verify(&k, |_| {}, |_| {}).unwrap();
        assert_eq!(report.version, 2);
        assert_eq!(report.quorum, Some(2));
        assert_eq!(report.targets.len(), 2);
        assert_eq!(report.targets[1].key, "alias/rds-prod");
        assert_eq!(
            report.approvals,
            vec![
                ("plan".to_string(), vec!["A".to_string(), "B".to_string()]),
                ("import".to_string(), vec!["A".to_string(), "B".to_string()]),
            ]
        );
    }

    #[test]
    fn an_unknown_member_in_a_payload_is_refused_on_its_line() {
        let k = keys();
        let (line, problem) = verify(
            &k,
            |_| {},
            |r| {
                r[1].1["debug"] = json!("anything");
            },
        )
        .unwrap_err();
        assert_eq!(line, 2);
        assert!(
            matches!(&problem, Problem::BadPayload { kind, why } if kind == "hsm_opened" && why.contains("unknown field `debug`")),
            "{problem:?}"
        );
    }

    #[test]
    fn importing_a_blob_other_than_the_approved_one_fails() {
        let k = keys();
        let recs = records(&k, |_| {}, |_| {});
        let line = line_of(&recs, RecordType::KeyImported, 1);
        let (at, problem) = verify(
            &k,
            |_| {},
            |r| {
                r[line - 1].1["blob_sha256"] = json!("ff".repeat(32));
            },
        )
        .unwrap_err();
        assert_eq!(at, line);
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 1,
                why: "imported a blob or import token other than the approved ones".into()
            }
        );
    }

    #[test]
    fn an_approved_statement_that_omits_a_wrapped_target_fails_at_the_confirmation() {
        let k = keys();
        let recs = records(&k, |_| {}, |_| {});
        let confirmed = recs
            .iter()
            .position(|(t, _)| *t == RecordType::ImportConfirmed)
            .unwrap()
            + 1;
        // The custodians really signed the shorter statement; the wrap records say two targets.
        let (at, problem) = verify(
            &k,
            |targets| {
                targets.pop();
            },
            |_| {},
        )
        .unwrap_err();
        assert_eq!(at, confirmed);
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("not what the import_parameters")),
            "{problem:?}"
        );
    }

    #[test]
    fn a_kcv_the_custodians_did_not_see_fails_at_the_confirmation() {
        let k = keys();
        let (_, problem) = verify(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .position(|(t, d)| *t == RecordType::KeyGenerated && d["target_index"] == 0)
                    .unwrap();
                r[i].1["kcv"] = json!("000000");
            },
        )
        .unwrap_err();
        assert!(matches!(problem, Problem::BadPayload { .. }), "{problem:?}");
    }

    #[test]
    fn a_target_index_beyond_the_list_fails() {
        let k = keys();
        let recs = records(&k, |_| {}, |_| {});
        let line = line_of(&recs, RecordType::KmsPreflight, 1);
        let (at, problem) = verify(
            &k,
            |_| {},
            |r| {
                r[line - 1].1["target_index"] = json!(7);
            },
        )
        .unwrap_err();
        assert_eq!(at, line);
        assert!(
            matches!(problem, Problem::BadTarget { index: 7, .. }),
            "{problem:?}"
        );
    }

    #[test]
    fn one_target_with_two_key_arns_fails() {
        let k = keys();
        let recs = records(&k, |_| {}, |_| {});
        let line = line_of(&recs, RecordType::KeyGenerated, 0);
        let (at, problem) = verify(
            &k,
            |_| {},
            |r| {
                r[line - 1].1["key_arn"] = json!(ARNS[1]);
            },
        )
        .unwrap_err();
        assert_eq!(at, line);
        assert!(
            matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("earlier records name")),
            "{problem:?}"
        );
    }

    #[test]
    fn the_first_kms_change_needs_the_plan_quorum() {
        let k = keys();
        // Drop Bob's plan approval: one of two.
        let (at, problem) = verify(
            &k,
            |_| {},
            |r| {
                r.remove(3);
            },
        )
        .unwrap_err();
        assert_eq!(at, 4, "the first kms_preflight moves up to line 4");
        assert_eq!(
            problem,
            Problem::QuorumMissing {
                step: "kms_preflight".into(),
                point: "plan",
                need: 2,
                have: 1
            }
        );
    }

    #[test]
    fn a_final_record_claiming_an_import_that_is_not_recorded_fails() {
        let k = keys();
        let (_, problem) = verify(
            &k,
            |_| {},
            |r| {
                r.retain(|(t, d)| {
                    !(matches!(t, RecordType::KeyImported | RecordType::ImportVerified)
                        && d["target_index"] == 1)
                });
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 1,
                why: "reported imported, but no import of it is recorded".into()
            }
        );
    }

    #[test]
    fn every_record_has_record_zeros_version() {
        let k = keys();
        let bytes = sign_all(&k, records(&k, |_| {}, |_| {}), |seq| {
            if seq == 5 { 1 } else { 2 }
        });
        let e = verify_bytes(&bytes, &opts(&k)).unwrap_err();
        assert_eq!(e.line, 6);
        assert!(
            matches!(e.problem, Problem::BadField { field: "v", .. }),
            "{e}"
        );
    }

    #[test]
    fn import_confirmed_must_name_who_approved() {
        let k = keys();
        let (_, problem) = verify(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .position(|(t, _)| *t == RecordType::ImportConfirmed)
                    .unwrap();
                r[i].1["approved_by"] = json!(["A", "C"]);
            },
        )
        .unwrap_err();
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("is not who approved")),
            "{problem:?}"
        );
    }

    #[test]
    fn an_import_with_an_expiry_nobody_approved_fails() {
        let k = keys();
        let (_, problem) = verify(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .position(|(t, _)| *t == RecordType::KeyImported)
                    .unwrap();
                r[i].1["expiration_model"] = json!("KEY_MATERIAL_EXPIRES");
                r[i].1["valid_to"] = json!("2027-01-01T00:00:00.000Z");
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: "imported with an expiration other than the approved one".into()
            }
        );
    }

    #[test]
    fn one_target_imported_twice_fails() {
        let k = keys();
        let (_, problem) = verify(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .position(|(t, _)| *t == RecordType::KeyImported)
                    .unwrap();
                let again = r[i].clone();
                r.insert(i + 1, again);
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: "imported twice".into()
            }
        );
    }

    #[test]
    fn no_step_may_run_before_the_plan_quorum() {
        let k = keys();
        // Without any kms_preflight, the first record after the one plan approval is
        // capability_checked: the rule is not tied to one record type.
        let (_, problem) = verify(
            &k,
            |_| {},
            |r| {
                r.retain(|(t, _)| *t != RecordType::KmsPreflight);
                r.remove(3);
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::QuorumMissing {
                step: "capability_checked".into(),
                point: "plan",
                need: 2,
                have: 1
            }
        );
    }

    #[test]
    fn a_cut_off_transcript_is_invalid_for_auditors_and_readable_for_resume() {
        let k = keys();
        let mut recs = records(&k, |_| {}, |_| {});
        recs.truncate(9);
        let mut bytes = sign_all(&k, recs, |_| 2);
        // A crash in the middle of writing the next line.
        bytes.extend_from_slice(b"{\"data\":{\"targ");
        let e = verify_bytes(&bytes, &opts(&k)).unwrap_err();
        assert_eq!(e.problem, Problem::TruncatedLine);
        let resume = VerifyOptions {
            allow_truncated: true,
            ..opts(&k)
        };
        let report = verify_bytes(&bytes, &resume).unwrap();
        assert!(!report.closed);
        assert_eq!(report.records, 9);
        // Cut-off transcripts are still checked line by line.
        let mut bad = bytes.clone();
        let pos = bad.iter().position(|&b| b == b'O').unwrap();
        bad[pos] = b'P';
        assert!(verify_bytes(&bad, &resume).is_err());
    }

    /// Format version 3: the preflight records move before the plan approvals.
    fn v3_order(r: &mut Records) {
        r[0].1["kind"] = json!("import");
        r[1].1["audit_key_sign_only"] = json!(true);
        r[1].1["audit_key_usage"] = json!("private CKA_SIGN=true; public CKA_VERIFY=true");
        let preflight: Vec<_> = r.drain(4..6).collect();
        for (i, rec) in preflight.into_iter().enumerate() {
            r.insert(2 + i, rec);
        }
    }

    fn verify_v3(k: &Keys, edit: impl FnOnce(&mut Records)) -> Result<(), (usize, Problem)> {
        let bytes = sign_all(
            k,
            records(
                k,
                |_| {},
                |r| {
                    v3_order(r);
                    edit(r);
                },
            ),
            |_| 3,
        );
        verify_bytes(&bytes, &opts(k))
            .map(|_| ())
            .map_err(|e| (e.line, e.problem))
    }

    /// Records 0, 1 and the preflight, then `tail` and an abort at approve_plan.
    fn declined_v3(k: &Keys, tail: Vec<(RecordType, serde_json::Value)>) -> Records {
        let mut r = records(k, |_| {}, v3_order);
        r.truncate(4);
        r.extend(tail);
        r.push((
            RecordType::CeremonyAborted,
            v(&p::CeremonyAborted {
                step: "approve_plan".into(),
                target_index: None,
                error_class: "aborted".into(),
                message: "declined".into(),
                destroyed_handles: vec![],
                kept_keys: vec![],
                cleanup_errors: vec![],
                targets: (0..2)
                    .map(|i| p::TargetOutcome {
                        index: i as u64,
                        key: KEYS[i].into(),
                        key_arn: Some(ARNS[i].into()),
                        status: "not_started".into(),
                        key_material_id: None,
                        kcv: None,
                    })
                    .collect(),
            }),
        ));
        r
    }

    fn plan_statement(k: &Keys) -> serde_json::Value {
        v(&PlanStatement {
            point: "plan".into(),
            ceremony_id: "t".into(),
            ceremony_file_sha256: sha(&file(k)),
            audit_key_sha256: k.audit.fingerprint(),
            targets: KEYS.iter().map(|k| k.to_string()).collect(),
            resumes: None,
            run_id: None,
        })
    }

    /// `name`'s decline of the plan, signed by `by`.
    fn decline(k: &Keys, name: &str, by: &SoftSigner) -> p::Declined {
        let plan = plan_statement(k);
        let digest = quorum::statement_sha256(&plan).unwrap();
        let d = quorum::decline_statement("plan", &digest, None);
        p::Declined {
            point: "plan".into(),
            custodian: name.into(),
            statement: plan,
            statement_sha256: digest,
            signed_by: Some("custodian_token".into()),
            public_key: Some(b64(by.public_key_spki_der())),
            signature: Some(b64(&by.sign(&quorum::signed_bytes(&d).unwrap()).unwrap())),
            decline: Some(d),
        }
    }

    fn verify_records(k: &Keys, r: Records, version: u64) -> Result<(), (usize, Problem)> {
        verify_bytes(&sign_all(k, r, |_| version), &opts(k))
            .map(|_| ())
            .map_err(|e| (e.line, e.problem))
    }

    #[test]
    fn v3_read_only_checks_before_the_plan_approval_verify() {
        let k = keys();
        verify_v3(&k, |_| {}).unwrap();
        // Version 3's hsm_opened records the audit key's usage; without it, it is refused.
        let (line, problem) = verify_v3(&k, |r| {
            r[1].1.as_object_mut().unwrap().remove("audit_key_usage");
        })
        .unwrap_err();
        assert_eq!(line, 2);
        assert!(matches!(problem, Problem::BadPayload { .. }), "{problem:?}");
        // The same order in version 2 lacks the plan quorum at the first preflight.
        let bytes = sign_all(
            &k,
            records(
                &k,
                |_| {},
                |r| {
                    v3_order(r);
                    r[0].1.as_object_mut().unwrap().remove("kind");
                    for m in ["audit_key_sign_only", "audit_key_usage"] {
                        r[1].1.as_object_mut().unwrap().remove(m);
                    }
                },
            ),
            |_| 2,
        );
        let err = verify_bytes(&bytes, &opts(&k)).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(
            matches!(err.problem, Problem::QuorumMissing { .. }),
            "{:?}",
            err.problem
        );
    }

    #[test]
    fn v3_import_parameters_before_the_plan_approval_is_refused() {
        let k = keys();
        // Move the plan approvals after the known-answer test and the first import_parameters.
        let (line, problem) = verify_v3(&k, |r| {
            let approvals: Vec<_> = r.drain(4..6).collect();
            for (i, rec) in approvals.into_iter().enumerate() {
                r.insert(6 + i, rec);
            }
        })
        .unwrap_err();
        assert_eq!(line, 6);
        assert!(
            matches!(problem, Problem::QuorumMissing { .. }),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_a_decline_signed_by_the_custodian_verifies() {
        let k = keys();
        let b = &k.custodians[1].1;
        let r = declined_v3(&k, vec![(RecordType::Declined, v(&decline(&k, "B", b)))]);
        verify_records(&k, r, 3).unwrap();
    }

    #[test]
    fn v3_a_decline_not_signed_by_the_custodian_is_refused() {
        let k = keys();
        // The audit key holder writes a decline in B's name without B's token.
        let mut d = decline(&k, "B", &k.custodians[1].1);
        d.signed_by = None;
        d.public_key = None;
        d.signature = None;
        d.decline = None;
        let r = declined_v3(&k, vec![(RecordType::Declined, v(&d))]);
        let (line, problem) = verify_records(&k, r, 3).unwrap_err();
        assert_eq!(line, 5);
        match problem {
            Problem::BadApproval(why) => assert!(
                why.contains("a version 3 decline is signed by the custodian's token"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        // Signed by the operator's own key in B's name: B's pin does not match.
        let mallory = SoftSigner::new();
        let r = declined_v3(
            &k,
            vec![(RecordType::Declined, v(&decline(&k, "B", &mallory)))],
        );
        let (line, problem) = verify_records(&k, r, 3).unwrap_err();
        assert_eq!(line, 5);
        match problem {
            Problem::BadApproval(why) => assert!(why.starts_with("declined: "), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn approval_failed_is_version_3_only_and_names_a_custodian() {
        let k = keys();
        let failed = |name: &str| p::ApprovalFailed {
            point: "plan".into(),
            custodian: name.into(),
            action: "approve".into(),
            pin_attempts: 3,
            error: "the PIN for token \"t\" is incorrect".into(),
            approved_so_far: vec![],
            remaining: vec!["A".into(), "C".into()],
            quorum_reachable: true,
        };
        let b = &k.custodians[1].1;
        let with = |name: &str| {
            declined_v3(
                &k,
                vec![
                    (RecordType::ApprovalFailed, v(&failed(name))),
                    (RecordType::Declined, v(&decline(&k, "B", b))),
                ],
            )
        };
        verify_records(&k, with("C"), 3).unwrap();
        let (line, problem) = verify_records(&k, with("Mallory"), 3).unwrap_err();
        assert_eq!(line, 5);
        assert_eq!(
            problem,
            Problem::BadApproval("\"Mallory\" is not a custodian in the ceremony file".into())
        );
        // In version 2 the record type does not exist.
        let mut r = records(&k, |_| {}, |_| {});
        r.insert(2, (RecordType::ApprovalFailed, v(&failed("C"))));
        let (line, problem) = verify_records(&k, r, 2).unwrap_err();
        assert_eq!(line, 3);
        assert!(matches!(problem, Problem::Misplaced { .. }), "{problem:?}");
    }

    const DESCRIPTION: &str = "yearly ceremony t";
    const NEW: &str = "abababababababababababababababababababababababababababababababab";
    const OLD: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

    /// A version-3 rotation of both targets, 2-of-3 at plan, import and rotate. `rotate`
    /// changes the rotate statement before the custodians sign it; `edit` changes the records
    /// before the audit key signs them.
    fn rotation(
        k: &Keys,
        rotate: impl FnOnce(&mut quorum::RotateStatement),
        edit: impl FnOnce(&mut Records),
    ) -> Result<(), (usize, Problem)> {
        let mut r = records_of(k, Some(DESCRIPTION), |_| {}, v3_order);
        r[0].1["kind"] = json!("rotate");
        for i in 0..2u64 {
            r.insert(
                4 + i as usize,
                (
                    RecordType::RotationPreflight,
                    v(&p::RotationPreflight {
                        target_index: i,
                        key_arn: ARNS[i as usize].into(),
                        current_key_material_id: Some(OLD.into()),
                        key_materials: Some(1),
                        rotations_so_far: Some(0),
                        rotation_limit: 10,
                        probe_sha256: "11".repeat(32),
                        probe_ciphertext_sha256: "22".repeat(32),
                    }),
                ),
            );
        }
        let mut statement = quorum::RotateStatement {
            point: "rotate".into(),
            ceremony_id: "t".into(),
            targets: (0..2)
                .map(|i| quorum::RotateTarget {
                    target_index: i as u64,
                    key_arn: ARNS[i].into(),
                    previous_key_material_id: Some(OLD.into()),
                    key_material_id: NEW.into(),
                })
                .collect(),
            run_id: None,
        };
        rotate(&mut statement);
        let value = v(&statement);
        let (b, c) = (&k.custodians[1].1, &k.custodians[2].1);
        let at = r
            .iter()
            .position(|(t, _)| *t == RecordType::CleanupDone)
            .unwrap();
        let mut tail: Records = vec![
            (RecordType::Approval, v(&approval("B", b, &value))),
            (RecordType::Approval, v(&approval("C", c, &value))),
            (
                RecordType::RotateConfirmed,
                v(&p::RotateConfirmed {
                    approved_by: vec!["B".into(), "C".into()],
                    dual_control: true,
                    statement: value.clone(),
                    statement_sha256: quorum::statement_sha256(&value).unwrap(),
                }),
            ),
        ];
        for i in 0..2u64 {
            tail.push((
                RecordType::KeyRotated,
                v(&p::KeyRotated {
                    target_index: i,
                    key_arn: ARNS[i as usize].into(),
                    key_material_id: NEW.into(),
                    outcome: "rotated".into(),
                    evidence: vec![],
                }),
            ));
            tail.push((
                RecordType::RotationVerified,
                v(&p::RotationVerified {
                    target_index: i,
                    key_arn: ARNS[i as usize].into(),
                    current_key_material_id: Some(NEW.into()),
                    previous_key_material_id: Some(OLD.into()),
                    previous_probe_decrypts: true,
                    round_trip: "ok".into(),
                    problems: vec![],
                }),
            ));
        }
        for (n, rec) in tail.into_iter().enumerate() {
            r.insert(at + n, rec);
        }
        let last = r.len() - 1;
        for t in r[last].1["targets"].as_array_mut().unwrap() {
            t["status"] = json!("rotated");
        }
        edit(&mut r);
        verify_records(k, r, 3)
    }

    /// The 1-based line of the first record of `kind`.
    fn first_line(k: &Keys, kind: RecordType) -> usize {
        let mut line = 0;
        rotation(
            k,
            |_| {},
            |r| line = r.iter().position(|(t, _)| *t == kind).unwrap() + 1,
        )
        .unwrap();
        line
    }

    #[test]
    fn v3_a_rotation_verifies() {
        let k = keys();
        rotation(&k, |_| {}, |_| {}).unwrap();
    }

    #[test]
    fn v3_a_rotation_to_a_material_the_statement_does_not_name_is_refused() {
        let k = keys();
        let line = first_line(&k, RecordType::KeyRotated);
        let (at, problem) = rotation(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .position(|(t, _)| *t == RecordType::KeyRotated)
                    .unwrap();
                r[i].1["key_material_id"] = json!(OLD);
            },
        )
        .unwrap_err();
        assert_eq!(at, line);
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: "rotated to a material the rotate statement does not name for it".into()
            }
        );
    }

    #[test]
    fn v3_a_rotate_statement_that_misstates_the_previous_material_is_refused() {
        let k = keys();
        let line = first_line(&k, RecordType::RotateConfirmed);
        // The custodians signed it, but it is not what rotation_preflight recorded.
        let (at, problem) = rotation(
            &k,
            |s| s.targets[1].previous_key_material_id = Some(NEW.into()),
            |_| {},
        )
        .unwrap_err();
        assert_eq!(at, line);
        assert!(
            matches!(&problem, Problem::BadTarget { index: 1, why } if why.contains("rotation_preflight")),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_a_rotation_needs_the_rotate_quorum() {
        let k = keys();
        let line = first_line(&k, RecordType::RotateConfirmed);
        // Drop C's rotate approval: rotate_confirmed moves up one line.
        let (at, problem) = rotation(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .position(|(t, _)| *t == RecordType::RotateConfirmed)
                    .unwrap();
                r.remove(i - 1);
                r[i - 1].1["approved_by"] = json!(["B"]);
            },
        )
        .unwrap_err();
        assert_eq!(at, line - 1);
        assert!(
            matches!(
                problem,
                Problem::QuorumMissing {
                    need: 2,
                    have: 1,
                    ..
                }
            ),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_rotated_without_a_rotation_and_rotation_records_in_an_import_are_refused() {
        let k = keys();
        // A final outcome `rotated` for a target whose key_rotated was dropped.
        let (_, problem) = rotation(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .rposition(|(t, _)| *t == RecordType::KeyRotated)
                    .unwrap();
                r.remove(i + 1); // its rotation_verified
                r.remove(i);
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 1,
                why: "reported rotated, but no rotation of it is recorded".into()
            }
        );
        // The same records under a record 0 that says kind = import: record 0 must say what
        // the embedded ceremony file says (kind = "rotate").
        let (at, problem) = rotation(&k, |_| {}, |r| r[0].1["kind"] = json!("import")).unwrap_err();
        assert_eq!(at, 1);
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("not what the embedded ceremony file says")),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_an_import_with_another_description_than_approved_is_refused() {
        let k = keys();
        let line = first_line(&k, RecordType::KeyImported);
        let (at, problem) = rotation(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .position(|(t, _)| *t == RecordType::KeyImported)
                    .unwrap();
                r[i].1["key_material_description"] = json!("something else");
            },
        )
        .unwrap_err();
        assert_eq!(at, line);
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: "imported with a KeyMaterialDescription other than the approved one".into()
            }
        );
    }

    /// The fingerprint a reimport's `[source]` pins, and each target's KeyMaterialId there.
    const SOURCE: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

    fn source_material(i: u64) -> String {
        format!("{i}d").repeat(32)
    }

    /// A version-3 reimport of both targets, 2-of-3 at plan and import: `source_verified`,
    /// a `kept_key_checked` per target (no `key_generated`), an import statement of kind
    /// reimport naming the source and each KeyMaterialId, and EXISTING_KEY_MATERIAL imports.
    /// `whole` changes the import statement before the custodians sign it; `edit` changes the
    /// records before the audit key signs them.
    fn reimport(
        k: &Keys,
        whole: impl FnOnce(&mut ImportStatement),
        edit: impl FnOnce(&mut Records),
    ) -> Result<(), (usize, Problem)> {
        let file = format!(
            "{}[source]\ntranscript = \"old.jsonl\"\nlast_line_sha256 = \"{SOURCE}\"\n",
            file_for(k, "reimport")
        );
        let mut r = records_for(
            k,
            &file,
            None,
            |s| {
                s.kind = Some("reimport".into());
                s.source_last_line_sha256 = Some(SOURCE.into());
                for t in &mut s.targets {
                    t.key_material_id = Some(source_material(t.target_index));
                }
                whole(s);
            },
            |_| {},
            v3_order,
        );
        r[0].1["kind"] = json!("reimport");
        r.retain(|(t, _)| *t != RecordType::KeyGenerated);
        let kcv = |i: u64| import_target(i as usize).kcv;
        r.insert(
            2,
            (
                RecordType::SourceVerified,
                v(&p::SourceVerified {
                    transcript: "old.jsonl".into(),
                    last_line_sha256: SOURCE.into(),
                    ceremony_id: "old".into(),
                    kind: "import".into(),
                    strategy: None,
                    records: 30,
                    format_version: 3,
                    dual_control: true,
                    kept_targets: (0..2u64)
                        .map(|i| p::SourceKept {
                            target_index: i,
                            key_arn: ARNS[i as usize].into(),
                            key_material_id: source_material(i),
                            kcv: kcv(i),
                            kept_label: format!("kept-{i}"),
                        })
                        .collect(),
                    swaps: vec![],
                }),
            ),
        );
        for i in 0..2u64 {
            r.insert(
                5 + i as usize,
                (
                    RecordType::KeptKeyChecked,
                    v(&p::KeptKeyChecked {
                        target_index: i,
                        key_arn: ARNS[i as usize].into(),
                        source_target_index: i,
                        source_key_arn: ARNS[i as usize].into(),
                        relation: "same key".into(),
                        key_material_id: source_material(i),
                        label: format!("kept-{i}"),
                        kept_handle: 20 + i,
                        session_handle: 10 + i,
                        kcv_now: kcv(i),
                        kcv_source: kcv(i),
                        matches: true,
                        kcv_method: "AES-ECB of one zero block, first 3 bytes".into(),
                    }),
                ),
            );
        }
        for (kind, data) in &mut r {
            if *kind == RecordType::KeyImported {
                let i = data["target_index"].as_u64().unwrap();
                data["import_type"] = json!("EXISTING_KEY_MATERIAL");
                data["key_material_id"] = json!(source_material(i));
            }
        }
        edit(&mut r);
        verify_records(k, r, 3)
    }

    fn at(r: &Records, kind: RecordType) -> usize {
        r.iter().position(|(t, _)| *t == kind).unwrap()
    }

    #[test]
    fn v3_a_reimport_verifies() {
        let k = keys();
        reimport(&k, |_| {}, |_| {}).unwrap();
    }

    #[test]
    fn v3_a_reimport_sent_as_new_material_or_answered_with_another_id_is_refused() {
        let k = keys();
        let (_, problem) = reimport(
            &k,
            |_| {},
            |r| {
                let i = at(r, RecordType::KeyImported);
                r[i].1["import_type"] = json!("NEW_KEY_MATERIAL");
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: "imported with ImportType NEW_KEY_MATERIAL, but the approved statement calls for EXISTING_KEY_MATERIAL".into()
            }
        );
        let other = "ee".repeat(32);
        let (_, problem) = reimport(
            &k,
            |_| {},
            |r| {
                let i = at(r, RecordType::KeyImported);
                r[i].1["key_material_id"] = json!(other);
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: format!(
                    "KMS's KeyMaterialId {other} is not the approved {} of the source",
                    source_material(0)
                )
            }
        );
    }

    #[test]
    fn v3_a_reimport_statement_that_misstates_the_material_or_the_source_is_refused() {
        let k = keys();
        // The custodians approved another KeyMaterialId than the kept-key check found.
        let (_, problem) = reimport(
            &k,
            |s| s.targets[1].key_material_id = Some("ee".repeat(32)),
            |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("is not what the import_parameters")),
            "{problem:?}"
        );
        // ... or another source.
        let (_, problem) = reimport(
            &k,
            |s| s.source_last_line_sha256 = Some("ee".repeat(32)),
            |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("source_last_line_sha256 do not match")),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_a_kept_key_check_that_failed_or_disagrees_with_the_source_is_refused() {
        let k = keys();
        // A KCV that did not match: nothing may be wrapped and approved for the target.
        let (_, problem) = reimport(
            &k,
            |_| {},
            |r| {
                let i = at(r, RecordType::KeptKeyChecked);
                r[i].1["kcv_now"] = json!("000000");
                r[i].1["match"] = json!(false);
            },
        )
        .unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: "key_wrapped without import_parameters and a matching kept_key_checked".into()
            }
        );
        // A match claimed for KCVs that differ.
        let (line, problem) = reimport(
            &k,
            |_| {},
            |r| {
                let i = at(r, RecordType::KeptKeyChecked);
                r[i].1["kcv_now"] = json!("000000");
            },
        )
        .unwrap_err();
        assert_eq!(line, 6);
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why == "match is not kcv_now == kcv_source"),
            "{problem:?}"
        );
        // A source KCV other than source_verified lists.
        let (_, problem) = reimport(
            &k,
            |_| {},
            |r| {
                let i = at(r, RecordType::KeptKeyChecked);
                r[i].1["kcv_source"] = json!("000000");
                r[i].1["kcv_now"] = json!("000000");
            },
        )
        .unwrap_err();
        assert!(
            matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("is not what source_verified lists")),
            "{problem:?}"
        );
        // A key that is neither the source's nor a replica of it.
        let (_, problem) = reimport(
            &k,
            |_| {},
            |r| {
                let i = at(r, RecordType::KeptKeyChecked);
                r[i].1["source_target_index"] = json!(1);
                r[i].1["source_key_arn"] = json!(ARNS[1]);
                r[i].1["label"] = json!("kept-1");
                r[i].1["key_material_id"] = json!(source_material(1));
                r[i].1["kcv_source"] = json!(import_target(1).kcv);
                r[i].1["kcv_now"] = json!(import_target(1).kcv);
            },
        )
        .unwrap_err();
        assert!(
            matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("is not the source's key")),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_a_source_other_than_the_file_pins_and_reimport_records_elsewhere_are_refused() {
        let k = keys();
        let (line, problem) = reimport(
            &k,
            |_| {},
            |r| r[2].1["last_line_sha256"] = json!("ee".repeat(32)),
        )
        .unwrap_err();
        assert_eq!(line, 3);
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("not the ceremony file's [source]")),
            "{problem:?}"
        );
        // A record 0 that calls the reimport an import: not what its ceremony file says.
        let (line, problem) =
            reimport(&k, |_| {}, |r| r[0].1["kind"] = json!("import")).unwrap_err();
        assert_eq!(line, 1);
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("not what the embedded ceremony file says")),
            "{problem:?}"
        );
    }

    // --- rollback (alias moves)

    const PREVIOUS: [&str; 2] = [
        "arn:aws:kms:us-east-1:000000000000:key/p0",
        "arn:aws:kms:us-east-1:000000000000:key/p1",
    ];

    /// A 2-of-3 rollback of both targets from an alias swap that moved each alias from
    /// PREVIOUS[i] to ARNS[i]. `swap` changes the swap statement before the custodians sign
    /// it; `edit` changes the records before the audit key signs them.
    fn rollback(
        k: &Keys,
        swap: impl FnOnce(&mut quorum::SwapStatement),
        edit: impl FnOnce(&mut Records),
    ) -> Records {
        let file = format!(
            "{}[source]\ntranscript = \"swap.jsonl\"\nlast_line_sha256 = \"{SOURCE}\"\n",
            file_for(k, "rollback")
        );
        let plan = v(&PlanStatement {
            point: "plan".into(),
            ceremony_id: "t".into(),
            ceremony_file_sha256: sha(&file),
            audit_key_sha256: k.audit.fingerprint(),
            targets: KEYS.iter().map(|k| k.to_string()).collect(),
            resumes: None,
            run_id: None,
        });
        let mut started = started(&k.audit, &file);
        started.kind = Some("rollback".into());
        let mut opened = hsm_opened();
        opened.audit_key_sign_only = Some(true);
        opened.audit_key_usage = Some("sign only".into());
        let mut statement = quorum::SwapStatement {
            point: "swap".into(),
            ceremony_id: "t".into(),
            kind: "rollback".into(),
            targets: (0..2)
                .map(|i| quorum::SwapTarget {
                    target_index: i as u64,
                    alias: KEYS[i].into(),
                    from_key_arn: ARNS[i].into(),
                    to_key_arn: PREVIOUS[i].into(),
                })
                .collect(),
            run_id: None,
        };
        swap(&mut statement);
        let value = v(&statement);
        let (a, b, c) = (&k.custodians[0].1, &k.custodians[1].1, &k.custodians[2].1);
        let mut r: Records = vec![
            (RecordType::CeremonyStarted, v(&started)),
            (RecordType::HsmOpened, v(&opened)),
            (
                RecordType::SourceVerified,
                v(&p::SourceVerified {
                    transcript: "swap.jsonl".into(),
                    last_line_sha256: SOURCE.into(),
                    ceremony_id: "s".into(),
                    kind: "rotate".into(),
                    strategy: Some("alias-swap".into()),
                    records: 33,
                    format_version: 3,
                    dual_control: true,
                    kept_targets: vec![],
                    swaps: (0..2)
                        .map(|i| p::SourceSwap {
                            alias: KEYS[i].into(),
                            from_key_arn: PREVIOUS[i].into(),
                            to_key_arn: ARNS[i].into(),
                        })
                        .collect(),
                }),
            ),
        ];
        for i in 0..2 {
            r.push((
                RecordType::AliasPreflight,
                v(&p::AliasPreflight {
                    target_index: i as u64,
                    alias: KEYS[i].into(),
                    alias_key_arn: ARNS[i].into(),
                    alias_key_state: "Enabled".into(),
                    alias_key_enabled: true,
                    alias_key_origin: "EXTERNAL".into(),
                    expected_key_arn: ARNS[i].into(),
                    tags: Default::default(),
                    restore_key_arn: Some(PREVIOUS[i].into()),
                    restore_key_state: Some("Enabled".into()),
                    restore_key_enabled: Some(true),
                }),
            ));
        }
        r.extend([
            (RecordType::Approval, v(&approval("A", a, &plan))),
            (RecordType::Approval, v(&approval("B", b, &plan))),
            (RecordType::Approval, v(&approval("B", b, &value))),
            (RecordType::Approval, v(&approval("C", c, &value))),
            (
                RecordType::SwapConfirmed,
                v(&p::SwapConfirmed {
                    approved_by: vec!["B".into(), "C".into()],
                    dual_control: true,
                    statement: value.clone(),
                    statement_sha256: quorum::statement_sha256(&value).unwrap(),
                }),
            ),
        ]);
        for i in 0..2 {
            r.push((
                RecordType::AliasUpdated,
                v(&p::AliasUpdated {
                    target_index: i as u64,
                    alias: KEYS[i].into(),
                    from_key_arn: ARNS[i].into(),
                    to_key_arn: PREVIOUS[i].into(),
                    outcome: "updated".into(),
                    evidence: vec![],
                }),
            ));
            r.push((
                RecordType::AliasVerified,
                v(&p::AliasVerified {
                    target_index: i as u64,
                    alias: KEYS[i].into(),
                    alias_key_arn: PREVIOUS[i].into(),
                    to_key_arn: PREVIOUS[i].into(),
                    to_key_state: "Enabled".into(),
                    from_key_arn: ARNS[i].into(),
                    from_key_state: "Enabled".into(),
                    round_trip: "ok".into(),
                    problems: vec![],
                }),
            ));
        }
        r.push((
            RecordType::CleanupDone,
            v(&p::CleanupDone {
                destroyed_handles: vec![],
                kept_keys: vec![],
            }),
        ));
        r.push((
            RecordType::CeremonyFinished,
            v(&p::CeremonyFinished {
                targets: (0..2)
                    .map(|i| p::TargetOutcome {
                        index: i as u64,
                        key: KEYS[i].into(),
                        key_arn: Some(PREVIOUS[i].into()),
                        status: "rolled_back".into(),
                        key_material_id: None,
                        kcv: None,
                    })
                    .collect(),
                records: 0,
            }),
        ));
        edit(&mut r);
        r
    }

    /// Verifies with byok and with the reference verifier of docs/transcript.md: both accept,
    /// or both refuse (byok's problem and line returned, the reference's message checked to
    /// contain `reference`).
    fn both(k: &Keys, r: Records, reference: &str) -> Result<(), (usize, Problem)> {
        both_as(k, r, 3, reference)
    }

    /// [`both`] for records written as format version `version`.
    fn both_as(
        k: &Keys,
        r: Records,
        version: u64,
        reference: &str,
    ) -> Result<(), (usize, Problem)> {
        let bytes = sign_all(k, r, |_| version);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let ours = verify_bytes(&bytes, &opts(k)).map(|_| ());
        match &ours {
            Ok(()) => {
                crate::common::reference_verify(&path, &k.audit.fingerprint());
            }
            Err(_) => {
                let why = crate::common::reference_rejects(&path, &k.audit.fingerprint());
                assert!(why.contains(reference), "reference verifier: {why}");
            }
        }
        ours.map_err(|e| (e.line, e.problem))
    }

    fn position(r: &Records, kind: RecordType) -> usize {
        r.iter().position(|(t, _)| *t == kind).unwrap()
    }

    #[test]
    fn v3_a_rollback_verifies_in_both_verifiers() {
        let k = keys();
        both(&k, rollback(&k, |_| {}, |_| {}), "").unwrap();
    }

    #[test]
    fn v3_a_rollback_from_another_source_than_the_file_pins_is_refused() {
        let k = keys();
        let mut line = 0;
        let r = rollback(
            &k,
            |_| {},
            |r| {
                let i = position(r, RecordType::SourceVerified);
                r[i].1["last_line_sha256"] = json!("ab".repeat(32));
                line = i + 1;
            },
        );
        let (at, problem) = both(&k, r, "not the ceremony file's [source]").unwrap_err();
        assert_eq!(at, line);
        assert!(
            matches!(&problem, Problem::BadPayload { why, .. } if why.contains("not the ceremony file's [source]")),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_a_rollback_to_a_key_the_source_did_not_move_from_is_refused() {
        let k = keys();
        // The custodians signed a statement moving alias 1 to key p0, and the preflight was
        // edited to match (re-signed by the audit key): the source says p1.
        let mut line = 0;
        let r = rollback(
            &k,
            |s| s.targets[1].to_key_arn = PREVIOUS[0].into(),
            |r| {
                let i = position(r, RecordType::AliasPreflight) + 1;
                r[i].1["restore_key_arn"] = json!(PREVIOUS[0]);
                line = i + 1;
            },
        );
        let (at, problem) =
            both(&k, r, "not the ones the source moved the alias between").unwrap_err();
        assert_eq!(at, line);
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 1,
                why: "alias_preflight's keys are not the ones the source transcript moved the alias between".into()
            }
        );
    }

    #[test]
    fn v3_a_swap_statement_other_than_the_preflight_says_is_refused() {
        let k = keys();
        // The custodians approved moving alias 0 to p1; alias_preflight says p0.
        let r = rollback(&k, |s| s.targets[0].to_key_arn = PREVIOUS[1].into(), |_| {});
        let line = position(&r, RecordType::SwapConfirmed) + 1;
        let (at, problem) =
            both(&k, r, "swap statement's entry is not what alias_preflight").unwrap_err();
        assert_eq!(at, line);
        assert!(
            matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("alias_preflight")),
            "{problem:?}"
        );
    }

    #[test]
    fn v3_an_alias_move_needs_the_swap_quorum_and_the_approved_keys() {
        let k = keys();
        // Drop C's swap approval: swap_confirmed has one approver.
        let r = rollback(
            &k,
            |_| {},
            |r| {
                let i = position(r, RecordType::SwapConfirmed);
                r.remove(i - 1);
                r[i - 1].1["approved_by"] = json!(["B"]);
            },
        );
        let line = position(&r, RecordType::SwapConfirmed) + 1;
        let (at, problem) =
            both(&k, r, "swap_confirmed is not preceded by 2 approvals").unwrap_err();
        assert_eq!(at, line);
        assert!(
            matches!(
                problem,
                Problem::QuorumMissing {
                    need: 2,
                    have: 1,
                    ..
                }
            ),
            "{problem:?}"
        );
        // An UpdateAlias to another key than the approved one, re-signed by the audit key.
        let r = rollback(
            &k,
            |_| {},
            |r| {
                let i = position(r, RecordType::AliasUpdated);
                r[i].1["to_key_arn"] = json!(ARNS[1]);
            },
        );
        let line = position(&r, RecordType::AliasUpdated) + 1;
        let (at, problem) = both(
            &k,
            r,
            "moved an alias between keys the swap statement does not name",
        )
        .unwrap_err();
        assert_eq!(at, line);
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 0,
                why: "moved an alias between keys the swap statement does not name for it".into()
            }
        );
        // A final outcome rolled_back for a target whose alias_updated was dropped.
        let r = rollback(
            &k,
            |_| {},
            |r| {
                let i = r
                    .iter()
                    .rposition(|(t, _)| *t == RecordType::AliasUpdated)
                    .unwrap();
                r.remove(i + 1);
                r.remove(i);
            },
        );
        let (_, problem) = both(&k, r, "reported rolled_back, but no such alias move").unwrap_err();
        assert_eq!(
            problem,
            Problem::BadTarget {
                index: 1,
                why: "reported rolled_back, but no such alias move of it is recorded".into()
            }
        );
        // Alias records in a ceremony whose record 0 says kind = import.
        let r = rollback(&k, |_| {}, |r| r[0].1["kind"] = json!("import"));
        let (at, problem) = both(&k, r, "").unwrap_err();
        assert!(at <= 3, "{at}");
        assert!(
            matches!(
                problem,
                Problem::Misplaced { .. } | Problem::BadPayload { .. }
            ),
            "{problem:?}"
        );
    }

    /// A source transcript (rollback, reimport) is written by whoever holds the audit key: its
    /// text reaches the operator's terminal only escaped.
    #[test]
    fn the_source_transcript_loader_prints_transcript_text_escaped() {
        let k = keys();
        let r = records(
            &k,
            |_| {},
            |r| {
                r[1].1["\u{1b}[2K\rbyok> approve"] = json!(1);
            },
        );
        let bytes = sign_all(&k, r, |_| 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let err = byok::ceremony::source::Source::load(
            &path,
            "src\u{202e}.jsonl",
            &"0".repeat(64),
            &k.audit.fingerprint(),
            false,
        )
        .unwrap_err()
        .to_string();
        crate::common::assert_contains(
            &err,
            "the source transcript src\\u{202e}.jsonl is INVALID at line 2: data of hsm_opened does not match the format-version-2 contract: unknown field `\\u{1b}[2K\\u{d}byok> approve`",
        );
        assert!(byok::text::forbidden_char(&err).is_none(), "{err:?}");
    }

    /// Format version 4: the ceremony file pins `[kms] account` and names `endpoint`.
    const LOCAL: &str = "http://127.0.0.1:4566";
    const ACCOUNT: &str = "000000000000";

    fn file_v4(k: &Keys) -> String {
        file(k).replace(
            "region = \"us-east-1\"\n",
            &format!("region = \"us-east-1\"\naccount = \"{ACCOUNT}\"\nendpoint = \"{LOCAL}\"\n"),
        )
    }

    fn identity() -> p::KmsIdentity {
        p::KmsIdentity {
            region: "us-east-1".into(),
            endpoint: LOCAL.into(),
            endpoint_overridden: true,
            endpoint_source: "ceremony_file".into(),
            endpoint_env: vec!["AWS_ENDPOINT_URL_KMS".into()],
            sts_endpoint: LOCAL.into(),
            account: ACCOUNT.into(),
            caller_arn: format!("arn:aws:iam::{ACCOUNT}:root"),
            pinned_account: Some(ACCOUNT.into()),
        }
    }

    /// A version-4 import: version 3's order with `kms_identity` (changed by `who`) before
    /// the first `kms_preflight`; then `edit`.
    fn records_v4(
        k: &Keys,
        who: impl FnOnce(&mut p::KmsIdentity),
        edit: impl FnOnce(&mut Records),
    ) -> Records {
        let mut id = identity();
        who(&mut id);
        records_for(
            k,
            &file_v4(k),
            None,
            |_| {},
            |_| {},
            |r| {
                v3_order(r);
                let at = position(r, RecordType::KmsPreflight);
                r.insert(at, (RecordType::KmsIdentity, v(&id)));
                // Version 4 also ties every statement to record 0's run id.
                v4::to_v4(k, r, v4::RUN, v4::RUN);
                edit(r);
            },
        )
    }

    /// [`both`] for version-4 records.
    fn both_v4(k: &Keys, r: Records, reference: &str) -> Result<(), (usize, Problem)> {
        both_as(k, r, 4, reference)
    }

    fn whereabouts_problem(result: Result<(), (usize, Problem)>, line: usize) -> String {
        match result {
            Err((at, Problem::Whereabouts(why))) if at == line => why,
            other => panic!("expected a kms_identity problem at line {line}, got {other:?}"),
        }
    }

    #[test]
    fn v4_where_it_ran_verifies_in_both_verifiers() {
        let k = keys();
        both_v4(&k, records_v4(&k, |_| {}, |_| {}), "").unwrap();
    }

    #[test]
    fn v4_an_account_other_than_the_pinned_one_is_refused_by_both_verifiers() {
        let k = keys();
        let r = records_v4(&k, |id| id.account = "999999999999".into(), |_| {});
        // Refused at the record after it: only ceremony_aborted may follow such a record.
        let at = position(&r, RecordType::KmsIdentity) + 2;
        let why = whereabouts_problem(
            both_v4(
                &k,
                r,
                "but the ceremony file pins kms.account = '000000000000'",
            ),
            at,
        );
        assert_eq!(
            why,
            "the ceremony ran as account 999999999999 (arn:aws:iam::000000000000:root), but the ceremony file pins kms.account = \"000000000000\", and the ceremony went on to kms_preflight (byok stops there)"
        );
    }

    #[test]
    fn v4_a_ceremony_stopped_at_a_wrong_account_verifies_in_both_verifiers() {
        // What byok writes when the pin does not match: kms_identity, then the abort.
        let k = keys();
        let r = records_v4(
            &k,
            |id| id.account = "999999999999".into(),
            |r| {
                let at = position(r, RecordType::KmsIdentity);
                r.truncate(at + 1);
                r.push((
                    RecordType::CeremonyAborted,
                    v(&p::CeremonyAborted {
                        step: "kms_preflight".into(),
                        target_index: None,
                        error_class: "precondition".into(),
                        message: "wrong account".into(),
                        destroyed_handles: vec![],
                        kept_keys: vec![],
                        cleanup_errors: vec![],
                        targets: (0..2)
                            .map(|i| p::TargetOutcome {
                                index: i as u64,
                                key: KEYS[i].into(),
                                key_arn: None,
                                status: "not_started".into(),
                                key_material_id: None,
                                kcv: None,
                            })
                            .collect(),
                    }),
                ));
            },
        );
        both_v4(&k, r, "").unwrap();
    }

    #[test]
    fn v4_a_pinned_account_the_record_does_not_repeat_is_refused() {
        let k = keys();
        let r = records_v4(&k, |id| id.pinned_account = None, |_| {});
        let at = position(&r, RecordType::KmsIdentity) + 1;
        let why = whereabouts_problem(both_v4(&k, r, "pinned_account"), at);
        crate::common::assert_contains(
            &why,
            "pinned_account is none, but the ceremony file's kms.account is \"000000000000\"",
        );
    }

    #[test]
    fn v4_an_endpoint_other_than_the_named_one_is_refused_by_both_verifiers() {
        for (what, change) in [
            (
                "endpoint",
                (|id: &mut p::KmsIdentity| id.endpoint = "http://127.0.0.1:9999".into())
                    as fn(&mut p::KmsIdentity),
            ),
            ("sts_endpoint", |id| {
                id.sts_endpoint = "https://sts.us-east-1.amazonaws.com".into()
            }),
        ] {
            let k = keys();
            let r = records_v4(&k, change, |_| {});
            let at = position(&r, RecordType::KmsIdentity) + 2;
            let why =
                whereabouts_problem(both_v4(&k, r, "names endpoint http://127.0.0.1:4566"), at);
            crate::common::assert_contains(&why, &format!("{what} is "));
            crate::common::assert_contains(
                &why,
                "but the ceremony file names endpoint http://127.0.0.1:4566",
            );
        }
    }

    #[test]
    fn v4_without_kms_identity_is_refused_by_both_verifiers() {
        let k = keys();
        let r = records_v4(
            &k,
            |_| {},
            |r| {
                let at = position(r, RecordType::KmsIdentity);
                r.remove(at);
            },
        );
        let at = position(&r, RecordType::KmsPreflight) + 1;
        let why = whereabouts_problem(
            both_v4(&k, r, "records kms_identity before kms_preflight"),
            at,
        );
        assert_eq!(
            why,
            "a version 4 transcript records kms_identity (where the ceremony ran, and as whom) before kms_preflight; it has none"
        );
    }

    #[test]
    fn v4_a_second_kms_identity_is_refused_and_version_3_has_none() {
        let k = keys();
        let r = records_v4(
            &k,
            |_| {},
            |r| {
                let at = position(r, RecordType::KmsIdentity);
                let again = r[at].clone();
                r.insert(at + 1, again);
            },
        );
        let at = position(&r, RecordType::KmsIdentity) + 2;
        let why = whereabouts_problem(both_v4(&k, r, "a second kms_identity"), at);
        crate::common::assert_contains(&why, "a second kms_identity");
        // The same record in a version-3 transcript (no run id either).
        let r = records_for(
            &k,
            &file_v4(&k),
            None,
            |_| {},
            |_| {},
            |r| {
                v3_order(r);
                let at = position(r, RecordType::KmsPreflight);
                r.insert(at, (RecordType::KmsIdentity, v(&identity())));
            },
        );
        let at = position(&r, RecordType::KmsIdentity) + 1;
        let (line, problem) = both(&k, r, "exists only from format version 4 on").unwrap_err();
        assert_eq!(line, at);
        assert!(matches!(problem, Problem::Misplaced { .. }), "{problem:?}");
    }

    /// Format version 4 and the rules of issue 11 (in its own file).
    mod v4 {
        include!("verify_v4.rs");
    }
}
