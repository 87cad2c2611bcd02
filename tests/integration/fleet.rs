//! Many targets in one ceremony, through the `byok` binary against the token under test and
//! LocalStack: the six-key product example, kill -9 at every step boundary then `--resume`,
//! throttling, and an ImportKeyMaterial whose answer is lost.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use crate::common::{
    KmsProxy, SoftHsm, TestKms, assert_contains, ceremony_pinned, count, rand_u32, records,
    reference_verify, run_with_stdin, stderr, stdout,
};

fn verify(hsm: &SoftHsm, transcript: &Path) -> std::process::Output {
    crate::common::byok()
        .arg("verify")
        .arg(transcript)
        .args(["--audit-key-sha256", &hsm.audit_sha256])
        .output()
        .unwrap()
}

/// `byok run` with extra arguments and environment.
fn run(
    hsm: &SoftHsm,
    file: &Path,
    transcript: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: &str,
) -> std::process::Output {
    let mut cmd = hsm.byok();
    cmd.arg("run").arg(file).arg("--transcript").arg(transcript);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_with_stdin(cmd, stdin)
}

/// A product ceremony from ceremonies/fleet-product.toml with fresh aliases
/// `alias/<prefix>-<service>-<environment>`.
fn product(hsm: &SoftHsm, services: &str, extra: &[(&str, &str)]) -> (std::path::PathBuf, String) {
    let prefix = format!("f{:08x}", rand_u32());
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    let mut set = vec![
        ("targets.key", key.as_str()),
        ("targets.services", services),
    ];
    set.extend_from_slice(extra);
    (ceremony_pinned(hsm, "fleet-product.toml", &set), prefix)
}

/// A ceremony from ceremonies/demo-softhsm.toml whose targets are `keys`, as `[[target]]`
/// tables.
fn target_list(hsm: &SoftHsm, keys: &[&str]) -> std::path::PathBuf {
    let file = crate::common::ceremony_for(hsm, "demo-softhsm.toml", "alias/unused", &[]);
    let mut text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("key = \"alias/unused\"\n", "");
    for key in keys {
        text.push_str(&format!("\n[[target]]\nkey = \"{key}\"\n"));
    }
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn six_target_product_ceremony_needs_four_approvals_and_imports_every_key() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (file, prefix) = product(&hsm, "[\"s3\", \"rds\", \"dynamodb\"]", &[]);
    let check = hsm.byok().arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_contains(&stdout(&check), "Targets (6):");
    assert_contains(&stdout(&check), &format!("alias/{prefix}-dynamodb-prod"));
    assert_contains(&stdout(&check), "ETA: at least 5 s");

    let t = hsm.path("fleet.jsonl");
    let out = run(&hsm, &file, &t, &[], &[], &hsm.all_answers());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let recs = records(&t);
    assert_eq!(
        count(&recs, "approval"),
        4,
        "two per approval point, not per key"
    );
    assert_eq!(count(&recs, "key_created"), 6);
    assert_eq!(count(&recs, "key_imported"), 6);
    // What KMS says of each key, not what byok wrote.
    for service in ["s3", "rds", "dynamodb"] {
        for env in ["dev", "prod"] {
            let alias = format!("alias/{prefix}-{service}-{env}");
            assert_eq!(kms.state(&alias), "Enabled", "{alias}");
            assert!(kms.round_trip(&alias), "{alias}");
            let tags = kms.tags(&alias);
            assert!(
                tags.contains(&("service".into(), service.into())),
                "{tags:?}"
            );
            assert!(
                tags.contains(&("environment".into(), env.into())),
                "{tags:?}"
            );
        }
    }
    let v = verify(&hsm, &t);
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert_contains(&stdout(&v), "targets         6");
    let independent = reference_verify(&t, &hsm.audit_sha256);
    assert_contains(&independent, "approved plan: Alice, Bob");
    assert_contains(&independent, "approved import: Alice, Carol");
    // Only the audit key pair is left on the token.
    assert_eq!(hsm.token_object_labels(), ["byok-audit", "byok-audit"]);
}

#[test]
fn targets_in_two_regions_are_imported_each_in_its_own_region() {
    let hsm = SoftHsm::new();
    let east = TestKms::new();
    let west = TestKms::in_region("eu-west-1");
    let (_, east_alias) = east.external_key();
    let (west_arn, _) = west.external_key();
    assert!(west_arn.starts_with("arn:aws:kms:eu-west-1:"), "{west_arn}");
    let file = target_list(&hsm, &[&east_alias, &west_arn]);
    let check = hsm.byok().arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_contains(&stdout(&check), "  us-east-1: 1 target,");
    assert_contains(&stdout(&check), "  eu-west-1: 1 target,");
    let t = hsm.path("regions.jsonl");
    let out = run(&hsm, &file, &t, &[], &[], &hsm.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    // Each region's KMS holds its own key's material.
    assert_eq!(east.state(&east_alias), "Enabled");
    assert!(east.round_trip(&east_alias));
    assert_eq!(west.state(&west_arn), "Enabled");
    assert!(west.round_trip(&west_arn));
    assert_eq!(verify(&hsm, &t).status.code(), Some(0));
}

#[test]
fn an_abort_names_the_step_and_target_that_failed_first() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (_, alias) = kms.external_key();
    let missing = format!("alias/byok-missing-{:08x}", rand_u32());
    let file = target_list(&hsm, &[&alias, &missing]);
    let t = hsm.path("first.jsonl");
    let out = run(&hsm, &file, &t, &[], &[], &hsm.all_answers());
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_contains(&stderr(&out), "ceremony stopped at step `kms_preflight`");
    let recs = records(&t);
    let last = &recs.last().unwrap()["data"];
    assert_eq!(last["step"], "kms_preflight");
    assert_eq!(last["target_index"], 1);
    // The other target was not imported, and KMS agrees.
    assert_eq!(last["targets"][0]["status"], "not_started");
    assert_eq!(kms.state(&alias), "PendingImport");
    assert_eq!(verify(&hsm, &t).status.code(), Some(0));
}

#[test]
fn two_names_of_one_key_are_refused_before_anything_is_imported() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = target_list(&hsm, &[&alias, &arn]);
    let t = hsm.path("twins.jsonl");
    let out = run(
        &hsm,
        &file,
        &t,
        &["--kms-concurrency", "1"],
        &[],
        &hsm.all_answers(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!("targets 0 ({alias}) and 1 ({arn}) name the same key {arn}; list each key once"),
    );
    assert_eq!(kms.state(&arn), "PendingImport");
    assert_eq!(verify(&hsm, &t).status.code(), Some(0));
}

#[test]
fn throttled_calls_are_retried_and_the_ceremony_completes() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let proxy = KmsProxy::start(&[
        "--throttle-first",
        "GetParametersForImport=3",
        "--throttle-first",
        "ImportKeyMaterial=2",
        "--throttle-first",
        "CreateKey=1",
    ]);
    let (file, prefix) = product(&hsm, "[\"s3\", \"rds\"]", &[]);
    let t = hsm.path("throttled.jsonl");
    let out = run(
        &hsm,
        &file,
        &t,
        &[],
        &crate::common::use_endpoint(&file, &proxy.url),
        &hsm.all_answers(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let imports = proxy.calls("ImportKeyMaterial");
    assert_eq!(
        imports.iter().filter(|o| *o == "throttled").count(),
        2,
        "{imports:?}"
    );
    assert_eq!(
        imports.iter().filter(|o| *o == "200").count(),
        4,
        "{imports:?}"
    );
    for service in ["s3", "rds"] {
        for env in ["dev", "prod"] {
            assert_eq!(
                kms.state(&format!("alias/{prefix}-{service}-{env}")),
                "Enabled"
            );
        }
    }
    assert_eq!(verify(&hsm, &t).status.code(), Some(0));
}

#[test]
fn a_lost_import_answer_is_asked_of_kms_not_resent() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let proxy = KmsProxy::start(&["--drop-response", "ImportKeyMaterial"]);
    let tag = format!("l{:08x}", rand_u32());
    let keep = format!("\"{tag}-{{service}}-{{environment}}\"");
    let (file, prefix) = product(
        &hsm,
        "[\"s3\"]",
        &[
            // Short, so that the dropped answers are given up on quickly; long enough for
            // LocalStack's CreateKey on a loaded 2-core CI machine (3 s was not).
            ("kms.call_timeout_seconds", "8"),
            ("hsm.keep_key_label", keep.as_str()),
        ],
    );
    let t = hsm.path("lost.jsonl");
    let started = std::time::Instant::now();
    let out = run(
        &hsm,
        &file,
        &t,
        &[],
        &crate::common::use_endpoint(&file, &proxy.url),
        &hsm.all_answers(),
    );
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    // One attempt per key, however long the answer takes.
    assert_eq!(
        proxy.calls("ImportKeyMaterial"),
        ["dropped:200", "dropped:200"]
    );
    assert!(elapsed < std::time::Duration::from_secs(60), "{elapsed:?}");
    let recs = records(&t);
    assert_eq!(count(&recs, "key_imported"), 0);
    let reconciled: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["type"] == "import_reconciled")
        .collect();
    assert_eq!(reconciled.len(), 2);
    for r in &reconciled {
        assert_eq!(r["data"]["outcome"], "imported", "{r}");
        assert_eq!(r["data"]["key_state"], "Enabled");
        assert!(
            !r["data"]["error"]
                .as_str()
                .unwrap()
                .contains("TimeoutError("),
            "{r}"
        );
    }
    assert_contains(&stderr(&out), "answer was lost");
    // KMS really holds the material, and the escrow copies were kept.
    for env in ["dev", "prod"] {
        assert!(kms.round_trip(&format!("alias/{prefix}-s3-{env}")));
        let kept = hsm
            .kept_on_token(&format!("{tag}-s3-{env}"))
            .expect("kept copy");
        assert!(kept.wrap_with_trusted && !kept.encrypt, "{kept:?}");
    }
    assert_eq!(verify(&hsm, &t).status.code(), Some(0));
}

/// kill -9 at one step boundary of a 3-target ceremony (created keys, kept copies), then
/// `--resume`: the cut-off transcript is reported truncated, no key but sealed kept copies of
/// imported material is on the token, and the resumed run imports every target exactly once.
fn kill_then_resume(failpoint: &str) {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let proxy = KmsProxy::start(&[]);
    let prefix = format!("k{:08x}", rand_u32());
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    let keep = format!("\"{prefix}-kept-{{service}}\"");
    let file = ceremony_pinned(
        &hsm,
        "fleet-product.toml",
        &[
            ("targets.key", key.as_str()),
            ("targets.services", "[\"a\", \"b\", \"c\"]"),
            ("targets.environments", "[\"x\"]"),
            ("hsm.keep_key_label", keep.as_str()),
        ],
    );
    let endpoint = crate::common::use_endpoint(&file, &proxy.url);
    let t1 = hsm.path("killed.jsonl");
    let mut envs = endpoint.to_vec();
    envs.push(("BYOK_FAILPOINT", failpoint));
    let out = run(&hsm, &file, &t1, &[], &envs, &hsm.all_answers());
    assert_eq!(
        out.status.signal(),
        Some(9),
        "not killed at {failpoint}: {}",
        stderr(&out)
    );
    let aliases: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| format!("alias/{prefix}-{s}-x"))
        .collect();
    let kept_labels: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| format!("{prefix}-kept-{s}"))
        .collect();

    // The cut-off transcript: truncated, or absent when killed before record 0.
    if failpoint == "before:ceremony_started" {
        assert!(!t1.exists());
        let leftovers: Vec<_> = std::fs::read_dir(hsm.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("killed"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    } else {
        let v = verify(&hsm, &t1);
        assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
        assert_contains(&stdout(&v), "truncated");
    }
    // Nothing extractable is left: only the audit key pair and sealed copies of material
    // that KMS holds.
    for label in hsm.token_object_labels() {
        if label == "byok-audit" {
            continue;
        }
        assert!(kept_labels.contains(&label), "unexpected object {label:?}");
        let kept = hsm.kept_on_token(&label).unwrap();
        assert!(
            kept.wrap_with_trusted && !kept.encrypt && !kept.modifiable && kept.wrap_out.is_err(),
            "{label}: {kept:?}"
        );
        let i = kept_labels.iter().position(|l| *l == label).unwrap();
        assert_eq!(
            kms.state(&aliases[i]),
            "Enabled",
            "kept {label} of material KMS lacks"
        );
    }

    // Resume.
    let t2 = hsm.path("resumed.jsonl");
    let resume_args: Vec<&str> = if t1.exists() {
        vec!["--resume", t1.to_str().unwrap()]
    } else {
        vec![]
    };
    let out = run(
        &hsm,
        &file,
        &t2,
        &resume_args,
        &endpoint,
        &hsm.all_answers(),
    );
    assert!(
        out.status.success(),
        "resume after {failpoint}: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let v = verify(&hsm, &t2);
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    if t1.exists() {
        assert_contains(&stdout(&v), "resumes         killed.jsonl");
    }
    for alias in &aliases {
        assert_eq!(kms.state(alias), "Enabled", "{alias} after {failpoint}");
        assert!(kms.round_trip(alias));
    }
    // Every target imported exactly once, across both runs; every key created once.
    let imports = proxy.calls("ImportKeyMaterial");
    assert_eq!(imports, ["200", "200", "200"], "after {failpoint}");
    assert_eq!(proxy.calls("CreateKey").len(), 3, "after {failpoint}");
    let recs = records(&t2);
    let last = recs.last().unwrap();
    assert_eq!(last["type"], "ceremony_finished");
    for t in last["data"]["targets"].as_array().unwrap() {
        assert!(
            ["imported", "done", "imported_unrecorded"].contains(&t["status"].as_str().unwrap()),
            "{t}"
        );
    }
    if failpoint.starts_with("import:answered") {
        // The second answer was never recorded (others in flight may not have been either).
        let unrecorded = recs
            .iter()
            .filter(|r| {
                r["type"] == "target_reconciled" && r["data"]["status"] == "imported_unrecorded"
            })
            .count();
        assert!(unrecorded >= 1, "{unrecorded}");
        assert_contains(&stderr(&out), "will not be imported again");
    }
}

macro_rules! kill_tests {
    ($($name:ident => $point:expr),* $(,)?) => {
        $(#[test]
        fn $name() {
            kill_then_resume($point);
        })*
    };
}

kill_tests! {
    kill_before_record_0 => "before:ceremony_started",
    kill_after_ceremony_started => "after:ceremony_started",
    kill_after_hsm_opened => "after:hsm_opened",
    kill_after_plan_approved => "after:approval:2",
    kill_between_create_key_and_create_alias => "create:answered:2",
    kill_after_key_created => "after:key_created:1",
    kill_after_kms_preflight => "after:kms_preflight:3",
    kill_after_capability_checked => "after:capability_checked",
    kill_after_import_parameters => "after:import_parameters:2",
    kill_after_key_generated => "after:key_generated:3",
    kill_after_key_wrapped => "after:key_wrapped:3",
    kill_after_import_approved => "after:approval:4",
    kill_after_import_confirmed => "after:import_confirmed",
    kill_between_import_answer_and_its_record => "import:answered:2",
    kill_after_key_imported => "after:key_imported:1",
    kill_between_kept_copy_and_its_record => "before:key_kept:1",
    kill_after_key_kept => "after:key_kept:2",
    kill_after_import_verified => "after:import_verified:3",
    kill_after_cleanup_done => "after:cleanup_done",
}
