//! Property tests: random mutations of a real transcript never crash the verifier and never
//! verify unless the bytes are unchanged; random ceremony files never crash the parser.
//!
//! The transcript is the shipped sample (`docs/examples/fleet-6-targets.jsonl`), verified in
//! process with its audit key pinned. `BYOK_PROPTEST_CASES` sets the number of cases of each
//! property: `scripts/test` runs the default (2,000); the long run is
//! `BYOK_PROPTEST_CASES=100000 cargo nextest run -E 'test(/mutat/)'` (docs/performance.md).
//! Neither needs a token or KMS.

use std::path::Path;

use byok::transcript::verify::{VerifyOptions, verify_bytes};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};

fn cases() -> u32 {
    std::env::var("BYOK_PROPTEST_CASES")
        .ok()
        .map(|v| v.parse().expect("BYOK_PROPTEST_CASES is a number"))
        .unwrap_or(2_000)
}

fn config() -> Config {
    Config {
        cases: cases(),
        // A failure is printed with its minimal case; nothing is written into the tree.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

fn sample() -> (Vec<u8>, VerifyOptions) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let bytes = std::fs::read(dir.join("fleet-6-targets.jsonl")).expect("read the sample");
    let pin = std::fs::read_to_string(dir.join("fleet-6-targets.audit_key_sha256"))
        .expect("read the pin")
        .trim()
        .to_string();
    let opts = VerifyOptions {
        audit_key_sha256: Some(pin),
        ..VerifyOptions::default()
    };
    (bytes, opts)
}

/// One edit of a transcript, at positions chosen relative to its size.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// Replaces a printable character by another of the same class (digit, hex letter,
    /// base64 letter): the edits most likely to keep the JSON well-formed.
    Lookalike(Index, u8),
    Insert(Index, u8),
    Delete(Index, usize),
    DropLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    CopyLineOver(Index, Index),
    Truncate(Index),
    AppendLine(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Lookalike(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<Index>().prop_map(Mutation::DropLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::SwapLines(i, j)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::CopyLineOver(i, j)),
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::AppendLine),
    ]
}

fn apply(m: &Mutation, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    let mut lines: Vec<Vec<u8>> = original
        .strip_suffix(b"\n")
        .unwrap_or(original)
        .split(|&c| c == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let join = |lines: &[Vec<u8>]| {
        let mut out = lines.join(&b'\n');
        out.push(b'\n');
        out
    };
    match m {
        Mutation::FlipBit(i, bit) => {
            let i = i.index(b.len());
            b[i] ^= 1 << bit;
            b
        }
        Mutation::SetByte(i, v) => {
            let i = i.index(b.len());
            b[i] = *v;
            b
        }
        Mutation::Lookalike(i, v) => {
            let i = i.index(b.len());
            let class: &[u8] = match b[i] {
                b'0'..=b'9' => b"0123456789",
                b'a'..=b'f' => b"abcdef0123456789",
                b'A'..=b'Z' | b'g'..=b'z' | b'+' | b'/' => {
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                }
                _ => b"\"{}[]:,",
            };
            b[i] = class[usize::from(*v) % class.len()];
            b
        }
        Mutation::Insert(i, v) => {
            let i = i.index(b.len() + 1);
            b.insert(i, *v);
            b
        }
        Mutation::Delete(i, n) => {
            let i = i.index(b.len());
            let end = (i + n).min(b.len());
            b.drain(i..end);
            b
        }
        Mutation::DropLine(i) => {
            lines.remove(i.index(lines.len()));
            join(&lines)
        }
        Mutation::DuplicateLine(i) => {
            let i = i.index(lines.len());
            let line = lines[i].clone();
            lines.insert(i, line);
            join(&lines)
        }
        Mutation::SwapLines(i, j) => {
            let (i, j) = (i.index(lines.len()), j.index(lines.len()));
            lines.swap(i, j);
            join(&lines)
        }
        Mutation::CopyLineOver(i, j) => {
            let (i, j) = (i.index(lines.len()), j.index(lines.len()));
            lines[i] = lines[j].clone();
            join(&lines)
        }
        Mutation::Truncate(i) => {
            b.truncate(i.index(b.len()));
            b
        }
        Mutation::AppendLine(i) => {
            let line = lines[i.index(lines.len())].clone();
            b.extend_from_slice(&line);
            b.push(b'\n');
            b
        }
    }
}

#[test]
fn the_sample_verifies_unmutated() {
    let (bytes, opts) = sample();
    verify_bytes(&bytes, &opts).expect("the shipped sample verifies");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_mutated_transcript_never_verifies(ms in prop::collection::vec(mutation(), 1..4)) {
        let (original, opts) = sample();
        let mut bytes = original.clone();
        for m in &ms {
            if !bytes.is_empty() {
                bytes = apply(m, &bytes);
            }
        }
        let result = verify_bytes(&bytes, &opts);
        if bytes == original {
            prop_assert!(result.is_ok(), "the unchanged sample must verify: {:?}", result.err());
        } else {
            prop_assert!(
                result.is_err(),
                "a transcript changed by {ms:?} verified"
            );
        }
    }

    #[test]
    fn a_mutated_ceremony_file_never_crashes_the_parser(
        template in prop::sample::select(vec![
            "demo-softhsm.toml", "fleet-product.toml", "fleet-rotate.toml",
            "fleet-alias-swap.toml", "fleet-rollback.toml", "reimport.toml",
            "host-wrap-oaep-sha256.toml", "kryoptic-oaep-sha256.toml",
        ]),
        ms in prop::collection::vec(mutation(), 1..4),
    ) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremonies").join(template);
        let mut bytes = std::fs::read(&path).expect("read the template");
        for m in &ms {
            if !bytes.is_empty() {
                bytes = apply(m, &bytes);
            }
        }
        // Not UTF-8 is refused before parsing, as `spec::load` does.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = byok::spec::parse(&path, text, time::OffsetDateTime::now_utc());
        }
    }

    #[test]
    fn random_text_never_crashes_the_parser(text in "\\PC{0,400}") {
        let _ = byok::spec::parse(Path::new("random.toml"), &text, time::OffsetDateTime::now_utc());
    }
}
