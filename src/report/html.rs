//! The report as one self-contained HTML page: inline CSS only, no script, no network, no
//! external font or image, laid out to print on A4.
//!
//! Every string that comes from the transcript or the command line goes through [`h`]:
//! control and bidi characters become visible escapes ([`crate::text::escape`]), then the
//! HTML metacharacters become entities, so a custodian named `<script>` renders as text.
//! An invalid transcript shows the verdict and the bad line, never the content.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use super::{ApprovalPoint, Ceremony, Report, ReportError, Target};

/// Escapes `s` for HTML text and attribute values, after making controls visible.
pub fn h(s: &str) -> String {
    let s = crate::text::escape(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// [`h`] for each line of a multi-line text (a pretty-printed statement), keeping its line
/// breaks: `serde_json` escapes every control character inside strings, so the only raw
/// newlines are its own.
fn h_lines(s: &str) -> String {
    s.split('\n').map(h).collect::<Vec<_>>().join("\n")
}

/// Writes the page to `path`, which must not exist yet.
pub fn write(report: &Report, path: &Path) -> Result<(), ReportError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                ReportError::OutputExists {
                    path: path.to_path_buf(),
                }
            } else {
                ReportError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    file.write_all(render(report).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
}

const CSS: &str = r#"
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 10.5pt; color: #1a1a1a; margin: 0 auto; max-width: 190mm; padding: 8mm 4mm; line-height: 1.35; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
h2 { font-size: 13.5pt; margin: 7mm 0 2mm; border-bottom: 1.5pt solid #444; padding-bottom: 1mm; break-after: avoid; page-break-after: avoid; }
h3 { font-size: 11.5pt; margin: 4mm 0 1.5mm; break-after: avoid; page-break-after: avoid; }
.sub { color: #555; margin: 0 0 4mm; }
.mono, code, pre { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 9pt; }
.mono { word-break: break-all; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; }
th, td { border: 0.75pt solid #bbb; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
td.wrap { overflow-wrap: anywhere; }
th { background: #eee; font-weight: bold; }
table.kv th { width: 34%; background: #f4f4f4; font-weight: normal; color: #333; }
tr { break-inside: avoid; page-break-inside: avoid; }
.verdict { border: 3pt solid; border-radius: 2mm; padding: 3mm 4mm; margin: 3mm 0 4mm; break-inside: avoid; }
.verdict .word { font-size: 20pt; font-weight: bold; letter-spacing: 0.5pt; }
.verdict p { margin: 1.5mm 0 0; }
.valid { border-color: #1b7a2f; background: #e7f6ea; }
.valid .word { color: #1b7a2f; }
.unpinned { border-color: #a86400; background: #fff4dc; }
.unpinned .word { color: #8a5200; }
.invalid { border-color: #b00020; background: #fde8eb; }
.invalid .word { color: #b00020; }
.stopped { border: 2pt solid #b00020; background: #fff1f2; padding: 2mm 3mm; border-radius: 1.5mm; break-inside: avoid; }
.warn { color: #8a5200; font-weight: bold; }
.bad { color: #b00020; font-weight: bold; }
.good { color: #1b7a2f; font-weight: bold; }
.card { border: 0.75pt solid #999; border-radius: 1.5mm; padding: 2mm 3mm; margin: 2mm 0 4mm; break-inside: avoid; page-break-inside: avoid; }
pre { background: #f6f6f6; border: 0.75pt solid #ccc; padding: 2mm; white-space: pre-wrap; word-break: break-all; margin: 1mm 0; }
code { white-space: nowrap; }
pre code { white-space: pre-wrap; }
.paper { break-before: page; page-break-before: always; }
.sign td { height: 13mm; }
.nw { white-space: nowrap; }
.box { display: inline-block; width: 3.5mm; height: 3.5mm; border: 0.75pt solid #333; vertical-align: middle; }
footer { margin-top: 6mm; color: #666; font-size: 8.5pt; }
@media print { body { padding: 0; max-width: none; } }
"#;

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let title = match &r.ceremony {
        Some(c) => format!("byok ceremony report: {}", h(&c.ceremony_id)),
        None => "byok ceremony report: INVALID transcript".to_string(),
    };
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n\
         <p class=\"sub\">Transcript <span class=\"mono\">{}</span>, {} bytes, file SHA-256 <span class=\"mono\">{}</span>. Report by byok {}.</p>\n",
        h(&r.transcript.path),
        r.transcript.bytes,
        h(&r.transcript.file_sha256),
        h(r.byok_version),
    );
    verdict(&mut o, r);
    match &r.ceremony {
        Some(c) => {
            overview(&mut o, c);
            if let Some(s) = &c.stopped {
                let _ = write!(
                    o,
                    "<h2>Where and why it stopped</h2>\n<div class=\"stopped\"><p><span class=\"bad\">STOPPED</span> at step <code>{}</code>{} at {}, error class <code>{}</code>.</p><p>{}</p>",
                    h(&s.step),
                    s.target_index
                        .map(|i| format!(" (target {i})"))
                        .unwrap_or_default(),
                    h(&s.time),
                    h(&s.error_class),
                    h(&s.message)
                );
                if !s.kept_keys.is_empty() {
                    let _ = write!(o, "<p>Kept on the token: {}</p>", join_mono(&s.kept_keys));
                }
                if !s.cleanup_errors.is_empty() {
                    let _ = write!(
                        o,
                        "<p class=\"bad\">Not cleaned up: {}</p>",
                        join_mono(&s.cleanup_errors)
                    );
                }
                o.push_str("</div>\n");
            }
            timeline(&mut o, c);
            approvals(&mut o, c);
            targets(&mut o, c);
            paper(&mut o, r, c);
        }
        None => {
            o.push_str(
                "<p><strong>The transcript did not verify, so its content is not shown.</strong> \
                 Do not rely on any copy of it. Ask for the original and its paper record, and \
                 run <code>byok verify</code> on it.</p>\n",
            );
        }
    }
    o.push_str(
        "<footer>Generated by <code>byok report</code> from the transcript alone. Format of this report: docs/report.md.</footer>\n</body>\n</html>\n",
    );
    o
}

fn join_mono(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("<span class=\"mono\">{}</span>", h(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt(s: &Option<String>) -> String {
    match s {
        Some(s) => h(s),
        None => "–".to_string(),
    }
}

fn mono(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("<span class=\"mono\">{}</span>", h(s)),
        None => "–".to_string(),
    }
}

/// `1 min 02.345 s`, `2.345 s`.
pub fn duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "–".into();
    };
    let (sign, ms) = if ms < 0 { ("-", -ms) } else { ("", ms) };
    let (m, rest) = (ms / 60_000, ms % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    if m > 0 {
        format!("{sign}{m} min {s:02}.{frac:03} s")
    } else {
        format!("{sign}{s}.{frac:03} s")
    }
}

fn verdict(o: &mut String, r: &Report) {
    let (class, word) = match r.verdict.status {
        "valid" => ("valid", "✔ VALID"),
        "valid_unpinned" => ("unpinned", "⚠ VALID, BUT NOT PINNED"),
        _ => ("invalid", "✘ INVALID"),
    };
    let _ = write!(
        o,
        "<div class=\"verdict {class}\" id=\"verdict\"><div class=\"word\">{word}</div><p>{}</p>",
        h(&r.verdict.summary)
    );
    if let Some(i) = &r.verdict.invalid {
        let _ = write!(
            o,
            "<p><strong>First bad line: {}.</strong> Why: {}</p>",
            i.line,
            h(&i.problem)
        );
        if let Some(text) = &i.line_text {
            let _ = write!(
                o,
                "<p>That line as found (untrusted, at most 600 characters):</p><pre>{}</pre>",
                h(text)
            );
        }
    }
    if let Some(c) = &r.ceremony {
        if let Some(stop) = &c.stopped {
            let _ = write!(
                o,
                "<p class=\"bad\">The transcript is sound, but the ceremony it records did not finish: it STOPPED at step <code>{}</code> (see below).</p>",
                h(&stop.step)
            );
        }
        if c.dual_control.quorum.is_none() {
            o.push_str("<p class=\"bad\">REHEARSAL: dual control was OFF; no custodian approved anything.</p>");
        }
    }
    let _ = writeln!(o, "<p>Exit code {}.</p></div>", r.verdict.exit_code);
    let p = &r.pins;
    o.push_str(
        "<h2>Pins (what the auditor gave from outside the transcript)</h2>\n<table class=\"kv\">",
    );
    let _ = write!(
        o,
        "<tr><th>Audit key</th><td>{}</td></tr>",
        match (&p.audit_key_sha256, p.audit_key_pinned) {
            (Some(fp), true) => format!(
                "<span class=\"good\">pinned and matching</span>: <span class=\"mono\">{}</span>",
                h(fp)
            ),
            (_, true) => "<span class=\"good\">pinned and matching</span>".into(),
            (Some(fp), false) if r.verdict.status == "invalid" => format!(
                "given (<span class=\"mono\">{}</span>); <span class=\"bad\">the transcript is INVALID</span>, see above",
                h(fp)
            ),
            (Some(fp), false) => format!(
                "given (<span class=\"mono\">{}</span>) but not in effect",
                h(fp)
            ),
            (None, false) => {
                "<span class=\"warn\">NOT PINNED</span>: checked only against the ceremony file inside the transcript".into()
            }
        }
    );
    for (what, value) in [
        ("Pin file", &p.pin_file),
        ("Ceremony file", &p.ceremony_file),
    ] {
        if value.is_some() {
            let _ = write!(o, "<tr><th>{what}</th><td>{}</td></tr>", mono(value));
        }
    }
    for c in &p.custodians {
        let _ = write!(
            o,
            "<tr><th>Custodian</th><td><span class=\"mono\">{}</span></td></tr>",
            h(c)
        );
    }
    if let Some(m) = p.require_quorum {
        let _ = write!(o, "<tr><th>Quorum at least</th><td>{m}</td></tr>");
    }
    o.push_str("</table>\n");
}

fn overview(o: &mut String, c: &Ceremony) {
    o.push_str("<h2>Ceremony</h2>\n<table class=\"kv\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(o, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("Ceremony id", h(&c.ceremony_id));
    if !c.description.is_empty() {
        row("Description", h(&c.description));
    }
    row(
        "Kind",
        match &c.strategy {
            Some(s) => format!("{} ({})", h(&c.kind), h(s)),
            None => h(&c.kind),
        },
    );
    row("Operator", h(&c.operator));
    if let Some(id) = &c.run_id {
        row("Run id", format!("<span class=\"mono\">{}</span>", h(id)));
    }
    row(
        "Outcome",
        if c.outcome == "finished" {
            "<span class=\"good\">finished</span>".into()
        } else {
            "<span class=\"bad\">STOPPED (aborted)</span>".into()
        },
    );
    row(
        "Time",
        format!(
            "{} to {} ({})",
            h(&c.started),
            h(&c.ended),
            duration(c.duration_ms)
        ),
    );
    row(
        "Dual control",
        match c.dual_control.quorum {
            Some(m) => format!(
                "{m} of {} custodians per approval point",
                c.dual_control.custodians.len()
            ),
            None => "<span class=\"bad\">OFF (REHEARSAL)</span>: no custodian approved anything; this ceremony proves nothing about dual control".into(),
        },
    );
    row(
        "Ceremony file",
        format!(
            "{} SHA-256 <span class=\"mono\">{}</span>",
            c.ceremony_file_name
                .as_deref()
                .map(h)
                .unwrap_or_else(|| "(unnamed)".into()),
            h(&c.ceremony_file_sha256)
        ),
    );
    row(
        "Audit key",
        format!(
            "label {} SHA-256 <span class=\"mono\">{}</span>",
            h(&c.audit_key_label),
            h(&c.audit_key_sha256)
        ),
    );
    if let Some(hsm) = &c.hsm {
        let g = |k: &str| {
            hsm.get(k)
                .and_then(Value::as_str)
                .map(h)
                .unwrap_or_default()
        };
        row(
            "HSM",
            format!(
                "token {} (serial {}, model {}) via {} {}",
                g("token_label"),
                g("token_serial"),
                g("token_model"),
                g("module_description"),
                g("module_version")
            ),
        );
    }
    if let Some(m) = &c.kms_where {
        row(
            "KMS (where it ran)",
            value_inline(&Value::Object(m.clone())),
        );
    }
    row(
        "Records",
        format!(
            "{} (format version {}, written by byok {})",
            c.records,
            c.format_version,
            h(&c.tool_version)
        ),
    );
    row(
        "Transcript fingerprint",
        format!(
            "SHA-256 of the last line <span class=\"mono\">{}</span>",
            h(&c.last_line_sha256)
        ),
    );
    if let Some(v) = &c.resumes {
        row("Resumes", value_inline(v));
    }
    if let Some(v) = &c.source {
        let keep = [
            "transcript",
            "last_line_sha256",
            "ceremony_id",
            "kind",
            "records",
        ];
        let m: Map<String, Value> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        row("Source transcript", value_inline(&Value::Object(m)));
    }
    o.push_str("</table>\n");
}

fn value_inline(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{} <span class=\"mono\">{}</span>", h(k), value_inline(v)))
            .collect::<Vec<_>>()
            .join("; "),
        Value::String(s) => h(s),
        other => h(&other.to_string()),
    }
}

/// A time of the ceremony's day without the date, which the overview gives once.
fn clock<'a>(t: &'a str, c: &Ceremony) -> &'a str {
    match (t.split_once('T'), c.started.split_once('T')) {
        (Some((day, time)), Some((start_day, _))) if day == start_day => time,
        _ => t,
    }
}

fn seqs(first: u64, last: u64) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}–{last}")
    }
}

fn timeline(o: &mut String, c: &Ceremony) {
    let _ = write!(
        o,
        "<h2>Timeline</h2>\n<p>Times are UTC on {} unless a date is shown.</p><h3>Steps</h3>\n<table><tr><th>Step</th><th>Records (#)</th><th>Started</th><th>Ended</th><th>Took</th></tr>",
        h(c.started.split_once('T').map_or("", |(day, _)| day))
    );
    for s in &c.steps {
        let class = if s.step == "aborted" {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(
            o,
            "<tr><td{class}>{} <code>{}</code></td><td>{}</td><td class=\"nw\">{}</td><td class=\"nw\">{}</td><td class=\"nw\">{}</td></tr>",
            h(s.title),
            h(s.step),
            seqs(s.first_seq, s.last_seq),
            h(clock(&s.started, c)),
            h(clock(&s.ended, c)),
            duration(s.duration_ms)
        );
    }
    o.push_str("</table>\n<h3>Every record</h3>\n<table><tr><th>#</th><th>Time</th><th>+</th><th>Record</th><th>Target</th><th>What it says</th></tr>");
    for e in &c.timeline {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"nw\">{}</td><td class=\"nw\">{}</td><td><code>{}</code></td><td>{}</td><td class=\"wrap\">{}</td></tr>",
            e.seq,
            h(clock(&e.time, c)),
            duration(e.elapsed_ms),
            h(&e.kind),
            e.target_index.map(|i| i.to_string()).unwrap_or_default(),
            h(&e.summary)
        );
    }
    o.push_str("</table>\n");
}

fn approvals(o: &mut String, c: &Ceremony) {
    o.push_str("<h2>Approvals</h2>\n");
    if c.approval_points.is_empty() {
        o.push_str("<p>No statement was put to anyone in this transcript.</p>\n");
    }
    for p in &c.approval_points {
        approval_point(o, c, p);
    }
}

fn approval_point(o: &mut String, c: &Ceremony, p: &ApprovalPoint) {
    let _ = write!(
        o,
        "<div class=\"card\"><h3>The {} statement</h3><p>Statement SHA-256 (the digest shown to the custodians): <span class=\"mono\"><strong>{}</strong></span></p>",
        h(&p.point),
        opt(&p.statement_sha256)
    );
    if p.approvals.is_empty() && p.declined.is_empty() && p.failed.is_empty() {
        o.push_str("<p>No custodian signed this statement.</p>");
    } else {
        o.push_str("<table><tr><th>Custodian</th><th>Did</th><th>When</th><th>#</th><th>Approval key SHA-256</th></tr>");
        let mut rows: Vec<(u64, String)> = Vec::new();
        let signed = [
            ("good", "approved", &p.approvals),
            ("bad", "DECLINED", &p.declined),
        ];
        for (class, did, signatures) in signed {
            for s in signatures {
                rows.push((
                    s.seq,
                    format!(
                        "<tr><td>{}</td><td class=\"{class}\">{did}</td><td class=\"nw\">{}</td><td>{}</td><td>{}</td></tr>",
                        h(&s.custodian),
                        h(clock(&s.time, c)),
                        s.seq,
                        mono(&s.public_key_sha256)
                    ),
                ));
            }
        }
        for f in &p.failed {
            rows.push((
                f.seq,
                format!(
                    "<tr><td>{}</td><td class=\"warn\">could not sign ({})</td><td class=\"nw\">{}</td><td>{}</td><td>{}</td></tr>",
                    h(&f.custodian),
                    h(&f.action),
                    h(clock(&f.time, c)),
                    f.seq,
                    h(&f.error)
                ),
            ));
        }
        rows.sort_by_key(|(seq, _)| *seq);
        for (_, row) in rows {
            o.push_str(&row);
        }
        o.push_str("</table>");
    }
    match &p.confirmed {
        Some(k) if k.dual_control => {
            let _ = write!(
                o,
                "<p>Carried out: <code>{}</code> (record {}, {}) names it, approved by {}.</p>",
                h(&k.kind),
                k.seq,
                h(&k.time),
                h(&k.approved_by.join(", "))
            );
        }
        Some(k) => {
            let _ = write!(
                o,
                "<p><span class=\"bad\">Rehearsal:</span> confirmed by the operator alone ({}), not by custodians: <code>{}</code> (record {}, {}).</p>",
                h(&k.approved_by.join(", ")),
                h(&k.kind),
                k.seq,
                h(&k.time)
            );
        }
        None if p.point == "plan" && !p.approvals.is_empty() => {
            o.push_str(
                "<p>The verifier rebuilt this plan statement from record 0 and found it equal.</p>",
            );
        }
        None if !p.approvals.is_empty() => {
            o.push_str("<p class=\"warn\">Not carried out: no confirmation record names this statement.</p>");
        }
        None => {}
    }
    if let Some(s) = &p.statement {
        let pretty = serde_json::to_string_pretty(s).unwrap_or_else(|_| s.to_string());
        let _ = write!(
            o,
            "<p>Exactly what was signed (the statement, pretty-printed; its SHA-256 is over the RFC 8785 form):</p><pre>{}</pre>",
            h_lines(&pretty)
        );
    }
    o.push_str("</div>\n");
}

fn targets(o: &mut String, c: &Ceremony) {
    o.push_str("<h2>Targets</h2>\n");
    for t in &c.targets {
        target(o, t);
    }
}

fn target(o: &mut String, t: &Target) {
    let status = t.status.as_deref().unwrap_or("unknown");
    let class = match status {
        "imported" | "done" | "rotated" | "swapped" | "rolled_back" => "good",
        "not_started" => "warn",
        _ => "bad",
    };
    let _ = write!(
        o,
        "<div class=\"card\"><h3>Target {}: {}: <span class=\"{class}\">{}</span></h3><table class=\"kv\">",
        t.index,
        h(&t.key),
        h(status)
    );
    let mut row = |k: &str, v: String| {
        let _ = write!(o, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("Key ARN", mono(&t.key_arn));
    row("KCV", mono(&t.kcv));
    row("Key material id", mono(&t.key_material_id));
    if let Some(r) = &t.region {
        row("Region", h(r));
    }
    row(
        "Key",
        format!(
            "{}; state before {}, after {}",
            if t.created {
                "created by this ceremony"
            } else {
                "existing"
            },
            opt(&t.key_state_before),
            opt(&t.key_state_after)
        ),
    );
    if t.wrapping_algorithm.is_some() {
        row(
            "Wrapping",
            format!(
                "{} {} ({} {}), parameters valid to {}",
                opt(&t.wrapping_algorithm),
                opt(&t.wrapping_key_spec),
                opt(&t.wrap_location),
                opt(&t.wrap_mechanism),
                opt(&t.parameters_valid_to)
            ),
        );
    }
    row(
        "Wrapping public key SHA-256",
        mono(&t.wrapping_public_key_sha256),
    );
    row("Import token SHA-256", mono(&t.import_token_sha256));
    row(
        "Blob SHA-256",
        format!(
            "{}{}",
            mono(&t.blob_sha256),
            t.blob_length
                .map(|n| format!(" ({n} bytes)"))
                .unwrap_or_default()
        ),
    );
    if t.import_type.is_some() {
        row(
            "Import",
            format!(
                "{}, {}, valid to {}",
                opt(&t.import_type),
                opt(&t.expiration_model),
                opt(&t.valid_to)
            ),
        );
    }
    if let Some(l) = &t.kept_label {
        row("Kept on the token as", h(l));
    }
    if t.round_trip.is_some() {
        row("Encrypt/Decrypt round trip", opt(&t.round_trip));
    }
    if !t.problems.is_empty() {
        row(
            "<span class=\"bad\">Problems</span>",
            h(&t.problems.join("; ")),
        );
    }
    if !t.warnings.is_empty() {
        row("Warnings", h(&t.warnings.join("; ")));
    }
    if let Some(pre) = &t.kms_preflight {
        let known = [
            "target_index",
            "key_arn",
            "requested_key",
            "region",
            "key_state",
        ];
        let rest: Vec<String> = pre
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| format!("{} {}", h(k), value_inline(v)))
            .collect();
        row("KMS preflight", rest.join("; "));
    }
    row(
        "Records",
        h(&t.records
            .iter()
            .map(|(seq, kind)| format!("{seq} {kind}"))
            .collect::<Vec<_>>()
            .join(", ")),
    );
    o.push_str("</table></div>\n");
}

fn paper(o: &mut String, r: &Report, c: &Ceremony) {
    let _ = write!(
        o,
        "<section class=\"paper\"><h2>Paper record: {}</h2>\n<p>Compare each value with the paper record written during the ceremony, tick the box when it matches, then sign. Verdict when printed: <strong>{}</strong>.</p>\n<table><tr><th>What</th><th>Value</th><th>Matches</th></tr>",
        h(&c.ceremony_id),
        h(match r.verdict.status {
            "valid" => "VALID and pinned",
            "valid_unpinned" => "VALID but NOT PINNED",
            _ => "INVALID",
        })
    );
    let mut row = |what: String, value: &str| {
        let _ = write!(
            o,
            "<tr><td>{what}</td><td class=\"mono\">{}</td><td><span class=\"box\"></span></td></tr>",
            h(value)
        );
    };
    row("Audit key SHA-256".into(), &c.audit_key_sha256);
    row("Ceremony file SHA-256".into(), &c.ceremony_file_sha256);
    if let Some(id) = &c.run_id {
        row("Run id".into(), id);
    }
    for k in &c.dual_control.custodians {
        row(
            format!("Custodian {} approval key SHA-256", h(&k.name)),
            &k.public_key_sha256,
        );
    }
    for p in &c.approval_points {
        if let Some(d) = &p.statement_sha256 {
            row(format!("{} statement SHA-256", h(&p.point)), d);
        }
    }
    for t in &c.targets {
        if let Some(arn) = &t.key_arn {
            row(format!("Target {} key ARN", t.index), arn);
        }
        if let Some(kcv) = &t.kcv {
            row(format!("Target {} KCV", t.index), kcv);
        }
        if let Some(id) = &t.key_material_id {
            row(format!("Target {} key material id", t.index), id);
        }
    }
    if let Some(m) = &c.kms_where {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                row(format!("KMS {}", h(k)), v);
            }
        }
    }
    row(
        "Transcript fingerprint (SHA-256 of the last line)".into(),
        &c.last_line_sha256,
    );
    row("Transcript file SHA-256".into(), &r.transcript.file_sha256);
    o.push_str("</table>\n<h3>Signatures</h3>\n<table class=\"sign\"><tr><th>Role</th><th>Name</th><th>Signature</th><th>Date</th></tr>");
    let mut people: Vec<(String, String)> = vec![("Operator".into(), c.operator.clone())];
    let mut seen: Vec<&str> = Vec::new();
    for p in &c.approval_points {
        for s in &p.approvals {
            if !seen.contains(&s.custodian.as_str()) {
                seen.push(&s.custodian);
                people.push(("Custodian".into(), s.custodian.clone()));
            }
        }
    }
    people.push(("Auditor".into(), String::new()));
    for (role, name) in people {
        let _ = write!(
            o,
            "<tr><td>{role}</td><td>{}</td><td></td><td></td></tr>",
            h(&name)
        );
    }
    o.push_str("</table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_inert_and_visible() {
        assert_eq!(
            h("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(h("Al\u{1b}[2Kice\r\n"), "Al\\u{1b}[2Kice\\u{d}\\u{a}");
        assert_eq!(h("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(
            h_lines("{\n  \"<a>\": 1\n}"),
            "{\n  &quot;&lt;a&gt;&quot;: 1\n}"
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(None), "–");
        assert_eq!(duration(Some(2345)), "2.345 s");
        assert_eq!(duration(Some(62_345)), "1 min 02.345 s");
        assert_eq!(duration(Some(-5)), "-0.005 s");
    }
}
