//! `benches/wrap.sh` runs this: time per wrapping algorithm inside a real token.
//!
//! For each algorithm the token can do inside the HSM, it times (a) the known-answer test
//! (`wrap::self_test`, which includes the software RSA-4096 unwrap) and (b) the real work of a
//! ceremony's wrap step: generate AES-256 in the token, its key check value, `wrap_in_hsm`
//! under an RSA-4096 public key, and destroying the key. It prints the median of the runs.
//!
//! Environment (set by `benches/wrap.sh`): `BYOK_BENCH_MODULE` (PKCS#11 module),
//! `BYOK_BENCH_PIN` (user PIN of token `byok-hsm`), `BYOK_BENCH_SPKI` (path of an RSA-4096
//! SPKI DER), `BYOK_BENCH_RUNS` (default 200), and the module's own configuration variable.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops loudly on a broken setup"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use byok::hsm::{AesKeyKind, Hsm, Pkcs11Hsm, TokenSelector};
use byok::wrap::{self, WrapLocation, WrappingAlgorithm, WrappingKeySpec, WrappingPublicKey};
use secrecy::SecretString;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run benches/wrap.sh"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("BYOK_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let hsm = Pkcs11Hsm::open_path(
        Path::new(&var("BYOK_BENCH_MODULE")),
        &TokenSelector::Label("byok-hsm".into()),
    )
    .expect("open token byok-hsm");
    hsm.login(&SecretString::from(var("BYOK_BENCH_PIN")))
        .expect("log in");
    let der = std::fs::read(var("BYOK_BENCH_SPKI")).expect("read the RSA-4096 SPKI");
    let public =
        WrappingPublicKey::from_spki_der(&der, WrappingKeySpec::Rsa4096).expect("RSA-4096 key");
    let d = hsm.description();
    println!(
        "token: {} {} ({}), {runs} runs each, median",
        d.module_manufacturer, d.module_version, d.module_description
    );
    for algorithm in WrappingAlgorithm::ALL {
        let test =
            match wrap::self_test(&hsm, algorithm, WrapLocation::Hsm, WrappingKeySpec::Rsa4096) {
                Ok(t) => t,
                Err(e) => {
                    println!("{:<24} not inside this HSM ({e})", algorithm.kms_name());
                    continue;
                }
            };
        let Some(plan) = test.plan else { continue };
        let kat = median(
            (0..runs.min(50))
                .map(|_| {
                    let t = Instant::now();
                    wrap::self_test(&hsm, algorithm, WrapLocation::Hsm, WrappingKeySpec::Rsa4096)
                        .expect("self test");
                    t.elapsed()
                })
                .collect(),
        );
        let wrapping = hsm
            .import_rsa_public_key(&public.modulus(), &public.exponent())
            .expect("import the public key");
        let real = median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    let key = hsm
                        .generate_aes256(AesKeyKind::Sensitive)
                        .expect("generate");
                    hsm.key_check_value(key).expect("kcv");
                    let blob = wrap::wrap_in_hsm(&hsm, plan, wrapping, key).expect("wrap");
                    hsm.destroy(key).expect("destroy");
                    assert_eq!(blob.len(), algorithm.blob_len(4096));
                    t.elapsed()
                })
                .collect(),
        );
        hsm.destroy(wrapping).expect("destroy the public key");
        println!(
            "{:<24} known-answer test {:>7.2} ms   generate+KCV+wrap(RSA-4096)+destroy {:>6.3} ms   ({})",
            algorithm.kms_name(),
            kat.as_secs_f64() * 1000.0,
            real.as_secs_f64() * 1000.0,
            test.mechanism
        );
    }
}
