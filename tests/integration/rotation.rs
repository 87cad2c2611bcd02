//! `kind = "rotate"` (strategy "new-material") against LocalStack, on the token under test:
//! six keys of the product form first imported by byok, then rotated by byok. What KMS says of
//! each key is read back here, not taken from byok's records.
//!
//! LocalStack serves ImportKeyMaterial with NEW_KEY_MATERIAL into an Enabled key,
//! RotateKeyOnDemand and CurrentKeyMaterialId (docs/hsm-compatibility.md, FACTS), but not
//! ListKeyRotations: byok then cannot count a key's rotations, says so, and records null.

use crate::common::{
    SoftHsm, TestKms, assert_contains, ceremony_pinned_as, count, rand_u32, records,
    reference_verify, run_ceremony as run, stderr, stdout,
};

const SERVICES: [&str; 3] = ["s3", "rds", "dynamodb"];
const ENVIRONMENTS: [&str; 2] = ["dev", "prod"];

/// Six keys `alias/<prefix>-<service>-<environment>` created and imported by byok.
fn imported_fleet(hsm: &SoftHsm) -> (String, Vec<String>) {
    let prefix = format!("r{:08x}", rand_u32());
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    let file = ceremony_pinned_as(
        hsm,
        "fleet-product.toml",
        "import.toml",
        &[("targets.key", key.as_str())],
    );
    let out = run(hsm, &file, &hsm.path("import.jsonl"), &hsm.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    let aliases = SERVICES
        .iter()
        .flat_map(|s| ENVIRONMENTS.iter().map(move |e| (s, e)))
        .map(|(s, e)| format!("alias/{prefix}-{s}-{e}"))
        .collect();
    (key, aliases)
}

/// Every answer of a 2-of-3 rotation: the plan, the import, the rotation.
fn rotation_answers(hsm: &SoftHsm) -> String {
    format!("{}{}", hsm.all_answers(), hsm.approve(&["Bob", "Carol"]))
}

#[test]
fn six_keys_rotate_to_new_material_and_old_ciphertexts_still_decrypt() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (key, aliases) = imported_fleet(&hsm);
    // Before: each key's current material, and a ciphertext made under it (by the test).
    let before: Vec<(Option<String>, Vec<u8>)> = aliases
        .iter()
        .map(|a| (kms.current_material(a), kms.encrypt(a, a.as_bytes())))
        .collect();
    assert!(before.iter().all(|(id, _)| id.is_some()));

    let file = ceremony_pinned_as(
        &hsm,
        "fleet-rotate.toml",
        "rotate.toml",
        &[("targets.key", key.as_str())],
    );
    let check = hsm.byok().arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_contains(&stdout(&check), "RotateKeyOnDemand");
    assert_contains(&stdout(&check), "Targets (6):");

    let t = hsm.path("rotate.jsonl");
    let out = run(&hsm, &file, &t, &rotation_answers(&hsm));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert_contains(
        &err,
        "kind           rotate: new material into Enabled keys",
    );
    assert_contains(
        &err,
        "byok? select approver-rotate: Custodian approving the rotate (1 of 2)",
    );

    // What KMS says now.
    for (alias, (old_id, old_ciphertext)) in aliases.iter().zip(&before) {
        assert_eq!(kms.state(alias), "Enabled", "{alias}");
        let now = kms.current_material(alias);
        assert!(
            now.is_some() && now != *old_id,
            "{alias}: {now:?} was {old_id:?}"
        );
        assert_eq!(
            kms.decrypt(alias, old_ciphertext),
            alias.as_bytes(),
            "{alias}"
        );
        assert!(kms.round_trip(alias), "{alias}");
    }

    let recs = records(&t);
    assert_eq!(count(&recs, "rotation_preflight"), 6);
    assert_eq!(count(&recs, "key_imported"), 6);
    assert_eq!(count(&recs, "key_rotated"), 6);
    assert_eq!(count(&recs, "rotation_verified"), 6);
    assert_eq!(count(&recs, "approval"), 6, "two per approval point");
    assert_eq!(count(&recs, "rotate_confirmed"), 1);
    // The material each key reports current is the one the ceremony imported and rotated to.
    for r in recs.iter().filter(|r| r["type"] == "key_rotated") {
        let i = r["data"]["target_index"].as_u64().unwrap() as usize;
        assert_eq!(
            r["data"]["key_material_id"].as_str(),
            kms.current_material(&aliases[i]).as_deref()
        );
    }
    for r in recs.iter().filter(|r| r["type"] == "key_imported") {
        assert_eq!(r["data"]["import_type"], "NEW_KEY_MATERIAL");
        assert_eq!(
            r["data"]["key_material_description"],
            "annual rotation 2027 ceremony fleet-2027-rotation"
        );
    }
    let finished = &recs.last().unwrap()["data"]["targets"];
    assert!(
        finished
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "rotated"),
        "{finished}"
    );
    let v = hsm
        .byok()
        .arg("verify")
        .arg(&t)
        .args(["--audit-key-sha256", &hsm.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert_contains(&stdout(&v), "approved        rotate: Bob, Carol");
    let independent = reference_verify(&t, &hsm.audit_sha256);
    assert_contains(&independent, "approved rotate: Bob, Carol");
}

#[test]
fn a_rotation_refuses_keys_that_are_not_enabled_before_any_approval() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    // A key with no material yet (PendingImport), and a disabled one.
    let (_, pending) = kms.external_key();
    let (_, aliases) = imported_fleet(&hsm);
    kms.disable(&aliases[0]);
    for (alias, state, why) in [
        (
            pending.as_str(),
            "PendingImport",
            "it holds no material (or lost one): import into it (kind = \"import\") instead",
        ),
        (
            aliases[0].as_str(),
            "Disabled",
            "enable it first (a rotation must not wake a key someone disabled)",
        ),
    ] {
        let name = format!("{}.toml", rand_u32());
        let file = ceremony_pinned_as(
            &hsm,
            "fleet-rotate.toml",
            &name,
            &[
                ("targets.key", &format!("\"{alias}\"")),
                ("targets.services", "[\"x\"]"),
                ("targets.environments", "[\"y\"]"),
            ],
        );
        let t = hsm.path(&format!("{name}.jsonl"));
        let out = run(&hsm, &file, &t, &format!("{}\n", hsm.pin));
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert_contains(
            &stderr(&out),
            &format!("is in state {state}, expected Enabled for a rotation: {why}"),
        );
        assert!(!stderr(&out).contains("approver-plan"), "{}", stderr(&out));
        let recs = records(&t);
        assert_eq!(recs.last().unwrap()["data"]["step"], "kms_preflight");
        assert_eq!(count(&recs, "approval"), 0);
        assert_eq!(kms.state(alias), state);
    }
}

#[test]
fn a_rotation_refuses_a_multi_region_key_before_any_approval() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let out = kms
        .rt
        .block_on(
            kms.client
                .create_key()
                .origin(aws_sdk_kms::types::OriginType::External)
                .multi_region(true)
                .send(),
        )
        .expect("CreateKey (multi-Region, EXTERNAL)");
    let meta = out.key_metadata().unwrap();
    // What KMS says of the key, not what byok will say.
    assert_eq!(meta.multi_region(), Some(true));
    let arn = meta.arn().unwrap().to_string();
    let name = format!("{}.toml", rand_u32());
    let file = ceremony_pinned_as(
        &hsm,
        "fleet-rotate.toml",
        &name,
        &[
            ("targets.key", &format!("\"{arn}\"")),
            ("targets.services", "[\"x\"]"),
            ("targets.environments", "[\"y\"]"),
        ],
    );
    let t = hsm.path(&format!("{name}.jsonl"));
    let out = run(&hsm, &file, &t, &format!("{}\n", hsm.pin));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "is a multi-Region key; rotating it needs the new material imported into every replica",
    );
    let recs = records(&t);
    assert_eq!(recs.last().unwrap()["data"]["step"], "kms_preflight");
    assert_eq!(count(&recs, "approval"), 0);
}
