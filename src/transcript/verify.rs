//! Offline verification of a transcript, exactly as `docs/transcript.md` specifies it, for
//! format versions 1 (one target, byok 0.1), 2 (many targets, typed payloads), 3 (kinds,
//! signed declines) and 4 (a run id in every statement). From version 2 on it also reads the
//! embedded ceremony file with `byok check`'s rules, requires the step sequence of the
//! ceremony's kind, and cross-checks what the final record repeats.
//!
//! The verifier trusts nothing in the file but checks it against itself (hash chain, sequence,
//! signatures under the audit key carried in record 0, the fingerprint pinned in the ceremony
//! file carried in record 0) and, when the auditor gives one, against an out-of-band audit key
//! fingerprint. It reports the first bad line (1-based) and why.

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::payload as p;
use super::record::{GENESIS_PREV, RecordType, SUPPORTED_VERSIONS};
use crate::ecdsa;
use crate::jcs;

/// What the auditor pins.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Expected SHA-256 (hex) of the audit key's SPKI DER, from a source outside the transcript.
    pub audit_key_sha256: Option<String>,
    /// Expected SHA-256 (hex) of the ceremony file embedded in record 0: the approved file,
    /// from `--ceremony-file` or a pin file.
    pub ceremony_file_sha256: Option<String>,
    /// Custodian name → expected SHA-256 (hex) of their approval key's SPKI. When any is
    /// given, the embedded ceremony file must name exactly these custodians with these keys.
    pub custodians: Vec<(String, String)>,
    /// The smallest quorum the auditor accepts; a rehearsal (dual control off) fails it.
    pub require_quorum: Option<usize>,
    /// Accept a transcript cut off by a crash (no closing record, or a partial last line,
    /// which is then ignored): `byok run --resume` reads such transcripts. `byok verify`
    /// never sets it: for an auditor a cut-off transcript is invalid.
    pub allow_truncated: bool,
}

/// Why a transcript is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the transcript is empty")]
    Empty,
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("truncated: the last line has no newline")]
    TruncatedLine,
    #[error(
        "truncated: the transcript ends with a {last} record, not ceremony_finished or ceremony_aborted"
    )]
    TruncatedEnd { last: String },
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("not in canonical (RFC 8785) form, or has duplicate members")]
    NotCanonical,
    #[error("field `{field}`: {why}")]
    BadField { field: &'static str, why: String },
    #[error("wrong seq: expected {expected}, found {found}")]
    WrongSeq { expected: u64, found: String },
    #[error(
        "broken chain: prev is not the SHA-256 of the previous line (a line was dropped, reordered or edited)"
    )]
    BrokenChain,
    #[error("time {time} is earlier than the previous record's {previous}")]
    TimeWentBack { time: String, previous: String },
    #[error("bad signature: the record was not signed by the audit key in record 0")]
    BadSignature,
    #[error("wrong audit key: its SHA-256 is {found}, expected {expected}")]
    WrongAuditKey { expected: String, found: String },
    #[error("approval: {0}")]
    BadApproval(String),
    #[error(
        "{step} is not preceded by {need} approvals from distinct custodians of the {point} statement it carries out (found {have})"
    )]
    QuorumMissing {
        step: String,
        point: &'static str,
        need: usize,
        have: usize,
    },
    #[error("record type {kind} is not allowed here: {why}")]
    Misplaced { kind: String, why: &'static str },
    #[error("data of {kind} does not match the format-version-2 contract: {why}")]
    BadPayload { kind: String, why: String },
    #[error("target {index}: {why}")]
    BadTarget { index: u64, why: String },
    /// `kms_identity` missing, or disagreeing with the ceremony file's `[kms]` pins.
    #[error("kms_identity: {0}")]
    Whereabouts(String),
    #[error("not what the auditor pinned: {0}")]
    NotAsPinned(String),
    #[error("the ceremony file in record 0 fails `byok check`: {0}")]
    CeremonyFile(String),
    #[error(
        "{what} carries run id {found}, but record 0's run_id is {expected}: an approval or decline from another run does not count in this one"
    )]
    WrongRun {
        what: String,
        found: String,
        expected: String,
    },
}

/// The first invalid line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct Invalid {
    /// 1-based line number (0 when the problem is the file as a whole).
    pub line: usize,
    pub problem: Problem,
}

/// Summary of a valid transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The format version of every record (1 or 2).
    pub version: u64,
    pub records: usize,
    pub ceremony_id: String,
    pub ceremony_file_sha256: String,
    /// False when the transcript was cut off (only with `allow_truncated`).
    pub closed: bool,
    /// The transcript a resumed run continues (version 2).
    pub resumes: Option<p::Resumes>,
    /// Where each target stands, from the last record (version 2, closed transcripts).
    pub targets: Vec<p::TargetOutcome>,
    pub audit_key_sha256: String,
    /// `ceremony_finished` or `ceremony_aborted` (or the last record of a cut-off transcript).
    pub outcome: RecordType,
    /// `data` of the last record.
    pub outcome_data: Value,
    /// SHA-256 (hex) of the last line: the fingerprint custodians write down.
    pub last_line_sha256: String,
    /// Whether the auditor's `--audit-key-sha256` was checked.
    pub audit_key_pinned_externally: bool,
    /// The quorum in force, or `None` when the ceremony file turned dual control off.
    pub quorum: Option<usize>,
    /// Who approved which approval point, in transcript order.
    pub approvals: Vec<(String, Vec<String>)>,
    /// A reimport's `source_verified` (version 3).
    pub source: Option<p::SourceVerified>,
    /// Where the ceremony ran and as whom: its `kms_identity` (version 4).
    pub kms_identity: Option<p::KmsIdentity>,
    /// (v4) Record 0's run id.
    pub run_id: Option<String>,
    /// The SHA-256 of each statement custodians approved (or, in a rehearsal, the operator
    /// confirmed), by approval point, in transcript order: what the paper record lists.
    pub statements: Vec<(String, String)>,
    /// The custodians the embedded ceremony file pins: name and approval-key SHA-256.
    pub custodians: Vec<(String, String)>,
}

/// Reads and verifies a transcript file.
pub fn verify_file(
    path: &Path,
    opts: &VerifyOptions,
) -> Result<Result<Report, Invalid>, std::io::Error> {
    let bytes = std::fs::read(path)?;
    Ok(verify_bytes(&bytes, opts))
}

/// Verifies a transcript held in memory.
pub fn verify_bytes(bytes: &[u8], opts: &VerifyOptions) -> Result<Report, Invalid> {
    let bad = |line: usize, problem: Problem| Invalid { line, problem };
    if bytes.is_empty() {
        return Err(bad(0, Problem::Empty));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        bad(line, Problem::NotUtf8)
    })?;
    let body = match text.strip_suffix('\n') {
        Some(body) => body,
        None if opts.allow_truncated => match text.rfind('\n') {
            // The partial last line of a crash is ignored; the complete lines must verify.
            Some(end) => &text[..end],
            None => return Err(bad(1, Problem::TruncatedLine)),
        },
        None => {
            return Err(bad(text.split('\n').count(), Problem::TruncatedLine));
        }
    };
    let mut version = 0u64;
    let mut v2 = V2State::default();
    let mut file_sha256 = String::new();

    let mut prev = GENESIS_PREV.to_string();
    let mut previous_time = String::new();
    let mut verifier: Option<ecdsa::Verifier> = None;
    let mut ceremony_id = String::new();
    let mut audit_fp = String::new();
    let mut last: Option<(RecordType, Value)> = None;
    let mut seen_confirmation = false;
    let mut dual = DualState::default();
    let mut count = 0usize;

    let lines: Vec<&str> = body.split('\n').collect();
    // The lines are parsed and their signatures checked on other threads while this one
    // applies the rules between records, in order, as the results arrive.
    std::thread::scope(|scope| {
        let parsed = parse_lines(scope, &lines);
        for (index, pre) in parsed.enumerate() {
            let n = index + 1;
            let seq = index as u64;
            let Parsed {
                value,
                canonical,
                signature_base64,
                signature_ok,
                sha256,
            } = pre;
            let value = value.map_err(|e| bad(n, Problem::NotJson(e)))?;
            if !canonical {
                return Err(bad(n, Problem::NotCanonical));
            }
            let Value::Object(mut map) = value else {
                return Err(bad(n, Problem::NotJson("not an object".into())));
            };
            let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
            keys.sort_unstable();
            if keys != ["data", "prev", "seq", "sig", "time", "type", "v"] {
                return Err(bad(
                    n,
                    Problem::BadField {
                        field: "record",
                        why: format!(
                            "members must be exactly data, prev, seq, sig, time, type, v; found {}",
                            keys.join(", ")
                        ),
                    },
                ));
            }
            let v = map["v"].as_u64().unwrap_or(0);
            if n == 1 && SUPPORTED_VERSIONS.contains(&v) {
                version = v;
            }
            if v != version {
                return Err(bad(
                    n,
                    Problem::BadField {
                        field: "v",
                        why: if n == 1 {
                            format!("expected one of {SUPPORTED_VERSIONS:?}, found {}", map["v"])
                        } else {
                            format!(
                                "expected {version} (every record has record 0's version), found {}",
                                map["v"]
                            )
                        },
                    },
                ));
            }
            if map["seq"].as_u64() != Some(seq) {
                return Err(bad(
                    n,
                    Problem::WrongSeq {
                        expected: seq,
                        found: map["seq"].to_string(),
                    },
                ));
            }
            if map["prev"].as_str() != Some(prev.as_str()) {
                return Err(bad(n, Problem::BrokenChain));
            }
            let time = map["time"].as_str().unwrap_or_default().to_string();
            if !is_rfc3339_utc(&time) {
                return Err(bad(
                    n,
                    Problem::BadField {
                        field: "time",
                        why: format!(
                            "expected RFC 3339 UTC like 2026-11-23T19:04:08.123Z, found {}",
                            map["time"]
                        ),
                    },
                ));
            }
            // Fixed-width UTC timestamps compare correctly as strings.
            if time < previous_time {
                return Err(bad(
                    n,
                    Problem::TimeWentBack {
                        time,
                        previous: previous_time,
                    },
                ));
            }
            let kind = map["type"]
                .as_str()
                .and_then(RecordType::parse)
                .ok_or_else(|| {
                    bad(
                        n,
                        Problem::BadField {
                            field: "type",
                            why: format!("unknown record type {}", map["type"]),
                        },
                    )
                })?;
            if !map["data"].is_object() {
                return Err(bad(
                    n,
                    Problem::BadField {
                        field: "data",
                        why: "must be an object".into(),
                    },
                ));
            }
            map.remove("sig");
            if !signature_base64 {
                return Err(bad(
                    n,
                    Problem::BadField {
                        field: "sig",
                        why: "must be standard base64".into(),
                    },
                ));
            }

            // Record placement rules.
            if (n == 1) != (kind == RecordType::CeremonyStarted) {
                return Err(bad(
                    n,
                    Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "ceremony_started is the first record and only the first",
                    },
                ));
            }
            if let Some((prev_kind, _)) = &last
                && prev_kind.is_terminal()
            {
                return Err(bad(
                    n,
                    Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "nothing may follow ceremony_finished or ceremony_aborted",
                    },
                ));
            }
            if version == 1 && kind.is_v2_only() {
                return Err(bad(
                    n,
                    Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "this record type exists only from format version 2 on",
                    },
                ));
            }
            if version < 4 && kind.is_v4_only() {
                return Err(bad(
                    n,
                    Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "this record type exists only from format version 4 on",
                    },
                ));
            }
            if version < 3 && kind.is_v3_only() {
                return Err(bad(
                    n,
                    Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "this record type exists only from format version 3 on",
                    },
                ));
            }
            if kind == RecordType::ImportConfirmed {
                seen_confirmation = true;
            }
            if kind == RecordType::KeyImported && !seen_confirmation {
                return Err(bad(
                    n,
                    Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "key_imported must be preceded by import_confirmed",
                    },
                ));
            }

            if n == 1 {
                let (v, id, fp) = start_record(&map["data"], opts).map_err(|p| bad(n, p))?;
                verifier = Some(v);
                ceremony_id = id;
                audit_fp = fp;
            }
            // `parse_lines` checked the signature under record 0's key; `verifier` is that key
            // once `start_record` has accepted it.
            if verifier.is_none() || !signature_ok {
                return Err(bad(n, Problem::BadSignature));
            }

            if n == 1 {
                file_sha256 = map["data"]["ceremony_file_sha256"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                check_pins(&map["data"], opts).map_err(|p| bad(n, p))?;
            }
            if version == 1 {
                if n == 1 {
                    dual = DualState::from_start(&map["data"], &audit_fp).map_err(|p| bad(n, p))?;
                } else {
                    dual.check(kind, &map["data"]).map_err(|p| bad(n, p))?;
                }
            } else {
                v2.version = version;
                v2.check(kind, &map["data"], &audit_fp)
                    .map_err(|p| bad(n, p))?;
            }

            prev = sha256;
            previous_time = time;
            last = Some((kind, map.remove("data").unwrap_or(Value::Null)));
            count = n;
        }

        let (outcome, outcome_data) = last.ok_or(bad(0, Problem::Empty))?;
        let closed = outcome.is_terminal();
        if !closed && !opts.allow_truncated {
            return Err(bad(
                count,
                Problem::TruncatedEnd {
                    last: outcome.to_string(),
                },
            ));
        }
        let (quorum, approvals) = if version == 1 {
            (dual.quorum, dual.summary())
        } else {
            (v2.quorum, v2.dual.summary())
        };
        let dual_state = if version == 1 { &dual } else { &v2.dual };
        let mut statements = Vec::new();
        if quorum.is_some()
            && let Ok(digest) = crate::quorum::statement_sha256(&dual_state.plan_expected)
        {
            statements.push((crate::quorum::PLAN.to_string(), digest));
        }
        statements.extend(v2.digests.iter().cloned());
        let targets = match outcome {
            RecordType::CeremonyFinished => {
                serde_json::from_value::<p::CeremonyFinished>(outcome_data.clone())
                    .map(|f| f.targets)
                    .unwrap_or_default()
            }
            RecordType::CeremonyAborted => {
                serde_json::from_value::<p::CeremonyAborted>(outcome_data.clone())
                    .map(|f| f.targets)
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Ok(Report {
            version,
            records: count,
            ceremony_id,
            ceremony_file_sha256: file_sha256,
            closed,
            resumes: v2.resumes.clone(),
            targets,
            audit_key_sha256: audit_fp,
            outcome,
            outcome_data,
            last_line_sha256: prev,
            audit_key_pinned_externally: opts.audit_key_sha256.is_some(),
            quorum,
            approvals,
            source: v2.source.clone(),
            kms_identity: v2.identity.clone(),
            run_id: dual_state.run_id.clone(),
            statements,
            custodians: dual_state.pinned.clone(),
        })
    })
}

/// What the parallel pass learns of one line before the sequential checks.
struct Parsed {
    /// The line as JSON, or the parser's complaint.
    value: Result<Value, String>,
    /// The line is its own RFC 8785 form.
    canonical: bool,
    /// `sig` is a string of standard base64.
    signature_base64: bool,
    /// `sig` is a valid signature, under record 0's `audit_public_key`, over the record
    /// without `sig` in canonical form.
    signature_ok: bool,
    /// SHA-256 (hex) of the line: the next record's `prev`.
    sha256: String,
}

/// Parses every line, hashes it and checks its signature, on as many threads as the machine
/// has: each line's signature depends only on the line and record 0's key, so this is the part
/// of verification that runs in parallel (`docs/performance.md`). The results come back in
/// line order, chunk by chunk as the workers finish them, so that the chain, the sequence and
/// every rule between records, which stay sequential in [`verify_bytes`], run at the same time
/// and report the first bad line exactly as a one-thread pass would. When the consumer stops
/// early (an invalid line), the workers stop at their next chunk.
fn parse_lines<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    lines: &'env [&'env str],
) -> Box<dyn Iterator<Item = Parsed> + 'scope> {
    /// Lines per unit of work.
    const CHUNK: usize = 256;
    let key = lines.first().and_then(|first| {
        let v = serde_json::from_str::<Value>(first).ok()?;
        let spki = base64::engine::general_purpose::STANDARD
            .decode(v["data"]["audit_public_key"].as_str()?)
            .ok()?;
        ecdsa::Verifier::from_spki(&spki).ok()
    });
    let key = std::sync::Arc::new(key);
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1);
    // Below a few chunks a thread costs more than it saves.
    if threads == 1 || lines.len() < 4 * CHUNK {
        return Box::new(
            lines
                .iter()
                .map(move |line| parse_line(key.as_ref().as_ref(), line)),
        );
    }
    let chunks = lines.len().div_ceil(CHUNK);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Parsed>)>(2 * threads);
    for worker in 0..threads {
        let (tx, key) = (tx.clone(), key.clone());
        scope.spawn(move || {
            for chunk in (worker..chunks).step_by(threads) {
                let part = &lines[chunk * CHUNK..((chunk + 1) * CHUNK).min(lines.len())];
                let parsed = part
                    .iter()
                    .map(|line| parse_line(key.as_ref().as_ref(), line))
                    .collect();
                if tx.send((chunk, parsed)).is_err() {
                    return; // the consumer stopped at an invalid line
                }
            }
        });
    }
    drop(tx);
    let mut waiting = std::collections::BTreeMap::new();
    Box::new((0..chunks).flat_map(move |next| {
        while !waiting.contains_key(&next) {
            match rx.recv() {
                Ok((chunk, parsed)) => {
                    waiting.insert(chunk, parsed);
                }
                // Every worker is gone without sending chunk `next`: one panicked (a bug in
                // serde_json, jcs or ring); the scope re-raises its panic when it joins it.
                Err(_) => return Vec::new().into_iter(),
            }
        }
        waiting.remove(&next).unwrap_or_default().into_iter()
    }))
}

/// One line: parsed, hashed, and its signature checked under record 0's key.
fn parse_line(key: Option<&ecdsa::Verifier>, line: &str) -> Parsed {
    let sha256 = hex::encode(Sha256::digest(line.as_bytes()));
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Parsed {
                value: Err(e.to_string()),
                canonical: false,
                signature_base64: false,
                signature_ok: false,
                sha256,
            };
        }
    };
    let canonical = jcs::to_vec(&value).is_ok_and(|c| c == line.as_bytes());
    let sig_text = value.get("sig").and_then(Value::as_str);
    let sig = sig_text.and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
    let signature_ok = match (key, &sig, sig_text) {
        (Some(key), Some(sig), Some(text)) if canonical => {
            // The line is canonical and `sig` is a top-level string of plain base64, which
            // JCS places after `data`, `prev` and `seq` and before `time`, `type` and `v`
            // (scalars). A raw `,"sig":"` can only be a member name in JSON text, so its last
            // occurrence is the top-level member: the record without it, in canonical form,
            // is the line without that member.
            let member = format!(",\"sig\":\"{text}\"");
            match line.rfind(&member) {
                Some(at) => {
                    let message = [&line[..at], &line[at + member.len()..]].concat();
                    key.verify(message.as_bytes(), sig)
                }
                None => false,
            }
        }
        _ => false,
    };
    Parsed {
        value: Ok(value),
        canonical,
        signature_base64: sig.is_some(),
        signature_ok,
        sha256,
    }
}

/// Checks record 0's data: audit key, ceremony file and its hash, pinned fingerprint.
fn start_record(
    data: &Value,
    opts: &VerifyOptions,
) -> Result<(ecdsa::Verifier, String, String), Problem> {
    let field = |field: &'static str, why: &str| Problem::BadField {
        field,
        why: why.to_string(),
    };
    let spki = data["audit_public_key"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or_else(|| field("data.audit_public_key", "must be base64 SPKI DER"))?;
    let verifier = ecdsa::Verifier::from_spki(&spki)
        .map_err(|e| field("data.audit_public_key", &e.to_string()))?;
    let found = ecdsa::fingerprint(&spki);
    if let Some(expected) = &opts.audit_key_sha256
        && !expected.eq_ignore_ascii_case(&found)
    {
        return Err(Problem::WrongAuditKey {
            expected: expected.to_ascii_lowercase(),
            found,
        });
    }
    let file = data["ceremony_file"]
        .as_str()
        .ok_or_else(|| field("data.ceremony_file", "must be the ceremony file's text"))?;
    if data["ceremony_file_sha256"].as_str()
        != Some(hex::encode(Sha256::digest(file.as_bytes())).as_str())
    {
        return Err(field(
            "data.ceremony_file_sha256",
            "is not the SHA-256 of data.ceremony_file",
        ));
    }
    let pinned = crate::spec::pinned_audit_key_sha256(file)
        .ok_or_else(|| field("data.ceremony_file", "has no hsm.audit_key_sha256"))?;
    if !pinned.eq_ignore_ascii_case(&found) {
        return Err(Problem::WrongAuditKey {
            expected: pinned.to_ascii_lowercase(),
            found,
        });
    }
    let id = data["ceremony_id"]
        .as_str()
        .ok_or_else(|| field("data.ceremony_id", "must be a string"))?
        .to_string();
    Ok((verifier, id, found))
}

/// Record 0 against what the auditor pinned besides the audit key: the ceremony file's
/// SHA-256, the custodians and their keys, the smallest quorum.
fn check_pins(data: &Value, opts: &VerifyOptions) -> Result<(), Problem> {
    let file = data["ceremony_file"].as_str().unwrap_or_default();
    if let Some(want) = &opts.ceremony_file_sha256 {
        let found = hex::encode(Sha256::digest(file.as_bytes()));
        if !want.eq_ignore_ascii_case(&found) {
            return Err(Problem::NotAsPinned(format!(
                "the embedded ceremony file's SHA-256 is {found}, but the approved file's is {}: they are not byte-identical",
                want.to_ascii_lowercase()
            )));
        }
    }
    if opts.custodians.is_empty() && opts.require_quorum.is_none() {
        return Ok(());
    }
    let Some((quorum, listed)) = crate::spec::pinned_dual_control(file) else {
        return Err(Problem::NotAsPinned(
            "the embedded ceremony file turns dual control off (a rehearsal), but custodians or a quorum were pinned".into(),
        ));
    };
    if let Some(m) = opts.require_quorum
        && quorum < m
    {
        return Err(Problem::NotAsPinned(format!(
            "the embedded ceremony file's quorum is {quorum}, smaller than the required {m}"
        )));
    }
    for (name, want) in &opts.custodians {
        match listed.iter().find(|(n, _)| n == name) {
            None => {
                return Err(Problem::NotAsPinned(format!(
                    "custodian {}: the embedded ceremony file names no custodian so called",
                    name
                )));
            }
            Some((_, found)) if !found.eq_ignore_ascii_case(want) => {
                return Err(Problem::NotAsPinned(format!(
                    "custodian {}: the embedded ceremony file pins approval key {found}, but the pinned key is {}",
                    name,
                    want.to_ascii_lowercase()
                )));
            }
            Some(_) => {}
        }
    }
    if !opts.custodians.is_empty()
        && let Some((extra, _)) = listed
            .iter()
            .find(|(n, _)| !opts.custodians.iter().any(|(p, _)| p == n))
    {
        return Err(Problem::NotAsPinned(format!(
            "the embedded ceremony file names custodian {}, whom the pins do not name: pin every custodian of the paper record",
            extra
        )));
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, a valid date and time.
fn is_rfc3339_utc(s: &str) -> bool {
    crate::rfc3339::parse(s).is_some()
}

/// Dual-control rules: approvals verify under the custodians' pinned keys and each guarded step
/// is preceded by a quorum of distinct custodians approving exactly what the step did.
#[derive(Default)]
struct DualState {
    quorum: Option<usize>,
    /// Custodian name → pinned key fingerprint.
    pinned: Vec<(String, String)>,
    plan_expected: Value,
    /// Point → (custodian, key fingerprint, statement) in order.
    approved: Vec<(&'static str, String, String, Value)>,
    /// Latest `data` of the records the import statement is rebuilt from.
    facts: std::collections::HashMap<RecordType, Value>,
    ceremony_id: String,
    preflight_seen: bool,
    /// (v4) Record 0's run id: every statement approved or declined carries it.
    run_id: Option<String>,
}

impl DualState {
    fn from_start(data: &Value, audit_key_sha256: &str) -> Result<Self, Problem> {
        let file = data["ceremony_file"].as_str().unwrap_or_default();
        let pins = crate::spec::pinned_dual_control(file);
        let id = data["ceremony_id"].as_str().unwrap_or_default().to_string();
        let target = crate::spec::pinned_target_key(file).unwrap_or_default();
        let plan_expected = crate::quorum::v1::plan_statement(
            &id,
            data["ceremony_file_sha256"].as_str().unwrap_or_default(),
            audit_key_sha256,
            &target,
        );
        let (quorum, pinned) = match pins {
            Some((m, list)) => (Some(m), list),
            None => (None, Vec::new()),
        };
        Ok(DualState {
            quorum,
            pinned,
            plan_expected,
            ceremony_id: id,
            ..DualState::default()
        })
    }

    fn count(&self, point: &str, statement: &Value) -> usize {
        self.approved
            .iter()
            .filter(|(p, _, _, s)| *p == point && s == statement)
            .count()
    }

    fn check(&mut self, kind: RecordType, data: &Value) -> Result<(), Problem> {
        match kind {
            RecordType::Approval => self.approval(data)?,
            RecordType::KmsPreflight if !self.preflight_seen => {
                self.preflight_seen = true;
                if let Some(m) = self.quorum {
                    let have = self.count(crate::quorum::PLAN, &self.plan_expected.clone());
                    if have < m {
                        return Err(Problem::QuorumMissing {
                            step: kind.to_string(),
                            point: crate::quorum::PLAN,
                            need: m,
                            have,
                        });
                    }
                }
            }
            RecordType::ImportParameters | RecordType::KeyGenerated | RecordType::KeyWrapped => {
                self.facts.insert(kind, data.clone());
            }
            RecordType::KeyImported => {
                if let Some(m) = self.quorum {
                    let expected = self.import_expected(data);
                    let have = self.count(crate::quorum::IMPORT, &expected);
                    if have < m {
                        return Err(Problem::QuorumMissing {
                            step: kind.to_string(),
                            point: crate::quorum::IMPORT,
                            need: m,
                            have,
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn import_expected(&self, imported: &Value) -> Value {
        let s = |kind: RecordType, field: &str| {
            self.facts
                .get(&kind)
                .and_then(|d| d[field].as_str())
                .unwrap_or_default()
                .to_string()
        };
        crate::quorum::v1::import_statement(&crate::quorum::v1::ImportFacts {
            ceremony_id: self.ceremony_id.clone(),
            key_arn: imported["key_arn"].as_str().unwrap_or_default().to_string(),
            wrapping_algorithm: s(RecordType::ImportParameters, "wrapping_algorithm"),
            wrapping_key_spec: s(RecordType::ImportParameters, "wrapping_key_spec"),
            wrapping_public_key_sha256: s(RecordType::ImportParameters, "public_key_sha256"),
            blob_sha256: s(RecordType::KeyWrapped, "blob_sha256"),
            kcv: s(RecordType::KeyGenerated, "kcv"),
            expiration_model: imported["expiration_model"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            valid_to: imported["valid_to"].as_str().map(str::to_string),
        })
    }

    fn approval(&mut self, data: &Value) -> Result<(), Problem> {
        let bad = |why: String| Problem::BadApproval(why);
        if self.quorum.is_none() {
            return Err(bad(
                "the ceremony file turns dual control off, yet the transcript has an approval"
                    .into(),
            ));
        }
        let point = match data["point"].as_str() {
            Some(crate::quorum::PLAN) => crate::quorum::PLAN,
            Some(crate::quorum::IMPORT) => crate::quorum::IMPORT,
            Some(crate::quorum::ROTATE) => crate::quorum::ROTATE,
            Some(crate::quorum::SWAP) => crate::quorum::SWAP,
            other => return Err(bad(format!("unknown approval point {other:?}"))),
        };
        let name = data["custodian"].as_str().unwrap_or_default().to_string();
        let pinned = self
            .pinned
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, fp)| fp.clone())
            .ok_or_else(|| bad(format!("{name:?} is not a custodian in the ceremony file")))?;
        let spki = data["public_key"]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| bad("public_key must be base64 SPKI DER".into()))?;
        let signature = data["signature"]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| bad("signature must be base64 DER".into()))?;
        let statement = data["statement"].clone();
        if statement["point"].as_str() != Some(point) {
            return Err(bad(format!("the statement's point is not {point}")));
        }
        self.same_run(&format!("{name}'s {point} approval"), &statement)?;
        let signed = jcs::to_vec(&statement).map_err(|e| bad(e.to_string()))?;
        if data["statement_sha256"].as_str() != Some(hex::encode(Sha256::digest(&signed)).as_str())
        {
            return Err(bad(
                "statement_sha256 is not the SHA-256 of the statement".into()
            ));
        }
        crate::quorum::check_approval(&name, &pinned, &spki, &signed, &signature)
            .map_err(|e| bad(e.to_string()))?;
        if point == crate::quorum::PLAN && statement != self.plan_expected {
            return Err(bad(format!(
                "{name} approved a plan statement that does not match this ceremony (id, file, audit key, targets)"
            )));
        }
        let fp = crate::ecdsa::fingerprint(&spki);
        if self
            .approved
            .iter()
            .any(|(p, n, k, s)| *p == point && s == &statement && (*n == name || *k == fp))
        {
            return Err(bad(format!(
                "{name} approved the same {point} statement twice"
            )));
        }
        self.approved.push((point, name, fp, statement));
        Ok(())
    }

    /// A statement carries record 0's run id (format version 4), or none before.
    fn same_run(&self, what: &str, statement: &Value) -> Result<(), Problem> {
        let found = statement.get("run_id");
        let ok = match (&self.run_id, found) {
            (None, None) => true,
            (Some(want), Some(Value::String(got))) => want == got,
            _ => false,
        };
        if ok {
            return Ok(());
        }
        Err(Problem::WrongRun {
            what: what.to_string(),
            found: found.map_or_else(|| "(none)".to_string(), |v| v.to_string()),
            expected: self.run_id.clone().unwrap_or_else(|| "(none)".to_string()),
        })
    }

    fn summary(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (point, name, _, _) in &self.approved {
            match out.iter_mut().find(|(p, _)| p == point) {
                Some((_, names)) => names.push(name.clone()),
                None => out.push((point.to_string(), vec![name.clone()])),
            }
        }
        out
    }
}

/// Format-version-2 rules: every record's data is its typed payload; records name targets that
/// exist, with one key ARN each; the plan quorum precedes the first KMS change; the import
/// statement is exactly what the wrap records say and is approved by the quorum; every import
/// is of a target in the approved statement, with the approved blob and import token.
#[derive(Default)]
struct V2State {
    /// 2 or 3.
    version: u64,
    dual: DualState,
    quorum: Option<usize>,
    operator: String,
    /// Record 0's ceremony file text (a reimport's `[source]` is pinned there).
    ceremony_file: String,
    targets: Vec<p::TargetEntry>,
    resumes: Option<p::Resumes>,
    arns: std::collections::HashMap<u64, String>,
    parameters: std::collections::HashMap<u64, p::ImportParameters>,
    generated: std::collections::HashMap<u64, p::KeyGenerated>,
    wrapped: std::collections::BTreeMap<u64, p::KeyWrapped>,
    plan_checked: bool,
    ceremony_id: String,
    confirmed: Option<crate::quorum::ImportStatement>,
    imported: std::collections::HashSet<u64>,
    created: std::collections::HashSet<u64>,
    /// `[ceremony] kind` from record 0 (version 3); `import` before.
    kind: String,
    /// Rotation: the preflight of each target, the KeyMaterialIds each import may have made,
    /// the approved rotate statement, and the targets rotated.
    rotation_pre: std::collections::HashMap<u64, p::RotationPreflight>,
    new_materials: std::collections::HashMap<u64, Vec<String>>,
    rotate_confirmed: Option<crate::quorum::RotateStatement>,
    rotated: std::collections::HashSet<u64>,
    /// `ceremony_started.strategy` of a rotation (`new-material` when absent).
    strategy: String,
    /// Reimport and rollback: the source transcript's record.
    source: Option<p::SourceVerified>,
    /// Reimport: each target's kept-key check.
    kept_checked: std::collections::HashMap<u64, p::KeptKeyChecked>,
    /// Alias moves: each target's `alias_preflight`, the approved swap statement, and the
    /// targets whose alias moved.
    alias_pre: std::collections::HashMap<u64, p::AliasPreflight>,
    swap_confirmed: Option<crate::quorum::SwapStatement>,
    moved: std::collections::HashSet<u64>,
    /// (v4) Where the ceremony ran: its `kms_identity`.
    identity: Option<p::KmsIdentity>,
    /// (v4) Why the `kms_identity` just read disagrees with the ceremony file's pins: only
    /// `ceremony_aborted` may follow it.
    identity_refused: Option<String>,
    /// Each confirmed statement's point and SHA-256, in order.
    digests: Vec<(String, String)>,
    /// The record types seen so far, with the target each named (if any): the step sequence.
    seen: std::collections::HashSet<(RecordType, Option<u64>)>,
    /// The type of the previous record.
    last: Option<RecordType>,
    /// Each target's `key_imported`, `kept_key_checked`-free facts for the final cross-check.
    key_imported: std::collections::HashMap<u64, p::KeyImported>,
    /// Targets whose `import_verified`, `rotation_verified` or `alias_verified` reported a
    /// problem.
    problems: std::collections::HashSet<u64>,
}

/// An optional pin as printed: `"VALUE"` (escaped) or `none`.
fn shown(v: Option<&str>) -> String {
    v.map_or("none".into(), |v| format!("\"{}\"", crate::text::escape(v)))
}

fn typed<T: serde::de::DeserializeOwned>(kind: RecordType, data: &Value) -> Result<T, Problem> {
    serde_json::from_value(data.clone()).map_err(|e| Problem::BadPayload {
        kind: kind.to_string(),
        why: e.to_string(),
    })
}

impl V2State {
    /// One record: what must precede it (the step sequence), its own rules, then the
    /// cross-checks of the final record against the step records and the statements.
    fn check(&mut self, kind: RecordType, data: &Value, audit_fp: &str) -> Result<(), Problem> {
        let target = data.get("target_index").and_then(Value::as_u64);
        if kind != RecordType::CeremonyStarted {
            self.sequence(kind, target)?;
        }
        self.check_record(kind, data, audit_fp)?;
        match kind {
            RecordType::CeremonyFinished => {
                let r: p::CeremonyFinished = typed(kind, data)?;
                self.complete(&r.targets)?;
                self.cross_check(&r.targets)?;
            }
            RecordType::CeremonyAborted => {
                let r: p::CeremonyAborted = typed(kind, data)?;
                self.cross_check(&r.targets)?;
            }
            RecordType::KeyImported => {
                let r: p::KeyImported = typed(kind, data)?;
                self.key_imported.insert(r.target_index, r);
            }
            RecordType::ImportVerified
            | RecordType::RotationVerified
            | RecordType::AliasVerified
                if data["problems"].as_array().is_some_and(|a| !a.is_empty()) =>
            {
                self.problems.extend(target);
            }
            _ => {}
        }
        self.seen.insert((kind, target));
        self.last = Some(kind);
        Ok(())
    }

    fn has(&self, kind: RecordType, target: u64) -> bool {
        self.seen.contains(&(kind, Some(target)))
    }

    fn has_any(&self, kind: RecordType) -> bool {
        self.seen.iter().any(|(k, _)| *k == kind)
    }

    /// What must precede a record of `kind` (for `target`), whatever comes after: the rules
    /// of "The step sequence" in docs/transcript.md. An aborted transcript must hold what
    /// precedes the step where it stopped, and nothing is required after it.
    fn sequence(&self, kind: RecordType, target: Option<u64>) -> Result<(), Problem> {
        use RecordType as R;
        let misplaced = |why: &'static str| {
            Err(Problem::Misplaced {
                kind: kind.to_string(),
                why,
            })
        };
        if kind == R::HsmOpened {
            if self.has_any(R::HsmOpened) {
                return misplaced("hsm_opened is written once, as record 1");
            }
        } else if kind != R::CeremonyAborted && !self.has_any(R::HsmOpened) {
            return misplaced(
                "every record after ceremony_started follows hsm_opened (record 1: the HSM opened and the login)",
            );
        }
        if self.last == Some(R::CleanupDone) && !kind.is_terminal() {
            return misplaced("only ceremony_finished or ceremony_aborted follows cleanup_done");
        }
        if matches!(self.kind.as_str(), "rollback" | "reimport")
            && !matches!(kind, R::HsmOpened | R::SourceVerified | R::CeremonyAborted)
            && self.source.is_none()
        {
            return misplaced(
                "in a rollback or a reimport, source_verified follows hsm_opened, before any other record",
            );
        }
        let per_target = |need: R, why: &'static str| -> Result<(), Problem> {
            match target {
                Some(i) if !self.has(need, i) => Err(Problem::BadTarget {
                    index: i,
                    why: format!("{kind} is not preceded by this target's {need}: {why}"),
                }),
                _ => Ok(()),
            }
        };
        match kind {
            R::CapabilityChecked if self.has_any(R::CapabilityChecked) => {
                return misplaced("the known-answer test is recorded once per run");
            }
            R::CleanupDone if self.has_any(R::CleanupDone) => {
                return misplaced("cleanup_done is written once");
            }
            R::CeremonyFinished if self.last != Some(R::CleanupDone) => {
                return misplaced(
                    "ceremony_finished follows cleanup_done (the session objects destroyed)",
                );
            }
            R::ImportParameters => per_target(
                R::KmsPreflight,
                "GetParametersForImport is asked for a key DescribeKey checked",
            )?,
            R::KeyGenerated => {
                if self.kind == "reimport" {
                    return misplaced("a reimport generates nothing: it wraps the kept key");
                }
                per_target(
                    R::ImportParameters,
                    "the key is generated after its import parameters",
                )?;
            }
            R::KeyWrapped | R::ImportConfirmed if !self.has_any(R::CapabilityChecked) => {
                return misplaced(
                    "a wrap, and the import approval, follow capability_checked (the known-answer test)",
                );
            }
            _ => {}
        }
        if kind == R::KeyWrapped {
            per_target(
                R::ImportParameters,
                "a key is wrapped under KMS's public key",
            )?;
            if self.kind == "reimport" {
                per_target(R::KeptKeyChecked, "a reimport wraps the checked kept key")?;
            } else {
                per_target(R::KeyGenerated, "only a generated key is wrapped")?;
            }
        }
        Ok(())
    }

    /// A finished ceremony: every record its kind requires for every target is there, and
    /// no target is left behind (docs/transcript.md, "The step sequence").
    fn complete(&self, outcomes: &[p::TargetOutcome]) -> Result<(), Problem> {
        use RecordType as R;
        if matches!(self.kind.as_str(), "rollback" | "reimport") && self.source.is_none() {
            return Err(Problem::Misplaced {
                kind: R::CeremonyFinished.to_string(),
                why: "a finished rollback or reimport has source_verified",
            });
        }
        let allowed: &[&str] = match (self.kind.as_str(), self.strategy.as_str()) {
            ("import", _) => &["imported", "done", "imported_unrecorded"],
            ("reimport", _) => &["imported"],
            ("rotate", "alias-swap") => &["swapped"],
            ("rotate", _) => &["rotated"],
            _ => &["rolled_back", "done"],
        };
        for o in outcomes {
            let i = o.index;
            let bad = |why: String| Problem::BadTarget { index: i, why };
            if !allowed.contains(&o.status.as_str()) {
                return Err(bad(format!(
                    "a finished {} ceremony reports it {}; it leaves every target {}",
                    if self.strategy.is_empty() {
                        self.kind.clone()
                    } else {
                        format!("{} ({})", self.kind, self.strategy)
                    },
                    o.status,
                    allowed.join(" or ")
                )));
            }
            let mut need: Vec<R> = Vec::new();
            match o.status.as_str() {
                "done" | "imported_unrecorded" if self.kind == "rollback" => {
                    need.push(R::AliasPreflight)
                }
                "done" | "imported_unrecorded" => need.push(R::TargetReconciled),
                "rolled_back" => {
                    need.extend([R::AliasPreflight, R::AliasUpdated, R::AliasVerified])
                }
                _ => {
                    // imported, rotated, swapped: the import chain, then the kind's own steps.
                    need.extend([R::KmsPreflight, R::ImportParameters]);
                    need.push(if self.kind == "reimport" {
                        R::KeptKeyChecked
                    } else {
                        R::KeyGenerated
                    });
                    need.push(R::KeyWrapped);
                    if !self.has(R::ImportReconciled, i) {
                        need.push(R::KeyImported);
                    }
                    need.push(R::ImportVerified);
                    if self
                        .targets
                        .get(i as usize)
                        .is_some_and(|t| t.keep_key_label.is_some())
                    {
                        need.push(R::KeyKept);
                    }
                    if o.status == "rotated" {
                        need.extend([R::RotationPreflight, R::KeyRotated, R::RotationVerified]);
                    }
                    if o.status == "swapped" {
                        need.extend([
                            R::KeyCreated,
                            R::AliasPreflight,
                            R::AliasUpdated,
                            R::AliasVerified,
                        ]);
                    }
                }
            }
            if let Some(missing) = need.iter().find(|k| !self.has(**k, i)) {
                return Err(bad(format!(
                    "reported {} in ceremony_finished, but its {missing} record is missing",
                    o.status
                )));
            }
            if self.problems.contains(&i) {
                return Err(bad(
                    "reported finished, but a verification record of it lists problems".into(),
                ));
            }
        }
        Ok(())
    }

    /// Every value the final record repeats is the one the step records and the approved
    /// statements give: key ARN, KCV, KeyMaterialId.
    fn cross_check(&self, outcomes: &[p::TargetOutcome]) -> Result<(), Problem> {
        for o in outcomes {
            let i = o.index;
            let bad = |why: String| Problem::BadTarget { index: i, why };
            if let (Some(said), Some(known)) = (&o.key_arn, self.arns.get(&i))
                && said != known
            {
                return Err(bad(format!(
                    "the final record says key ARN {said}, but the step records name {known}"
                )));
            }
            let approved = self
                .confirmed
                .as_ref()
                .and_then(|s| s.targets.iter().find(|t| t.target_index == i));
            let step_kcv = self
                .generated
                .get(&i)
                .map(|g| g.kcv.clone())
                .or_else(|| self.kept_checked.get(&i).map(|k| k.kcv_now.clone()));
            let made = matches!(o.status.as_str(), "imported" | "rotated" | "swapped");
            if made && o.kcv.is_none() {
                return Err(bad(format!("reported {} without its KCV", o.status)));
            }
            if let Some(kcv) = &o.kcv {
                for (what, want) in [
                    (
                        "the approved import statement",
                        approved.map(|t| t.kcv.clone()),
                    ),
                    ("key_generated (or kept_key_checked)", step_kcv.clone()),
                ] {
                    if let Some(want) = want
                        && *kcv != want
                    {
                        return Err(bad(format!(
                            "the final record says KCV {kcv}, but {what} says {want}"
                        )));
                    }
                }
            }
            if let (Some(said), Some(Some(imported))) = (
                &o.key_material_id,
                self.key_imported.get(&i).map(|k| &k.key_material_id),
            ) && said != imported
            {
                return Err(bad(format!(
                    "the final record says KeyMaterialId {said}, but key_imported says {imported}"
                )));
            }
        }
        Ok(())
    }

    fn check_record(
        &mut self,
        kind: RecordType,
        data: &Value,
        audit_fp: &str,
    ) -> Result<(), Problem> {
        use RecordType as R;
        // Nothing but the plan approval itself may follow record 1 before the plan quorum;
        // from version 3 on, the read-only checks (known-answer test, DescribeKey) come first
        // so that nobody approves a plan the token or a key cannot carry out.
        let before_plan = matches!(
            kind,
            R::CeremonyStarted
                | R::HsmOpened
                | R::TargetReconciled
                | R::Approval
                | R::Declined
                | R::CeremonyAborted
        ) || (self.version >= 3
            && matches!(
                kind,
                R::CapabilityChecked
                    | R::KmsIdentity
                    | R::KmsPreflight
                    | R::ApprovalFailed
                    | R::RotationPreflight
                    | R::SourceVerified
                    | R::AliasPreflight
                    | R::KeptKeyChecked
            ));
        if !before_plan {
            self.plan_quorum(kind)?;
        }
        // From version 4 on, where the ceremony ran is recorded before any key is described,
        // created or approved.
        // A kms_identity that disagrees with the file's pins is honest only as the ceremony's
        // last step: byok stops right after recording it.
        if let Some(why) = self.identity_refused.take()
            && kind != R::CeremonyAborted
        {
            return Err(Problem::Whereabouts(format!(
                "{why}, and the ceremony went on to {kind} (byok stops there)"
            )));
        }
        if self.version >= 4
            && self.identity.is_none()
            && !matches!(
                kind,
                R::CeremonyStarted
                    | R::HsmOpened
                    | R::TargetReconciled
                    | R::SourceVerified
                    | R::CapabilityChecked
                    | R::KmsIdentity
                    | R::CeremonyAborted
            )
        {
            return Err(Problem::Whereabouts(format!(
                "a version 4 transcript records kms_identity (where the ceremony ran, and as whom) before {kind}; it has none"
            )));
        }
        match kind {
            R::KmsIdentity => {
                let r: p::KmsIdentity = typed(kind, data)?;
                self.kms_identity(r)?;
            }
            R::CeremonyStarted => {
                let s: p::CeremonyStarted = typed(kind, data)?;
                // One reading of the ceremony file: `byok check`'s, without its clock.
                let c = crate::spec::validate_offline(&s.ceremony_file).map_err(|e| {
                    Problem::CeremonyFile(match e {
                        crate::spec::SpecError::Invalid { problems, .. } => problems
                            .iter()
                            .map(|p| format!("{}: {}", p.field, p.message))
                            .collect::<Vec<_>>()
                            .join("; "),
                        other => other.to_string(),
                    })
                })?;
                let listed: Vec<(&str, &str)> = s
                    .targets
                    .iter()
                    .map(|t| (t.key.as_str(), t.region.as_str()))
                    .collect();
                let filed: Vec<(&str, &str)> = c
                    .targets
                    .iter()
                    .map(|t| (t.key.as_str(), t.region.as_str()))
                    .collect();
                if s.ceremony_id != c.id
                    || (self.version >= 3 && s.kind.as_deref() != Some(c.import.kind.name()))
                    || listed != filed
                {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "ceremony_id, kind or the targets (key and region, in order) are not what the embedded ceremony file says".into(),
                    });
                }
                for (i, t) in s.targets.iter().enumerate() {
                    if t.index != i as u64 {
                        return Err(Problem::BadTarget {
                            index: t.index,
                            why: format!(
                                "listed at position {i}; targets are numbered from 0 in order"
                            ),
                        });
                    }
                }
                if s.targets.is_empty() {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "targets is empty".into(),
                    });
                }
                self.dual = DualState::from_start(data, audit_fp)?;
                let run_id_ok = match (&s.run_id, self.version) {
                    (Some(id), 4..) => {
                        id.len() == 32
                            && id
                                .bytes()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    }
                    (None, ..4) => true,
                    _ => false,
                };
                if !run_id_ok {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "run_id is 32 lowercase hex digits (128 random bits) from format version 4 on, and absent before".into(),
                    });
                }
                self.dual.run_id.clone_from(&s.run_id);
                self.dual.plan_expected = crate::quorum::to_value(&crate::quorum::PlanStatement {
                    point: crate::quorum::PLAN.into(),
                    ceremony_id: s.ceremony_id.clone(),
                    ceremony_file_sha256: s.ceremony_file_sha256.clone(),
                    audit_key_sha256: audit_fp.to_string(),
                    targets: s.targets.iter().map(|t| t.key.clone()).collect(),
                    resumes: s.resumes.as_ref().map(|r| r.last_line_sha256.clone()),
                    run_id: s.run_id.clone(),
                })
                .map_err(|e| Problem::BadPayload {
                    kind: kind.to_string(),
                    why: e.to_string(),
                })?;
                self.quorum = self.dual.quorum;
                if s.dual_control.enabled != self.quorum.is_some()
                    || s.dual_control.quorum.map(|q| q as usize) != self.quorum
                {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "dual_control does not match the ceremony file's [dual_control]"
                            .into(),
                    });
                }
                self.kind = match (self.version, s.kind.as_deref()) {
                    (2, None) => "import".into(),
                    (3.., Some(k @ ("import" | "rotate" | "rollback" | "reimport"))) => k.into(),
                    _ => {
                        return Err(Problem::BadPayload {
                            kind: kind.to_string(),
                            why: "kind is \"import\", \"rotate\", \"rollback\" or \"reimport\" in version 3, and absent in version 2".into(),
                        });
                    }
                };
                self.strategy = match (self.kind.as_str(), s.strategy.as_deref()) {
                    ("rotate", None | Some("new-material")) => "new-material".into(),
                    ("rotate", Some("alias-swap")) => "alias-swap".into(),
                    (_, None) => String::new(),
                    _ => {
                        return Err(Problem::BadPayload {
                            kind: kind.to_string(),
                            why: "strategy is \"new-material\" or \"alias-swap\" in a rotation, and absent otherwise".into(),
                        });
                    }
                };
                let swapping = self.strategy == "alias-swap";
                if let Some(t) = s
                    .targets
                    .iter()
                    .find(|t| t.previous_key.is_some() != swapping)
                {
                    return Err(Problem::BadTarget {
                        index: t.index,
                        why: "previous_key is given for every target of an alias swap, and only there".into(),
                    });
                }
                if matches!(self.kind.as_str(), "rollback" | "reimport")
                    && crate::spec::pinned_source(&s.ceremony_file).is_none()
                {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "a rollback's or a reimport's ceremony file pins its source transcript ([source] transcript and last_line_sha256)".into(),
                    });
                }
                self.operator = s.operator;
                self.ceremony_file = s.ceremony_file;
                self.ceremony_id = s.ceremony_id;
                self.targets = s.targets;
                self.resumes = s.resumes;
            }
            R::HsmOpened => {
                let r: p::HsmOpened = typed(kind, data)?;
                let present = [r.audit_key_sign_only.is_some(), r.audit_key_usage.is_some()];
                if present != [self.version >= 3; 2] {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "audit_key_sign_only and audit_key_usage are members in version 3 and only there".into(),
                    });
                }
            }
            R::TargetReconciled => {
                let r: p::TargetReconciled = typed(kind, data)?;
                self.target(r.target_index, r.key_arn.as_deref())?;
            }
            R::KeyCreated => {
                let r: p::KeyCreated = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                let t = &self.targets[r.target_index as usize];
                // An alias swap creates the new key without touching the alias.
                let creates = t.create || t.previous_key.is_some();
                if !creates || r.alias != t.key {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "key_created for alias {}, but record 0 lists {} with create = {}",
                            r.alias, t.key, t.create
                        ),
                    });
                }
                if !self.created.insert(r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "a second key_created: a target's key is created once".into(),
                    });
                }
            }
            R::KmsPreflight => {
                let r: p::KmsPreflight = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                let key = &self.targets[r.target_index as usize].key;
                if r.requested_key != *key {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "kms_preflight asked for {}, but record 0 lists {key}",
                            r.requested_key
                        ),
                    });
                }
            }
            R::CapabilityChecked => {
                typed::<p::CapabilityChecked>(kind, data)?;
            }
            R::ImportParameters => {
                let r: p::ImportParameters = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                self.parameters.insert(r.target_index, r);
            }
            R::KeyGenerated => {
                let r: p::KeyGenerated = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                self.generated.insert(r.target_index, r);
            }
            R::KeyWrapped => {
                let r: p::KeyWrapped = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                if let Some(params) = self.parameters.get(&r.target_index)
                    && (params.public_key_sha256 != r.wrapping_public_key_sha256
                        || params.wrapping_algorithm != r.wrapping_algorithm)
                {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "key_wrapped used wrapping key {} with {}, but import_parameters gave {} with {}",
                            r.wrapping_public_key_sha256,
                            r.wrapping_algorithm,
                            params.public_key_sha256,
                            params.wrapping_algorithm
                        ),
                    });
                }
                if self.confirmed.is_some() {
                    return Err(Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "a wrap after the import was approved is not covered by the approval",
                    });
                }
                self.wrapped.insert(r.target_index, r);
            }
            R::Approval => {
                let r: p::Approval = typed(kind, data)?;
                if r.point == crate::quorum::ROTATE
                    && !(self.kind == "rotate" && self.strategy == "new-material")
                {
                    return Err(Problem::BadApproval(
                        "an approval of a rotation in a ceremony that is not a new-material rotation"
                            .into(),
                    ));
                }
                if r.point == crate::quorum::SWAP && !self.moves_aliases() {
                    return Err(Problem::BadApproval(
                        "an approval of an alias move in a ceremony that moves no alias".into(),
                    ));
                }
                self.dual.approval(data)?;
            }
            R::RotationPreflight => {
                let r: p::RotationPreflight = typed(kind, data)?;
                self.rotation_only(kind)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                if self.rotation_pre.insert(r.target_index, r).is_some() {
                    return Err(Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "one rotation_preflight per target",
                    });
                }
            }
            R::RotateConfirmed => {
                let r: p::RotateConfirmed = typed(kind, data)?;
                self.rotation_only(kind)?;
                self.confirm_rotation(&r)?;
                self.digests
                    .push((crate::quorum::ROTATE.into(), r.statement_sha256.clone()));
            }
            R::KeyRotated => {
                let r: p::KeyRotated = typed(kind, data)?;
                self.rotation_only(kind)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                let approved = self
                    .rotate_confirmed
                    .as_ref()
                    .ok_or(Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "key_rotated must be preceded by rotate_confirmed",
                    })?
                    .targets
                    .iter()
                    .find(|t| t.target_index == r.target_index);
                match approved {
                    Some(t) if t.key_material_id == r.key_material_id => {}
                    _ => {
                        return Err(Problem::BadTarget {
                            index: r.target_index,
                            why: "rotated to a material the rotate statement does not name for it"
                                .into(),
                        });
                    }
                }
                if !matches!(r.outcome.as_str(), "rotated" | "reconciled") {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: format!("outcome {:?} is not rotated or reconciled", r.outcome),
                    });
                }
                if !self.rotated.insert(r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "rotated twice".into(),
                    });
                }
            }
            R::RotationVerified => {
                let r: p::RotationVerified = typed(kind, data)?;
                self.rotation_only(kind)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                if !self.rotated.contains(&r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "rotation_verified without key_rotated".into(),
                    });
                }
            }
            R::SourceVerified => {
                let r: p::SourceVerified = typed(kind, data)?;
                self.source_verified(r)?;
            }
            R::KeptKeyChecked => {
                let r: p::KeptKeyChecked = typed(kind, data)?;
                self.reimport_only(kind)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                let from = self
                    .source
                    .as_ref()
                    .ok_or(Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "kept_key_checked must be preceded by source_verified",
                    })?
                    .kept_targets
                    .iter()
                    .find(|t| t.target_index == r.source_target_index);
                let Some(from) = from else {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "kept_key_checked names source target {}, which source_verified does not list as kept",
                            r.source_target_index
                        ),
                    });
                };
                if from.key_arn != r.source_key_arn
                    || from.kept_label != r.label
                    || from.kcv != r.kcv_source
                    || from.key_material_id != r.key_material_id
                {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "kept_key_checked's source key, label, KCV or KeyMaterialId is not what source_verified lists".into(),
                    });
                }
                let relation =
                    crate::ceremony::source::same_key_or_replica(&r.source_key_arn, &r.key_arn);
                if relation != Some(r.relation.as_str()) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "key {} is not the source's key {} nor a multi-Region replica of it (relation {:?})",
                            r.key_arn, r.source_key_arn, r.relation
                        ),
                    });
                }
                if r.matches != (r.kcv_now == r.kcv_source) {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "match is not kcv_now == kcv_source".into(),
                    });
                }
                if self.kept_checked.insert(r.target_index, r).is_some() {
                    return Err(Problem::Misplaced {
                        kind: kind.to_string(),
                        why: "one kept_key_checked per target",
                    });
                }
            }
            R::AliasPreflight => {
                let r: p::AliasPreflight = typed(kind, data)?;
                self.alias_preflight(r)?;
            }
            R::SwapConfirmed => {
                let r: p::SwapConfirmed = typed(kind, data)?;
                self.confirm_swap(&r)?;
                self.digests
                    .push((crate::quorum::SWAP.into(), r.statement_sha256.clone()));
            }
            R::AliasUpdated => {
                let r: p::AliasUpdated = typed(kind, data)?;
                self.alias_updated(&r)?;
            }
            R::AliasVerified => {
                let r: p::AliasVerified = typed(kind, data)?;
                if !self.moved.contains(&r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "alias_verified without alias_updated".into(),
                    });
                }
                if r.problems.is_empty()
                    && (r.alias_key_arn != r.to_key_arn || r.round_trip != "ok")
                {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "alias_verified reports no problem, yet the alias names another key or the round trip failed".into(),
                    });
                }
            }
            R::Declined => {
                let r: p::Declined = typed(kind, data)?;
                self.declined(&r)?;
            }
            R::ApprovalFailed => {
                let r: p::ApprovalFailed = typed(kind, data)?;
                if self.quorum.is_none() {
                    return Err(Problem::BadApproval(
                        "approval_failed in a ceremony whose file turns dual control off".into(),
                    ));
                }
                if !matches!(
                    r.point.as_str(),
                    crate::quorum::PLAN
                        | crate::quorum::IMPORT
                        | crate::quorum::ROTATE
                        | crate::quorum::SWAP
                ) {
                    return Err(Problem::BadApproval(format!(
                        "unknown approval point {:?}",
                        r.point
                    )));
                }
                if !self.dual.pinned.iter().any(|(n, _)| *n == r.custodian) {
                    return Err(Problem::BadApproval(format!(
                        "{:?} is not a custodian in the ceremony file",
                        r.custodian
                    )));
                }
            }
            R::ImportConfirmed => {
                let r: p::ImportConfirmed = typed(kind, data)?;
                self.confirm(&r)?;
                self.digests
                    .push((crate::quorum::IMPORT.into(), r.statement_sha256.clone()));
                let s = self.confirmed.as_ref().map(|s| {
                    (
                        s.kind.clone(),
                        s.key_material_description.is_some(),
                        s.source_last_line_sha256.clone(),
                    )
                });
                let want = match self.kind.as_str() {
                    "rotate" => (Some("rotate".to_string()), true, None),
                    "reimport" => (
                        Some("reimport".to_string()),
                        false,
                        self.source.as_ref().map(|s| s.last_line_sha256.clone()),
                    ),
                    _ => (None, false, None),
                };
                if s != Some(want) {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: "the import statement's kind, key_material_description and source_last_line_sha256 do not match the ceremony's kind and source".into(),
                    });
                }
            }
            R::KeyImported => {
                let r: p::KeyImported = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                self.approved_import(kind, r.target_index, &r.blob_sha256, &r.import_token_sha256)?;
                if let Some(s) = &self.confirmed
                    && (s.expiration_model != r.expiration_model || s.valid_to != r.valid_to)
                {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "imported with an expiration other than the approved one".into(),
                    });
                }
                if !self.imported.insert(r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "imported twice".into(),
                    });
                }
                let described = self
                    .confirmed
                    .as_ref()
                    .and_then(|s| s.key_material_description.clone());
                if r.key_material_description != described {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "imported with a KeyMaterialDescription other than the approved one"
                            .into(),
                    });
                }
                let approved_id = self.confirmed.as_ref().and_then(|s| {
                    s.targets
                        .iter()
                        .find(|t| t.target_index == r.target_index)
                        .and_then(|t| t.key_material_id.clone())
                });
                let want_type = if approved_id.is_some() {
                    "EXISTING_KEY_MATERIAL"
                } else {
                    "NEW_KEY_MATERIAL"
                };
                if r.import_type != want_type {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "imported with ImportType {}, but the approved statement calls for {want_type}",
                            r.import_type
                        ),
                    });
                }
                if let (Some(want), Some(got)) = (&approved_id, &r.key_material_id)
                    && want != got
                {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "KMS's KeyMaterialId {got} is not the approved {want} of the source"
                        ),
                    });
                }
                if let Some(id) = &r.key_material_id {
                    self.new_materials.insert(r.target_index, vec![id.clone()]);
                }
            }
            R::ImportReconciled => {
                let r: p::ImportReconciled = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                self.approved_import(kind, r.target_index, &r.blob_sha256, &r.import_token_sha256)?;
                if self.imported.contains(&r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "imported twice".into(),
                    });
                }
                if !matches!(r.outcome.as_str(), "imported" | "not_imported" | "unknown") {
                    return Err(Problem::BadPayload {
                        kind: kind.to_string(),
                        why: format!(
                            "outcome {:?} is not imported, not_imported or unknown",
                            r.outcome
                        ),
                    });
                }
                if r.outcome != "not_imported" {
                    self.imported.insert(r.target_index);
                    // The materials KMS listed: the one a rotation makes current is among them.
                    let ids = r
                        .key_materials
                        .iter()
                        .filter_map(|m| m.split_whitespace().next().map(str::to_string))
                        .chain(r.current_key_material_id.clone())
                        .collect();
                    self.new_materials.insert(r.target_index, ids);
                }
            }
            R::KeyKept => {
                let r: p::KeyKept = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                if !self.imported.contains(&r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "key_kept before KMS held (or may have held) its material".into(),
                    });
                }
                let approved = self.confirmed.as_ref().and_then(|s| {
                    s.targets
                        .iter()
                        .find(|t| t.target_index == r.target_index)
                        .map(|t| t.kcv.clone())
                });
                if approved.as_ref().is_some_and(|kcv| *kcv != r.kcv) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: format!(
                            "key_kept says KCV {}, but the approved import statement says {}",
                            r.kcv,
                            approved.unwrap_or_default()
                        ),
                    });
                }
            }
            R::ImportVerified => {
                let r: p::ImportVerified = typed(kind, data)?;
                self.target(r.target_index, Some(&r.key_arn))?;
                if !self.imported.contains(&r.target_index) {
                    return Err(Problem::BadTarget {
                        index: r.target_index,
                        why: "import_verified without an import".into(),
                    });
                }
            }
            R::CleanupDone => {
                typed::<p::CleanupDone>(kind, data)?;
            }
            R::CeremonyFinished => {
                let r: p::CeremonyFinished = typed(kind, data)?;
                self.outcomes(&r.targets)?;
            }
            R::CeremonyAborted => {
                let r: p::CeremonyAborted = typed(kind, data)?;
                if let Some(index) = r.target_index
                    && index as usize >= self.targets.len()
                {
                    return Err(Problem::BadTarget {
                        index,
                        why: format!("record 0 lists {} targets", self.targets.len()),
                    });
                }
                self.outcomes(&r.targets)?;
            }
        }
        Ok(())
    }

    /// The record that confirms an approval point (`import_confirmed`, `rotate_confirmed`):
    /// `statement_sha256` is the statement's SHA-256 [16]; with dual control on, the quorum
    /// approved exactly this statement [15] and `approved_by` names them in order, with
    /// `dual_control` true [16]; in a rehearsal, the operator alone, with `dual_control` false.
    fn confirmed_by(
        &self,
        kind: RecordType,
        point: &'static str,
        statement: &Value,
        statement_sha256: &str,
        approved_by: &[String],
        dual_control: bool,
    ) -> Result<(), Problem> {
        let bad = |why: String| Problem::BadPayload {
            kind: kind.to_string(),
            why,
        };
        self.dual
            .same_run(&format!("the statement of {kind}"), statement)?;
        let digest = crate::quorum::statement_sha256(statement).map_err(|e| bad(e.to_string()))?;
        if digest != statement_sha256 {
            return Err(bad(
                "statement_sha256 is not the SHA-256 of the statement".into()
            ));
        }
        let Some(m) = self.quorum else {
            if approved_by != [self.operator.clone()] || dual_control {
                return Err(bad(
                    "in a rehearsal the operator named in record 0 alone approves".into(),
                ));
            }
            return Ok(());
        };
        let have = self.dual.count(point, statement);
        if have < m {
            return Err(Problem::QuorumMissing {
                step: kind.to_string(),
                point,
                need: m,
                have,
            });
        }
        let approvers: Vec<String> = self
            .dual
            .approved
            .iter()
            .filter(|(p, _, _, s)| *p == point && s == statement)
            .map(|(_, n, _, _)| n.clone())
            .collect();
        if approved_by != approvers || !dual_control {
            return Err(bad(format!(
                "approved_by {approved_by:?} is not who approved the statement ({approvers:?}), or dual_control is false"
            )));
        }
        Ok(())
    }

    fn moves_aliases(&self) -> bool {
        self.kind == "rollback" || self.strategy == "alias-swap"
    }

    /// A valid target index for an alias record, whose alias is record 0's key.
    fn alias_target(&self, kind: RecordType, index: u64, alias: &str) -> Result<(), Problem> {
        if !self.moves_aliases() {
            return Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "an alias record in a ceremony that moves no alias",
            });
        }
        match self.targets.get(index as usize) {
            Some(t) if t.key == alias => Ok(()),
            Some(t) => Err(Problem::BadTarget {
                index,
                why: format!("{kind} names alias {alias}, but record 0 lists {}", t.key),
            }),
            None => Err(Problem::BadTarget {
                index,
                why: format!("record 0 lists {} targets", self.targets.len()),
            }),
        }
    }

    /// Reimport and rollback: the source transcript, once, before anything that uses it,
    /// exactly the ceremony file's `[source]`; a rollback's is a dual-controlled alias swap
    /// (a rehearsal may roll back a rehearsal).
    fn source_verified(&mut self, r: p::SourceVerified) -> Result<(), Problem> {
        let kind = RecordType::SourceVerified;
        if !matches!(self.kind.as_str(), "rollback" | "reimport")
            || self.source.is_some()
            || !self.alias_pre.is_empty()
            || !self.kept_checked.is_empty()
        {
            return Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "one source_verified, in a rollback or a reimport, before the records that use it",
            });
        }
        let pinned = crate::spec::pinned_source(&self.ceremony_file);
        if pinned.as_ref().map(|(t, h)| (t, h.to_ascii_lowercase()))
            != Some((&r.transcript, r.last_line_sha256.clone()))
        {
            return Err(Problem::BadPayload {
                kind: kind.to_string(),
                why: "transcript and last_line_sha256 are not the ceremony file's [source]".into(),
            });
        }
        if self.kind == "rollback"
            && (r.kind != "rotate"
                || r.strategy.as_deref() != Some("alias-swap")
                || (!r.dual_control && self.quorum.is_some()))
        {
            return Err(Problem::BadPayload {
                kind: kind.to_string(),
                why: "a rollback's source is a dual-controlled alias swap (kind rotate, strategy alias-swap)".into(),
            });
        }
        self.source = Some(r);
        Ok(())
    }

    /// What an alias named before anything moved: the key the file (alias-swap) or the
    /// source (rollback) says it names.
    fn alias_preflight(&mut self, r: p::AliasPreflight) -> Result<(), Problem> {
        let kind = RecordType::AliasPreflight;
        self.alias_target(kind, r.target_index, &r.alias)?;
        let bad = |why: &str| Problem::BadTarget {
            index: r.target_index,
            why: why.into(),
        };
        let t = &self.targets[r.target_index as usize];
        if self.kind == "rollback" {
            let Some(src) = &self.source else {
                return Err(Problem::Misplaced {
                    kind: kind.to_string(),
                    why: "a rollback's alias_preflight follows source_verified",
                });
            };
            let swap = src.swaps.iter().find(|s| s.alias == r.alias);
            if swap.map(|s| &s.to_key_arn) != Some(&r.expected_key_arn)
                || swap.map(|s| &s.from_key_arn) != r.restore_key_arn.as_ref()
            {
                return Err(bad(
                    "alias_preflight's keys are not the ones the source transcript moved the alias between",
                ));
            }
        } else if t.previous_key.as_ref() != Some(&r.expected_key_arn)
            || r.restore_key_arn.is_some()
        {
            return Err(bad(
                "alias_preflight expects another key than record 0's previous_key",
            ));
        }
        if self.alias_pre.insert(r.target_index, r).is_some() {
            return Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "one alias_preflight per target",
            });
        }
        Ok(())
    }

    /// The swap statement rebuilt from the transcript, compared with the approved one: for an
    /// alias swap every imported target, from the previous key to the created one; for a
    /// rollback every checked target, back to the key the source moved it from.
    fn confirm_swap(&mut self, r: &p::SwapConfirmed) -> Result<(), Problem> {
        let kind = RecordType::SwapConfirmed;
        let bad = |why: String| Problem::BadPayload {
            kind: kind.to_string(),
            why,
        };
        let swapping = self.strategy == "alias-swap";
        if !self.moves_aliases()
            || self.swap_confirmed.is_some()
            || (swapping && self.confirmed.is_none())
        {
            return Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "one swap approval per alias-swap (after import_confirmed) or rollback",
            });
        }
        let statement: crate::quorum::SwapStatement =
            serde_json::from_value(r.statement.clone()).map_err(|e| bad(e.to_string()))?;
        if statement.point != crate::quorum::SWAP
            || statement.ceremony_id != self.ceremony_id
            || statement.kind != self.kind
        {
            return Err(bad(
                "the approved statement is not a swap statement of this ceremony".into(),
            ));
        }
        let mut expected: Vec<u64> = if swapping {
            self.imported.iter().copied().collect()
        } else {
            // A rollback run again: an alias already back is done and not moved.
            self.alias_pre
                .iter()
                .filter(|(_, p)| Some(&p.alias_key_arn) != p.restore_key_arn.as_ref())
                .map(|(i, _)| *i)
                .collect()
        };
        expected.sort_unstable();
        let listed: Vec<u64> = statement.targets.iter().map(|t| t.target_index).collect();
        if listed != expected {
            return Err(bad(format!(
                "the swap statement lists targets {listed:?}, but the targets ready to move are {expected:?}"
            )));
        }
        for t in &statement.targets {
            let pre = self.alias_pre.get(&t.target_index);
            let to = if swapping {
                self.arns.get(&t.target_index).cloned()
            } else {
                pre.and_then(|p| p.restore_key_arn.clone())
            };
            let ok = pre.is_some_and(|p| {
                p.alias == t.alias
                    && p.alias_key_arn == t.from_key_arn
                    && p.expected_key_arn == t.from_key_arn
            }) && to.as_ref() == Some(&t.to_key_arn)
                && t.from_key_arn != t.to_key_arn;
            if !ok {
                return Err(Problem::BadTarget {
                    index: t.target_index,
                    why: "the swap statement's entry is not what alias_preflight and the key records say".into(),
                });
            }
        }
        self.confirmed_by(
            kind,
            crate::quorum::SWAP,
            &r.statement,
            &r.statement_sha256,
            &r.approved_by,
            r.dual_control,
        )?;
        self.swap_confirmed = Some(statement);
        Ok(())
    }

    /// UpdateAlias of a target in the approved swap statement, exactly as approved, once.
    fn alias_updated(&mut self, r: &p::AliasUpdated) -> Result<(), Problem> {
        let kind = RecordType::AliasUpdated;
        self.alias_target(kind, r.target_index, &r.alias)?;
        let approved = self
            .swap_confirmed
            .as_ref()
            .ok_or(Problem::Misplaced {
                kind: kind.to_string(),
                why: "alias_updated must be preceded by swap_confirmed",
            })?
            .targets
            .iter()
            .find(|t| t.target_index == r.target_index);
        match approved {
            Some(t)
                if t.alias == r.alias
                    && t.from_key_arn == r.from_key_arn
                    && t.to_key_arn == r.to_key_arn => {}
            _ => {
                return Err(Problem::BadTarget {
                    index: r.target_index,
                    why: "moved an alias between keys the swap statement does not name for it"
                        .into(),
                });
            }
        }
        if !matches!(r.outcome.as_str(), "updated" | "reconciled") {
            return Err(Problem::BadPayload {
                kind: kind.to_string(),
                why: format!("outcome {:?} is not updated or reconciled", r.outcome),
            });
        }
        if !self.moved.insert(r.target_index) {
            return Err(Problem::BadTarget {
                index: r.target_index,
                why: "alias moved twice".into(),
            });
        }
        Ok(())
    }

    fn reimport_only(&self, kind: RecordType) -> Result<(), Problem> {
        if self.kind == "reimport" {
            Ok(())
        } else {
            Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "a reimport record in a ceremony that is not kind = \"reimport\"",
            })
        }
    }

    fn rotation_only(&self, kind: RecordType) -> Result<(), Problem> {
        if self.kind == "rotate" && self.strategy == "new-material" {
            Ok(())
        } else {
            Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "a rotation record in a ceremony that is not kind = \"rotate\"",
            })
        }
    }

    /// The rotate statement rebuilt from the transcript, compared with the approved one: every
    /// imported target, in ascending index, with the material current before
    /// (`rotation_preflight`) and the one its import made (`key_imported`, or one that
    /// `import_reconciled` listed).
    fn confirm_rotation(&mut self, r: &p::RotateConfirmed) -> Result<(), Problem> {
        let kind = RecordType::RotateConfirmed;
        let bad = |why: String| Problem::BadPayload {
            kind: kind.to_string(),
            why,
        };
        if self.rotate_confirmed.is_some() || self.confirmed.is_none() {
            return Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "one rotate approval per run, after import_confirmed",
            });
        }
        let statement: crate::quorum::RotateStatement =
            serde_json::from_value(r.statement.clone()).map_err(|e| bad(e.to_string()))?;
        if statement.point != crate::quorum::ROTATE || statement.ceremony_id != self.ceremony_id {
            return Err(bad(
                "the approved statement is not a rotate statement of this ceremony".into(),
            ));
        }
        let mut imported: Vec<u64> = self.imported.iter().copied().collect();
        imported.sort_unstable();
        let listed: Vec<u64> = statement.targets.iter().map(|t| t.target_index).collect();
        if listed != imported {
            return Err(bad(format!(
                "the rotate statement lists targets {listed:?}, but the imported targets are {imported:?}"
            )));
        }
        for t in &statement.targets {
            let pre = self.rotation_pre.get(&t.target_index);
            let known = self
                .new_materials
                .get(&t.target_index)
                .is_some_and(|ids| ids.contains(&t.key_material_id));
            if pre.map(|p| &p.key_arn) != Some(&t.key_arn)
                || pre.map(|p| &p.current_key_material_id) != Some(&t.previous_key_material_id)
                || !known
            {
                return Err(Problem::BadTarget {
                    index: t.target_index,
                    why: "the rotate statement's entry is not what rotation_preflight and the import records say".into(),
                });
            }
        }
        self.confirmed_by(
            kind,
            crate::quorum::ROTATE,
            &r.statement,
            &r.statement_sha256,
            &r.approved_by,
            r.dual_control,
        )?;
        self.rotate_confirmed = Some(statement);
        Ok(())
    }

    /// Version 3: a decline is signed by the custodian's own token, over the decline statement
    /// naming the declined statement's SHA-256. Version 2 declines carry no signature.
    fn declined(&self, r: &p::Declined) -> Result<(), Problem> {
        let bad = |why: String| Problem::BadApproval(why);
        if self.version < 3 {
            if r.signed_by.is_some()
                || r.decline.is_some()
                || r.public_key.is_some()
                || r.signature.is_some()
            {
                return Err(Problem::BadPayload {
                    kind: RecordType::Declined.to_string(),
                    why:
                        "signed_by, decline, public_key and signature are members in version 3 only"
                            .into(),
                });
            }
            return Ok(());
        }
        if self.quorum.is_none() {
            return Err(bad(
                "a custodian's decline in a ceremony whose file turns dual control off".into(),
            ));
        }
        let pinned = self
            .dual
            .pinned
            .iter()
            .find(|(n, _)| *n == r.custodian)
            .map(|(_, fp)| fp.clone())
            .ok_or_else(|| {
                bad(format!(
                    "{:?} is not a custodian in the ceremony file",
                    r.custodian
                ))
            })?;
        self.dual.same_run(
            &format!("the {} statement {} declined", r.point, r.custodian),
            &r.statement,
        )?;
        let signed_statement = jcs::to_vec(&r.statement).map_err(|e| bad(e.to_string()))?;
        if r.statement_sha256 != hex::encode(Sha256::digest(&signed_statement)) {
            return Err(bad(
                "declined: statement_sha256 is not the SHA-256 of the statement".into(),
            ));
        }
        let expected = crate::quorum::decline_statement(
            &r.point,
            &r.statement_sha256,
            self.dual.run_id.as_deref(),
        );
        if r.signed_by.as_deref() != Some("custodian_token")
            || r.decline.as_ref() != Some(&expected)
        {
            return Err(bad(format!(
                "declined by {}: a version 3 decline is signed by the custodian's token over {expected}",
                r.custodian
            )));
        }
        let decode = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        };
        let (Some(spki), Some(signature)) = (decode(&r.public_key), decode(&r.signature)) else {
            return Err(bad(
                "declined: public_key and signature must be base64 DER".into()
            ));
        };
        let signed = jcs::to_vec(&expected).map_err(|e| bad(e.to_string()))?;
        crate::quorum::check_approval(&r.custodian, &pinned, &spki, &signed, &signature)
            .map_err(|e| bad(format!("declined: {e}")))
    }

    /// The target exists and keeps one key ARN throughout.
    fn target(&mut self, index: u64, arn: Option<&str>) -> Result<(), Problem> {
        if index as usize >= self.targets.len() {
            return Err(Problem::BadTarget {
                index,
                why: format!("record 0 lists {} targets", self.targets.len()),
            });
        }
        if let Some(arn) = arn.filter(|a| !a.is_empty()) {
            match self.arns.get(&index) {
                Some(known) if known != arn => {
                    return Err(Problem::BadTarget {
                        index,
                        why: format!("key ARN {arn}, but earlier records name {known}"),
                    });
                }
                Some(_) => {}
                None => {
                    self.arns.insert(index, arn.to_string());
                }
            }
        }
        Ok(())
    }

    /// `kms_identity`: once, and in agreement with the ceremony file's `[kms] account` and
    /// `endpoint` (or, when the file names no endpoint, at AWS's own endpoints).
    fn kms_identity(&mut self, r: p::KmsIdentity) -> Result<(), Problem> {
        if self.identity.is_some() {
            return Err(Problem::Whereabouts(
                "a second kms_identity: a ceremony records where it ran once".into(),
            ));
        }
        let (account, _) = crate::spec::pinned_kms(&self.ceremony_file);
        if r.pinned_account != account {
            return Err(Problem::Whereabouts(format!(
                "pinned_account is {}, but the ceremony file's kms.account is {}",
                shown(r.pinned_account.as_deref()),
                shown(account.as_deref())
            )));
        }
        self.identity_refused = self.disagreement(&r);
        self.identity = Some(r);
        Ok(())
    }

    /// How `kms_identity` disagrees with the ceremony file's `[kms] account` and `endpoint`
    /// (or, when the file names no endpoint, with AWS's own endpoints), if it does.
    fn disagreement(&self, r: &p::KmsIdentity) -> Option<String> {
        use crate::kms::endpoint::{is_aws_origin, normalize};
        use crate::text::escape;
        let (account, endpoint) = crate::spec::pinned_kms(&self.ceremony_file);
        if let Some(pinned) = &account
            && r.account != *pinned
        {
            return Some(format!(
                "the ceremony ran as account {} ({}), but the ceremony file pins kms.account = \"{}\"",
                escape(&r.account),
                escape(&r.caller_arn),
                escape(pinned)
            ));
        }
        let sent = [("endpoint", &r.endpoint), ("sts_endpoint", &r.sts_endpoint)];
        match &endpoint {
            Some(named) => {
                let named = normalize(named);
                if r.endpoint_source != "ceremony_file" || !r.endpoint_overridden {
                    return Some(format!(
                        "the ceremony file names endpoint {}, but the record says endpoint_source {} (overridden {})",
                        escape(&named),
                        escape(&r.endpoint_source),
                        r.endpoint_overridden
                    ));
                }
                sent.iter().find(|(_, url)| **url != named).map(|(what, url)| {
                    format!(
                        "{what} is {}, but the ceremony file names endpoint {}",
                        escape(url),
                        escape(&named)
                    )
                })
            }
            None if r.endpoint_source != "aws"
                || r.endpoint_overridden
                || !r.endpoint_env.is_empty() =>
            {
                Some("the ceremony file names no endpoint, so endpoint_source is \"aws\", endpoint_overridden false and endpoint_env empty".into())
            }
            None => sent.iter().find(|(_, url)| !is_aws_origin(url)).map(|(what, url)| {
                format!(
                    "{what} is {}, not an AWS endpoint, and the ceremony file names no endpoint",
                    escape(url)
                )
            }),
        }
    }

    fn plan_quorum(&mut self, kind: RecordType) -> Result<(), Problem> {
        if self.plan_checked {
            return Ok(());
        }
        self.plan_checked = true;
        if let Some(m) = self.quorum {
            let expected = self.dual.plan_expected.clone();
            let have = self.dual.count(crate::quorum::PLAN, &expected);
            if have < m {
                return Err(Problem::QuorumMissing {
                    step: kind.to_string(),
                    point: crate::quorum::PLAN,
                    need: m,
                    have,
                });
            }
        }
        Ok(())
    }

    /// The import statement rebuilt from the wrap records, compared with the approved one.
    fn confirm(&mut self, r: &p::ImportConfirmed) -> Result<(), Problem> {
        let kind = RecordType::ImportConfirmed;
        let bad = |why: String| Problem::BadPayload {
            kind: kind.to_string(),
            why,
        };
        if self.confirmed.is_some() {
            return Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "one import approval per run",
            });
        }
        let statement: crate::quorum::ImportStatement =
            serde_json::from_value(r.statement.clone()).map_err(|e| bad(e.to_string()))?;
        let mut expected = Vec::new();
        for (index, w) in &self.wrapped {
            // A reimport wraps the checked copy of a kept key (kept_key_checked, whose KCV
            // matched the source's); every other kind a generated key (key_generated).
            let material = if self.kind == "reimport" {
                self.kept_checked
                    .get(index)
                    .filter(|k| k.matches)
                    .map(|k| (k.kcv_now.clone(), Some(k.key_material_id.clone())))
            } else {
                self.generated.get(index).map(|g| (g.kcv.clone(), None))
            };
            let (Some(params), Some((kcv, key_material_id))) =
                (self.parameters.get(index), material)
            else {
                return Err(Problem::BadTarget {
                    index: *index,
                    why: if self.kind == "reimport" {
                        "key_wrapped without import_parameters and a matching kept_key_checked"
                            .into()
                    } else {
                        "key_wrapped without import_parameters and key_generated".into()
                    },
                });
            };
            expected.push(crate::quorum::ImportTarget {
                target_index: *index,
                key_arn: w.key_arn.clone(),
                wrapping_algorithm: params.wrapping_algorithm.clone(),
                wrapping_key_spec: params.wrapping_key_spec.clone(),
                wrapping_public_key_sha256: params.public_key_sha256.clone(),
                blob_sha256: w.blob_sha256.clone(),
                import_token_sha256: params.import_token_sha256.clone(),
                kcv,
                key_material_id,
            });
        }
        if statement.ceremony_id != self.ceremony_id {
            return Err(bad(format!(
                "the approved statement is for ceremony {:?}, not {:?}",
                statement.ceremony_id, self.ceremony_id
            )));
        }
        if statement.targets != expected || statement.point != crate::quorum::IMPORT {
            return Err(bad(
                "the approved statement is not what the import_parameters, key_generated and key_wrapped records say"
                    .into(),
            ));
        }
        self.confirmed_by(
            kind,
            crate::quorum::IMPORT,
            &r.statement,
            &r.statement_sha256,
            &r.approved_by,
            r.dual_control,
        )?;
        self.confirmed = Some(statement);
        Ok(())
    }

    fn approved_import(
        &self,
        kind: RecordType,
        index: u64,
        blob: &str,
        token: &str,
    ) -> Result<(), Problem> {
        let Some(statement) = &self.confirmed else {
            return Err(Problem::Misplaced {
                kind: kind.to_string(),
                why: "an import must be preceded by import_confirmed",
            });
        };
        match statement.targets.iter().find(|t| t.target_index == index) {
            Some(t) if t.blob_sha256 == blob && t.import_token_sha256 == token => Ok(()),
            Some(_) => Err(Problem::BadTarget {
                index,
                why: "imported a blob or import token other than the approved ones".into(),
            }),
            None => Err(Problem::BadTarget {
                index,
                why: "imported without being in the approved import statement".into(),
            }),
        }
    }

    fn outcomes(&self, outcomes: &[p::TargetOutcome]) -> Result<(), Problem> {
        if outcomes.len() != self.targets.len() {
            return Err(Problem::BadPayload {
                kind: "the final record".into(),
                why: format!(
                    "{} entries for {} targets",
                    outcomes.len(),
                    self.targets.len()
                ),
            });
        }
        for (o, t) in outcomes.iter().zip(&self.targets) {
            if o.index != t.index || o.key != t.key {
                return Err(Problem::BadTarget {
                    index: o.index,
                    why: "the final record's target list differs from record 0's".into(),
                });
            }
            if o.status == "imported" && !self.imported.contains(&o.index) {
                return Err(Problem::BadTarget {
                    index: o.index,
                    why: "reported imported, but no import of it is recorded".into(),
                });
            }
            if matches!(o.status.as_str(), "swapped" | "rolled_back") {
                let want = if self.kind == "rollback" {
                    "rolled_back"
                } else {
                    "swapped"
                };
                if o.status != want || !self.moved.contains(&o.index) {
                    return Err(Problem::BadTarget {
                        index: o.index,
                        why: format!(
                            "reported {}, but no such alias move of it is recorded",
                            o.status
                        ),
                    });
                }
            }
            if o.status == "rotated" && !self.rotated.contains(&o.index) {
                return Err(Problem::BadTarget {
                    index: o.index,
                    why: "reported rotated, but no rotation of it is recorded".into(),
                });
            }
        }
        Ok(())
    }
}
