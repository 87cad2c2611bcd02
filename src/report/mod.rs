//! `byok report`: what a transcript says, for people (one HTML page) and machines (JSON).
//!
//! The verdict comes from [`crate::transcript::verify::verify_bytes`] and nothing else: this
//! module never decides validity. Only a transcript that verified is read for its content
//! (timeline, approvals, statements, targets); an invalid one yields the verdict, the first
//! bad line and why, and no content, because nothing in it can be trusted. Records are read
//! leniently, by member name, so that members added by later format versions (record 0's
//! `run_id`, the endpoint of `kms_preflight`) show up without a change here.
//!
//! Everything here is public material from the transcript: it never reads a token, a PIN or
//! key material. The renderers escape every string taken from the transcript (see
//! [`html`] and [`text`]).

pub mod html;
pub mod text;

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::exit;
use crate::transcript::verify::{self, Invalid, VerifyOptions};

/// The `schema` member of `byok report --json` (docs/report.md).
pub const SCHEMA: &str = "byok-report/1";

/// How much of an invalid line the report quotes.
const QUOTE_LIMIT: usize = 600;

/// Why `byok report` could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read transcript {path}: check the path and that you may read it")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} already exists: byok never overwrites a report; give another --html path or move the old one away"
    )]
    OutputExists { path: PathBuf },
    #[error(
        "cannot write the HTML report {path}: check that its directory exists, that you may write there and that the disk has space"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The whole report: what `--json` prints and what the HTML page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The byok that made the report.
    pub byok_version: &'static str,
    pub transcript: TranscriptFacts,
    pub verdict: Verdict,
    pub pins: Pins,
    /// What the transcript records; `None` when it is invalid.
    pub ceremony: Option<Ceremony>,
}

/// The file itself (true whatever its content).
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptFacts {
    /// The path as given on the command line.
    pub path: String,
    pub bytes: usize,
    /// SHA-256 of the whole file.
    pub file_sha256: String,
    /// Complete lines (records, when valid).
    pub lines: usize,
}

/// What the verifier concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `valid`, `valid_unpinned` or `invalid`.
    pub status: &'static str,
    /// The exit code of `byok report` and `byok verify` for this verdict.
    pub exit_code: i32,
    /// The verdict in one sentence.
    pub summary: String,
    /// For an invalid transcript: the first bad line and why.
    pub invalid: Option<InvalidFacts>,
}

/// The first bad line of an invalid transcript.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidFacts {
    /// 1-based line number; 0 when the problem is the file as a whole.
    pub line: usize,
    /// Why, as `byok verify` says it.
    pub problem: String,
    /// The start of that line as found (untrusted), at most 600 characters.
    pub line_text: Option<String>,
}

/// What the auditor pinned from outside the transcript.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pins {
    /// Whether the audit key was checked against a fingerprint given from outside.
    pub audit_key_pinned: bool,
    /// `--audit-key-sha256` as given.
    pub audit_key_sha256: Option<String>,
    /// `--pin-file` as given.
    pub pin_file: Option<String>,
    /// `--ceremony-file` as given.
    pub ceremony_file: Option<String>,
    /// `--custodian NAME=HEX` as given.
    pub custodians: Vec<String>,
    /// `--require-quorum` as given.
    pub require_quorum: Option<usize>,
}

impl Pins {
    /// The pins as the command line gave them (whether the audit key pin took effect is set
    /// from the verifier's report).
    pub fn from_args(args: &crate::cli::PinArgs) -> Pins {
        Pins {
            audit_key_pinned: false,
            audit_key_sha256: args.audit_key_sha256.clone(),
            pin_file: args.pin_file.as_ref().map(|p| p.display().to_string()),
            ceremony_file: args.ceremony_file.as_ref().map(|p| p.display().to_string()),
            custodians: args.custodian.clone(),
            require_quorum: args.require_quorum,
        }
    }
}

/// The content of a valid transcript.
#[derive(Debug, Clone, Serialize)]
pub struct Ceremony {
    pub ceremony_id: String,
    pub description: String,
    pub operator: String,
    /// Record 0's `kind` (`import` when absent, as in format version 2).
    pub kind: String,
    pub strategy: Option<String>,
    /// Record 0's `run_id`, when the format has one.
    pub run_id: Option<String>,
    pub tool_version: String,
    pub format_version: u64,
    pub records: usize,
    /// `finished` or `aborted`.
    pub outcome: &'static str,
    pub started: String,
    pub ended: String,
    pub duration_ms: Option<i64>,
    pub ceremony_file_name: Option<String>,
    pub ceremony_file_sha256: String,
    pub audit_key_label: String,
    pub audit_key_sha256: String,
    /// SHA-256 of the last line: the transcript's fingerprint on the paper record.
    pub last_line_sha256: String,
    pub dual_control: DualControl,
    /// `hsm_opened`'s data as recorded (module and token identity).
    pub hsm: Option<Map<String, Value>>,
    /// Where KMS ran, as the first `kms_preflight` records it: its members whose name
    /// contains `endpoint`, `account` or `caller` (format version 4), else `None`.
    pub kms_where: Option<Map<String, Value>>,
    pub resumes: Option<Value>,
    pub source: Option<Value>,
    /// For a ceremony that stopped: where and why.
    pub stopped: Option<Stopped>,
    pub steps: Vec<StepSpan>,
    pub timeline: Vec<Event>,
    pub approval_points: Vec<ApprovalPoint>,
    pub targets: Vec<Target>,
}

/// Dual control as the verified ceremony file sets it.
#[derive(Debug, Clone, Serialize)]
pub struct DualControl {
    /// The quorum the verifier enforced; `None` in a rehearsal.
    pub quorum: Option<usize>,
    /// The custodians pinned in the ceremony file, with their approval-key fingerprints.
    pub custodians: Vec<Custodian>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Custodian {
    pub name: String,
    pub public_key_sha256: String,
}

/// Where and why a ceremony stopped (`ceremony_aborted`).
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub step: String,
    pub target_index: Option<u64>,
    pub error_class: String,
    pub message: String,
    pub time: String,
    pub kept_keys: Vec<String>,
    pub cleanup_errors: Vec<String>,
}

/// Consecutive records of one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepSpan {
    /// The step's name, e.g. `approve_plan`.
    pub step: &'static str,
    /// In words.
    pub title: &'static str,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: usize,
    pub started: String,
    pub ended: String,
    /// From the end of the previous span (or the first record) to this span's last record.
    pub duration_ms: Option<i64>,
}

/// One record.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub time: String,
    /// Milliseconds since record 0.
    pub elapsed_ms: Option<i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub target_index: Option<u64>,
    /// What it says, in a few words.
    pub summary: String,
}

/// One statement put to the custodians (or, in a rehearsal, to the operator), and what
/// became of it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalPoint {
    /// `plan`, `import`, `rotate` or `swap`.
    pub point: String,
    /// SHA-256 of the JCS statement: the digest shown to the custodians.
    pub statement_sha256: Option<String>,
    /// The statement itself, exactly as signed.
    pub statement: Option<Value>,
    pub approvals: Vec<Signer>,
    pub declined: Vec<Signer>,
    pub failed: Vec<Failed>,
    /// The `import_confirmed`, `rotate_confirmed` or `swap_confirmed` that carried it out.
    pub confirmed: Option<Confirmed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signer {
    pub custodian: String,
    pub seq: u64,
    pub time: String,
    pub public_key_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub custodian: String,
    pub seq: u64,
    pub time: String,
    pub action: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confirmed {
    #[serde(rename = "type")]
    pub kind: String,
    pub seq: u64,
    pub time: String,
    pub approved_by: Vec<String>,
    pub dual_control: bool,
}

/// One target and what its records say.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Target {
    pub index: u64,
    /// As the ceremony file names it (alias, key id or ARN).
    pub key: String,
    pub region: Option<String>,
    pub key_arn: Option<String>,
    /// From the final record: `imported`, `not_started`, …
    pub status: Option<String>,
    pub kcv: Option<String>,
    pub key_material_id: Option<String>,
    pub created: bool,
    pub key_state_before: Option<String>,
    pub wrapping_algorithm: Option<String>,
    pub wrapping_key_spec: Option<String>,
    pub wrapping_public_key_sha256: Option<String>,
    pub import_token_sha256: Option<String>,
    pub parameters_valid_to: Option<String>,
    pub blob_sha256: Option<String>,
    pub blob_length: Option<u64>,
    pub wrap_location: Option<String>,
    pub wrap_mechanism: Option<String>,
    pub import_type: Option<String>,
    pub expiration_model: Option<String>,
    pub valid_to: Option<String>,
    pub kept_label: Option<String>,
    pub key_state_after: Option<String>,
    pub round_trip: Option<String>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// `kms_preflight`'s data as recorded.
    pub kms_preflight: Option<Map<String, Value>>,
    /// Every record of the target, in order, as `(seq, type)`.
    pub records: Vec<(u64, String)>,
}

/// Verifies `bytes` under `opts` and builds the report. `path` is only shown.
pub fn build(bytes: &[u8], path: &str, opts: &VerifyOptions, mut pins: Pins) -> Report {
    let transcript = TranscriptFacts {
        path: path.to_string(),
        bytes: bytes.len(),
        file_sha256: hex::encode(Sha256::digest(bytes)),
        lines: bytes.iter().filter(|&&b| b == b'\n').count(),
    };
    let (verdict, ceremony) = match verify::verify_bytes(bytes, opts) {
        Err(invalid) => (invalid_verdict(bytes, &invalid), None),
        Ok(report) => {
            pins.audit_key_pinned = report.audit_key_pinned_externally;
            let verdict = if report.audit_key_pinned_externally {
                Verdict {
                    status: "valid",
                    exit_code: exit::OK,
                    summary: "VALID: the transcript verifies, and its audit key matches the fingerprint you pinned.".into(),
                    invalid: None,
                }
            } else {
                Verdict {
                    status: "valid_unpinned",
                    exit_code: exit::NOT_PINNED,
                    summary: "VALID BUT NOT PINNED: the transcript is consistent in itself, but its audit key was not pinned from outside it, so it proves nothing about who wrote it. Give --audit-key-sha256 (or a pin file) from the paper record.".into(),
                    invalid: None,
                }
            };
            (verdict, Some(ceremony(bytes, &report)))
        }
    };
    Report {
        schema: SCHEMA,
        byok_version: env!("CARGO_PKG_VERSION"),
        transcript,
        verdict,
        pins,
        ceremony,
    }
}

/// The report as pretty-printed JSON (docs/report.md).
pub fn to_json(report: &Report) -> String {
    // Serializing these types cannot fail: every map key is a string and no type has a
    // fallible Serialize; the fallback keeps the output JSON anyway.
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"schema\":\"{SCHEMA}\",\"error\":\"{e}\"}}"))
}

fn invalid_verdict(bytes: &[u8], invalid: &Invalid) -> Verdict {
    let line_text = (invalid.line > 0)
        .then(|| {
            bytes.split(|&b| b == b'\n').nth(invalid.line - 1).map(|l| {
                String::from_utf8_lossy(l)
                    .chars()
                    .take(QUOTE_LIMIT)
                    .collect()
            })
        })
        .flatten();
    Verdict {
        status: "invalid",
        exit_code: exit::INVALID_TRANSCRIPT,
        summary: format!(
            "INVALID at line {}: {}. Nothing in this transcript can be trusted.",
            invalid.line, invalid.problem
        ),
        invalid: Some(InvalidFacts {
            line: invalid.line,
            problem: invalid.problem.to_string(),
            line_text,
        }),
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn strings_of(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn millis_between(a: &str, b: &str) -> Option<i64> {
    let (a, b) = (crate::rfc3339::parse(a)?, crate::rfc3339::parse(b)?);
    i64::try_from((b - a).whole_milliseconds()).ok()
}

/// One verified record, parsed leniently.
struct Rec {
    seq: u64,
    time: String,
    kind: String,
    data: Value,
}

fn records(bytes: &[u8]) -> Vec<Rec> {
    // The verifier accepted these bytes: UTF-8, one JSON object per line. Anything that
    // does not parse here is skipped rather than trusted.
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| Rec {
            seq: v.get("seq").and_then(Value::as_u64).unwrap_or(0),
            time: str_of(&v, "time").unwrap_or_default(),
            kind: str_of(&v, "type").unwrap_or_default(),
            data: v.get("data").cloned().unwrap_or(Value::Null),
        })
        .collect()
}

fn ceremony(bytes: &[u8], report: &verify::Report) -> Ceremony {
    let recs = records(bytes);
    let first = recs.first();
    let d0 = first.map(|r| &r.data).unwrap_or(&Value::Null);
    let started = first.map(|r| r.time.clone()).unwrap_or_default();
    let ended = recs.last().map(|r| r.time.clone()).unwrap_or_default();
    let custodians = d0
        .pointer("/dual_control/custodians")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| Custodian {
                    name: str_of(c, "name").unwrap_or_default(),
                    public_key_sha256: str_of(c, "public_key_sha256").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let stopped = recs
        .last()
        .filter(|r| r.kind == "ceremony_aborted")
        .map(|r| Stopped {
            step: str_of(&r.data, "step").unwrap_or_default(),
            target_index: r.data.get("target_index").and_then(Value::as_u64),
            error_class: str_of(&r.data, "error_class").unwrap_or_default(),
            message: str_of(&r.data, "message").unwrap_or_default(),
            time: r.time.clone(),
            kept_keys: strings_of(&r.data, "kept_keys"),
            cleanup_errors: strings_of(&r.data, "cleanup_errors"),
        });
    let hsm = recs
        .iter()
        .find(|r| r.kind == "hsm_opened")
        .and_then(|r| r.data.as_object().cloned());
    Ceremony {
        ceremony_id: report.ceremony_id.clone(),
        description: str_of(d0, "description").unwrap_or_default(),
        operator: str_of(d0, "operator").unwrap_or_default(),
        kind: str_of(d0, "kind").unwrap_or_else(|| "import".into()),
        strategy: str_of(d0, "strategy"),
        run_id: str_of(d0, "run_id"),
        tool_version: str_of(d0, "tool_version").unwrap_or_default(),
        format_version: report.version,
        records: report.records,
        outcome: if stopped.is_some() {
            "aborted"
        } else {
            "finished"
        },
        duration_ms: millis_between(&started, &ended),
        started,
        ended,
        ceremony_file_name: str_of(d0, "ceremony_file_name"),
        ceremony_file_sha256: report.ceremony_file_sha256.clone(),
        audit_key_label: str_of(d0, "audit_key_label").unwrap_or_default(),
        audit_key_sha256: report.audit_key_sha256.clone(),
        last_line_sha256: report.last_line_sha256.clone(),
        dual_control: DualControl {
            quorum: report.quorum,
            custodians: if report.quorum.is_some() {
                custodians
            } else {
                Vec::new()
            },
        },
        hsm,
        kms_where: kms_where(&recs),
        resumes: d0.get("resumes").filter(|v| !v.is_null()).cloned(),
        source: recs
            .iter()
            .find(|r| r.kind == "source_verified")
            .map(|r| r.data.clone()),
        stopped,
        steps: steps(&recs),
        timeline: timeline(&recs),
        approval_points: approval_points(&recs),
        targets: targets(&recs, d0, report),
    }
}

/// Where KMS ran, from the first `kms_preflight`: the members that name the endpoint, the
/// account or the caller (format version 4), whatever their exact names.
fn kms_where(recs: &[Rec]) -> Option<Map<String, Value>> {
    recs.iter()
        .find(|r| r.kind == "kms_preflight")
        .and_then(|r| r.data.as_object())
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    ["endpoint", "account", "caller"]
                        .iter()
                        .any(|w| k.contains(w))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>()
        })
        .filter(|m| !m.is_empty())
}

/// The step a record belongs to, and the step's title.
fn step_of(r: &Rec, plan_approved: bool) -> (&'static str, &'static str) {
    let point = r.data.get("point").and_then(Value::as_str).unwrap_or("");
    match r.kind.as_str() {
        "ceremony_started" | "hsm_opened" => ("start", "Start and open the HSM"),
        "source_verified" => ("source_check", "Check the source transcript"),
        "target_reconciled" => ("reconcile", "Reconcile with KMS and the earlier transcript"),
        "capability_checked" => ("capability_check", "Known-answer test of the wrap"),
        "kms_preflight" | "key_created" | "rotation_preflight" | "alias_preflight"
        | "kept_key_checked"
            if !plan_approved =>
        {
            ("kms_preflight", "Check the KMS keys (read only)")
        }
        "kms_preflight" | "key_created" | "import_parameters" | "key_generated" | "key_wrapped" => {
            ("prepare", "Import parameters, generate and wrap in the HSM")
        }
        "approval" | "declined" | "approval_failed" => match point {
            "plan" => ("approve_plan", "Approve the plan"),
            "import" => ("confirm_import", "Approve the import"),
            "rotate" => ("confirm_rotate", "Approve the rotation"),
            "swap" => ("confirm_swap", "Approve the alias move"),
            _ => ("approval", "Approval"),
        },
        "import_confirmed" => ("confirm_import", "Approve the import"),
        "key_imported" | "import_reconciled" | "key_kept" | "import_verified" => {
            ("import", "Import into KMS and verify")
        }
        "rotate_confirmed" => ("confirm_rotate", "Approve the rotation"),
        "key_rotated" | "rotation_verified" => ("rotate", "Rotate and verify"),
        "swap_confirmed" => ("confirm_swap", "Approve the alias move"),
        "alias_updated" | "alias_verified" => ("swap", "Move the aliases and verify"),
        "cleanup_done" => ("cleanup", "Clean up the HSM session"),
        "ceremony_finished" => ("finish", "Finished"),
        "ceremony_aborted" => ("aborted", "STOPPED"),
        _ => ("other", "Other records"),
    }
}

fn steps(recs: &[Rec]) -> Vec<StepSpan> {
    let mut spans: Vec<StepSpan> = Vec::new();
    let mut plan_approved = false;
    let mut previous_end = recs.first().map(|r| r.time.clone()).unwrap_or_default();
    for r in recs {
        let (step, title) = step_of(r, plan_approved);
        if step == "approve_plan" {
            plan_approved = true;
        }
        match spans.last_mut() {
            Some(s) if s.step == step => {
                s.last_seq = r.seq;
                s.records += 1;
                s.ended = r.time.clone();
            }
            _ => {
                if let Some(s) = spans.last() {
                    previous_end = s.ended.clone();
                }
                spans.push(StepSpan {
                    step,
                    title,
                    first_seq: r.seq,
                    last_seq: r.seq,
                    records: 1,
                    started: r.time.clone(),
                    ended: r.time.clone(),
                    duration_ms: None,
                });
            }
        }
        if let Some(s) = spans.last_mut() {
            s.duration_ms = millis_between(&previous_end, &s.ended);
        }
    }
    spans
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

fn summary(r: &Rec) -> String {
    let d = &r.data;
    let s = |k: &str| str_of(d, k).unwrap_or_default();
    match r.kind.as_str() {
        "ceremony_started" => format!("ceremony {} by {}", s("ceremony_id"), s("operator")),
        "hsm_opened" => format!("token {} (serial {})", s("token_label"), s("token_serial")),
        "capability_checked" => format!(
            "{} via {} ({})",
            s("algorithm"),
            s("mechanism"),
            s("location")
        ),
        "kms_preflight" => format!("{}: {} {}", s("key_arn"), s("key_state"), s("origin")),
        "key_created" => format!("created {} as {}", s("key_arn"), s("alias")),
        "import_parameters" => format!(
            "{} {}, public key {}…",
            s("wrapping_algorithm"),
            s("wrapping_key_spec"),
            short(&s("public_key_sha256"))
        ),
        "key_generated" => format!("AES-256 generated, KCV {}", s("kcv")),
        "key_wrapped" => format!(
            "wrapped ({}), blob {}…",
            s("location"),
            short(&s("blob_sha256"))
        ),
        "approval" => format!(
            "{} approved the {} statement {}…",
            s("custodian"),
            s("point"),
            short(&s("statement_sha256"))
        ),
        "declined" => format!("{} DECLINED the {} statement", s("custodian"), s("point")),
        "approval_failed" => format!(
            "{} could not sign ({}): {}",
            s("custodian"),
            s("point"),
            s("error")
        ),
        "import_confirmed" | "rotate_confirmed" | "swap_confirmed" => format!(
            "statement {}… approved by {}",
            short(&s("statement_sha256")),
            strings_of(d, "approved_by").join(", ")
        ),
        "key_imported" => format!("imported, key material id {}", s("key_material_id")),
        "import_reconciled" => format!("answer lost; KMS says {}", s("outcome")),
        "key_kept" => format!("kept on the token as {}", s("label")),
        "import_verified" => format!("{}, round trip {}", s("key_state"), s("round_trip")),
        "key_rotated" => format!("rotated to {}", s("key_material_id")),
        "alias_updated" => format!(
            "{}: {} → {}",
            s("alias"),
            s("from_key_arn"),
            s("to_key_arn")
        ),
        "cleanup_done" => {
            let n = d
                .get("destroyed_handles")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            format!("{n} session objects destroyed")
        }
        "ceremony_finished" => "ceremony finished".into(),
        "ceremony_aborted" => format!(
            "STOPPED at {} ({}): {}",
            s("step"),
            s("error_class"),
            s("message")
        ),
        _ => String::new(),
    }
}

fn timeline(recs: &[Rec]) -> Vec<Event> {
    let start = recs.first().map(|r| r.time.clone()).unwrap_or_default();
    recs.iter()
        .map(|r| Event {
            seq: r.seq,
            time: r.time.clone(),
            elapsed_ms: millis_between(&start, &r.time),
            kind: r.kind.clone(),
            target_index: r.data.get("target_index").and_then(Value::as_u64),
            summary: summary(r),
        })
        .collect()
}

fn approval_points(recs: &[Rec]) -> Vec<ApprovalPoint> {
    let mut points: Vec<ApprovalPoint> = Vec::new();
    fn find_or_add<'a>(
        points: &'a mut Vec<ApprovalPoint>,
        point: &str,
        digest: Option<String>,
        statement: Option<&Value>,
    ) -> &'a mut ApprovalPoint {
        let found = points
            .iter()
            .position(|p| p.point == point && digest.is_some() && p.statement_sha256 == digest);
        let i = match found {
            Some(i) => i,
            None => {
                points.push(ApprovalPoint {
                    point: point.to_string(),
                    statement_sha256: digest,
                    statement: statement.cloned(),
                    approvals: Vec::new(),
                    declined: Vec::new(),
                    failed: Vec::new(),
                    confirmed: None,
                });
                points.len() - 1
            }
        };
        &mut points[i]
    }
    for r in recs {
        let d = &r.data;
        let point = str_of(d, "point").unwrap_or_default();
        let signer = || Signer {
            custodian: str_of(d, "custodian").unwrap_or_default(),
            seq: r.seq,
            time: r.time.clone(),
            public_key_sha256: str_of(d, "public_key_sha256").or_else(|| {
                // A version-3 decline carries the key but not its fingerprint.
                str_of(d, "public_key").and_then(|b| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .ok()
                        .map(|der| hex::encode(Sha256::digest(der)))
                })
            }),
        };
        match r.kind.as_str() {
            "approval" => {
                let p = find_or_add(
                    &mut points,
                    &point,
                    str_of(d, "statement_sha256"),
                    d.get("statement"),
                );
                p.approvals.push(signer());
            }
            "declined" => {
                let p = find_or_add(
                    &mut points,
                    &point,
                    str_of(d, "statement_sha256"),
                    d.get("statement"),
                );
                p.declined.push(signer());
            }
            "approval_failed" => {
                // No statement in the record: it belongs to the latest statement of its point.
                let failed = Failed {
                    custodian: str_of(d, "custodian").unwrap_or_default(),
                    seq: r.seq,
                    time: r.time.clone(),
                    action: str_of(d, "action").unwrap_or_default(),
                    error: str_of(d, "error").unwrap_or_default(),
                };
                match points.iter_mut().rev().find(|p| p.point == point) {
                    Some(p) => p.failed.push(failed),
                    None => find_or_add(&mut points, &point, None, None)
                        .failed
                        .push(failed),
                }
            }
            "import_confirmed" | "rotate_confirmed" | "swap_confirmed" => {
                let point = r.kind.trim_end_matches("_confirmed");
                let p = find_or_add(
                    &mut points,
                    point,
                    str_of(d, "statement_sha256"),
                    d.get("statement"),
                );
                p.confirmed = Some(Confirmed {
                    kind: r.kind.clone(),
                    seq: r.seq,
                    time: r.time.clone(),
                    approved_by: strings_of(d, "approved_by"),
                    dual_control: d
                        .get("dual_control")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                });
            }
            _ => {}
        }
    }
    points
}

fn targets(recs: &[Rec], d0: &Value, report: &verify::Report) -> Vec<Target> {
    let mut out: Vec<Target> = d0
        .get("targets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, t)| Target {
                    index: t.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
                    key: str_of(t, "key").unwrap_or_default(),
                    region: str_of(t, "region"),
                    kept_label: None,
                    ..Target::default()
                })
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        // Format version 1: one target, named by kms.key in the embedded file.
        out.push(Target::default());
    }
    let single = out.len() == 1;
    for r in recs {
        let d = &r.data;
        let index = match d.get("target_index").and_then(Value::as_u64) {
            Some(i) => i,
            None if single && !matches!(r.kind.as_str(), "ceremony_started") => 0,
            None => continue,
        };
        let Some(t) = out.iter_mut().find(|t| t.index == index) else {
            continue;
        };
        let per_target = d.get("target_index").is_some()
            || matches!(
                r.kind.as_str(),
                "kms_preflight"
                    | "import_parameters"
                    | "key_generated"
                    | "key_wrapped"
                    | "key_imported"
                    | "import_verified"
            );
        if !per_target {
            continue;
        }
        t.records.push((r.seq, r.kind.clone()));
        if let Some(arn) = str_of(d, "key_arn") {
            t.key_arn = Some(arn);
        }
        match r.kind.as_str() {
            "key_created" => t.created = true,
            "kms_preflight" => {
                t.key_state_before = str_of(d, "key_state");
                t.kms_preflight = d.as_object().cloned();
            }
            "import_parameters" => {
                t.wrapping_algorithm = str_of(d, "wrapping_algorithm");
                t.wrapping_key_spec = str_of(d, "wrapping_key_spec");
                t.wrapping_public_key_sha256 = str_of(d, "public_key_sha256");
                t.import_token_sha256 = str_of(d, "import_token_sha256");
                t.parameters_valid_to = str_of(d, "parameters_valid_to");
            }
            "key_generated" => t.kcv = str_of(d, "kcv"),
            "kept_key_checked" => t.kcv = str_of(d, "kcv_now"),
            "key_wrapped" => {
                t.blob_sha256 = str_of(d, "blob_sha256");
                t.blob_length = d.get("blob_length").and_then(Value::as_u64);
                t.wrap_location = str_of(d, "location");
                t.wrap_mechanism = str_of(d, "mechanism");
            }
            "key_imported" => {
                t.key_material_id = str_of(d, "key_material_id");
                t.import_type = str_of(d, "import_type");
                t.expiration_model = str_of(d, "expiration_model");
                t.valid_to = str_of(d, "valid_to");
            }
            "key_kept" => t.kept_label = str_of(d, "label"),
            "import_verified" => {
                t.key_state_after = str_of(d, "key_state");
                t.round_trip = str_of(d, "round_trip");
                t.problems.extend(strings_of(d, "problems"));
                t.warnings.extend(strings_of(d, "warnings"));
            }
            "rotation_verified" | "alias_verified" => {
                t.round_trip = str_of(d, "round_trip");
                t.problems.extend(strings_of(d, "problems"));
            }
            "key_rotated" => t.key_material_id = str_of(d, "key_material_id"),
            _ => {}
        }
    }
    for o in &report.targets {
        if let Some(t) = out.iter_mut().find(|t| t.index == o.index) {
            t.status = Some(o.status.clone());
            if o.key_arn.is_some() {
                t.key_arn = o.key_arn.clone();
            }
            if o.kcv.is_some() {
                t.kcv = o.kcv.clone();
            }
            if o.key_material_id.is_some() {
                t.key_material_id = o.key_material_id.clone();
            }
            if t.key.is_empty() {
                t.key = o.key.clone();
            }
        }
    }
    if report.version == 1 && single {
        // Version 1 names the key and KCV in ceremony_finished only.
        let t = &mut out[0];
        if t.key_arn.is_none() {
            t.key_arn = str_of(&report.outcome_data, "key_arn");
        }
        if t.kcv.is_none() {
            t.kcv = str_of(&report.outcome_data, "kcv");
        }
        if t.status.is_none() {
            t.status = Some(
                if report.outcome == crate::transcript::RecordType::CeremonyFinished {
                    "imported"
                } else {
                    "not_imported"
                }
                .into(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, ms: u64, kind: &str, data: Value) -> Rec {
        Rec {
            seq,
            time: format!("2026-01-01T00:00:{:02}.{:03}Z", ms / 1000, ms % 1000),
            kind: kind.into(),
            data,
        }
    }

    #[test]
    fn steps_group_consecutive_records_and_time_each_from_the_step_before() {
        use serde_json::json;
        let recs = [
            rec(0, 0, "ceremony_started", json!({})),
            rec(1, 100, "hsm_opened", json!({})),
            rec(2, 400, "capability_checked", json!({})),
            rec(3, 500, "kms_preflight", json!({"target_index": 0})),
            rec(4, 2_000, "approval", json!({"point": "plan"})),
            rec(5, 2_500, "approval", json!({"point": "plan"})),
            rec(6, 3_000, "kms_preflight", json!({"target_index": 1})),
            rec(7, 3_100, "import_parameters", json!({"target_index": 1})),
            rec(8, 9_000, "approval", json!({"point": "import"})),
            rec(
                9,
                9_100,
                "ceremony_aborted",
                json!({"step": "confirm_import"}),
            ),
        ];
        let spans = steps(&recs);
        let got: Vec<(&str, u64, u64, Option<i64>)> = spans
            .iter()
            .map(|s| (s.step, s.first_seq, s.last_seq, s.duration_ms))
            .collect();
        assert_eq!(
            got,
            [
                ("start", 0, 1, Some(100)),
                ("capability_check", 2, 2, Some(300)),
                ("kms_preflight", 3, 3, Some(100)),
                ("approve_plan", 4, 5, Some(2_000)),
                // A key checked after the plan approval belongs to the pipelined phase.
                ("prepare", 6, 7, Some(600)),
                ("confirm_import", 8, 8, Some(5_900)),
                ("aborted", 9, 9, Some(100)),
            ]
        );
        let t = timeline(&recs);
        assert_eq!(t[8].elapsed_ms, Some(9_000));
        assert_eq!(t[3].target_index, Some(0));
    }

    #[test]
    fn approvals_group_by_statement_and_confirmations_find_theirs() {
        use serde_json::json;
        let stale = json!({"point": "import", "n": 1});
        let fresh = json!({"point": "import", "n": 2});
        let a = |seq, who: &str, point: &str, st: &Value, digest: &str| {
            rec(
                seq,
                seq * 10,
                "approval",
                json!({"point": point, "custodian": who, "statement": st,
                       "statement_sha256": digest, "public_key_sha256": "k"}),
            )
        };
        let plan = json!({"point": "plan"});
        let recs = [
            a(1, "Alice", "plan", &plan, "p"),
            a(2, "Bob", "plan", &plan, "p"),
            a(3, "Alice", "import", &stale, "s"),
            a(4, "Bob", "import", &stale, "s"),
            // The parameters expired: a new statement, a failed signer, then the quorum.
            a(5, "Alice", "import", &fresh, "f"),
            rec(
                6,
                60,
                "approval_failed",
                json!({"point": "import", "custodian": "Bob", "action": "approve",
                       "error": "PIN locked"}),
            ),
            a(7, "Carol", "import", &fresh, "f"),
            rec(
                8,
                80,
                "import_confirmed",
                json!({"statement": fresh, "statement_sha256": "f",
                       "approved_by": ["Alice", "Carol"], "dual_control": true}),
            ),
        ];
        let points = approval_points(&recs);
        let shape: Vec<(&str, Option<&str>, usize, usize, bool)> = points
            .iter()
            .map(|p| {
                (
                    p.point.as_str(),
                    p.statement_sha256.as_deref(),
                    p.approvals.len(),
                    p.failed.len(),
                    p.confirmed.is_some(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("plan", Some("p"), 2, 0, false),
                ("import", Some("s"), 2, 0, false),
                ("import", Some("f"), 2, 1, true),
            ]
        );
        assert_eq!(points[2].statement.as_ref(), Some(&fresh));
        assert_eq!(points[2].failed[0].error, "PIN locked");
        assert_eq!(
            points[2].confirmed.as_ref().map(|c| c.approved_by.clone()),
            Some(vec!["Alice".to_string(), "Carol".to_string()])
        );
    }

    #[test]
    fn a_rehearsal_confirmation_is_its_own_point_without_approvals() {
        let recs = [rec(
            5,
            50,
            "import_confirmed",
            serde_json::json!({"statement": {"point": "import"}, "statement_sha256": "d",
                               "approved_by": ["Operator"], "dual_control": false}),
        )];
        let points = approval_points(&recs);
        assert_eq!(points.len(), 1);
        assert!(points[0].approvals.is_empty());
        let confirmed = points[0].confirmed.as_ref().unwrap();
        assert!(!confirmed.dual_control);
        assert_eq!(confirmed.approved_by, ["Operator"]);
    }

    #[test]
    fn where_kms_ran_shows_whatever_a_later_format_records() {
        use serde_json::json;
        let v3 = [rec(
            3,
            0,
            "kms_preflight",
            json!({"key_arn": "a", "origin": "EXTERNAL"}),
        )];
        assert_eq!(kms_where(&v3), None);
        let v4 = [rec(
            3,
            0,
            "kms_preflight",
            json!({"key_arn": "a", "endpoint_url": "http://127.0.0.1:4566",
                   "endpoint_overridden": true, "caller_account": "000000000000"}),
        )];
        let m = kms_where(&v4).unwrap();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["caller_account", "endpoint_overridden", "endpoint_url"]
        );
    }

    fn hostile_ceremony() -> Ceremony {
        let name = "<script>alert(1)</script>\u{1b}[2K\r\nAlice".to_string();
        Ceremony {
            ceremony_id: "c<1>".into(),
            description: String::new(),
            operator: "op&\"'".into(),
            kind: "import".into(),
            strategy: None,
            run_id: Some("r\u{202e}un".into()),
            tool_version: "0.4.0".into(),
            format_version: 3,
            records: 2,
            outcome: "finished",
            started: "2026-01-01T00:00:00.000Z".into(),
            ended: "2026-01-01T00:00:01.000Z".into(),
            duration_ms: Some(1000),
            ceremony_file_name: None,
            ceremony_file_sha256: "ab".repeat(32),
            audit_key_label: "byok-audit".into(),
            audit_key_sha256: "cd".repeat(32),
            last_line_sha256: "ef".repeat(32),
            dual_control: DualControl {
                quorum: Some(1),
                custodians: vec![Custodian {
                    name: name.clone(),
                    public_key_sha256: "01".repeat(32),
                }],
            },
            hsm: None,
            kms_where: None,
            resumes: None,
            source: None,
            stopped: None,
            steps: Vec::new(),
            timeline: Vec::new(),
            approval_points: vec![ApprovalPoint {
                point: "plan".into(),
                statement_sha256: Some("23".repeat(32)),
                statement: Some(serde_json::json!({"targets": ["</pre><img src=x>"]})),
                approvals: vec![Signer {
                    custodian: name,
                    seq: 1,
                    time: "2026-01-01T00:00:00.500Z".into(),
                    public_key_sha256: Some("01".repeat(32)),
                }],
                declined: Vec::new(),
                failed: Vec::new(),
                confirmed: None,
            }],
            targets: Vec::new(),
        }
    }

    #[test]
    fn an_invalid_transcript_shows_the_verdict_and_no_content() {
        let r = build(
            b"{\"not\":\"a record\"}\n",
            "t.jsonl",
            &VerifyOptions::default(),
            Pins::default(),
        );
        assert_eq!(r.verdict.status, "invalid");
        assert_eq!(r.verdict.exit_code, exit::INVALID_TRANSCRIPT);
        assert!(r.ceremony.is_none());
        let i = r.verdict.invalid.as_ref().unwrap();
        assert_eq!(i.line, 1);
        assert_eq!(i.line_text.as_deref(), Some("{\"not\":\"a record\"}"));
        let page = html::render(&r);
        assert!(page.contains("✘ INVALID"), "{page}");
        assert!(page.contains("First bad line: 1."), "{page}");
        assert!(!page.contains("<h2>Ceremony</h2>"), "{page}");
        assert!(!page.contains("Paper record"), "{page}");
        let json: Value = serde_json::from_str(&to_json(&r)).unwrap();
        assert_eq!(json["verdict"]["status"], "invalid");
        assert_eq!(json["ceremony"], Value::Null);
        assert!(text::summary(&r).starts_with("t.jsonl: INVALID at line 1: "));
    }

    #[test]
    fn hostile_strings_render_inert_and_visible() {
        let r = Report {
            schema: SCHEMA,
            byok_version: "test",
            transcript: TranscriptFacts {
                path: "<b>t</b>.jsonl".into(),
                bytes: 1,
                file_sha256: "00".repeat(32),
                lines: 2,
            },
            verdict: Verdict {
                status: "valid",
                exit_code: 0,
                summary: "VALID".into(),
                invalid: None,
            },
            pins: Pins::default(),
            ceremony: Some(hostile_ceremony()),
        };
        let page = html::render(&r);
        // The only tags are the page's own: no script, no image, no stray markup.
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>t"), "{page}");
        assert!(!page.contains('\u{1b}') && !page.contains('\r') && !page.contains('\u{202e}'));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\u{1b}[2K\\u{d}\\u{a}Alice"));
        assert!(page.contains("&lt;/pre&gt;&lt;img src=x&gt;"));
        assert!(page.contains("op&amp;&quot;&#39;"));
        assert!(page.contains("r\\u{202e}un"));
        let summary = text::summary(&r);
        assert!(!summary.contains('\u{1b}') && !summary.contains('\r'));
        assert!(summary.contains("<script>alert(1)</script>\\u{1b}[2K\\u{d}\\u{a}Alice"));
    }
}
