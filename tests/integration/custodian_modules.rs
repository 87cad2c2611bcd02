//! Custodians who bring their own tokens: each `[[custodian]]` names its own PKCS#11 module
//! (`module_env`), of another implementation than the HSM's.
//!
//! Every test here uses SoftHSM and kryoptic together, whatever `BYOK_TEST_TOKEN` says, so they
//! mean the same in both passes of CI; a missing module fails the test. The two token stores
//! have the same token labels (`byok-hsm`, `cust-alice`, …), so an approval made through the
//! wrong module would find the wrong key and be refused by its pin.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::{
    CUSTODIANS, SoftHsm, TestKms, TokenKind, assert_contains, byok, ceremony_for, records,
    run_with_stdin, stderr, stdout,
};

/// The variable that names `custodian`'s module in these ceremony files.
fn module_var(custodian: &str) -> String {
    format!("BYOK_TEST_{}_MODULE", custodian.to_uppercase())
}

/// A ceremony whose HSM is on one implementation and whose custodians are on the other.
struct Mixed {
    hsm: SoftHsm,
    custodians: SoftHsm,
    kms: TestKms,
    arn: String,
    file: PathBuf,
    transcript: PathBuf,
    /// Where each custodian's module variable points: the module itself for Alice and Carol,
    /// a symbolic link to it for Bob (one library by two names: loaded once all the same).
    module_paths: Vec<(String, PathBuf)>,
}

fn mixed(hsm_kind: TokenKind, custodian_kind: TokenKind) -> Mixed {
    assert_ne!(hsm_kind, custodian_kind);
    let hsm = SoftHsm::of_kind(hsm_kind);
    let custodians = SoftHsm::of_kind(custodian_kind);
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let module = PathBuf::from(custodian_kind.module());
    let link = hsm.path("custodian-module-link.so");
    std::os::unix::fs::symlink(&module, &link).expect("symlink to the custodians' module");
    let module_paths: Vec<(String, PathBuf)> = CUSTODIANS
        .iter()
        .map(|name| {
            let path = if *name == "Bob" {
                link.clone()
            } else {
                module.clone()
            };
            (module_var(name), path)
        })
        .collect();
    // The custodians' pins are those of their own store; the HSM store's custodian tokens
    // have the same labels but other keys.
    let pins: Vec<(String, String)> = custodians
        .custodians
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            [
                (
                    format!("custodian[{i}].public_key_sha256"),
                    format!("\"{}\"", c.sha256),
                ),
                (
                    format!("custodian[{i}].module_env"),
                    format!("\"{}\"", module_var(c.name)),
                ),
            ]
        })
        .collect();
    let extra: Vec<(&str, &str)> = pins.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &extra);
    let transcript = hsm.path("t.jsonl");
    Mixed {
        hsm,
        custodians,
        kms,
        arn,
        file,
        transcript,
        module_paths,
    }
}

impl Mixed {
    /// byok with both token stores and every custodian's module variable.
    fn byok(&self) -> Command {
        let mut cmd = self.hsm.byok();
        cmd.env(self.custodians.kind.conf_var(), &self.custodians.conf);
        for (var, path) in &self.module_paths {
            cmd.env(var, path);
        }
        cmd
    }

    fn run(&self, stdin: &str) -> Output {
        let mut cmd = self.byok();
        cmd.arg("run")
            .arg(&self.file)
            .arg("--transcript")
            .arg(&self.transcript);
        run_with_stdin(cmd, stdin)
    }

    /// The HSM PIN, the plan approved by Alice and Bob, the import by Alice and Carol, all on
    /// their own tokens.
    fn answers(&self) -> String {
        format!(
            "{}\n{}{}",
            self.hsm.pin,
            self.custodians.approve(&["Alice", "Bob"]),
            self.custodians.approve(&["Alice", "Carol"])
        )
    }
}

/// A full 2-of-3 ceremony with the HSM on `hsm_kind` and the custodians on `custodian_kind`.
fn full_ceremony(hsm_kind: TokenKind, custodian_kind: TokenKind) {
    let m = mixed(hsm_kind, custodian_kind);
    let out = m.run(&m.answers());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(m.kms.state(&m.arn), "Enabled");
    assert!(m.kms.round_trip(&m.arn));
    for (name, (_, path)) in CUSTODIANS.iter().zip(&m.module_paths) {
        assert_contains(
            &stderr(&out),
            &format!("custodian {name}: token module {}", path.display()),
        );
    }

    let recs = records(&m.transcript);
    let opened = recs.iter().find(|r| r["type"] == "hsm_opened").unwrap();
    assert_eq!(opened["data"]["module_path"], hsm_kind.module());
    let approvals: Vec<&serde_json::Value> =
        recs.iter().filter(|r| r["type"] == "approval").collect();
    let who: Vec<(&str, &str)> = approvals
        .iter()
        .map(|r| {
            (
                r["data"]["point"].as_str().unwrap(),
                r["data"]["custodian"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("plan", "Alice"),
            ("plan", "Bob"),
            ("import", "Alice"),
            ("import", "Carol")
        ]
    );
    // Each approval key is the one on the custodian's token of the other implementation, as
    // that token reports it, and not the key of the same label on the HSM's implementation.
    for name in ["Alice", "Bob", "Carol"] {
        let c = m.custodians.custodian(name);
        let on_token = m
            .custodians
            .pair_on_token(&c.token, &c.pin, "byok-approval")
            .public_key_sha256;
        let decoy = m.hsm.custodian(name);
        let on_hsm_module = m
            .hsm
            .pair_on_token(&decoy.token, &decoy.pin, "byok-approval")
            .public_key_sha256;
        assert_ne!(on_token, on_hsm_module);
        for r in approvals.iter().filter(|r| r["data"]["custodian"] == name) {
            assert_eq!(r["data"]["public_key_sha256"], on_token.as_str(), "{name}");
        }
    }

    let v = byok()
        .arg("verify")
        .arg(&m.transcript)
        .args(["--audit-key-sha256", &m.hsm.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    let report = stdout(&v);
    assert_contains(&report, ": valid");
    assert_contains(
        &report,
        "dual control    2 distinct custodians per approval point",
    );
    assert_contains(&report, "approved        plan: Alice, Bob");
    assert_contains(&report, "approved        import: Alice, Carol");
}

#[test]
fn hsm_on_softhsm_with_custodians_on_kryoptic() {
    full_ceremony(TokenKind::SoftHsm, TokenKind::Kryoptic);
}

#[test]
fn hsm_on_kryoptic_with_custodians_on_softhsm() {
    full_ceremony(TokenKind::Kryoptic, TokenKind::SoftHsm);
}

#[test]
fn check_shows_each_custodians_own_module() {
    let m = mixed(TokenKind::SoftHsm, TokenKind::Kryoptic);
    let out = byok().arg("check").arg(&m.file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for (i, name) in CUSTODIANS.iter().enumerate() {
        assert_contains(
            &stdout(&out),
            &format!(
                "{name} (label \"cust-{}\", module ${}, key \"byok-approval\", SHA-256 {})",
                name.to_lowercase(),
                module_var(name),
                m.custodians.custodians[i].sha256
            ),
        );
    }
}

#[test]
fn an_unset_custodian_module_variable_stops_before_any_prompt() {
    let m = mixed(TokenKind::SoftHsm, TokenKind::Kryoptic);
    let mut cmd = m.byok();
    cmd.env_remove(module_var("Bob"))
        .arg("run")
        .arg(&m.file)
        .arg("--transcript")
        .arg(&m.transcript);
    let out = run_with_stdin(cmd, &m.answers());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let var = module_var("Bob");
    assert_contains(
        &stderr(&out),
        "error: ceremony stopped at step `open_hsm` before a transcript was started",
    );
    assert_contains(
        &stderr(&out),
        &format!(
            "caused by: custodian[1].module_env names the environment variable {var}, which is not set; export {var}=/path/to/module.so"
        ),
    );
    assert!(!stderr(&out).contains("byok?"), "{}", stderr(&out));
    assert!(!m.transcript.exists());
    assert_eq!(m.kms.state(&m.arn), "PendingImport");
}

#[test]
fn a_custodian_module_that_does_not_exist_stops_before_any_prompt() {
    let m = mixed(TokenKind::SoftHsm, TokenKind::Kryoptic);
    let mut cmd = m.byok();
    cmd.env(module_var("Carol"), "/nonexistent/custodian-pkcs11.so")
        .arg("run")
        .arg(&m.file)
        .arg("--transcript")
        .arg(&m.transcript);
    let out = run_with_stdin(cmd, &m.answers());
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "caused by: cannot load the PKCS#11 module /nonexistent/custodian-pkcs11.so: no such file; check custodian[2].module_env (${}) and that the file exists",
            module_var("Carol")
        ),
    );
    assert!(!stderr(&out).contains("byok?"), "{}", stderr(&out));
    assert!(!m.transcript.exists());
}

/// A custodian module variable that names the HSM's own library (by another name) shares the
/// HSM's module, so the HSM's token is still recognised and refused there.
#[test]
fn the_hsm_token_through_the_hsms_module_by_another_name_is_refused() {
    let kind = TokenKind::under_test();
    let hsm = SoftHsm::of_kind(kind);
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let link = hsm.path("hsm-module-link.so");
    std::os::unix::fs::symlink(kind.module(), &link).unwrap();
    let audit = format!("\"{}\"", hsm.audit_sha256);
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        &alias,
        &[
            ("custodian[0].module_env", "\"BYOK_TEST_ALICE_MODULE\""),
            ("custodian[0].token_label", "\"byok-hsm\""),
            ("custodian[0].key_label", "\"byok-audit\""),
            ("custodian[0].public_key_sha256", audit.as_str()),
        ],
    );
    let transcript = hsm.path("t.jsonl");
    let mut cmd = hsm.byok();
    cmd.env("BYOK_TEST_ALICE_MODULE", &link)
        .arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(&transcript);
    let answers = format!("{}\nAlice\nyes\n{}\n", hsm.pin, hsm.pin);
    let out = run_with_stdin(cmd, &answers);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "custodian Alice: token module {} (the HSM's module)",
            link.display()
        ),
    );
    assert_contains(
        &stderr(&out),
        "is the ceremony's HSM token; each custodian approves on their own token",
    );
    assert_eq!(kms.state(&arn), "PendingImport");
}
