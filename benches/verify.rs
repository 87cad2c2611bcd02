//! `cargo bench --bench verify`: `byok verify` throughput on a 10,000-record transcript.
//!
//! Builds the transcript in memory with a software P-256 key (the format is the same as an
//! HSM-signed one), then times `verify_bytes` over it (which uses every core), and, in the same
//! run, the floor: the bare ECDSA verifications of the same signatures on one thread and on
//! every core. Prints records per second
//! for the median of several runs. Figures are kept in docs/performance.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops loudly on a broken setup"
)]

use std::time::Instant;

use base64::Engine as _;
use byok::transcript::verify::{VerifyOptions, verify_bytes};
use byok::transcript::{RecordSigner, RecordType, SignError, encode_record_version};
use serde_json::json;
use sha2::Digest as _;

struct SoftSigner {
    key: ring::signature::EcdsaKeyPair,
    spki: Vec<u8>,
    rng: ring::rand::SystemRandom,
}

impl RecordSigner for SoftSigner {
    fn public_key_spki_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self
            .key
            .sign(&self.rng, message)
            .map_err(|_| "sign")?
            .as_ref()
            .to_vec())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const RECORDS: usize = 10_000;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| "keygen")?;
    let key =
        ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|_| "key")?;
    let point = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
    let spki = byok::ecdsa::spki_from_ec_point(&point)?;
    let signer = SoftSigner { key, spki, rng };
    let fp = byok::ecdsa::fingerprint(&signer.spki);
    let file = format!("[hsm]\naudit_key_sha256 = \"{fp}\"\n");

    let mut text = Vec::new();
    let mut prev = "0".repeat(64);
    for seq in 0..RECORDS {
        let (kind, data) = match seq {
            0 => (
                RecordType::CeremonyStarted,
                json!({
                    "ceremony_id": "bench",
                    "ceremony_file": file,
                    "ceremony_file_sha256": hex::encode(sha2::Sha256::digest(file.as_bytes())),
                    "audit_public_key": base64::engine::general_purpose::STANDARD.encode(&signer.spki),
                }),
            ),
            n if n == RECORDS - 1 => (RecordType::CeremonyFinished, json!({"records": RECORDS})),
            n => (
                RecordType::KeyGenerated,
                // A typical record: a handful of short strings and hashes.
                json!({
                    "handle": n,
                    "label": "byok-ceremony-key",
                    "kcv": "650927",
                    "blob_sha256": hex::encode(sha2::Sha256::digest(n.to_le_bytes())),
                    "sensitive": true,
                }),
            ),
        };
        // Format version 1: the record-level work (JCS, chain, signature) is the same in 2.
        let line = encode_record_version(
            &signer,
            1,
            seq as u64,
            &prev,
            "2026-11-23T12:00:00.000Z",
            kind,
            data,
        )?;
        prev = hex::encode(sha2::Sha256::digest(line.as_bytes()));
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    // The floor: the ECDSA P-256 verifications alone (ring, as byok uses it), on one thread
    // and on every core, over the same 10,000 signatures, measured in the same run.
    let verifier = byok::ecdsa::Verifier::from_spki(&signer.spki)?;
    let mut signed = Vec::new();
    for line in std::str::from_utf8(&text)?.lines() {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let sig_text = value["sig"].as_str().ok_or("sig")?;
        let sig = base64::engine::general_purpose::STANDARD.decode(sig_text)?;
        let message = line.replacen(&format!(",\"sig\":\"{sig_text}\""), "", 1);
        signed.push((message.into_bytes(), sig));
    }
    let cores = std::thread::available_parallelism()?.get();
    let floor = |threads: usize| -> f64 {
        let mut rates = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for part in signed.chunks(signed.len().div_ceil(threads)) {
                    let verifier = &verifier;
                    scope.spawn(move || {
                        for (message, sig) in part {
                            assert!(verifier.verify(message, sig));
                        }
                    });
                }
            });
            rates.push(RECORDS as f64 / start.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (floor_one, floor_all) = (floor(1), floor(cores));

    let opts = VerifyOptions {
        audit_key_sha256: Some(fp),
        ..VerifyOptions::default()
    };
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let report = verify_bytes(&text, &opts).map_err(|e| e.to_string())?;
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(report.records, RECORDS);
        rates.push(RECORDS as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "verify: {RECORDS} records, {} bytes; median {:.0} records/s (min {:.0}, max {:.0})",
        text.len(),
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
    println!(
        "floor: ECDSA P-256 verifications alone (ring), median {floor_one:.0}/s on one thread, {floor_all:.0}/s on {cores} threads"
    );
    Ok(())
}
