//! Whole ceremonies through the `byok` binary against the token under test (SoftHSM 2.6.1, or
//! kryoptic with `BYOK_TEST_TOKEN=kryoptic`) and LocalStack KMS.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{
    SoftHsm, TestKms, TokenKind, assert_contains, ceremony_for, records, reference_verify,
    run_ceremony as run, run_with_stdin, stderr, stdout,
};

fn types(path: &Path) -> Vec<String> {
    records(path)
        .iter()
        .map(|r| r["type"].as_str().unwrap().to_string())
        .collect()
}

fn verify(hsm: &SoftHsm, transcript: &Path) -> std::process::Output {
    crate::common::byok()
        .arg("verify")
        .arg(transcript)
        .args(["--audit-key-sha256", &hsm.audit_sha256])
        .output()
        .unwrap()
}

/// The records of a successful 2-of-3 ceremony, in order.
const FULL: [&str; 17] = [
    "ceremony_started",
    "hsm_opened",
    "capability_checked",
    "kms_identity",
    "kms_preflight",
    "approval",
    "approval",
    "import_parameters",
    "key_generated",
    "key_wrapped",
    "approval",
    "approval",
    "import_confirmed",
    "key_imported",
    "import_verified",
    "cleanup_done",
    "ceremony_finished",
];

/// The first record of type `kind`.
fn first<'a>(recs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    recs.iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} record"))
}

/// Runs `template` end to end on the token under test; returns its records.
fn full_ceremony(template: &str, location: &str, rehearsal: bool) -> Vec<serde_json::Value> {
    full_ceremony_on(TokenKind::under_test(), template, location, rehearsal)
}

/// Runs `template` end to end on `kind` (every answer of a 2-of-3 ceremony, or of a
/// rehearsal) and checks the key, the transcript and what is left on the token.
fn full_ceremony_on(
    kind: TokenKind,
    template: &str,
    location: &str,
    rehearsal: bool,
) -> Vec<serde_json::Value> {
    let hsm = SoftHsm::of_kind(kind);
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, template, &alias, &[]);
    let t = hsm.path("t.jsonl");
    let answers = if rehearsal {
        format!("{}\nyes\n", hsm.pin)
    } else {
        hsm.all_answers()
    };
    let out = run(&hsm, &file, &t, &answers);
    let run_out = out.clone();
    assert!(
        out.status.success(),
        "run failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("transcript: {}", t.display())),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(&format!("key: {arn}")));
    // A rehearsal's summary on stdout says so; a real ceremony's never does.
    assert_eq!(
        stdout(&out).contains("REHEARSAL: dual control was OFF"),
        rehearsal,
        "{}",
        stdout(&out)
    );
    // hsm_opened records the audit key's usage as the token reports it (read back here).
    let on_token = hsm.pair_on_token("byok-hsm", &hsm.pin, "byok-audit");
    let all = records(&t);
    let opened = &first(&all, "hsm_opened")["data"];
    assert_eq!(opened["audit_key_sign_only"], true);
    assert_eq!(on_token.usage, crate::common::sign_only_usage());
    // Every wrap mode records a hardened process, as the kernel reports it.
    assert_eq!(
        first(&all, "capability_checked")["data"]["process_hardening"],
        serde_json::json!({"core_dumps_disabled": true, "not_dumpable": true})
    );

    // KMS holds the material and uses it.
    assert_eq!(kms.state(&arn), "Enabled");
    assert!(kms.round_trip(&arn));

    // The transcript has every step, verifies, and names what happened.
    let expected: Vec<&str> = FULL
        .iter()
        .copied()
        .filter(|t| !(rehearsal && *t == "approval"))
        .collect();
    assert_eq!(types(&t), expected);
    let recs = records(&t);
    assert_eq!(first(&recs, "key_wrapped")["data"]["location"], location);
    assert_eq!(
        first(&recs, "capability_checked")["data"]["known_answer_test"],
        "pass"
    );
    // The KCV is checked against the token's own AES-ECB in token_truth.rs (both fields
    // here come from byok, so comparing them with each other would prove nothing).
    assert_eq!(first(&recs, "import_verified")["data"]["round_trip"], "ok");
    // `byok check` prints the SHA-256 that record 0 carries, for the paper record.
    let check = hsm.byok().arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_contains(
        &stdout(&check),
        &format!(
            "ceremony file SHA-256: {}",
            recs[0]["data"]["ceremony_file_sha256"].as_str().unwrap()
        ),
    );
    assert_eq!(
        first(&recs, "ceremony_started")["data"]["dual_control"]["enabled"],
        !rehearsal
    );
    // Format version 4: a fresh run id in record 0, and in every statement custodians signed.
    let run_id = first(&recs, "ceremony_started")["data"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        run_id.len() == 32
            && run_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{run_id}"
    );
    for r in recs
        .iter()
        .filter(|r| r["type"] == "approval" || r["type"] == "import_confirmed")
    {
        assert_eq!(r["data"]["statement"]["run_id"], run_id.as_str(), "{r}");
    }
    let out = verify(&hsm, &t);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_contains(&stdout(&out), &format!("  run id          {run_id}"));
    assert_contains(&stdout(&out), "  statement       import SHA-256 ");
    // The transcript contract is precise enough for an independent verifier.
    let independent = reference_verify(&t, &hsm.audit_sha256);
    if !rehearsal {
        assert_contains(&independent, "approved plan: Alice, Bob");
        assert_contains(&independent, "approved import: Alice, Carol");
    }
    if rehearsal {
        assert_contains(&stdout(&out), "dual control    OFF (REHEARSAL)");
        assert_contains(&stderr(&run_out), "REHEARSAL: dual control is OFF");
    } else {
        assert_contains(&stdout(&out), "approved        plan: Alice, Bob");
        assert_contains(&stdout(&out), "approved        import: Alice, Carol");
        assert_contains(&stderr(&run_out), "import   approved by Alice, Carol");
        for c in &hsm.custodians {
            assert!(!std::fs::read_to_string(&t).unwrap().contains(&c.pin));
        }
    }
    let last = std::fs::read_to_string(&t).unwrap();
    let last_line = last.trim_end().rsplit('\n').next().unwrap();
    use sha2::Digest as _;
    assert!(stdout(&out).contains(&hex::encode(sha2::Sha256::digest(last_line.as_bytes()))));

    // Nothing secret in the transcript: the PIN does not appear, nor does any 32-byte
    // hex or base64 value other than documented hashes (checked by field names).
    let text = std::fs::read_to_string(&t).unwrap();
    assert!(!text.contains(&hsm.pin));
    let stray = values_of_32_bytes_outside_hash_fields(&recs);
    assert!(
        stray.is_empty(),
        "32-byte values in undocumented fields: {stray:?}"
    );

    // No HSM objects left behind: only the audit key pair.
    assert_eq!(hsm.token_object_labels(), ["byok-audit", "byok-audit"]);

    // Any one-byte edit makes verification fail.
    let mut bytes = std::fs::read(&t).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    let edited = hsm.path("edited.jsonl");
    std::fs::write(&edited, bytes).unwrap();
    assert_eq!(verify(&hsm, &edited).status.code(), Some(1));
    recs
}

/// Whether `s` is, or holds, 32 bytes written as hex (64 digits) or base64 (43 or 44 chars).
fn holds_32_bytes(s: &str) -> bool {
    use base64::Engine as _;
    let hex_run = s
        .split(|c: char| !c.is_ascii_hexdigit())
        .any(|w| w.len() == 64);
    let b64 = s
        .split(|c: char| !(c.is_ascii_alphanumeric() || "+/=-_".contains(c)))
        .any(|w| {
            let w = w.trim_end_matches('=');
            (w.len() == 43)
                && (base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(w)
                    .is_ok_and(|b| b.len() == 32)
                    || base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(w)
                        .is_ok_and(|b| b.len() == 32))
        });
    hex_run || b64
}

/// Every string in the records that holds a 32-byte value (the size of the key material)
/// under a field that is not a documented hash or identifier, as `path: value`.
fn values_of_32_bytes_outside_hash_fields(recs: &[serde_json::Value]) -> Vec<String> {
    /// Fields documented in docs/transcript.md as holding 32-byte hashes or identifiers.
    fn documented(field: &str) -> bool {
        // KMS's KeyMaterialIds are 64 hex (a hash of key id and material, computed by KMS).
        field.ends_with("sha256")
            || field.ends_with("key_material_id")
            || ["prev", "key_materials", "run_id"].contains(&field)
            // Record 0 embeds the ceremony file, whose pins are SHA-256 fingerprints.
            || field == "ceremony_file"
    }
    fn walk(v: &serde_json::Value, path: &str, field: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if !documented(field) && holds_32_bytes(s) => {
                out.push(format!("{path}: {s}"));
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{i}]"), field, out);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    walk(item, &format!("{path}.{k}"), k, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        walk(r, &format!("line {}", i + 1), "", &mut out);
    }
    out
}

#[test]
fn the_32_byte_scan_finds_material_in_an_undocumented_field() {
    let material = [0x5au8; 32];
    use base64::Engine as _;
    for leaked in [
        hex::encode(material),
        base64::engine::general_purpose::STANDARD.encode(material),
        format!("note {} end", hex::encode(material)),
    ] {
        let recs = [
            serde_json::json!({"type": "x", "data": {"note": leaked, "blob_sha256": hex::encode(material)}}),
        ];
        assert_eq!(
            values_of_32_bytes_outside_hash_fields(&recs),
            [format!("line 1.data.note: {leaked}")]
        );
    }
    // A documented hash field, a 16-byte value and a 33-byte value are not reported.
    let recs = [serde_json::json!({"data": {
        "blob_sha256": hex::encode(material),
        "kcv": "abcdef",
        "id": hex::encode([1u8; 16]),
        "other": hex::encode([1u8; 33]),
    }})];
    assert!(values_of_32_bytes_outside_hash_fields(&recs).is_empty());
}

#[test]
fn demo_ceremony_oaep_sha1_wraps_inside_the_hsm_and_imports() {
    full_ceremony("demo-softhsm.toml", "hsm", false);
}

#[test]
fn host_wrap_oaep_sha256_ceremony_imports() {
    full_ceremony("host-wrap-oaep-sha256.toml", "host", true);
}

/// Issue 4's ceremony: OAEP-SHA-256 with RSA_4096 entirely inside kryoptic, whatever token the
/// rest of the suite runs on.
#[test]
fn kryoptic_ceremony_oaep_sha256_rsa_4096_wraps_inside_the_hsm_and_imports() {
    let recs = full_ceremony_on(
        TokenKind::Kryoptic,
        "kryoptic-oaep-sha256.toml",
        "hsm",
        false,
    );
    let checked = &first(&recs, "capability_checked")["data"];
    assert_eq!(checked["algorithm"], "RSAES_OAEP_SHA_256");
    assert_eq!(checked["location"], "hsm");
    assert_eq!(checked["mechanism"], "CKM_RSA_PKCS_OAEP");
    let opened = &first(&recs, "hsm_opened")["data"];
    assert_eq!(opened["module_manufacturer"], "Kryoptic");
    // The material never left the HSM in plaintext: wrapped by the token (that the token
    // holds the key as sensitive is read from the token itself in token_truth.rs).
    let wrapped = &first(&recs, "key_wrapped")["data"];
    assert_eq!(wrapped["mechanism"], "CKM_RSA_PKCS_OAEP");
    assert_eq!(wrapped["oaep_hash"], "SHA-256");
    assert_eq!(wrapped["host_memory_locked"], serde_json::Value::Null);
    assert_eq!(wrapped["blob_length"], 512);
    assert_eq!(
        first(&recs, "import_parameters")["data"]["wrapping_key_spec"],
        "RSA_4096"
    );
}

#[test]
fn every_ceremony_file_has_an_end_to_end_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremonies");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "demo-softhsm.toml",
            "fleet-alias-swap.toml",
            "fleet-product.toml",
            "fleet-rollback.toml",
            "fleet-rotate.toml",
            "host-wrap-oaep-sha256.toml",
            "kryoptic-oaep-sha256.toml",
            "reimport.toml",
            "rotation-policy.toml"
        ],
        "add an end-to-end test for each new file (fleet-product.toml: tests/integration/fleet.rs; fleet-rotate.toml: tests/integration/rotation.rs; fleet-alias-swap.toml and fleet-rollback.toml: tests/integration/alias_swap.rs; reimport.toml: tests/integration/reimport.rs; rotation-policy.toml, not a ceremony: scripts/demo runs byok inventory with it)"
    );
}

/// Runs a ceremony expected to stop after the transcript started.
fn aborted(
    hsm: &SoftHsm,
    file: &Path,
    stdin: &str,
    envs: &[(&str, &str)],
) -> (std::process::Output, Vec<serde_json::Value>) {
    let t = hsm.path("aborted.jsonl");
    let mut cmd = hsm.byok();
    cmd.arg("run").arg(file).arg("--transcript").arg(&t);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = run_with_stdin(cmd, stdin);
    assert!(t.exists(), "a transcript was started: {}", stderr(&out));
    let recs = records(&t);
    let last = recs.last().unwrap();
    assert_eq!(last["type"], "ceremony_aborted", "{}", stderr(&out));
    // The aborted transcript is itself valid.
    let v = verify(hsm, &t);
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert!(stdout(&v).contains("outcome         ceremony_aborted"));
    // Nothing left on the token.
    assert_eq!(hsm.token_object_labels(), ["byok-audit", "byok-audit"]);
    (out, recs)
}

fn record_types(recs: &[serde_json::Value]) -> Vec<&str> {
    recs.iter().map(|r| r["type"].as_str().unwrap()).collect()
}

fn last_data(recs: &[serde_json::Value]) -> &serde_json::Value {
    &recs.last().unwrap()["data"]
}

/// The disk fills up while the wrap is recorded, so the `ceremony_aborted` record cannot be
/// written either: the error must say the transcript was started and is unfinished, not that
/// the ceremony stopped "before a transcript was started".
#[test]
fn a_full_disk_during_a_record_write_names_the_started_transcript() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let t = hsm.path("full.jsonl");
    let mut cmd = hsm.byok();
    cmd.arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(&t)
        .env("BYOK_FAILPOINT", "full:key_wrapped:1");
    let out = run_with_stdin(cmd, &hsm.all_answers());
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let err = stderr(&out);
    assert_contains(
        &err,
        &format!(
            "ceremony stopped at step `wrap`; transcript {} was started but has no ceremony_aborted record, because writing it failed too (cannot write record ",
            t.display()
        ),
    );
    assert_contains(&err, "No space left on device");
    assert!(!err.contains("before a transcript was started"), "{err}");
    // The transcript holds every record written before the disk filled, and no terminal one.
    let types = record_types(&records(&t))
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(types.last().map(String::as_str), Some("key_generated"));
    assert!(!types.iter().any(|t| t == "ceremony_aborted"), "{types:?}");
    // Nothing was imported and nothing is left on the token.
    assert_eq!(kms.state(&arn), "PendingImport");
    assert_eq!(hsm.token_object_labels(), ["byok-audit", "byok-audit"]);
}

#[test]
fn key_not_external_is_refused_at_preflight() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.create_key(aws_sdk_kms::types::OriginType::AwsKms);
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let (out, recs) = aborted(&hsm, &file, &hsm.through_plan(), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(last_data(&recs)["step"], "kms_preflight");
    assert_eq!(last_data(&recs)["error_class"], "precondition");
    assert_contains(
        &stderr(&out),
        &format!(
            "key {arn} has Origin AWS_KMS; only keys created with Origin EXTERNAL accept imported material"
        ),
    );
}

#[test]
fn key_already_enabled_is_refused() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let first = run(&hsm, &file, &hsm.path("first.jsonl"), &hsm.all_answers());
    assert!(first.status.success(), "{}", stderr(&first));
    let (out, recs) = aborted(&hsm, &file, &hsm.through_plan(), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(last_data(&recs)["step"], "kms_preflight");
    assert_contains(
        &stderr(&out),
        &format!(
            "key {arn} is in state Enabled, expected PendingImport: it already holds key material"
        ),
    );
}

#[test]
fn key_not_found_is_a_kms_error() {
    let hsm = SoftHsm::new();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", "alias/byok-does-not-exist", &[]);
    let (out, recs) = aborted(&hsm, &file, &hsm.through_plan(), &[]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(last_data(&recs)["error_class"], "kms");
    assert_contains(&stderr(&out), "KMS DescribeKey failed: NotFoundException");
}

#[test]
fn kms_unreachable_is_a_kms_error() {
    let hsm = SoftHsm::new();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", "alias/byok-demo", &[]);
    let envs = crate::common::use_endpoint(&file, "http://127.0.0.1:9");
    let (out, recs) = aborted(&hsm, &file, &hsm.through_plan(), &envs);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(last_data(&recs)["step"], "kms_preflight");
    // The first call of the preflight asks STS who the credentials are.
    assert_contains(
        &stderr(&out),
        "STS GetCallerIdentity failed: dispatch failure",
    );
    assert_contains(&stderr(&out), "Connection refused");
    // KMS errors in words, never Rust Debug dumps, on screen and in the transcript.
    let message = last_data(&recs)["message"].as_str().unwrap().to_string();
    for text in [stderr(&out), message] {
        for dump in [
            "DispatchFailure(",
            "TimeoutError(",
            "ConnectorError {",
            "Some(",
        ] {
            assert!(!text.contains(dump), "{dump} in {text}");
        }
    }
}

#[test]
fn declining_the_import_aborts_and_imports_nothing() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let (out, recs) = aborted(
        &hsm,
        &file,
        &format!(
            "{}Alice\nno\n{}\n",
            hsm.through_plan(),
            hsm.custodian("Alice").pin
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(last_data(&recs)["step"], "confirm_import");
    assert_eq!(last_data(&recs)["error_class"], "aborted");
    // The generated key and the wrapping key were destroyed.
    assert_eq!(
        last_data(&recs)["destroyed_handles"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(kms.state(&arn), "PendingImport");
}

#[test]
fn ctrl_c_at_the_confirmation_aborts_cleanly() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let t = hsm.path("t.jsonl");
    let mut child = hsm
        .byok()
        .arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(&t)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    write!(stdin, "{}", hsm.through_plan()).unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "byok ended before the confirmation: {seen}"
        );
        seen.push_str(&line);
        if line.starts_with("byok? select approver-import") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(6));
    let recs = records(&t);
    assert_eq!(recs.last().unwrap()["type"], "ceremony_aborted");
    assert_eq!(last_data(&recs)["step"], "confirm_import");
    assert_eq!(last_data(&recs)["error_class"], "aborted");
    assert_eq!(kms.state(&arn), "PendingImport");
    assert_eq!(verify(&hsm, &t).status.code(), Some(0));
}

/// In the line protocol a wrong PIN is final: the answers that follow (a name, "yes") were
/// written for later prompts and are never tried as PINs. (At a terminal a wrong PIN is asked
/// again: tests/integration/terminal.rs.)
#[test]
fn a_wrong_pin_in_the_line_protocol_stops_before_any_transcript_and_tries_nothing_else() {
    let hsm = SoftHsm::new();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", "alias/byok-demo", &[]);
    let t = hsm.path("t.jsonl");
    let out = run(
        &hsm,
        &file,
        &t,
        &format!("{}\n{}", "9".repeat(200), hsm.all_answers()),
    );
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert_eq!(err.matches("byok? secret hsm-pin").count(), 1, "{err}");
    assert!(!err.contains("try again"), "{err}");
    assert!(
        err.contains("error: ceremony stopped at step `open_hsm` before a transcript was started"),
        "{err}"
    );
    assert!(
        err.contains("caused by: the PIN for token \"byok-hsm\" is incorrect"),
        "{err}"
    );
    assert!(!t.exists());
}

#[test]
fn after_a_wrong_pin_the_right_pin_is_not_locked_out() {
    // The wrong PIN stopped the first run; the token still takes the right PIN next time.
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let out = run(&hsm, &file, &hsm.path("t0.jsonl"), "0000\n");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = run(&hsm, &file, &hsm.path("t.jsonl"), &hsm.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(kms.state(&arn), "Enabled");
}

#[test]
fn missing_module_is_reported_before_anything_starts() {
    let hsm = SoftHsm::new();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", "alias/x", &[]);
    let t = hsm.path("t.jsonl");
    let out = hsm
        .byok()
        .env("BYOK_PKCS11_MODULE", "/nonexistent/libpkcs11.so")
        .arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(&t)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out)
            .contains("cannot load the PKCS#11 module /nonexistent/libpkcs11.so: no such file"),
        "{}",
        stderr(&out)
    );
    assert!(!t.exists());
}

#[test]
fn unknown_token_lists_the_tokens_present() {
    let hsm = SoftHsm::new();
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        "alias/x",
        &[("hsm.token_label", "\"no-such-token\"")],
    );
    let out = run(&hsm, &file, &hsm.path("t.jsonl"), "");
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.contains("no token with label \"no-such-token\" in module"),
        "{err}"
    );
    assert_contains(&err, "; tokens present: \"");
    assert_contains(&err, "\"byok-hsm\" (serial ");
}

#[test]
fn existing_transcript_is_never_overwritten() {
    let hsm = SoftHsm::new();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", "alias/x", &[]);
    let t = hsm.path("t.jsonl");
    std::fs::write(&t, "precious\n").unwrap();
    let out = run(&hsm, &file, &t, "");
    assert_eq!(out.status.code(), Some(2));
    assert_contains(
        &stderr(&out),
        "already exists; byok never overwrites a transcript",
    );
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "precious\n");
}

#[test]
fn wrong_audit_key_pin_is_refused_before_the_transcript() {
    let hsm = SoftHsm::new();
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        "alias/x",
        &[("hsm.audit_key_sha256", &format!("\"{}\"", "ab".repeat(32)))],
    );
    let t = hsm.path("t.jsonl");
    let out = run(&hsm, &file, &t, &format!("{}\n", hsm.pin));
    assert_eq!(out.status.code(), Some(4));
    assert_contains(&stderr(&out), "but the ceremony file pins abababab");
    assert!(!t.exists());
}

#[test]
fn probe_reports_what_the_token_can_do_inside_the_hsm() {
    let hsm = SoftHsm::new();
    let mut cmd = hsm.byok();
    cmd.args(["probe", "--token-label", "byok-hsm"]);
    let out = run_with_stdin(cmd, &format!("{}\n", hsm.pin));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let expected = match hsm.kind {
        TokenKind::SoftHsm => [
            "RSAES_OAEP_SHA_256       inside HSM: no (C_WrapKey returned CKR_ARGUMENTS_BAD with OAEP SHA-256)",
            "RSAES_OAEP_SHA_1         inside HSM: yes (CKM_RSA_PKCS_OAEP, known-answer test passed)",
            "RSA_AES_KEY_WRAP_SHA_256 inside HSM: no (C_WrapKey returned CKR_ARGUMENTS_BAD with OAEP SHA-256 in CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_PAD + CKM_RSA_PKCS_OAEP)",
            "RSA_AES_KEY_WRAP_SHA_1   inside HSM: yes (CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_PAD + CKM_RSA_PKCS_OAEP, known-answer test passed)",
        ],
        TokenKind::Kryoptic => [
            "RSAES_OAEP_SHA_256       inside HSM: yes (CKM_RSA_PKCS_OAEP, known-answer test passed)",
            "RSAES_OAEP_SHA_1         inside HSM: yes (CKM_RSA_PKCS_OAEP, known-answer test passed)",
            "RSA_AES_KEY_WRAP_SHA_256 inside HSM: yes (CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_KWP + CKM_RSA_PKCS_OAEP, known-answer test passed)",
            "RSA_AES_KEY_WRAP_SHA_1   inside HSM: yes (CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_KWP + CKM_RSA_PKCS_OAEP, known-answer test passed)",
        ],
    };
    assert_eq!(text.lines().skip(1).collect::<Vec<_>>(), expected, "{text}");
    // The probe leaves nothing behind.
    assert_eq!(hsm.token_object_labels(), ["byok-audit", "byok-audit"]);
}

#[test]
fn a_key_kms_cannot_import_into_stops_before_any_approval() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, _alias) = kms.create_key(aws_sdk_kms::types::OriginType::AwsKms);
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &arn, &[]);
    let (out, recs) = aborted(&hsm, &file, &format!("{}\n", hsm.pin), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(last_data(&recs)["step"], "kms_preflight");
    assert_eq!(
        record_types(&recs),
        [
            "ceremony_started",
            "hsm_opened",
            "capability_checked",
            "kms_identity",
            "kms_preflight",
            "ceremony_aborted"
        ]
    );
    assert_eq!(first(&recs, "kms_preflight")["data"]["origin"], "AWS_KMS");
    assert_contains(&stderr(&out), "has Origin AWS_KMS");
    assert!(!stderr(&out).contains("approver-plan"), "{}", stderr(&out));
}

#[test]
fn in_hsm_oaep_sha256_on_softhsm_is_refused_with_alternatives() {
    let hsm = SoftHsm::of_kind(TokenKind::SoftHsm);
    let kms = TestKms::new();
    let (_arn, alias) = kms.external_key();
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        &alias,
        &[("import.wrapping_algorithm", "\"RSAES_OAEP_SHA_256\"")],
    );
    // Only the HSM PIN: nobody is asked to approve a plan this token cannot carry out.
    let (out, recs) = aborted(&hsm, &file, &format!("{}\n", hsm.pin), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(last_data(&recs)["step"], "capability_check");
    assert_eq!(
        record_types(&recs),
        ["ceremony_started", "hsm_opened", "ceremony_aborted"]
    );
    assert!(!stderr(&out).contains("approver-plan"), "{}", stderr(&out));
    // Only what the token proved it can do is offered: SoftHSM cannot do
    // RSA_AES_KEY_WRAP_SHA_256 either (its OAEP part needs SHA-256 too).
    assert_contains(
        &stderr(&out),
        "the token cannot do RSAES_OAEP_SHA_256 inside the HSM: C_WrapKey returned CKR_ARGUMENTS_BAD with OAEP SHA-256; alternatives that passed the known-answer test inside this token: RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_1, or wrap = \"host\"",
    );
    // And each one offered is one `byok probe` says yes to, the others no.
    let mut cmd = hsm.byok();
    cmd.args(["probe", "--token-label", "byok-hsm"]);
    let probe = stdout(&run_with_stdin(cmd, &format!("{}\n", hsm.pin)));
    for (algorithm, offered) in [
        ("RSAES_OAEP_SHA_256", false),
        ("RSAES_OAEP_SHA_1", true),
        ("RSA_AES_KEY_WRAP_SHA_256", false),
        ("RSA_AES_KEY_WRAP_SHA_1", true),
    ] {
        let line = probe
            .lines()
            .find(|l| l.split_whitespace().next() == Some(algorithm))
            .unwrap_or_else(|| panic!("no probe line for {algorithm}: {probe}"));
        assert_eq!(
            line.contains("inside HSM: yes"),
            offered,
            "{algorithm}: {line}"
        );
    }
}

#[test]
fn keep_key_label_keeps_a_sealed_token_copy_only_when_imported() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    // Declined: nothing imported, nothing kept.
    let (_arn, alias) = kms.external_key();
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        &alias,
        &[("hsm.keep_key_label", "\"escrow-1\"")],
    );
    let (out, recs) = aborted(
        &hsm,
        &file,
        &format!(
            "{}Alice\nno\n{}\n",
            hsm.through_plan(),
            hsm.custodian("Alice").pin
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(last_data(&recs)["kept_keys"], serde_json::json!([]));
    assert_eq!(last_data(&recs)["targets"][0]["status"], "not_started");
    assert!(hsm.kept_on_token("escrow-1").is_none());
    // Imported: the token copy is kept, sealed, and recorded.
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        &alias,
        &[("hsm.keep_key_label", "\"escrow-2\"")],
    );
    let t = hsm.path("kept.jsonl");
    let out = run(&hsm, &file, &t, &hsm.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(kms.state(&arn), "Enabled");
    let recs = records(&t);
    assert_eq!(first(&recs, "key_kept")["data"]["label"], "escrow-2");
    assert_eq!(first(&recs, "key_generated")["data"]["token_object"], false);
    assert_eq!(
        hsm.token_object_labels(),
        ["byok-audit", "byok-audit", "escrow-2"]
    );
    // What the token itself reports, read without byok.
    let kept = hsm
        .kept_on_token("escrow-2")
        .expect("escrow-2 on the token");
    assert!(kept.token && kept.sensitive, "{kept:?}");
    assert!(kept.wrap_with_trusted, "{kept:?}");
    assert!(!kept.modifiable, "{kept:?}");
    assert!(!kept.encrypt && !kept.decrypt && !kept.wrap, "{kept:?}");
    assert!(
        kept.encrypt_init.is_err(),
        "the kept key encrypts: {kept:?}"
    );
    assert!(
        kept.wrap_out.is_err(),
        "the kept key can be wrapped out with the user PIN alone: {kept:?}"
    );
    // The record says what the token says.
    let a = &first(&recs, "key_kept")["data"]["attributes"];
    assert_eq!(a["wrap_with_trusted"], kept.wrap_with_trusted);
    assert_eq!(a["modifiable"], kept.modifiable);
    assert_eq!(a["encrypt"], kept.encrypt);

    // The same label again is refused after the login, before any approval or record.
    let (_arn, alias) = kms.external_key();
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        &alias,
        &[("hsm.keep_key_label", "\"escrow-2\"")],
    );
    let t = hsm.path("again.jsonl");
    let out = run(&hsm, &file, &t, &format!("{}\n", hsm.pin));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "an object labelled \"escrow-2\" already exists on token \"byok-hsm\"",
    );
    assert!(!stderr(&out).contains("approver-plan"), "{}", stderr(&out));
    assert!(!t.exists(), "no transcript before record 0");
}
