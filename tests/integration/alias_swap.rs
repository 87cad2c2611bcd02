//! `kind = "rotate"` with `strategy = "alias-swap"`, then `kind = "rollback"`, against
//! LocalStack on the token under test, with 2-of-3 dual control: two keys first imported by
//! byok, each alias moved to a new key byok creates and imports into, then moved back. Which
//! key each alias names, the keys' states, origins and tags are read back from KMS here, not
//! taken from byok's records.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::common::{
    SoftHsm, TestKms, approve_answers, assert_contains, ceremony_pinned_as, count, rand_u32,
    records, reference_verify, run_ceremony as run, run_in_process, stderr, stdout,
};

/// SHA-256 of a transcript's last line, computed here.
fn last_line_sha256(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let last = text.lines().last().unwrap();
    hex::encode(sha2::Sha256::digest(last.as_bytes()))
}

fn verify(hsm: &SoftHsm, t: &Path) -> String {
    let v = hsm
        .byok()
        .arg("verify")
        .arg(t)
        .args(["--audit-key-sha256", &hsm.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    stdout(&v)
}

/// Two keys `alias/<prefix>-{s3,rds}-prod`, created (with tags) and imported by byok.
fn imported_pair(hsm: &SoftHsm) -> Vec<String> {
    let prefix = format!("a{:08x}", rand_u32());
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    let file = ceremony_pinned_as(
        hsm,
        "fleet-product.toml",
        &format!("import-{prefix}.toml"),
        &[
            ("targets.key", key.as_str()),
            ("targets.services", "[\"s3\", \"rds\"]"),
            ("targets.environments", "[\"prod\"]"),
        ],
    );
    let out = run(
        hsm,
        &file,
        &hsm.path(&format!("import-{prefix}.jsonl")),
        &hsm.all_answers(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    vec![
        format!("alias/{prefix}-s3-prod"),
        format!("alias/{prefix}-rds-prod"),
    ]
}

/// `ceremonies/fleet-alias-swap.toml` for `aliases`, each with its `previous_key`.
fn swap_file(hsm: &SoftHsm, name: &str, aliases: &[String], previous: &[String]) -> PathBuf {
    let values: Vec<(String, String)> = aliases
        .iter()
        .zip(previous)
        .enumerate()
        .flat_map(|(i, (a, p))| {
            [
                (format!("target[{i}].key"), format!("\"{a}\"")),
                (format!("target[{i}].previous_key"), format!("\"{p}\"")),
            ]
        })
        .collect();
    let set: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ceremony_pinned_as(hsm, "fleet-alias-swap.toml", name, &set)
}

/// `ceremonies/fleet-rollback.toml` for `aliases`, from `source` pinned as `pin`.
fn rollback_file(
    hsm: &SoftHsm,
    name: &str,
    aliases: &[String],
    source: &Path,
    pin: &str,
) -> PathBuf {
    let mut values = vec![
        (
            "source.transcript".to_string(),
            format!("\"{}\"", source.display()),
        ),
        ("source.last_line_sha256".to_string(), format!("\"{pin}\"")),
    ];
    for (i, a) in aliases.iter().enumerate() {
        values.push((format!("target[{i}].key"), format!("\"{a}\"")));
    }
    let set: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ceremony_pinned_as(hsm, "fleet-rollback.toml", name, &set)
}

#[test]
fn aliases_move_to_new_keys_and_back_and_both_keys_stay_enabled() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let aliases = imported_pair(&hsm);
    let old: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    // Made under the old keys, through the aliases, by the test.
    let before: Vec<Vec<u8>> = aliases
        .iter()
        .map(|a| kms.encrypt(a, a.as_bytes()))
        .collect();

    // --- alias swap
    let file = swap_file(&hsm, "swap.toml", &aliases, &old);
    let check = hsm.byok().arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_contains(
        &stdout(&check),
        "ListResourceTags (the previous key); then CreateKey",
    );
    assert_contains(&stdout(&check), "UpdateAlias");
    let swap_t = hsm.path("swap.jsonl");
    let answers = format!("{}{}", hsm.all_answers(), hsm.approve(&["Bob", "Carol"]));
    let out = run(&hsm, &file, &swap_t, &answers);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_contains(
        &stderr(&out),
        "byok? select approver-swap: Custodian approving the swap (1 of 2)",
    );

    let new: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    for (i, alias) in aliases.iter().enumerate() {
        assert_ne!(new[i], old[i], "{alias} still names the old key");
        assert!(!old.contains(&new[i]), "{alias} names another old key");
        assert_eq!(kms.state(&new[i]), "Enabled");
        assert_eq!(kms.origin(&new[i]), "EXTERNAL");
        assert_eq!(kms.state(&old[i]), "Enabled", "the old key stays Enabled");
        // The old key still decrypts what it encrypted; the alias now encrypts under the new.
        assert_eq!(kms.decrypt(&old[i], &before[i]), alias.as_bytes());
        assert!(kms.round_trip(alias));
        let ct = kms.encrypt(alias, b"after the swap");
        assert_eq!(kms.decrypt(&new[i], &ct), b"after the swap");
        // The old key's tags were copied; the file's extra tag (target 0) is laid on top.
        let old_tags = kms.tags(&old[i]);
        let new_tags = kms.tags(&new[i]);
        for (k, v) in old_tags.iter().filter(|(k, _)| k != "byok:ceremony-target") {
            assert!(
                new_tags.contains(&(k.clone(), v.clone())),
                "{alias}: tag {k}={v} not copied: {new_tags:?}"
            );
        }
        assert!(new_tags.iter().any(|(k, _)| k == "service"), "{new_tags:?}");
        assert!(
            new_tags.contains(&(
                "byok:ceremony-target".into(),
                format!("prod-2027-alias-swap {alias}")
            )),
            "{new_tags:?}"
        );
    }
    assert!(
        kms.tags(&new[0])
            .contains(&("rotation".into(), "2027".into()))
    );
    assert!(!kms.tags(&new[1]).iter().any(|(k, _)| k == "rotation"));

    let recs = records(&swap_t);
    assert_eq!(count(&recs, "alias_preflight"), 2);
    assert_eq!(count(&recs, "key_created"), 2);
    assert_eq!(count(&recs, "key_imported"), 2);
    assert_eq!(count(&recs, "swap_confirmed"), 1);
    assert_eq!(count(&recs, "alias_updated"), 2);
    assert_eq!(count(&recs, "alias_verified"), 2);
    assert_eq!(count(&recs, "approval"), 6, "two per approval point");
    // Both ARNs are recorded for each alias, as KMS reports them.
    for r in recs.iter().filter(|r| r["type"] == "alias_updated") {
        let i = r["data"]["target_index"].as_u64().unwrap() as usize;
        assert_eq!(r["data"]["from_key_arn"], old[i].as_str());
        assert_eq!(r["data"]["to_key_arn"], new[i].as_str());
    }
    let finished = &recs.last().unwrap()["data"]["targets"];
    assert!(
        finished
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "swapped"),
        "{finished}"
    );
    assert_contains(&verify(&hsm, &swap_t), "approved        swap: Bob, Carol");
    assert_contains(
        &reference_verify(&swap_t, &hsm.audit_sha256),
        "approved swap: Bob, Carol",
    );

    // --- rollback, from the verified alias-swap transcript
    let pin = last_line_sha256(&swap_t);
    let file = rollback_file(&hsm, "rollback.toml", &aliases, &swap_t, &pin);
    let check = hsm.byok().arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let back_t = hsm.path("rollback.jsonl");
    let answers = format!("{}{}", hsm.through_plan(), hsm.approve(&["Alice", "Carol"]));
    let out = run(&hsm, &file, &back_t, &answers);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    for (i, alias) in aliases.iter().enumerate() {
        assert_eq!(kms.arn(alias), old[i], "{alias} is back on the old key");
        assert_eq!(recs_back_outcome(&back_t, i), old[i]);
        assert_eq!(kms.state(&old[i]), "Enabled");
        assert_eq!(kms.state(&new[i]), "Enabled", "the new key stays Enabled");
        let ct = kms.encrypt(alias, b"after the rollback");
        assert_eq!(kms.decrypt(&old[i], &ct), b"after the rollback");
    }
    let recs = records(&back_t);
    assert_eq!(count(&recs, "source_verified"), 1);
    assert_eq!(recs[2]["type"], "source_verified");
    assert_eq!(recs[2]["data"]["last_line_sha256"], pin.as_str());
    assert_eq!(
        count(&recs, "key_generated"),
        0,
        "a rollback generates nothing"
    );
    assert_eq!(count(&recs, "key_imported"), 0);
    assert_eq!(count(&recs, "alias_updated"), 2);
    assert_eq!(count(&recs, "approval"), 4);
    let finished = &recs.last().unwrap()["data"]["targets"];
    assert!(
        finished
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "rolled_back"),
        "{finished}"
    );
    assert_contains(&verify(&hsm, &back_t), "approved        swap: Alice, Carol");
    assert_contains(
        &reference_verify(&back_t, &hsm.audit_sha256),
        "approved swap: Alice, Carol",
    );
}

#[test]
fn an_alias_that_names_another_key_is_refused_before_any_approval() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let aliases = imported_pair(&hsm);
    let old: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    // The file says alias 0 names key 1.
    let wrong = vec![old[1].clone(), old[1].clone()];
    let file = swap_file(&hsm, "wrong.toml", &aliases, &wrong);
    let t = hsm.path("wrong.jsonl");
    let out = run(&hsm, &file, &t, &format!("{}\n", hsm.pin));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "{} names key {}, not {} (previous_key in the ceremony file)",
            aliases[0], old[0], old[1]
        ),
    );
    assert!(!stderr(&out).contains("approver-plan"), "{}", stderr(&out));
    let recs = records(&t);
    assert_eq!(count(&recs, "approval"), 0);
    assert_eq!(count(&recs, "key_created"), 0);
    assert_eq!(recs.last().unwrap()["data"]["step"], "kms_preflight");
    // Nothing moved.
    for (a, o) in aliases.iter().zip(&old) {
        assert_eq!(&kms.arn(a), o);
    }
}

#[test]
fn a_rollback_refuses_a_source_it_cannot_trust_and_an_alias_moved_since() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let aliases = imported_pair(&hsm);
    let old: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    let swap_t = hsm.path("swap.jsonl");
    // This swap also keeps each new key's material on the token (the kept-key rules of an
    // import apply to an alias swap's imports).
    let file = swap_file(&hsm, "swap.toml", &aliases, &old);
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "audit_key_label = \"byok-audit\"",
        "audit_key_label = \"byok-audit\"\nkeep_key_label = \"swap-kept-{index}\"",
    );
    std::fs::write(&file, text).unwrap();
    let answers = format!("{}{}", hsm.all_answers(), hsm.approve(&["Bob", "Carol"]));
    let out = run(&hsm, &file, &swap_t, &answers);
    assert!(out.status.success(), "{}", stderr(&out));
    let new: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    let pin = last_line_sha256(&swap_t);
    for i in 0..2 {
        let kept = hsm
            .kept_on_token(&format!("swap-kept-{i}"))
            .unwrap_or_else(|| panic!("no kept copy of target {i} on the token"));
        assert!(
            kept.token && kept.sensitive && kept.wrap_with_trusted,
            "{kept:?}"
        );
        assert!(
            !kept.encrypt && !kept.decrypt && !kept.modifiable,
            "{kept:?}"
        );
    }
    let kept_records = records(&swap_t)
        .iter()
        .filter(|r| r["type"] == "key_kept")
        .map(|r| r["data"]["key_arn"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(kept_records.len(), 2);
    assert!(
        kept_records.iter().all(|a| new.contains(a)),
        "kept for the new keys"
    );

    let attempt = |name: &str, source: &Path, pin: &str| {
        let file = rollback_file(&hsm, &format!("{name}.toml"), &aliases, source, pin);
        let t = hsm.path(&format!("{name}.jsonl"));
        let out = run(&hsm, &file, &t, &format!("{}\n", hsm.pin));
        assert_eq!(out.status.code(), Some(3), "{name}: {}", stderr(&out));
        assert!(!stderr(&out).contains("approver-plan"), "{}", stderr(&out));
        // A source that does not verify stops the run before any PIN and any transcript.
        if t.exists() {
            assert_eq!(count(&records(&t), "approval"), 0);
        }
        stderr(&out)
    };
    // The wrong fingerprint.
    let err = attempt("wrong-pin", &swap_t, &"ab".repeat(32));
    assert_contains(&err, "but source.last_line_sha256 pins");
    assert!(
        !hsm.path("wrong-pin.jsonl").exists(),
        "no transcript for a wrong source"
    );
    // A transcript whose one byte changed (re-signing needs the audit key: this is the
    // chain and signature check of the source).
    let text = std::fs::read_to_string(&swap_t).unwrap();
    let tampered = hsm.path("tampered-source.jsonl");
    std::fs::write(&tampered, text.replacen("\"swapped\"", "\"swappeD\"", 1)).unwrap();
    let err = attempt("tampered", &tampered, &last_line_sha256(&tampered));
    assert_contains(&err, "is INVALID at line");
    // A transcript of another kind: the import of the two keys.
    let import_t = std::fs::read_dir(hsm.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("import-")
                && p.extension().is_some_and(|x| x == "jsonl")
        })
        .unwrap();
    let err = attempt("import-source", &import_t, &last_line_sha256(&import_t));
    assert_contains(
        &err,
        "a rollback undoes a kind = \"rotate\", strategy = \"alias-swap\"",
    );
    // Someone moved alias 0 elsewhere since the swap: nothing is moved.
    kms.update_alias(&aliases[0], &old[1]);
    let err = attempt("moved", &swap_t, &pin);
    assert_contains(
        &err,
        &format!(
            "{} names key {}, not {} (the key the source ceremony moved it to)",
            aliases[0], old[1], new[0]
        ),
    );
    assert_eq!(kms.arn(&aliases[0]), old[1]);
    assert_eq!(kms.arn(&aliases[1]), new[1]);
    let _ = rand_u32();
}

/// LocalStack, except that UpdateAlias's answer is lost: after doing it (`perform`), or
/// without doing it. Counts the UpdateAlias calls it is sent.
struct LostUpdate {
    real: byok::kms::AwsKms,
    perform: bool,
    updates: std::sync::Mutex<Vec<String>>,
}

impl byok::kms::Kms for LostUpdate {
    crate::common::forward_kms!(
        whereabouts,
        describe_key,
        create_key,
        create_alias,
        list_resource_tags,
        find_tagged_keys,
        get_parameters_for_import,
        import_key_material,
        rotate_key_on_demand,
        list_key_materials,
        encrypt,
        decrypt
    );
    fn update_alias(&self, alias: &str, key_arn: &str) -> Result<(), byok::kms::KmsError> {
        self.updates.lock().unwrap().push(alias.to_string());
        if self.perform {
            self.real.update_alias(alias, key_arn)?;
        }
        Err(byok::kms::KmsError {
            operation: "UpdateAlias",
            failure: byok::kms::KmsFailure::NoAnswer,
            code: None,
            status: None,
            message: "timed out after 30 s (test double)".into(),
        })
    }
}

#[test]
fn a_lost_update_alias_answer_is_asked_of_kms_never_resent() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let aliases = imported_pair(&hsm);
    let old: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    let swap_t = hsm.path("swap.jsonl");
    let file = swap_file(&hsm, "swap.toml", &aliases, &old);
    let answers = format!("{}{}", hsm.all_answers(), hsm.approve(&["Bob", "Carol"]));
    let out = run(&hsm, &file, &swap_t, &answers);
    assert!(out.status.success(), "{}", stderr(&out));
    let new: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    let pin = last_line_sha256(&swap_t);

    // The answer is lost, but KMS did it: DescribeKey of the alias settles it.
    let done = LostUpdate {
        real: byok::kms::AwsKms::new("us-east-1").unwrap(),
        perform: true,
        updates: Default::default(),
    };
    let file = rollback_file(&hsm, "back.toml", &aliases, &swap_t, &pin);
    let t = hsm.path("back.jsonl");
    let (result, recs) = rollback_in_process(&hsm, &file, &t, &done);
    result.unwrap_or_else(|e| panic!("{}", byok::ceremony::chain(&e)));
    let mut sent = done.updates.lock().unwrap().clone();
    sent.sort();
    let mut want = aliases.clone();
    want.sort();
    assert_eq!(sent, want, "one UpdateAlias per alias, never resent");
    for r in recs.iter().filter(|r| r["type"] == "alias_updated") {
        assert_eq!(r["data"]["outcome"], "reconciled", "{r}");
        let evidence = r["data"]["evidence"].to_string();
        assert!(evidence.contains("UpdateAlias got no answer"), "{evidence}");
        assert!(evidence.contains("DescribeKey"), "{evidence}");
    }
    for (a, o) in aliases.iter().zip(&old) {
        assert_eq!(&kms.arn(a), o, "KMS says {a} is back");
    }
    verify(&hsm, &t);
    reference_verify(&t, &hsm.audit_sha256);

    // Forward again by hand, then a lost answer that KMS did not act on: the rollback stops,
    // the outcome is recorded as uncertain, and UpdateAlias is not sent a second time.
    for (a, n) in aliases.iter().zip(&new) {
        kms.update_alias(a, n);
    }
    let lost = LostUpdate {
        real: byok::kms::AwsKms::new("us-east-1").unwrap(),
        perform: false,
        updates: Default::default(),
    };
    let file = rollback_file(&hsm, "lost.toml", &aliases, &swap_t, &pin);
    let t = hsm.path("lost.jsonl");
    let (result, recs) = rollback_in_process(&hsm, &file, &t, &lost);
    let err = byok::ceremony::chain(&result.expect_err("the rollback stops"));
    assert!(
        err.contains("has an unknown outcome, and it is never sent again"),
        "{err}"
    );
    assert!(
        err.contains("names arn:"),
        "the DescribeKey evidence: {err}"
    );
    let sent = lost.updates.lock().unwrap().clone();
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(sent.len(), unique.len(), "never resent: {sent:?}");
    let last = recs.last().unwrap();
    assert_eq!(last["type"], "ceremony_aborted");
    assert_eq!(last["data"]["step"], "swap");
    assert!(
        last["data"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["status"] == "uncertain"),
        "{last}"
    );
    assert_eq!(count(&recs, "alias_updated"), 0);
    for (a, n) in aliases.iter().zip(&new) {
        assert_eq!(&kms.arn(a), n, "KMS says {a} did not move");
    }
    verify(&hsm, &t);

    // As if a rollback had been cut off after its first UpdateAlias: alias 0 is back already.
    // The same file, run again, leaves it alone (done) and moves only alias 1.
    kms.update_alias(&aliases[0], &old[0]);
    let t = hsm.path("again.jsonl");
    let answers = format!("{}{}", hsm.through_plan(), hsm.approve(&["Alice", "Carol"]));
    let out = run(&hsm, &file, &t, &answers);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), "moved back earlier, nothing to do");
    let recs = records(&t);
    let updated: Vec<_> = recs
        .iter()
        .filter(|r| r["type"] == "alias_updated")
        .map(|r| r["data"]["target_index"].as_u64().unwrap())
        .collect();
    assert_eq!(updated, [1], "only the alias not yet back is moved");
    let outcome: Vec<_> = recs.last().unwrap()["data"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcome, ["done", "rolled_back"]);
    for (a, o) in aliases.iter().zip(&old) {
        assert_eq!(&kms.arn(a), o, "KMS says {a} is back");
    }
    verify(&hsm, &t);
    reference_verify(&t, &hsm.audit_sha256);
}

/// The key ARN the final record of `transcript` gives target `i`.
fn recs_back_outcome(transcript: &Path, i: usize) -> String {
    let recs = records(transcript);
    recs.last().unwrap()["data"]["targets"][i]["key_arn"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_dual_controlled_rollback_refuses_a_rehearsal_swap() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let aliases = imported_pair(&hsm);
    let old: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    // A rehearsal swap: the audit key alone signs it, the operator confirms.
    let file = swap_file(&hsm, "rehearsal.toml", &aliases, &old);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[dual_control]\n", "[dual_control]\nenabled = false\n");
    std::fs::write(&file, text).unwrap();
    let swap_t = hsm.path("rehearsal.jsonl");
    let out = run(&hsm, &file, &swap_t, &format!("{}\nyes\nyes\n", hsm.pin));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stdout(&out), "REHEARSAL");
    let new: Vec<String> = aliases.iter().map(|a| kms.arn(a)).collect();
    assert_ne!(new, old, "the rehearsal moved the aliases");

    let file = rollback_file(
        &hsm,
        "back.toml",
        &aliases,
        &swap_t,
        &last_line_sha256(&swap_t),
    );
    let t = hsm.path("back.jsonl");
    let out = run(&hsm, &file, &t, &format!("{}\n", hsm.pin));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "is of a rehearsal (dual control off), which the audit key alone signed; a dual-controlled rollback works only from a dual-controlled alias swap",
    );
    assert_eq!(count(&records(&t), "approval"), 0);
    for (a, n) in aliases.iter().zip(&new) {
        assert_eq!(&kms.arn(a), n, "nothing moved");
    }
}

/// A rollback run in-process against `kms`, approved 2-of-3; returns the result and records.
fn rollback_in_process(
    hsm: &SoftHsm,
    file: &Path,
    transcript: &Path,
    kms: &LostUpdate,
) -> (
    Result<byok::ceremony::Outcome, byok::Error>,
    Vec<serde_json::Value>,
) {
    let mut answers = vec![byok::prompt::Answer::Secret("hsm-pin", hsm.pin.clone())];
    answers.extend(approve_answers(hsm, "plan", &["Alice", "Bob"]));
    answers.extend(approve_answers(hsm, "swap", &["Alice", "Carol"]));
    let (result, _, recs) = run_in_process(hsm, file, transcript, kms, answers);
    (result, recs)
}
