//! Tests that drive the library in-process against real SoftHSM and LocalStack: KMS answers
//! that LocalStack never gives (wrong key size, expired parameters, another key's token) via a
//! wrapper that alters one field of a real answer, and an independent OpenSSL check of the wrap.
//!
//! Each test loads the PKCS#11 module in its own process (cargo-nextest).

use std::path::Path;
use std::process::Command;

use byok::ceremony::{self, Env};
use byok::hsm::{AesKeyKind, CustodianTokens, Hsm, Pkcs11Custodians, Pkcs11Hsm, TokenSelector};
use byok::kms::{AwsKms, ImportParameters, Kms, KmsError};
use byok::prompt::{Answer, ScriptedPrompter};
use byok::wrap::{OaepHash, WrappingAlgorithm, WrappingKeySpec};
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::common::{SoftHsm, TestKms, ceremony_for, module, openssl};

/// Real LocalStack with one alteration of GetParametersForImport.
struct Altered<
    F: Fn(&AwsKms, &str, WrappingAlgorithm, WrappingKeySpec) -> Result<ImportParameters, KmsError>
        + Sync,
> {
    real: AwsKms,
    params: F,
}

impl<F> Kms for Altered<F>
where
    F: Fn(&AwsKms, &str, WrappingAlgorithm, WrappingKeySpec) -> Result<ImportParameters, KmsError>
        + Sync,
{
    crate::common::forward_kms!(
        whereabouts,
        describe_key,
        create_key,
        create_alias,
        update_alias,
        list_resource_tags,
        find_tagged_keys,
        list_key_materials,
        import_key_material,
        rotate_key_on_demand,
        encrypt,
        decrypt
    );
    fn get_parameters_for_import(
        &self,
        key_arn: &str,
        a: WrappingAlgorithm,
        s: WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError> {
        (self.params)(&self.real, key_arn, a, s)
    }
}

fn run_altered(
    params: impl Fn(
        &AwsKms,
        &str,
        WrappingAlgorithm,
        WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError>
    + Sync,
) -> (byok::Error, Vec<serde_json::Value>, String) {
    let token = SoftHsm::new();
    token.use_in_process();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&token, "demo-softhsm.toml", &alias, &[]);
    let c = byok::spec::load(&file, OffsetDateTime::now_utc()).unwrap();
    let hsm = Pkcs11Hsm::open_path(
        Path::new(&module()),
        &TokenSelector::Label("byok-hsm".into()),
    )
    .unwrap();
    let altered = Altered {
        real: AwsKms::new("us-east-1").unwrap(),
        params,
    };
    let mut answers = vec![Answer::Secret("hsm-pin", token.pin.clone())];
    for name in ["Alice", "Bob"] {
        answers.push(Answer::Select("approver-plan", name.into()));
        answers.push(Answer::Confirm("approve-plan", true));
        answers.push(Answer::Secret(
            "custodian-pin",
            token.custodian(name).pin.clone(),
        ));
    }
    let mut prompter = ScriptedPrompter::new(answers);
    let custodians = Pkcs11Custodians::for_hsm(&hsm);
    let t = token.path("t.jsonl");
    let clock = OffsetDateTime::now_utc;
    let err = ceremony::run(
        &c,
        Env {
            hsm: &hsm,
            kms: &altered,
            custodians: &custodians,
            prompter: &mut prompter,
            now: &clock,
        },
        &t,
        &ceremony::RunOptions::default(),
    )
    .unwrap_err();
    let recs = std::fs::read_to_string(&t)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // No objects left in the session: neither the generated key nor the wrapping key.
    assert!(!hsm.label_exists("byok-ceremony-key").unwrap());
    assert!(!hsm.label_exists("byok-kms-wrapping-key").unwrap());
    assert_eq!(kms.state(&arn), "PendingImport");
    (err, recs, arn)
}

fn chain(e: &byok::Error) -> String {
    byok::ceremony::chain(e)
}

#[test]
fn wrapping_key_of_the_wrong_size_is_refused() {
    let (err, recs, _) = run_altered(|real, arn, a, _spec| {
        real.get_parameters_for_import(arn, a, WrappingKeySpec::Rsa2048)
    });
    assert_eq!(err.exit_code(), byok::error::exit::KMS);
    assert!(
        chain(&err).contains(
            "the wrapping public key is RSA-2048, but the ceremony asked KMS for RSA_4096"
        ),
        "{}",
        chain(&err)
    );
    let last = recs.last().unwrap();
    assert_eq!(last["type"], "ceremony_aborted");
    assert_eq!(last["data"]["step"], "import_parameters");
}

/// `not-rsa`: KMS (or something posing as it) answers GetParametersForImport with an EC P-256
/// key. The message names what was received, not only the RSA OID byok expected.
#[test]
fn an_ec_wrapping_key_is_refused_naming_its_algorithm_and_curve() {
    let (err, recs, _) = run_altered(|real, arn, a, s| {
        let mut p = real.get_parameters_for_import(arn, a, s)?;
        // `openssl ecparam -name prime256v1 -genkey | openssl ec -pubout -outform DER`
        p.public_key_der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200041048cf9bcea39e43d7dcce6c6557dde3a8b52a352d422fbed837f8dec2b98f24260c7e5fab0c1804946d59b1426d5074fd0a264483804927896dc8a571b9ac5d").unwrap();
        Ok(p)
    });
    assert_eq!(err.exit_code(), byok::error::exit::KMS);
    let text = chain(&err);
    assert!(
        text.contains(
            "the wrapping public key from KMS is not an RSA key: its SubjectPublicKeyInfo algorithm is 1.2.840.10045.2.1 (id-ecPublicKey) on curve 1.2.840.10045.3.1.7 (P-256), expected 1.2.840.113549.1.1.1 (rsaEncryption)"
        ),
        "{text}"
    );
    assert!(
        !text.contains("unknown/unsupported algorithm OID"),
        "{text}"
    );
    let last = recs.last().unwrap();
    assert_eq!(last["type"], "ceremony_aborted");
    assert_eq!(last["data"]["step"], "import_parameters");
}

#[test]
fn expired_import_parameters_are_refused() {
    let (err, recs, _) = run_altered(|real, arn, a, s| {
        let mut p = real.get_parameters_for_import(arn, a, s)?;
        p.parameters_valid_to = OffsetDateTime::now_utc() - time::Duration::minutes(1);
        Ok(p)
    });
    assert_eq!(err.exit_code(), byok::error::exit::PRECONDITION);
    assert!(
        chain(&err).contains("the import parameters expired at"),
        "{}",
        chain(&err)
    );
    assert_eq!(recs.last().unwrap()["data"]["step"], "import_parameters");
}

#[test]
fn parameters_for_another_key_are_refused() {
    let kms = TestKms::new();
    let (other, _) = kms.external_key();
    let (err, recs, arn) =
        run_altered(move |real, _arn, a, s| real.get_parameters_for_import(&other, a, s));
    assert_eq!(err.exit_code(), byok::error::exit::PRECONDITION);
    assert!(chain(&err).contains(&format!("not {arn}; the public key and import token must come from one response for the target key")), "{}", chain(&err));
    assert_eq!(recs.last().unwrap()["data"]["step"], "import_parameters");
}

/// `openssl pkeyutl -decrypt` with OAEP and `md` for both the hash and MGF1.
fn oaep_decrypt(key: &str, blob: &Path, md: &str) -> std::process::Output {
    Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey", key, "-in"])
        .arg(blob)
        .args(["-pkeyopt", "rsa_padding_mode:oaep"])
        .args(["-pkeyopt", &format!("rsa_oaep_md:{md}")])
        .args(["-pkeyopt", &format!("rsa_mgf1_md:{md}")])
        .output()
        .expect("openssl must be installed")
}

/// Wraps under a fresh RSA key with the HSM (or the host), unwraps with `openssl pkeyutl`, and
/// compares OpenSSL's AES-ECB of a zero block with the HSM's key check value.
fn openssl_checks_wrap(hash: OaepHash, host: bool) {
    let token = SoftHsm::new();
    token.use_in_process();
    let dir = token.dir.path();
    let key_pem = dir.join("rsa.pem");
    let key_str = key_pem.to_str().unwrap();
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key_str,
        ],
        None,
    );
    let der = openssl(
        &["pkey", "-in", key_str, "-pubout", "-outform", "DER"],
        None,
    );
    let public =
        byok::wrap::WrappingPublicKey::from_spki_der(&der, WrappingKeySpec::Rsa2048).unwrap();

    let hsm = Pkcs11Hsm::open_path(
        Path::new(&module()),
        &TokenSelector::Label("byok-hsm".into()),
    )
    .unwrap();
    hsm.login(&SecretString::from(token.pin.clone())).unwrap();
    let (blob, kcv) = if host {
        let key = hsm.generate_aes256(AesKeyKind::Extractable).unwrap();
        let kcv = hsm.key_check_value(key).unwrap();
        let material = hsm.extract_key_value(key).unwrap();
        let alg = match hash {
            OaepHash::Sha1 => WrappingAlgorithm::RsaesOaepSha1,
            OaepHash::Sha256 => WrappingAlgorithm::RsaesOaepSha256,
        };
        (byok::wrap::host_wrap(&material, &public, alg).unwrap(), kcv)
    } else {
        let key = hsm.generate_aes256(AesKeyKind::Sensitive).unwrap();
        let kcv = hsm.key_check_value(key).unwrap();
        let wrapping = hsm
            .import_rsa_public_key(&public.modulus(), &public.exponent())
            .unwrap();
        (hsm.wrap_rsa_oaep(wrapping, key, hash).unwrap(), kcv)
    };
    let md = match hash {
        OaepHash::Sha1 => "sha1",
        OaepHash::Sha256 => "sha256",
    };
    let blob_path = dir.join("blob.bin");
    std::fs::write(&blob_path, &blob).unwrap();
    let material = oaep_decrypt(key_str, &blob_path, md);
    assert!(
        material.status.success(),
        "openssl pkeyutl: {}",
        String::from_utf8_lossy(&material.stderr)
    );
    let material = material.stdout;
    assert_eq!(material.len(), 32);
    let ecb = openssl(
        &[
            "enc",
            "-aes-256-ecb",
            "-nopad",
            "-K",
            &hex::encode(&material),
        ],
        Some(&[0u8; 16]),
    );
    assert_eq!(
        &ecb[..3],
        &kcv[..],
        "OpenSSL's KCV of the unwrapped key differs from the HSM's"
    );
    // The wrong digest does not unwrap: the check can fail.
    let other = if md == "sha1" { "sha256" } else { "sha1" };
    let status = oaep_decrypt(key_str, &blob_path, other);
    assert!(!status.status.success());
}

#[test]
fn openssl_unwraps_the_softhsm_oaep_sha1_wrap_to_the_hsm_key() {
    openssl_checks_wrap(OaepHash::Sha1, false);
}

#[test]
fn openssl_unwraps_the_host_oaep_sha256_wrap_to_the_hsm_key() {
    openssl_checks_wrap(OaepHash::Sha256, true);
}

#[test]
fn a_second_login_is_not_accepted_without_a_pin_check() {
    let token = SoftHsm::new();
    token.use_in_process();
    let module = byok::hsm::pkcs11::Module::load(Path::new(&module())).unwrap();
    let a = Pkcs11Hsm::open(module.clone(), &TokenSelector::Label("byok-hsm".into())).unwrap();
    let b = Pkcs11Hsm::open(module, &TokenSelector::Label("byok-hsm".into())).unwrap();
    a.login(&SecretString::from(token.pin.clone())).unwrap();
    let err = b
        .login(&SecretString::from("wrong".to_string()))
        .unwrap_err();
    assert!(
        matches!(err, byok::hsm::HsmError::AlreadyLoggedIn { .. }),
        "{err}"
    );
}

#[test]
fn a_custodian_token_logged_in_elsewhere_still_checks_the_pin() {
    let token = SoftHsm::new();
    token.use_in_process();
    let alice = token.custodian("Alice");
    let module = byok::hsm::pkcs11::Module::load(Path::new(&module())).unwrap();
    let hsm = Pkcs11Hsm::open(module.clone(), &TokenSelector::Label("byok-hsm".into())).unwrap();
    // Another session of this process holds a login on Alice's token.
    let other = Pkcs11Hsm::open(module, &TokenSelector::Label(alice.token.clone())).unwrap();
    other.login(&SecretString::from(alice.pin.clone())).unwrap();
    let custodians = Pkcs11Custodians::for_hsm(&hsm);
    let selector = TokenSelector::Label(alice.token.clone());
    let err = custodians
        .sign_approval(
            None,
            &selector,
            "byok-approval",
            &SecretString::from("99999999".to_string()),
            b"statement",
        )
        .err()
        .expect("a wrong PIN must not sign, whatever other sessions hold");
    assert!(
        matches!(err, byok::hsm::HsmError::PinIncorrect { .. }),
        "{err}"
    );
    let ok = custodians
        .sign_approval(
            None,
            &selector,
            "byok-approval",
            &SecretString::from(alice.pin.clone()),
            b"statement",
        )
        .unwrap();
    assert_eq!(byok::ecdsa::fingerprint(&ok.spki), alice.sha256);
    assert!(
        byok::ecdsa::Verifier::from_spki(&ok.spki)
            .unwrap()
            .verify(b"statement", &ok.signature)
    );
    // Approvals are never made on the ceremony's own HSM token.
    let err = custodians
        .sign_approval(
            None,
            &TokenSelector::Label("byok-hsm".into()),
            "byok-audit",
            &SecretString::from(token.pin.clone()),
            b"x",
        )
        .err()
        .unwrap();
    assert!(
        matches!(err, byok::hsm::HsmError::CustodianOnHsmToken { .. }),
        "{err}"
    );
}
