//! A token that lies: the real token under test behind a double that claims every wrapping
//! mechanism and pads every RSA-OAEP wrap with SHA-1, whatever it is asked (what SoftHSM 2.7's
//! `CKM_RSA_AES_KEY_WRAP` does with SHA-256 parameters). byok's known-answer test must catch it:
//! `byok probe` says MISMATCH, and a ceremony stops before any key is generated.
//!
//! Each test loads the PKCS#11 module in its own process (cargo-nextest).

use byok::ceremony::{self, Env};
use byok::hsm::{
    AesKeyKind, HsmDescription, HsmError, KeyRef, Pkcs11Custodians, Pkcs11Hsm, WrapMechanism,
};
use byok::kms::AwsKms;
use byok::prompt::{Answer, ScriptedPrompter};
use byok::secure::KeyMaterial;
use byok::wrap::{self, HsmWrapPlan, OaepHash, ProbeOutcome, WrappingAlgorithm, WrappingKeySpec};
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::common::{SoftHsm, TestKms, TokenKind, ceremony_for};

struct Liar<'a> {
    real: &'a Pkcs11Hsm,
    /// Lie only about `CKM_RSA_AES_KEY_WRAP` (claim it, do it with SHA-1) and tell the truth
    /// about everything else, like SoftHSM 2.7.
    only_native: bool,
}

impl Liar<'_> {
    /// The RFC 5649 mechanism the real token has.
    fn real_kwp(&self) -> WrapMechanism {
        use byok::hsm::Hsm as _;
        if self
            .real
            .mechanism_support(WrapMechanism::AesKeyWrapKwp)
            .is_ok()
        {
            WrapMechanism::AesKeyWrapKwp
        } else {
            WrapMechanism::AesKeyWrapPad
        }
    }
}

impl byok::hsm::Hsm for Liar<'_> {
    fn description(&self) -> &HsmDescription {
        self.real.description()
    }
    fn login(&self, pin: &SecretString) -> Result<(), HsmError> {
        self.real.login(pin)
    }
    fn logout(&self) -> Result<(), HsmError> {
        self.real.logout()
    }
    fn mechanism_support(&self, mechanism: WrapMechanism) -> Result<(), String> {
        if self.only_native && mechanism != WrapMechanism::RsaAesKeyWrap {
            return self.real.mechanism_support(mechanism);
        }
        Ok(()) // The first lie: everything is offered.
    }
    fn generate_aes256(&self, kind: AesKeyKind) -> Result<KeyRef, HsmError> {
        self.real.generate_aes256(kind)
    }
    fn key_length(&self, key: KeyRef) -> Result<usize, HsmError> {
        self.real.key_length(key)
    }
    fn key_check_value(&self, key: KeyRef) -> Result<[u8; 3], HsmError> {
        self.real.key_check_value(key)
    }
    fn import_rsa_public_key(&self, modulus: &[u8], exponent: &[u8]) -> Result<KeyRef, HsmError> {
        self.real.import_rsa_public_key(modulus, exponent)
    }
    fn wrap_rsa_oaep(&self, w: KeyRef, k: KeyRef, hash: OaepHash) -> Result<Vec<u8>, HsmError> {
        if self.only_native {
            return self.real.wrap_rsa_oaep(w, k, hash);
        }
        self.real.wrap_rsa_oaep(w, k, OaepHash::Sha1) // The second lie.
    }
    fn wrap_aes_kwp(&self, m: WrapMechanism, w: KeyRef, k: KeyRef) -> Result<Vec<u8>, HsmError> {
        if self.only_native {
            return self.real.wrap_aes_kwp(m, w, k);
        }
        self.real.wrap_aes_kwp(self.real_kwp(), w, k)
    }
    fn wrap_rsa_aes(&self, w: KeyRef, k: KeyRef, _hash: OaepHash) -> Result<Vec<u8>, HsmError> {
        // "CKM_RSA_AES_KEY_WRAP", done as SoftHSM 2.7 does it: always OAEP with SHA-1.
        let plan = HsmWrapPlan::RsaAesComposed {
            hash: OaepHash::Sha1,
            kwp: self.real_kwp(),
        };
        wrap::wrap_in_hsm(self.real, plan, w, k)
    }
    fn extract_key_value(&self, key: KeyRef) -> Result<KeyMaterial, HsmError> {
        self.real.extract_key_value(key)
    }
    fn keep_copy(&self, key: KeyRef, label: &str) -> Result<KeyRef, HsmError> {
        self.real.keep_copy(key, label)
    }
    fn key_attributes(&self, key: KeyRef) -> Result<byok::hsm::KeyAttributes, HsmError> {
        self.real.key_attributes(key)
    }
    fn login_so(&self, pin: &SecretString) -> Result<(), HsmError> {
        self.real.login_so(pin)
    }
    fn generate_trusted_transfer_key(&self) -> Result<KeyRef, HsmError> {
        self.real.generate_trusted_transfer_key()
    }
    fn find_kept_key(&self, label: &str) -> Result<KeyRef, HsmError> {
        self.real.find_kept_key(label)
    }
    fn copy_kept_to_session(&self, trusted: KeyRef, kept: KeyRef) -> Result<KeyRef, HsmError> {
        self.real.copy_kept_to_session(trusted, kept)
    }
    fn destroy(&self, key: KeyRef) -> Result<(), HsmError> {
        self.real.destroy(key)
    }
    fn label_exists(&self, label: &str) -> Result<bool, HsmError> {
        self.real.label_exists(label)
    }
    fn find_ec_key_pair(&self, label: &str) -> Result<(KeyRef, Vec<u8>), HsmError> {
        self.real.find_ec_key_pair(label)
    }
    fn generate_ec_key_pair(&self, label: &str) -> Result<byok::hsm::GeneratedKeyPair, HsmError> {
        self.real.generate_ec_key_pair(label)
    }
    fn ec_key_pair_usage(&self, label: &str) -> Result<byok::hsm::KeyPairUsage, HsmError> {
        self.real.ec_key_pair_usage(label)
    }
    fn sign_digest(&self, key: KeyRef, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        self.real.sign_digest(key, digest)
    }
    fn random(&self, len: usize) -> Result<Vec<u8>, HsmError> {
        self.real.random(len)
    }
    fn raw_handle(&self, key: KeyRef) -> u64 {
        self.real.raw_handle(key)
    }
}

#[test]
fn probe_flags_a_token_whose_wrap_does_not_unwrap_as_requested() {
    let token = SoftHsm::new();
    let real = token.open_logged_in();
    let liar = Liar {
        real: &real,
        only_native: false,
    };
    let lines = wrap::probe(&liar, WrappingKeySpec::Rsa2048);
    let outcome = |a: WrappingAlgorithm| {
        lines
            .iter()
            .find(|l| l.algorithm == a)
            .map(|l| l.outcome.clone())
            .unwrap()
    };
    // SHA-256 asked, SHA-1 done: a mismatch naming the mechanism and the failed unwrap.
    assert_eq!(
        outcome(WrappingAlgorithm::RsaesOaepSha256),
        ProbeOutcome::Mismatch {
            mechanism: "CKM_RSA_PKCS_OAEP".into(),
            detail:
                "the RSA part does not unwrap with OAEP SHA-256 and MGF1 SHA-256: decryption error"
                    .into(),
        }
    );
    let line = lines
        .iter()
        .find(|l| l.algorithm == WrappingAlgorithm::RsaesOaepSha256)
        .unwrap()
        .to_string();
    assert_eq!(
        line,
        "RSAES_OAEP_SHA_256       inside HSM: MISMATCH (CKM_RSA_PKCS_OAEP output does not unwrap as KMS expects: the RSA part does not unwrap with OAEP SHA-256 and MGF1 SHA-256: decryption error; do not use this token for RSAES_OAEP_SHA_256)"
    );
    // Every RSA-AES plan for SHA-256 lies too: the native one first.
    match outcome(WrappingAlgorithm::RsaAesKeyWrapSha256) {
        ProbeOutcome::Mismatch { mechanism, detail } => {
            assert_eq!(mechanism, "CKM_RSA_AES_KEY_WRAP");
            assert_eq!(
                detail,
                "the RSA part does not unwrap with OAEP SHA-256 and MGF1 SHA-256: decryption error"
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // Where the lie happens to be what was asked (SHA-1), the test passes: it checks the
    // output, not the claim.
    assert_eq!(
        outcome(WrappingAlgorithm::RsaesOaepSha1),
        ProbeOutcome::Yes {
            mechanism: "CKM_RSA_PKCS_OAEP".into(),
            rejected: vec![],
        }
    );
    assert_eq!(
        outcome(WrappingAlgorithm::RsaAesKeyWrapSha1),
        ProbeOutcome::Yes {
            mechanism: "CKM_RSA_AES_KEY_WRAP".into(),
            rejected: vec![],
        }
    );
    // Nothing is left in the session.
    use byok::hsm::Hsm as _;
    assert!(!real.label_exists("byok-ceremony-key").unwrap());
    assert!(!real.label_exists("byok-ephemeral-kwp").unwrap());
    assert!(!real.label_exists("byok-kms-wrapping-key").unwrap());
}

/// SoftHSM 2.7's bug on a token whose other mechanisms are honest: the lying native
/// `CKM_RSA_AES_KEY_WRAP` is rejected and named, and the honest composed wrap is used where the
/// token can do it (kryoptic: OAEP-SHA-256 and KWP); where it cannot (SoftHSM 2.6: no
/// OAEP-SHA-256), the lie is what is reported.
#[test]
fn a_lying_native_rsa_aes_wrap_is_rejected_and_an_honest_one_used() {
    let token = SoftHsm::new();
    let real = token.open_logged_in();
    let liar = Liar {
        real: &real,
        only_native: true,
    };
    let test = wrap::self_test(
        &liar,
        WrappingAlgorithm::RsaAesKeyWrapSha256,
        wrap::WrapLocation::Hsm,
        WrappingKeySpec::Rsa2048,
    );
    let native_lie = "CKM_RSA_AES_KEY_WRAP: mismatch: the RSA part does not unwrap with OAEP SHA-256 and MGF1 SHA-256: decryption error";
    match token.kind {
        TokenKind::Kryoptic => {
            let test = test.unwrap();
            assert_eq!(
                test.mechanism,
                "CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_KWP + CKM_RSA_PKCS_OAEP"
            );
            assert_eq!(test.rejected, [native_lie]);
            assert_eq!(
                test.plan,
                Some(HsmWrapPlan::RsaAesComposed {
                    hash: OaepHash::Sha256,
                    kwp: WrapMechanism::AesKeyWrapKwp
                })
            );
            let line = wrap::probe(&liar, WrappingKeySpec::Rsa2048)
                .into_iter()
                .find(|l| l.algorithm == WrappingAlgorithm::RsaAesKeyWrapSha256)
                .unwrap()
                .to_string();
            assert_eq!(
                line,
                format!(
                    "RSA_AES_KEY_WRAP_SHA_256 inside HSM: yes (CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_KWP + CKM_RSA_PKCS_OAEP, known-answer test passed)\n{:<24}   tried first: {native_lie}",
                    ""
                )
            );
        }
        TokenKind::SoftHsm => match test.unwrap_err() {
            wrap::WrapError::Mismatch {
                mechanism, detail, ..
            } => {
                assert_eq!(mechanism, "CKM_RSA_AES_KEY_WRAP");
                assert_eq!(
                    detail,
                    "the RSA part does not unwrap with OAEP SHA-256 and MGF1 SHA-256: decryption error"
                );
            }
            other => panic!("expected the native wrap's mismatch, got {other}"),
        },
    }
    // SHA-1 is what the liar really does, so there the native wrap passes first.
    let sha1 = wrap::self_test(
        &liar,
        WrappingAlgorithm::RsaAesKeyWrapSha1,
        wrap::WrapLocation::Hsm,
        WrappingKeySpec::Rsa2048,
    )
    .unwrap();
    assert_eq!(sha1.mechanism, "CKM_RSA_AES_KEY_WRAP");
    assert!(sha1.rejected.is_empty());
}

#[test]
fn a_ceremony_on_a_lying_token_stops_before_generating_anything() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(
        &token,
        "host-wrap-oaep-sha256.toml",
        &alias,
        &[("import.wrap", "\"hsm\"")],
    );
    let c = byok::spec::load(&file, OffsetDateTime::now_utc()).unwrap();
    let real = token.open_in_process();
    let liar = Liar {
        real: &real,
        only_native: false,
    };
    let mut prompter = ScriptedPrompter::new(vec![Answer::Secret("hsm-pin", token.pin.clone())]);
    let custodians = Pkcs11Custodians::for_hsm(&real);
    let kms_client = AwsKms::new("us-east-1").unwrap();
    let t = token.path("t.jsonl");
    let clock = OffsetDateTime::now_utc;
    let err = ceremony::run(
        &c,
        Env {
            hsm: &liar,
            kms: &kms_client,
            custodians: &custodians,
            prompter: &mut prompter,
            now: &clock,
        },
        &t,
        &ceremony::RunOptions::default(),
    )
    .unwrap_err();
    let chain = ceremony::chain(&err);
    assert!(
        chain.contains(
            "the token's RSAES_OAEP_SHA_256 wrap (CKM_RSA_PKCS_OAEP) does not unwrap as KMS expects (the RSA part does not unwrap with OAEP SHA-256 and MGF1 SHA-256: decryption error): the token does not do what it claims; do not use it for this algorithm"
        ),
        "{chain}"
    );
    assert_eq!(err.exit_code(), byok::error::exit::HSM);
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&t)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = recs.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["ceremony_started", "hsm_opened", "ceremony_aborted"]
    );
    assert_eq!(recs[2]["data"]["step"], "capability_check");
    assert_eq!(recs[2]["data"]["error_class"], "hsm");
    assert_eq!(kms.state(&arn), "PendingImport");
}
