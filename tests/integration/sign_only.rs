//! Audit and approval key pairs are sign-only: what `byok audit-key create` and `byok custodian
//! enroll` leave on the token, read back with cryptoki directly (not through byok), on SoftHSM
//! and on kryoptic whatever `BYOK_TEST_TOKEN` says.

use crate::common::{
    SoftHsm, TokenKind, assert_contains, run_with_stdin, sign_only_usage, stderr, stdout,
};

/// The stderr line both commands print, for a token that honours the templates.
const SUMMARY: &str = "Usage read back from the token (sign/verify only): private CKA_SIGN=true CKA_SIGN_RECOVER=false CKA_DECRYPT=false CKA_UNWRAP=false CKA_DERIVE=false; public CKA_VERIFY=true CKA_VERIFY_RECOVER=false CKA_ENCRYPT=false CKA_WRAP=false CKA_DERIVE=false";

fn keys_are_sign_only(kind: TokenKind) {
    // The store's audit key and approval keys were made by `byok audit-key create` and
    // `byok custodian enroll`.
    let store = SoftHsm::of_kind(kind);
    let audit = store.pair_on_token(&store.label, &store.pin, "byok-audit");
    assert_eq!(audit.usage, sign_only_usage(), "audit key on {kind:?}");
    assert_eq!(audit.public_key_sha256, store.audit_sha256);
    for c in &store.custodians {
        let pair = store.pair_on_token(&c.token, &c.pin, "byok-approval");
        assert_eq!(
            pair.usage,
            sign_only_usage(),
            "{}'s key on {kind:?}",
            c.name
        );
        assert_eq!(pair.public_key_sha256, c.sha256);
    }

    // What the commands print: the usage on stderr, stdout as scripts parse it.
    let alice = store.custodian("Alice");
    let mut cmd = store.byok();
    cmd.args(["custodian", "enroll", "--module", &kind.module()])
        .args(["--token-label", &alice.token, "--name", "Alice"])
        .args(["--label", "byok-approval-2"]);
    let out = run_with_stdin(cmd, &format!("{}\n", alice.pin));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), SUMMARY);
    let second = store.pair_on_token(&alice.token, &alice.pin, "byok-approval-2");
    assert_eq!(second.usage, sign_only_usage());
    assert_eq!(
        stdout(&out),
        format!(
            "[[custodian]]\nname = \"Alice\"\ntoken_label = {:?}\nkey_label = \"byok-approval-2\"\npublic_key_sha256 = \"{}\"\n",
            alice.token, second.public_key_sha256
        )
    );

    let mut cmd = store.byok();
    cmd.args(["audit-key", "create", "--module", &kind.module()])
        .args(["--token-label", &store.label, "--label", "byok-audit-2"]);
    let out = run_with_stdin(cmd, &format!("{}\n", store.pin));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), SUMMARY);
    let second = store.pair_on_token(&store.label, &store.pin, "byok-audit-2");
    assert_eq!(second.usage, sign_only_usage());
    assert_eq!(stdout(&out), format!("{}\n", second.public_key_sha256));
}

#[test]
fn audit_and_approval_keys_are_sign_only_on_softhsm() {
    keys_are_sign_only(TokenKind::SoftHsm);
}

#[test]
fn audit_and_approval_keys_are_sign_only_on_kryoptic() {
    keys_are_sign_only(TokenKind::Kryoptic);
}
