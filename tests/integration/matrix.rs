//! The wrapping matrix: every algorithm × key spec on the token under test (`BYOK_TEST_TOKEN`:
//! SoftHSM or kryoptic), each wrap proven by tools that share no code with byok.
//!
//! For each algorithm byok's known-answer test picks the in-HSM plan (or the test asserts the
//! clear refusal the token must give). Then, for RSA_2048, RSA_3072 and RSA_4096, an RSA key
//! pair made by OpenSSL receives a wrap of a fresh AES-256 key generated in the token. OpenSSL
//! (`pkeyutl`, OAEP with the algorithm's hash and MGF1) unwraps the RSA part, Python
//! `cryptography` unwraps the RFC 5649 part of the RSA-AES algorithms, and OpenSSL's AES-ECB of
//! a zero block under the result must equal the key check value the HSM reported. Finally a
//! rehearsal ceremony imports into LocalStack with every key spec, for every algorithm
//! LocalStack supports (all but RSA_AES_KEY_WRAP_SHA_1), and the key must end Enabled.
//!
//! Each test loads the PKCS#11 module in its own process (cargo-nextest).

use std::path::Path;
use std::process::Command;

use byok::hsm::{AesKeyKind, Hsm};
use byok::wrap::{self, WrapError, WrapLocation, WrappingAlgorithm, WrappingKeySpec};

use crate::common::{
    SoftHsm, TestKms, TokenKind, assert_contains, ceremony_for, openssl, records, reference_verify,
    require_env, run_with_stdin, stderr, stdout,
};

/// Whether the token under test can do `algorithm` inside the HSM (measured; see
/// docs/hsm-compatibility.md): SoftHSM 2.6 does RSA-OAEP with SHA-1 only.
fn inside(kind: TokenKind, algorithm: WrappingAlgorithm) -> bool {
    match kind {
        TokenKind::SoftHsm => algorithm.oaep_hash() == wrap::OaepHash::Sha1,
        TokenKind::Kryoptic => true,
    }
}

/// The mechanisms the known-answer test must choose on the token under test.
fn expected_mechanism(kind: TokenKind, algorithm: WrappingAlgorithm) -> &'static str {
    match (kind, algorithm.is_rsa_aes()) {
        (_, false) => "CKM_RSA_PKCS_OAEP",
        (TokenKind::SoftHsm, true) => "CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_PAD + CKM_RSA_PKCS_OAEP",
        (TokenKind::Kryoptic, true) => "CKM_AES_KEY_GEN + CKM_AES_KEY_WRAP_KWP + CKM_RSA_PKCS_OAEP",
    }
}

fn md(algorithm: WrappingAlgorithm) -> &'static str {
    match algorithm.oaep_hash() {
        wrap::OaepHash::Sha1 => "sha1",
        wrap::OaepHash::Sha256 => "sha256",
    }
}

/// Unwraps `blob` with OpenSSL and Python `cryptography` only; returns the material.
fn independent_unwrap(
    dir: &Path,
    key_pem: &Path,
    bits: usize,
    algorithm: WrappingAlgorithm,
    blob: &[u8],
) -> Vec<u8> {
    let k = bits / 8;
    assert_eq!(
        blob.len(),
        algorithm.blob_len(bits),
        "{algorithm} RSA-{bits}"
    );
    let rsa_part = dir.join("rsa-part.bin");
    std::fs::write(&rsa_part, &blob[..k]).unwrap();
    let md = md(algorithm);
    let out = Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(key_pem)
        .arg("-in")
        .arg(&rsa_part)
        .args(["-pkeyopt", "rsa_padding_mode:oaep"])
        .args(["-pkeyopt", &format!("rsa_oaep_md:{md}")])
        .args(["-pkeyopt", &format!("rsa_mgf1_md:{md}")])
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "OpenSSL cannot OAEP-{md} unwrap the {algorithm} RSA-{bits} blob: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = out.stdout;
    assert_eq!(first.len(), 32, "{algorithm}: the RSA part holds 32 bytes");
    if !algorithm.is_rsa_aes() {
        return first;
    }
    // RFC 5649 by Python `cryptography`, from the LocalStack virtualenv of scripts/testenv.
    let python = require_env("BYOK_LOCALSTACK_PYTHON");
    let out = Command::new(python)
        .args([
            "-c",
            "import sys\n\
             from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding\n\
             print(aes_key_unwrap_with_padding(bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])).hex())",
            &hex::encode(&first),
            &hex::encode(&blob[k..]),
        ])
        .output()
        .expect("run Python");
    assert!(
        out.status.success(),
        "Python cryptography cannot RFC 5649-unwrap the {algorithm} AES part: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

/// OpenSSL's key check value: AES-256-ECB of one zero block, first 3 bytes.
fn openssl_kcv(material: &[u8]) -> [u8; 3] {
    let ecb = openssl(
        &[
            "enc",
            "-aes-256-ecb",
            "-nopad",
            "-K",
            &hex::encode(material),
        ],
        Some(&[0u8; 16]),
    );
    [ecb[0], ecb[1], ecb[2]]
}

/// An OpenSSL RSA key pair of `bits`: (private key PEM path, public SPKI DER).
fn openssl_rsa(dir: &Path, bits: usize) -> (std::path::PathBuf, Vec<u8>) {
    let pem = dir.join(format!("rsa-{bits}.pem"));
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &format!("rsa_keygen_bits:{bits}"),
            "-out",
            pem.to_str().unwrap(),
        ],
        None,
    );
    let der = openssl(
        &[
            "pkey",
            "-in",
            pem.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ],
        None,
    );
    (pem, der)
}

fn matrix(algorithm: WrappingAlgorithm) {
    let token = SoftHsm::new();
    let kind = token.kind;
    let hsm = token.open_logged_in();

    // 1. Inside the HSM: the plan the known-answer test proves, or a clear refusal.
    let location = if inside(kind, algorithm) {
        let test = wrap::self_test(&hsm, algorithm, WrapLocation::Hsm, WrappingKeySpec::Rsa4096)
            .unwrap_or_else(|e| panic!("{kind:?} must do {algorithm} inside the HSM: {e}"));
        assert_eq!(test.mechanism, expected_mechanism(kind, algorithm));
        WrapLocation::Hsm
    } else {
        let err = wrap::self_test(&hsm, algorithm, WrapLocation::Hsm, WrappingKeySpec::Rsa4096)
            .unwrap_err();
        assert!(
            matches!(err, WrapError::Unsupported { .. }),
            "{kind:?} {algorithm}: expected a refusal, got {err}"
        );
        assert_contains(
            &err.to_string(),
            &format!(
                "the token cannot do {algorithm} inside the HSM: C_WrapKey returned CKR_ARGUMENTS_BAD with OAEP SHA-256"
            ),
        );
        assert_contains(&err.to_string(), "or wrap = \"host\" in the ceremony file");
        WrapLocation::Host
    };

    // 2. Every key spec, unwrapped by OpenSSL (and Python for the AES part), after a
    // known-answer test under a key of that spec's size.
    for spec in WrappingKeySpec::ALL {
        let bits = spec.bits();
        let test = wrap::self_test(&hsm, algorithm, location, spec).unwrap();
        assert_eq!(
            test.kat_key_bits, bits,
            "{kind:?} {algorithm} {spec}: the known-answer test used another key size"
        );
        let (pem, der) = openssl_rsa(token.dir.path(), bits);
        let public = wrap::WrappingPublicKey::from_spki_der(&der, spec).unwrap();
        let kind_of_key = match location {
            WrapLocation::Hsm => AesKeyKind::Sensitive,
            WrapLocation::Host => AesKeyKind::Extractable,
        };
        let key = hsm.generate_aes256(kind_of_key).unwrap();
        let kcv = hsm.key_check_value(key).unwrap();
        let blob = match test.plan {
            Some(plan) => {
                let wrapping = hsm
                    .import_rsa_public_key(&public.modulus(), &public.exponent())
                    .unwrap();
                let blob = wrap::wrap_in_hsm(&hsm, plan, wrapping, key).unwrap();
                hsm.destroy(wrapping).unwrap();
                blob
            }
            None => {
                let material = hsm.extract_key_value(key).unwrap();
                wrap::host_wrap(&material, &public, algorithm).unwrap()
            }
        };
        hsm.destroy(key).unwrap();
        let material = independent_unwrap(token.dir.path(), &pem, bits, algorithm, &blob);
        assert_eq!(
            openssl_kcv(&material),
            kcv,
            "{kind:?} {algorithm} {spec}: OpenSSL's KCV of the independently unwrapped key differs from the HSM's"
        );
    }
    // The composed wrap leaves no ephemeral key behind.
    assert!(!hsm.label_exists("byok-ephemeral-kwp").unwrap());
    drop(hsm);

    // 3. LocalStack imports it with every key spec (it does not support RSA_AES_KEY_WRAP_SHA_1).
    if algorithm == WrappingAlgorithm::RsaAesKeyWrapSha1 {
        return;
    }
    let kms = TestKms::new();
    for spec in WrappingKeySpec::ALL {
        let (arn, alias) = kms.external_key();
        let file = ceremony_for(
            &token,
            "host-wrap-oaep-sha256.toml",
            &alias,
            &[
                ("import.wrapping_algorithm", &format!("\"{algorithm}\"")),
                ("import.wrapping_key_spec", &format!("\"{spec}\"")),
                ("import.wrap", &format!("\"{}\"", location.name())),
            ],
        );
        let transcript = token.path(&format!("{spec}.jsonl"));
        let mut cmd = token.byok();
        cmd.arg("run")
            .arg(&file)
            .arg("--transcript")
            .arg(&transcript);
        let out = run_with_stdin(cmd, &format!("{}\nyes\n", token.pin));
        assert!(
            out.status.success(),
            "{kind:?} {algorithm} {spec} at {}: {}",
            location.name(),
            stderr(&out)
        );
        assert_contains(&stdout(&out), "transcript fingerprint");
        let verified = crate::common::byok()
            .arg("verify")
            .arg(&transcript)
            .args(["--audit-key-sha256", &token.audit_sha256])
            .output()
            .unwrap();
        assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
        reference_verify(&transcript, &token.audit_sha256);
        assert_eq!(kms.state(&arn), "Enabled", "{algorithm} {spec}");
        assert!(kms.round_trip(&arn), "{algorithm} {spec}: KMS round trip");
        let wrapped = std::fs::read_to_string(&transcript)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["type"] == "key_wrapped")
            .unwrap();
        assert_eq!(wrapped["data"]["wrapping_algorithm"], algorithm.kms_name());
        // The capability check proved the wrap under a key of the ceremony's size.
        let checked = records(&transcript)
            .into_iter()
            .find(|r| r["type"] == "capability_checked")
            .unwrap();
        assert_eq!(
            checked["data"]["known_answer_key_bits"],
            spec.bits(),
            "{algorithm} {spec}"
        );
        assert_eq!(
            wrapped["data"]["blob_length"],
            algorithm.blob_len(spec.bits())
        );
        if location == WrapLocation::Hsm {
            assert_eq!(
                wrapped["data"]["mechanism"],
                expected_mechanism(kind, algorithm)
            );
        }
    }
}

#[test]
fn rsaes_oaep_sha_256_every_key_spec() {
    matrix(WrappingAlgorithm::RsaesOaepSha256);
}

#[test]
fn rsaes_oaep_sha_1_every_key_spec() {
    matrix(WrappingAlgorithm::RsaesOaepSha1);
}

#[test]
fn rsa_aes_key_wrap_sha_256_every_key_spec() {
    matrix(WrappingAlgorithm::RsaAesKeyWrapSha256);
}

#[test]
fn rsa_aes_key_wrap_sha_1_every_key_spec() {
    matrix(WrappingAlgorithm::RsaAesKeyWrapSha1);
}
