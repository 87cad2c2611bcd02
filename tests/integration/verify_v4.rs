// Format version 4 and the rules of issue 11: forged transcripts, re-signed with the test
// audit key (and the custodians' keys where they sign), that `byok verify` and the reference
// verifier of docs/transcript.md must both refuse, each with a message that names the rule;
// and the exit codes of the pins through the real binary.
//
// Included as `transcript::v2::v4` to build on its transcript builder (`records`,
// `sign_all`).

use super::*;

pub(super) const RUN: &str = "5a4d1e7c0b9f23a86e1d4c7b2a9f0e31";
const OTHER_RUN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// `r` as version 4 writes it: record 0 carries `run_id`, and every statement the custodians
/// signed carries `statement_run` and is signed again (the `*_confirmed` records repeat it).
pub(super) fn to_v4(k: &Keys, r: &mut Records, run_id: &str, statement_run: &str) {
    r[0].1["run_id"] = json!(run_id);
    for (kind, d) in r.iter_mut() {
        match kind {
            RecordType::Approval => {
                let mut statement = d["statement"].clone();
                statement["run_id"] = json!(statement_run);
                let name = d["custodian"].as_str().unwrap().to_string();
                let by = &k.custodians.iter().find(|(n, _)| *n == name).unwrap().1;
                *d = v(&approval(&name, by, &statement));
            }
            RecordType::ImportConfirmed | RecordType::RotateConfirmed | RecordType::SwapConfirmed => {
                d["statement"]["run_id"] = json!(statement_run);
                d["statement_sha256"] = json!(quorum::statement_sha256(&d["statement"]).unwrap());
            }
            _ => {}
        }
    }
}

/// A valid two-target 2-of-3 import, format version 4; `edit` forges it before signing.
fn forged(k: &Keys, edit: impl FnOnce(&mut Records)) -> Records {
    let mut r = records(k, |_| {}, v3_order);
    to_v4(k, &mut r, RUN, RUN);
    let at = position(&r, RecordType::KmsPreflight);
    r.insert(at, (RecordType::KmsIdentity, v(&aws_identity())));
    edit(&mut r);
    r
}

/// Where a ceremony whose file names no endpoint and pins no account ran: AWS's own
/// endpoints, as `kms_identity` records them.
fn aws_identity() -> p::KmsIdentity {
    p::KmsIdentity {
        region: "us-east-1".into(),
        endpoint: "https://kms.us-east-1.amazonaws.com".into(),
        endpoint_overridden: false,
        endpoint_source: "aws".into(),
        endpoint_env: vec![],
        sts_endpoint: "https://sts.us-east-1.amazonaws.com".into(),
        account: "111122223333".into(),
        caller_arn: "arn:aws:iam::111122223333:role/byok-ceremony".into(),
        pinned_account: None,
    }
}

fn write(k: &Keys, r: Records, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("t.jsonl");
    std::fs::write(&path, sign_all(k, r, |_| 4)).unwrap();
    path
}

/// Both verifiers on the version-4 `r` (byok with `opts`, the reference with `pins`): both
/// accept, or both refuse, the reference with a message containing `reference`.
fn both_pinned(
    k: &Keys,
    r: Records,
    opts: &VerifyOptions,
    pins: &[&str],
    reference: &str,
) -> Result<byok::transcript::verify::Report, (usize, Problem)> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(k, r, dir.path());
    let ours = verify_bytes(&std::fs::read(&path).unwrap(), opts);
    match &ours {
        Ok(_) => {
            crate::common::reference_verify(&path, &k.audit.fingerprint());
        }
        Err(_) => {
            let why =
                crate::common::reference_rejects_pinned(&path, &k.audit.fingerprint(), pins);
            assert!(why.contains(reference), "reference verifier: {why}");
        }
    }
    ours.map_err(|e| (e.line, e.problem))
}

fn both4(k: &Keys, r: Records, reference: &str) -> Result<(), (usize, Problem)> {
    both_pinned(k, r, &opts(k), &[], reference).map(|_| ())
}

fn at(r: &Records, kind: RecordType) -> usize {
    r.iter().position(|(t, _)| *t == kind).unwrap()
}

/// Record 0 with another ceremony file (the plan statement then names another file too,
/// but record 0 fails first).
fn with_file(r: &mut Records, file: &str) {
    r[0].1["ceremony_file"] = json!(file);
    r[0].1["ceremony_file_sha256"] = json!(sha(file));
}

#[test]
fn a_version_4_transcript_verifies_in_both_and_reports_its_run_and_statements() {
    let k = keys();
    let report = both_pinned(&k, forged(&k, |_| {}), &opts(&k), &[], "").unwrap();
    assert_eq!(report.version, 4);
    assert_eq!(report.run_id.as_deref(), Some(RUN));
    let points: Vec<&str> = report.statements.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(points, ["plan", "import"]);
    assert_eq!(report.custodians.len(), 3);
    assert_eq!(report.custodians[0].0, "A");
}

#[test]
fn approvals_replayed_from_another_run_are_refused() {
    let k = keys();
    let mut r = records(&k, |_| {}, v3_order);
    // The custodians signed statements of run OTHER_RUN; record 0 is of run RUN.
    to_v4(&k, &mut r, RUN, OTHER_RUN);
    let preflight = position(&r, RecordType::KmsPreflight);
    r.insert(preflight, (RecordType::KmsIdentity, v(&aws_identity())));
    let first = at(&r, RecordType::Approval) + 1;
    let (line, problem) = both4(&k, r, "carries another run id").unwrap_err();
    assert_eq!(line, first);
    assert!(
        matches!(&problem, Problem::WrongRun { expected, .. } if expected == RUN),
        "{problem:?}"
    );
    // A version-4 record 0 without a run id.
    let r = forged(&k, |r| {
        r[0].1.as_object_mut().unwrap().remove("run_id");
    });
    let (line, problem) = both4(&k, r, "run_id").unwrap_err();
    assert_eq!(line, 1);
    assert!(
        matches!(&problem, Problem::BadPayload { why, .. } if why.contains("run_id")),
        "{problem:?}"
    );
}

#[test]
fn an_embedded_file_that_check_refuses_is_refused() {
    let k = keys();
    for (edit, rule, named) in [
        ("quorum = 2", "quorum = 0", "dual_control.quorum"),
        ("quorum = 2", "quorum = 1", "dual_control.quorum"),
        ("quorum = 2", "quorum = \"2\"", "dual_control.quorum"),
        ("[dual_control]\nquorum = 2\n", "", "missing field `dual_control`"),
    ] {
        let file = file(&k).replacen(edit, rule, 1);
        let r = forged(&k, |r| with_file(r, &file));
        let (line, problem) = both4(&k, r, &format!("fails byok check: {named}")).unwrap_err();
        assert_eq!(line, 1, "{rule:?}");
        assert!(
            matches!(&problem, Problem::CeremonyFile(why) if why.contains(named)),
            "{rule:?}: {problem:?}"
        );
    }
}

#[test]
fn custodian_keys_swapped_for_the_forgers_own_are_caught_by_the_custodian_pins() {
    let real = keys();
    // The audit key's holder writes a whole valid ceremony whose file pins custodian keys
    // they made themselves.
    let forger = Keys {
        audit: real.audit,
        custodians: keys().custodians,
    };
    let r = forged(&forger, |_| {});
    let pins: Vec<String> = real
        .custodians
        .iter()
        .map(|(n, s)| format!("{n}={}", s.fingerprint()))
        .collect();
    let mut opts = opts(&forger);
    opts.custodians = real
        .custodians
        .iter()
        .map(|(n, s)| (n.to_string(), s.fingerprint()))
        .collect();
    let mut args = Vec::new();
    for p in &pins {
        args.extend(["--custodian", p.as_str()]);
    }
    let (line, problem) =
        both_pinned(&forger, r.clone(), &opts, &args, "not what the auditor pinned").unwrap_err();
    assert_eq!(line, 1);
    assert!(
        matches!(&problem, Problem::NotAsPinned(why) if why.starts_with("custodian A: the embedded ceremony file pins approval key")),
        "{problem:?}"
    );
    // Without the custodian pins it is a valid transcript of the forger's ceremony.
    both_pinned(&forger, r.clone(), &super::opts(&forger), &[], "").unwrap();
    // A quorum pin larger than the file's.
    let mut opts = super::opts(&forger);
    opts.require_quorum = Some(3);
    let (_, problem) = both_pinned(
        &forger,
        r,
        &opts,
        &["--require-quorum", "3"],
        "smaller than the required 3",
    )
    .unwrap_err();
    assert!(
        matches!(&problem, Problem::NotAsPinned(why) if why.contains("smaller than the required 3")),
        "{problem:?}"
    );
}

#[test]
fn a_missing_step_is_refused_where_it_was_needed() {
    let k = keys();
    // hsm_opened: the next record is refused.
    let r = forged(&k, |r| {
        r.remove(at(r, RecordType::HsmOpened));
    });
    let (line, problem) = both4(&k, r, "does not follow hsm_opened").unwrap_err();
    assert_eq!(line, 2);
    assert!(
        matches!(&problem, Problem::Misplaced { why, .. } if why.contains("follows hsm_opened")),
        "{problem:?}"
    );
    // capability_checked: the first wrap is refused.
    let r = forged(&k, |r| {
        r.remove(at(r, RecordType::CapabilityChecked));
    });
    let wrap = at(&r, RecordType::KeyWrapped) + 1;
    let (line, problem) = both4(&k, r, "does not follow capability_checked").unwrap_err();
    assert_eq!(line, wrap);
    assert!(
        matches!(&problem, Problem::Misplaced { why, .. } if why.contains("capability_checked")),
        "{problem:?}"
    );
    // cleanup_done: ceremony_finished is refused.
    let r = forged(&k, |r| {
        r.remove(at(r, RecordType::CleanupDone));
    });
    let last = r.len();
    let (line, problem) = both4(&k, r, "does not follow cleanup_done").unwrap_err();
    assert_eq!(line, last);
    assert!(
        matches!(&problem, Problem::Misplaced { why, .. } if why.contains("follows cleanup_done")),
        "{problem:?}"
    );
    // import_verified of target 1: ceremony_finished is refused, naming it.
    let r = forged(&k, |r| {
        r.retain(|(t, d)| !(*t == RecordType::ImportVerified && d["target_index"] == 1));
    });
    let last = r.len();
    let (line, problem) = both4(&k, r, "its import_verified record is missing").unwrap_err();
    assert_eq!(line, last);
    assert_eq!(
        problem,
        Problem::BadTarget {
            index: 1,
            why: "reported imported in ceremony_finished, but its import_verified record is missing"
                .into()
        }
    );
    // import_parameters without the target's kms_preflight.
    let r = forged(&k, |r| {
        r.retain(|(t, d)| !(*t == RecordType::KmsPreflight && d["target_index"] == 0));
    });
    let (_, problem) =
        both4(&k, r, "is not preceded by this target's kms_preflight").unwrap_err();
    assert!(
        matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("kms_preflight")),
        "{problem:?}"
    );
}

#[test]
fn ceremony_finished_without_key_imported_is_refused() {
    let k = keys();
    // Claimed imported: no import of it is recorded.
    let r = forged(&k, |r| {
        r.retain(|(t, d)| {
            !(matches!(t, RecordType::KeyImported | RecordType::ImportVerified)
                && d["target_index"] == 0)
        });
    });
    let (_, problem) = both4(&k, r, "reported imported, but no import").unwrap_err();
    assert_eq!(
        problem,
        Problem::BadTarget {
            index: 0,
            why: "reported imported, but no import of it is recorded".into()
        }
    );
    // Claimed not started: a finished import leaves no target behind.
    let r = forged(&k, |r| {
        r.retain(|(t, d)| {
            !(matches!(t, RecordType::KeyImported | RecordType::ImportVerified)
                && d["target_index"] == 0)
        });
        let last = r.len() - 1;
        r[last].1["targets"][0]["status"] = json!("not_started");
    });
    let (_, problem) = both4(&k, r, "a finished import ceremony reports it not_started").unwrap_err();
    assert!(
        matches!(&problem, Problem::BadTarget { index: 0, why } if why.starts_with("a finished import ceremony reports it not_started")),
        "{problem:?}"
    );
}

#[test]
fn a_final_record_that_misstates_the_kcv_the_arn_or_the_material_is_refused() {
    let k = keys();
    let last = |r: &mut Records| r.len() - 1;
    let r = forged(&k, |r| {
        let n = last(r);
        r[n].1["targets"][1]["kcv"] = json!("000000");
    });
    let (_, problem) = both4(&k, r, "the final record says KCV 000000").unwrap_err();
    assert_eq!(
        problem,
        Problem::BadTarget {
            index: 1,
            why: "the final record says KCV 000000, but the approved import statement says 650921"
                .into()
        }
    );
    let r = forged(&k, |r| {
        let n = last(r);
        r[n].1["targets"][0]["key_arn"] = json!(ARNS[1]);
    });
    let (_, problem) = both4(&k, r, "the final record says key ARN").unwrap_err();
    assert!(
        matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("but the step records name")),
        "{problem:?}"
    );
    let r = forged(&k, |r| {
        let n = last(r);
        r[n].1["targets"][0]["key_material_id"] = json!("cd".repeat(32));
    });
    let (_, problem) = both4(&k, r, "says KeyMaterialId").unwrap_err();
    assert!(
        matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("but key_imported says")),
        "{problem:?}"
    );
}

#[test]
fn hashes_that_differ_between_records_are_refused() {
    let k = keys();
    // The blob imported is not the approved one.
    let r = forged(&k, |r| {
        let i = at(r, RecordType::KeyImported);
        r[i].1["blob_sha256"] = json!("ff".repeat(32));
    });
    let (_, problem) = both4(&k, r, "other than the approved ones").unwrap_err();
    assert!(
        matches!(&problem, Problem::BadTarget { why, .. } if why.contains("blob or import token other than the approved")),
        "{problem:?}"
    );
    // The wrap used another public key than KMS gave.
    let r = forged(&k, |r| {
        let i = at(r, RecordType::KeyWrapped);
        r[i].1["wrapping_public_key_sha256"] = json!("ee".repeat(32));
    });
    let wrap = r_line(&k, RecordType::KeyWrapped);
    let (line, problem) = both4(&k, r, "another wrapping key or algorithm").unwrap_err();
    assert_eq!(line, wrap);
    assert!(
        matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("but import_parameters gave")),
        "{problem:?}"
    );
}

/// The 1-based line of the first `kind` in the unforged transcript.
fn r_line(k: &Keys, kind: RecordType) -> usize {
    at(&forged(k, |_| {}), kind) + 1
}

#[test]
fn a_signature_with_trailing_bytes_is_refused_by_both() {
    use base64::Engine as _;
    let k = keys();
    let bytes = sign_all(&k, forged(&k, |_| {}), |_| 4);
    let text = String::from_utf8(bytes).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // The last line's signature, twice (DER ‖ DER): still the same record, but not one DER
    // value. No line follows, so the chain is intact.
    let n = lines.len() - 1;
    let mut record: serde_json::Value = serde_json::from_str(&lines[n]).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = b64.decode(record["sig"].as_str().unwrap()).unwrap();
    record["sig"] = json!(b64.encode([sig.clone(), sig].concat()));
    lines[n] = byok::jcs::to_string(&record).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let e = verify_bytes(&std::fs::read(&path).unwrap(), &opts(&k)).unwrap_err();
    assert_eq!((e.line, e.problem), (n + 1, Problem::BadSignature));
    let why = crate::common::reference_rejects(&path, &k.audit.fingerprint());
    assert!(why.contains(&format!("line {}: bad signature", n + 1)), "{why}");
}

/// `byok verify` through the real binary: 0 valid and pinned, 8 valid but not pinned, 1
/// invalid, 2 bad pin input.
#[test]
fn the_pins_exit_codes() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&k, forged(&k, |_| {}), dir.path());
    let fp = k.audit.fingerprint();
    let run = |args: &[&str]| {
        let out = crate::common::byok()
            .arg("verify")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), crate::common::stdout(&out) + &crate::common::stderr(&out))
    };
    let (code, text) = run(&["--audit-key-sha256", &fp]);
    assert_eq!(code, Some(0), "{text}");
    crate::common::assert_contains(&text, &format!("  run id          {RUN}"));
    crate::common::assert_contains(&text, "  statement       plan SHA-256 ");
    crate::common::assert_contains(&text, "  statement       import SHA-256 ");
    crate::common::assert_contains(&text, "  custodian       A key SHA-256 ");
    crate::common::assert_contains(&text, &format!("  pinned          audit key SHA-256 {fp}"));
    crate::common::assert_contains(&text, "  ceremony file   SHA-256 ");

    let (code, text) = run(&[]);
    assert_eq!(code, Some(8), "{text}");
    crate::common::assert_contains(&text, "NOT PINNED");
    crate::common::assert_contains(&text, "pass --audit-key-sha256 HEX (or --pin-file FILE)");

    // The approved ceremony file, byte for byte; a file that differs in one byte.
    let approved = dir.path().join("approved.toml");
    std::fs::write(&approved, file(&k)).unwrap();
    let (code, text) = run(&["--audit-key-sha256", &fp, "--ceremony-file"]
        .into_iter()
        .chain([approved.to_str().unwrap()])
        .collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{text}");
    std::fs::write(&approved, file(&k) + "\n").unwrap();
    let (code, text) = run(&["--audit-key-sha256", &fp, "--ceremony-file", approved.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    crate::common::assert_contains(&text, "not byte-identical");

    // A pin file: valid, then naming a custodian with another key, then malformed.
    let pins = dir.path().join("pins.toml");
    let custodians: String = k
        .custodians
        .iter()
        .map(|(n, s)| format!("{n} = \"{}\"\n", s.fingerprint()))
        .collect();
    std::fs::write(
        &pins,
        format!("audit_key_sha256 = \"{fp}\"\nrequire_quorum = 2\n[custodians]\n{custodians}"),
    )
    .unwrap();
    let (code, text) = run(&["--pin-file", pins.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    crate::common::assert_contains(&text, "  pinned          custodian B key SHA-256 ");
    crate::common::assert_contains(&text, "  pinned          quorum of at least 2");
    let (code, text) = run(&["--audit-key-sha256", &fp, "--custodian", &format!("A={}", "0".repeat(64))]);
    assert_eq!(code, Some(1), "{text}");
    crate::common::assert_contains(&text, "not what the auditor pinned: custodian A");
    let (code, text) = run(&["--audit-key-sha256", &fp, "--require-quorum", "3"]);
    assert_eq!(code, Some(1), "{text}");
    let (code, text) = run(&["--audit-key-sha256", &fp, "--custodian", &format!("Mallory={}", "0".repeat(64))]);
    assert_eq!(code, Some(1), "{text}");
    crate::common::assert_contains(&text, "custodian Mallory: the embedded ceremony file names no custodian so called");

    // Bad pin input: exit 2 with what to fix.
    for (args, says) in [
        (vec!["--audit-key-sha256", "abc"], "--audit-key-sha256 must be 64 hex digits"),
        (vec!["--custodian", "Alice"], "expected NAME=HEX"),
        (vec!["--custodian", "Alice=xyz"], "must be 64 hex digits"),
        (vec!["--pin-file", "/nonexistent/pins.toml"], "cannot read it"),
        (vec!["--ceremony-file", "/nonexistent/c.toml"], "cannot read it"),
        (vec!["--require-quorum", "1"], "at least 2"),
    ] {
        let (code, text) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        crate::common::assert_contains(&text, says);
    }
    std::fs::write(&pins, format!("audit_key_sha256 = \"{fp}\"\nquorum = 2\n")).unwrap();
    let (code, text) = run(&["--pin-file", pins.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{text}");
    crate::common::assert_contains(&text, "unknown field `quorum`");
    std::fs::write(&pins, format!("audit_key_sha256 = \"{}\"\n", "1".repeat(64))).unwrap();
    let (code, text) = run(&["--pin-file", pins.to_str().unwrap(), "--audit-key-sha256", &fp]);
    assert_eq!(code, Some(2), "{text}");
    crate::common::assert_contains(&text, "pinned twice with different values");
}

/// An aborted transcript needs what precedes the step where it stopped, and nothing after.
#[test]
fn an_aborted_transcript_needs_only_what_precedes_where_it_stopped() {
    let k = keys();
    let aborted = |edit: &dyn Fn(&mut Records)| {
        forged(&k, |r| {
            // Stopped at confirm_import: nothing from the import approvals on.
            r.truncate(at(r, RecordType::KeyWrapped) + 1);
            edit(r);
            r.push((
                RecordType::CeremonyAborted,
                v(&p::CeremonyAborted {
                    step: "confirm_import".into(),
                    target_index: None,
                    error_class: "aborted".into(),
                    message: "declined".into(),
                    destroyed_handles: vec![10],
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
        })
    };
    // No import, no import_verified, no cleanup_done: valid, it stopped before them.
    both4(&k, aborted(&|_| {}), "").unwrap();
    // But what precedes the wrap must be there.
    let r = aborted(&|r: &mut Records| {
        r.remove(at(r, RecordType::CapabilityChecked));
    });
    let (_, problem) = both4(&k, r, "does not follow capability_checked").unwrap_err();
    assert!(
        matches!(&problem, Problem::Misplaced { kind, .. } if kind == "key_wrapped"),
        "{problem:?}"
    );
    // And its final record must not contradict the step records either.
    let r = aborted(&|_| {});
    let mut r = r;
    let n = r.len() - 1;
    r[n].1["targets"][0]["kcv"] = json!("abcdef");
    let (_, problem) = both4(&k, r, "the final record says KCV abcdef").unwrap_err();
    assert!(
        matches!(&problem, Problem::BadTarget { index: 0, why } if why.contains("but the approved import statement says") || why.contains("but key_generated")),
        "{problem:?}"
    );
}

#[test]
fn a_rotation_or_a_rollback_missing_its_own_verification_is_refused() {
    let k = keys();
    // A rotation whose target 1 has no rotation_verified.
    let (_, problem) = rotation(
        &k,
        |_| {},
        |r| {
            let i = r
                .iter()
                .rposition(|(t, d)| *t == RecordType::RotationVerified && d["target_index"] == 1)
                .unwrap();
            r.remove(i);
        },
    )
    .unwrap_err();
    assert_eq!(
        problem,
        Problem::BadTarget {
            index: 1,
            why: "reported rotated in ceremony_finished, but its rotation_verified record is missing"
                .into()
        }
    );
    // A rollback whose target 0 has no alias_verified (both verifiers).
    let r = rollback(
        &k,
        |_| {},
        |r| {
            let i = r
                .iter()
                .position(|(t, d)| *t == RecordType::AliasVerified && d["target_index"] == 0)
                .unwrap();
            r.remove(i);
        },
    );
    let (_, problem) = both(&k, r, "its alias_verified record is missing").unwrap_err();
    assert_eq!(
        problem,
        Problem::BadTarget {
            index: 0,
            why: "reported rolled_back in ceremony_finished, but its alias_verified record is missing"
                .into()
        }
    );
}
