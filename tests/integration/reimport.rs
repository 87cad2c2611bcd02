//! `kind = "reimport"` on the token under test, against LocalStack: a 2-of-3 import that keeps
//! its key on the token, then the kept material put back (ImportType EXISTING_KEY_MATERIAL with
//! the source's KeyMaterialId) after DeleteImportedKeyMaterial, or into a multi-Region replica;
//! and the refusals (a kept key whose KCV differs, a wrong source fingerprint, a tampered source,
//! a key the source did not keep). What KMS says is read back here, not taken from byok.
//!
//! What LocalStack 2026.3.0 gets wrong here (measured; docs/hsm-compatibility.md):
//! - After DeleteImportedKeyMaterial and a re-import, the key says Enabled but Encrypt and
//!   Decrypt answer InternalError ("key must be bytes"): LocalStack keeps the re-imported
//!   material as pending. So the happy path after a delete runs ImportKeyMaterial, DescribeKey
//!   and GetParametersForImport against LocalStack and serves only Encrypt and Decrypt from an
//!   in-process double (which proves nothing about the material: the KeyMaterialId LocalStack
//!   returns does, since LocalStack computes it from the key and the material).
//! - It does not check the KeyMaterialId sent with EXISTING_KEY_MATERIAL (byok checks the one
//!   KMS returns).
//! - A replica of an EXTERNAL multi-Region key starts Enabled with the primary's material
//!   copied (real KMS: PendingImport, no material). The replica test's double reports it
//!   PendingImport until byok imports into it; everything else, Encrypt and Decrypt included,
//!   is LocalStack's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use byok::hsm::Hsm as _;
use byok::kms::{AwsKms, Expiration, ImportToken, ImportType, KeyInfo, Kms, KmsError};
use byok::prompt::Answer;
use sha2::Digest as _;

use crate::common::{
    Custodian, SoftHsm, TestKms, approve_answers, assert_contains, ceremony_pinned_as, rand_u32,
    records, reference_verify, run_in_process, run_with_stdin, stderr, stdout,
};

/// What the double saw of one ImportKeyMaterial: key, ImportType, KeyMaterialId sent, and
/// the KeyMaterialId LocalStack returned.
type Seen = (String, String, Option<String>, Option<String>);

/// LocalStack, with the changes the module documentation lists.
struct Double {
    real: AwsKms,
    /// Serve Encrypt and Decrypt in-process (LocalStack fails them after a re-import).
    fake_crypto: bool,
    /// Keys DescribeKey reports PendingImport until an import into them (fresh replicas).
    fresh: HashSet<String>,
    imports: Mutex<Vec<Seen>>,
}

impl Double {
    fn new(fake_crypto: bool, fresh: &[&str]) -> Double {
        Double {
            real: AwsKms::new("us-east-1").unwrap(),
            fake_crypto,
            fresh: fresh.iter().map(|s| s.to_string()).collect(),
            imports: Mutex::new(Vec::new()),
        }
    }
}

const FAKE: &[u8] = b"in-process double: ";

impl Kms for Double {
    crate::common::forward_kms!(
        whereabouts,
        create_key,
        create_alias,
        update_alias,
        list_resource_tags,
        find_tagged_keys,
        get_parameters_for_import,
        rotate_key_on_demand,
        list_key_materials
    );
    fn describe_key(&self, key: &str) -> Result<KeyInfo, KmsError> {
        let mut info = self.real.describe_key(key)?;
        let imported = self.imports.lock().unwrap().iter().any(|s| s.0 == info.arn);
        if self.fresh.contains(&info.arn) && !imported {
            info.state = "PendingImport".into();
            info.enabled = false;
        }
        Ok(info)
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
        let answer = self.real.import_key_material(key_arn, token, blob, e, t, d);
        self.imports.lock().unwrap().push((
            key_arn.to_string(),
            t.name().to_string(),
            t.key_material_id().map(str::to_string),
            answer.as_ref().ok().cloned().flatten(),
        ));
        answer
    }
    fn encrypt(&self, key_arn: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        if !self.fake_crypto {
            return self.real.encrypt(key_arn, plaintext);
        }
        Ok([FAKE, plaintext].concat().iter().rev().copied().collect())
    }
    fn decrypt(&self, key_arn: &str, ciphertext: &[u8]) -> Result<(Vec<u8>, String), KmsError> {
        if !self.fake_crypto {
            return self.real.decrypt(key_arn, ciphertext);
        }
        let forward: Vec<u8> = ciphertext.iter().rev().copied().collect();
        Ok((forward[FAKE.len()..].to_vec(), key_arn.to_string()))
    }
}

/// What the source ceremony left: its transcript, fingerprint, kept label and KCV, and the
/// KeyMaterialId LocalStack reports for the key.
struct Kept {
    transcript: PathBuf,
    last_line_sha256: String,
    label: String,
    kcv: String,
    key_material_id: String,
}

fn of<'a>(recs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    recs.iter()
        .filter(|r| r["type"] == kind)
        .map(|r| &r["data"])
        .collect()
}

fn last_line_sha256(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let last = text.trim_end_matches('\n').rsplit('\n').next().unwrap();
    hex::encode(sha2::Sha256::digest(last.as_bytes()))
}

/// A real 2-of-3 import of `key` (ARN or alias) that keeps its material on the token.
fn kept_import(hsm: &SoftHsm, kms: &TestKms, key: &str, region: &str) -> Kept {
    let label = format!("kept-{:08x}", rand_u32());
    let key_v = format!("\"{key}\"");
    let label_v = format!("\"{label}\"");
    let region_v = format!("\"{region}\"");
    let file = ceremony_pinned_as(
        hsm,
        "demo-softhsm.toml",
        "keep.toml",
        &[
            ("kms.key", key_v.as_str()),
            ("kms.region", region_v.as_str()),
            ("hsm.keep_key_label", label_v.as_str()),
        ],
    );
    let transcript = hsm.path("keep.transcript.jsonl");
    let mut cmd = hsm.byok();
    cmd.arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(&transcript);
    let out = run_with_stdin(cmd, &hsm.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = records(&transcript);
    let kept = of(&recs, "key_kept");
    assert_eq!(kept.len(), 1);
    let key_material_id = kms.current_material(key).expect("KMS reports the material");
    Kept {
        last_line_sha256: last_line_sha256(&transcript),
        transcript,
        label,
        kcv: kept[0]["kcv"].as_str().unwrap().to_string(),
        key_material_id,
    }
}

/// The reimport file for `key`, built from ceremonies/reimport.toml.
fn reimport_file(hsm: &SoftHsm, key: &str, region: &str, kept: &Kept, pin: &str) -> PathBuf {
    let key_v = format!("\"{key}\"");
    let region_v = format!("\"{region}\"");
    let name = kept.transcript.file_name().unwrap().to_string_lossy();
    let source_v = format!("\"{name}\"");
    let pin_v = format!("\"{pin}\"");
    ceremony_pinned_as(
        hsm,
        "reimport.toml",
        "reimport.toml",
        &[
            ("kms.key", key_v.as_str()),
            ("kms.region", region_v.as_str()),
            ("source.transcript", source_v.as_str()),
            ("source.last_line_sha256", pin_v.as_str()),
        ],
    )
}

/// Every answer of a 2-of-3 reimport, in-process: the SO PIN, the user PIN, the plan (Alice
/// and Bob), the import (Alice and Carol).
fn answers(token: &SoftHsm) -> Vec<Answer> {
    let mut a = vec![
        Answer::Secret("hsm-so-pin", token.so_pin.clone()),
        Answer::Secret("hsm-pin", token.pin.clone()),
    ];
    a.extend(approve_answers(token, "plan", &["Alice", "Bob"]));
    a.extend(approve_answers(token, "import", &["Alice", "Carol"]));
    a
}

fn delete_material(kms: &TestKms, key: &str) {
    kms.rt
        .block_on(kms.client.delete_imported_key_material().key_id(key).send())
        .expect("DeleteImportedKeyMaterial");
    assert_eq!(kms.state(key), "PendingImport");
}

/// The reimport's records that every successful run has, checked against what KMS said.
fn assert_reimported(recs: &[serde_json::Value], kept: &Kept, arn: &str, relation: &str) {
    let source = of(recs, "source_verified");
    assert_eq!(source.len(), 1);
    assert_eq!(
        source[0]["last_line_sha256"],
        kept.last_line_sha256.as_str()
    );
    let checked = of(recs, "kept_key_checked");
    assert_eq!(checked.len(), 1);
    assert_eq!(checked[0]["match"], true);
    assert_eq!(checked[0]["kcv_now"], kept.kcv.as_str());
    assert_eq!(checked[0]["label"], kept.label.as_str());
    assert_eq!(checked[0]["relation"], relation);
    assert_eq!(checked[0]["key_arn"], arn);
    assert!(of(recs, "key_generated").is_empty(), "nothing is generated");
    let imported = of(recs, "key_imported");
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0]["import_type"], "EXISTING_KEY_MATERIAL");
    let statement = &of(recs, "import_confirmed")[0]["statement"];
    assert_eq!(statement["kind"], "reimport");
    assert_eq!(
        statement["source_last_line_sha256"],
        kept.last_line_sha256.as_str()
    );
    assert_eq!(
        statement["targets"][0]["key_material_id"],
        kept.key_material_id.as_str()
    );
    assert_eq!(statement["targets"][0]["kcv"], kept.kcv.as_str());
    assert_eq!(of(recs, "approval").len(), 4, "two per approval point");
    assert_eq!(recs.last().unwrap()["type"], "ceremony_finished");
}

#[test]
fn reimport_after_delete_puts_the_kept_material_back_as_existing_key_material() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let kept = kept_import(&hsm, &kms, &alias, "us-east-1");
    delete_material(&kms, &alias);

    let file = reimport_file(&hsm, &alias, "us-east-1", &kept, &kept.last_line_sha256);
    let check = hsm.byok().arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_contains(&stdout(&check), "ImportType EXISTING_KEY_MATERIAL");

    // LocalStack fails Encrypt after a re-import (see the module doc): the double serves it.
    let double = Double::new(true, &[]);
    let t = hsm.path("reimport.jsonl");
    let (result, said, recs) = run_in_process(&hsm, &file, &t, &double, answers(&hsm));
    assert!(result.is_ok(), "{:?}\n{}", result.err(), said.join("\n"));
    let said = said.join("\n");
    assert_contains(
        &said,
        "the token's Security Officer makes a trusted transfer key",
    );
    assert_contains(&said, "kind           reimport");
    assert_contains(&said, &format!("material from kept key {:?}", kept.label));

    // What KMS says: one ImportKeyMaterial, EXISTING with the source's id, and LocalStack's
    // own KeyMaterialId for the material it received (computed from key and material) is the
    // source's: the same material. The key is Enabled again.
    let seen = double.imports.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            arn.clone(),
            "EXISTING_KEY_MATERIAL".to_string(),
            Some(kept.key_material_id.clone()),
            Some(kept.key_material_id.clone())
        )]
    );
    assert_eq!(kms.state(&alias), "Enabled");
    assert_eq!(
        kms.current_material(&alias).as_deref(),
        Some(kept.key_material_id.as_str())
    );
    assert_reimported(&recs, &kept, &arn, "same key");
    reference_verify(&t, &hsm.audit_sha256);
    let verify = hsm
        .byok()
        .args(["verify"])
        .arg(&t)
        .args(["--audit-key-sha256", &hsm.audit_sha256])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert_contains(
        &stdout(&verify),
        &format!(
            "  source          keep.transcript.jsonl (ceremony demo-softhsm-oaep-sha1, kind import, 18 records), last line SHA-256 {}",
            kept.last_line_sha256
        ),
    );
}

#[test]
fn reimport_into_a_multi_region_replica_in_another_region() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let primary = kms
        .rt
        .block_on(
            kms.client
                .create_key()
                .origin(aws_sdk_kms::types::OriginType::External)
                .multi_region(true)
                .send(),
        )
        .expect("CreateKey MultiRegion")
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let kept = kept_import(&hsm, &kms, &primary, "us-east-1");
    let before = kms.encrypt(&primary, b"under the primary");
    let replica = kms
        .rt
        .block_on(
            kms.client
                .replicate_key()
                .key_id(&primary)
                .replica_region("eu-west-1")
                .send(),
        )
        .expect("ReplicateKey")
        .replica_key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    assert!(replica.starts_with("arn:aws:kms:eu-west-1:"), "{replica}");

    let file = reimport_file(&hsm, &replica, "eu-west-1", &kept, &kept.last_line_sha256);
    // LocalStack's replica starts Enabled (real KMS: PendingImport): the double says
    // PendingImport until byok imports; the rest is LocalStack's, Encrypt and Decrypt included.
    let double = Double::new(false, &[replica.as_str()]);
    let t = hsm.path("reimport.jsonl");
    let (result, said, recs) = run_in_process(&hsm, &file, &t, &double, answers(&hsm));
    assert!(result.is_ok(), "{:?}\n{}", result.err(), said.join("\n"));

    let seen = double.imports.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            replica.clone(),
            "EXISTING_KEY_MATERIAL".to_string(),
            Some(kept.key_material_id.clone()),
            Some(kept.key_material_id.clone())
        )]
    );
    let eu = TestKms::in_region("eu-west-1");
    assert_eq!(eu.state(&replica), "Enabled");
    assert!(eu.round_trip(&replica));
    assert_eq!(eu.decrypt(&replica, &before), b"under the primary");
    assert_reimported(&recs, &kept, &replica, "multi-Region replica");
    reference_verify(&t, &hsm.audit_sha256);
}

/// A second token store, a copy of `hsm`'s (the same tokens and keys, like a restored backup),
/// whose kept key `label` is replaced by a different key under the same label.
fn second_token_with_another_kept_key(hsm: &SoftHsm, label: &str) -> SoftHsm {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", hsm.dir.path().display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let old = hsm.dir.path().to_string_lossy().into_owned();
    let new = dir.path().to_string_lossy().into_owned();
    let conf = PathBuf::from(hsm.conf.to_string_lossy().replace(&old, &new));
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, text.replace(&old, &new)).unwrap();
    let second = SoftHsm {
        kind: hsm.kind,
        dir,
        conf,
        label: hsm.label.clone(),
        pin: hsm.pin.clone(),
        so_pin: hsm.so_pin.clone(),
        audit_sha256: hsm.audit_sha256.clone(),
        custodians: hsm
            .custodians
            .iter()
            .map(|c| Custodian {
                name: c.name,
                token: c.token.clone(),
                pin: c.pin.clone(),
                sha256: c.sha256.clone(),
            })
            .collect(),
    };
    {
        let token = second.open_logged_in();
        let old_key = token.find_kept_key(label).unwrap();
        token.destroy(old_key).unwrap();
        let other = token
            .generate_aes256(byok::hsm::AesKeyKind::Sensitive)
            .unwrap();
        token.keep_copy(other, label).unwrap();
    }
    second
}

#[test]
fn a_kept_key_whose_kcv_differs_is_refused_before_any_kms_write() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (_arn, alias) = kms.external_key();
    let kept = kept_import(&hsm, &kms, &alias, "us-east-1");
    delete_material(&kms, &alias);
    let second = second_token_with_another_kept_key(&hsm, &kept.label);
    std::fs::copy(&kept.transcript, second.path("keep.transcript.jsonl")).unwrap();
    let file = reimport_file(&second, &alias, "us-east-1", &kept, &kept.last_line_sha256);
    let t = second.path("reimport.jsonl");
    let mut cmd = second.byok();
    cmd.arg("run").arg(&file).arg("--transcript").arg(&t);
    // Only the PINs: nobody is asked to approve anything.
    let out = run_with_stdin(cmd, &format!("{}\n{}\n", second.so_pin, second.pin));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert_contains(
        &err,
        &format!("the kept key {:?} on this token has KCV", kept.label),
    );
    assert_contains(
        &err,
        &format!("but the source transcript recorded {}", kept.kcv),
    );
    let recs = records(&t);
    let checked = of(&recs, "kept_key_checked");
    assert_eq!(checked.len(), 1);
    assert_eq!(checked[0]["match"], false);
    assert_ne!(checked[0]["kcv_now"], kept.kcv.as_str());
    assert!(of(&recs, "approval").is_empty());
    assert!(of(&recs, "import_parameters").is_empty());
    assert_eq!(recs.last().unwrap()["type"], "ceremony_aborted");
    assert_eq!(recs.last().unwrap()["data"]["step"], "kept_key_check");
    // KMS: nothing was imported; the key still waits for its material.
    assert_eq!(kms.state(&alias), "PendingImport");
    reference_verify(&t, &hsm.audit_sha256);
}

#[test]
fn refused_an_enabled_key_a_wrong_fingerprint_a_tampered_source_a_key_not_kept() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (_arn, alias) = kms.external_key();
    let kept = kept_import(&hsm, &kms, &alias, "us-east-1");
    let run = |file: &Path, t: &Path, stdin: &str| {
        let mut cmd = hsm.byok();
        cmd.arg("run").arg(file).arg("--transcript").arg(t);
        run_with_stdin(cmd, stdin)
    };

    // A key that holds its material (Enabled): refused at the preflight, before any approval.
    let file = reimport_file(&hsm, &alias, "us-east-1", &kept, &kept.last_line_sha256);
    let t = hsm.path("enabled.jsonl");
    let out = run(&file, &t, &format!("{}\n{}\n", hsm.so_pin, hsm.pin));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(&stderr(&out), "is in state Enabled, expected PendingImport");
    let recs = records(&t);
    assert!(of(&recs, "approval").is_empty());
    assert_eq!(of(&recs, "kms_preflight")[0]["key_state"], "Enabled");
    assert_eq!(recs.last().unwrap()["data"]["step"], "kms_preflight");
    delete_material(&kms, &alias);

    // A fingerprint other than the transcript's: refused before any PIN is asked.
    let wrong = "ab".repeat(32);
    let file = reimport_file(&hsm, &alias, "us-east-1", &kept, &wrong);
    let t = hsm.path("wrong.jsonl");
    let out = run(&file, &t, "");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "ends with a line whose SHA-256 is {}, but source.last_line_sha256 pins {wrong}",
            kept.last_line_sha256
        ),
    );
    assert!(!stderr(&out).contains("PIN"), "{}", stderr(&out));
    assert!(!t.exists());

    // A tampered source (its kept KCV edited; the last line, and so the pin, unchanged).
    let text = std::fs::read_to_string(&kept.transcript).unwrap();
    let tampered: String = text
        .lines()
        .map(|l| {
            if l.contains("\"type\":\"key_kept\"") {
                l.replace(&format!("\"kcv\":\"{}\"", kept.kcv), "\"kcv\":\"000000\"")
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    assert_ne!(tampered, text);
    std::fs::write(&kept.transcript, tampered).unwrap();
    assert_eq!(last_line_sha256(&kept.transcript), kept.last_line_sha256);
    let file = reimport_file(&hsm, &alias, "us-east-1", &kept, &kept.last_line_sha256);
    let t = hsm.path("tampered.jsonl");
    let out = run(&file, &t, "");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(&stderr(&out), "keep.transcript.jsonl is INVALID at line");
    assert!(!t.exists());
    std::fs::write(&kept.transcript, text).unwrap();

    // A key the source did not keep material of: refused before any approval.
    let (_other_arn, other) = kms.external_key();
    let file = reimport_file(&hsm, &other, "us-east-1", &kept, &kept.last_line_sha256);
    let t = hsm.path("other.jsonl");
    let out = run(&file, &t, &format!("{}\n{}\n", hsm.so_pin, hsm.pin));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "which is neither a key the source transcript keep.transcript.jsonl kept material of nor a multi-Region replica of one",
    );
    let recs = records(&t);
    assert!(of(&recs, "approval").is_empty());
    assert_eq!(recs.last().unwrap()["data"]["step"], "kept_key_check");
    assert_eq!(kms.state(&other), "PendingImport");
    assert_eq!(kms.state(&alias), "PendingImport");
}

#[test]
fn check_refuses_reimport_files_without_source_or_with_fields_it_does_not_take() {
    let hsm = SoftHsm::new();
    let dir = hsm.dir.path();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("hsm.keep_key_label", "\"again\"")],
            "hsm.keep_key_label: a reimport imports material the token keeps already",
        ),
        (
            &[("import.wrap", "\"host\"")],
            "import.wrap: a reimport wraps the kept material inside the HSM only",
        ),
        (
            &[("source.last_line_sha256", "\"abc\"")],
            "source.last_line_sha256: expected 64 hex digits",
        ),
    ];
    for (i, (set, message)) in cases.iter().enumerate() {
        let file = crate::common::ceremony_from("reimport.toml", dir, &format!("r{i}.toml"), set);
        let out = hsm.byok().arg("check").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        assert_contains(&stderr(&out), message);
    }
    // [source] is for kind = "reimport" (and "rollback") only; and a reimport needs it.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremonies/reimport.toml"),
    )
    .unwrap();
    let as_import = dir.join("import-with-source.toml");
    std::fs::write(&as_import, text.replace("kind = \"reimport\"\n", "")).unwrap();
    let out = hsm.byok().arg("check").arg(&as_import).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_contains(
        &stderr(&out),
        "source: is for kind = \"rollback\" or \"reimport\"; remove [source] (this ceremony is kind = \"import\")",
    );
    let start = text.find("\n[source]\n").unwrap();
    let end = text[start..].find("\n[hsm]\n").unwrap() + start;
    let without = dir.join("without-source.toml");
    std::fs::write(&without, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let out = hsm.byok().arg("check").arg(&without).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_contains(
        &stderr(&out),
        "source: missing: kind = \"reimport\" needs [source]",
    );
    // And --resume is refused for a reimport.
    let file = crate::common::ceremony_from("reimport.toml", dir, "valid.toml", &[]);
    let out = hsm
        .byok()
        .arg("run")
        .arg(&file)
        .args(["--resume", "old.jsonl", "--transcript"])
        .arg(dir.join("new.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "--resume is not supported for kind = \"reimport\"",
    );
}
