//! The token procedures of `docs/runbook.md` ("When a custodian's PIN is lost or locked",
//! "Removing kept and rehearsal keys from a token"), run with the exact OpenSC `pkcs11-tool`
//! commands the runbook gives, on the token under test, and checked by reading the token
//! directly (cryptoki or `pkcs11-tool --list-objects`), not through byok.

use std::process::{Command, Output};

use byok::hsm::{AesKeyKind, Hsm as _};

use crate::common::{SoftHsm, run_with_stdin, stderr, stdout};

/// `pkcs11-tool --module M --token-label L ARGS...` against `store`'s token store.
fn pkcs11_tool(store: &SoftHsm, args: &[&str]) -> Output {
    Command::new("pkcs11-tool")
        .args([
            "--module",
            &store.kind.module(),
            "--token-label",
            &store.label,
        ])
        .args(args)
        .env(store.kind.conf_var(), &store.conf)
        .output()
        .expect("pkcs11-tool (opensc) must be installed")
}

/// A forgotten user PIN: the Security Officer sets a new one (`C_InitPIN`); the key pairs on
/// the token, and so the fingerprints in ceremony files, stay as they were.
#[test]
fn the_so_sets_a_new_user_pin_and_the_keys_stay() {
    let store = SoftHsm::new();
    let before = store.pair_on_token(&store.label, &store.pin, "byok-audit");
    let new_pin = "reset-by-the-so-1";
    let out = pkcs11_tool(
        &store,
        &[
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            &store.so_pin,
            "--init-pin",
            "--new-pin",
            new_pin,
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The old PIN no longer logs in.
    let old = pkcs11_tool(&store, &["--login", "--pin", &store.pin, "--list-objects"]);
    assert!(!old.status.success(), "the old PIN still works");
    assert!(
        stderr(&old).contains("CKR_PIN_INCORRECT"),
        "{}",
        stderr(&old)
    );
    // The same key pair, read with the new PIN.
    let after = store.pair_on_token(&store.label, new_pin, "byok-audit");
    assert_eq!(after.public_key_sha256, before.public_key_sha256);
    assert_eq!(after.public_key_sha256, store.audit_sha256);
}

/// A kept key (sealed: not modifiable, wrap-with-trusted) and a rehearsal's key pair are
/// removed with `pkcs11-tool --delete-object`, and the listing confirms they are gone.
#[test]
fn kept_and_rehearsal_keys_are_removed_and_the_listing_confirms_it() {
    let store = SoftHsm::new();
    {
        // A kept copy exactly as a ceremony makes it (byok's own keep_copy).
        let hsm = store.open_logged_in();
        let key = hsm.generate_aes256(AesKeyKind::Sensitive).unwrap();
        hsm.keep_copy(key, "rehearsal-escrow").unwrap();
        hsm.destroy(key).unwrap();
    }
    // A rehearsal's audit key pair, made by byok.
    let mut cmd = store.byok();
    cmd.args(["audit-key", "create", "--module", &store.kind.module()])
        .args(["--token-label", &store.label, "--label", "rehearsal-audit"]);
    let out = run_with_stdin(cmd, &format!("{}\n", store.pin));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        store.token_object_labels(),
        [
            "byok-audit",
            "byok-audit",
            "rehearsal-audit",
            "rehearsal-audit",
            "rehearsal-escrow"
        ]
    );
    let kept = store
        .kept_on_token("rehearsal-escrow")
        .expect("the kept key");
    assert!(!kept.modifiable && kept.wrap_with_trusted, "{kept:?}");

    // The runbook's commands: one per object type.
    for (kind, label) in [
        ("secrkey", "rehearsal-escrow"),
        ("privkey", "rehearsal-audit"),
        ("pubkey", "rehearsal-audit"),
    ] {
        let out = pkcs11_tool(
            &store,
            &[
                "--login",
                "--pin",
                &store.pin,
                "--delete-object",
                "--type",
                kind,
                "--label",
                label,
            ],
        );
        assert!(
            out.status.success(),
            "{kind} {label}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    // Gone: the listing shows only the audit key pair, and cryptoki finds no kept key.
    assert_eq!(store.token_object_labels(), ["byok-audit", "byok-audit"]);
    assert!(store.kept_on_token("rehearsal-escrow").is_none());
    let listing = pkcs11_tool(
        &store,
        &[
            "--login",
            "--pin",
            &store.pin,
            "--list-objects",
            "--type",
            "secrkey",
        ],
    );
    assert!(listing.status.success(), "{}", stderr(&listing));
    assert!(
        !stdout(&listing).contains("rehearsal-escrow"),
        "{}",
        stdout(&listing)
    );
}
