//! The example transcripts that the documentation uses (`docs/examples/`): each verifies with
//! its pins in `byok verify` and in the reference verifier of `docs/transcript.md`, and the
//! document's worked example, replayed command by command, prints what the document says.
//! These need no token and no KMS: the files are the evidence.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{byok, reference_verify, stderr, stdout};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join("examples")
        .join(name)
}

fn sample_pin() -> String {
    std::fs::read_to_string(example("fleet-6-targets.audit_key_sha256"))
        .expect("read the sample's audit key pin")
        .trim()
        .to_string()
}

/// The fingerprint `docs/transcript.md` gives for the sample, which the custodians wrote down.
const SAMPLE_LAST_LINE_SHA256: &str =
    "04c9bbe6d5c7d0fb1e8b358363767ba85b3a5f16e27b8d077ba4e0f635f20a39";

#[test]
fn the_shipped_sample_transcript_verifies_with_its_pins() {
    let out = byok()
        .arg("verify")
        .arg(example("fleet-6-targets.jsonl"))
        .args(["--audit-key-sha256", &sample_pin()])
        .arg("--ceremony-file")
        .arg(example("fleet-6-targets.ceremony.toml"))
        .output()
        .expect("run byok verify");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains(": valid"), "{text}");
    assert!(text.contains(SAMPLE_LAST_LINE_SHA256), "{text}");
    assert!(text.contains("fleet-2026-rotation"), "{text}");

    let reference = reference_verify(&example("fleet-6-targets.jsonl"), &sample_pin());
    assert!(reference.contains("52 records"), "{reference}");
}

/// The shipped pin file is the sample's paper record: with it, `verify` and `report` say valid
/// (exit 0); with one custodian's key changed in it, both say the transcript is not what the
/// auditor pinned (exit 1).
#[test]
fn the_shipped_pin_file_pins_the_sample() {
    let pins = example("fleet-6-targets.pins.toml");
    for command in ["verify", "report"] {
        let out = byok()
            .arg(command)
            .arg(example("fleet-6-targets.jsonl"))
            .arg("--pin-file")
            .arg(&pins)
            .output()
            .expect("run byok");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains(SAMPLE_LAST_LINE_SHA256),
            "{command}: {}",
            stdout(&out)
        );
    }
    let text = std::fs::read_to_string(&pins).expect("read the pin file");
    let bob = "998243ea3786c5f6d3f8b5e592a3baff82c238dd88b5633ad98724539362b7b5";
    assert!(text.contains(bob), "the pin file pins Bob's key");
    let dir = tempfile::tempdir().expect("temp dir");
    let forged = dir.path().join("pins.toml");
    std::fs::write(&forged, text.replace(bob, &"ab".repeat(32))).expect("write pins");
    for command in ["verify", "report"] {
        let out = byok()
            .arg(command)
            .arg(example("fleet-6-targets.jsonl"))
            .arg("--pin-file")
            .arg(&forged)
            .output()
            .expect("run byok");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{command}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("not what the auditor pinned"),
            "{command}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn the_shipped_ceremony_file_is_the_one_in_record_0() {
    let transcript =
        std::fs::read_to_string(example("fleet-6-targets.jsonl")).expect("read the sample");
    let first: serde_json::Value =
        serde_json::from_str(transcript.lines().next().expect("record 0")).expect("JSON");
    let file =
        std::fs::read_to_string(example("fleet-6-targets.ceremony.toml")).expect("read file");
    assert_eq!(first["data"]["ceremony_file"].as_str(), Some(file.as_str()));
}

#[test]
fn the_worked_example_replays_as_documented() {
    let out = Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join("worked-example"),
    )
    .output()
    .expect("run scripts/worked-example");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("every output as documented"));
}
