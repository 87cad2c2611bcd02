//! The short text summary `byok report` prints without `--html` or `--json`: the verdict,
//! the pins, and the values of the paper record. Every string from the transcript is
//! escaped with [`crate::text::escape`], so it cannot move the cursor or forge a line.

use super::Report;
use crate::text::escape;

/// The summary, one fact per line.
pub fn summary(r: &Report) -> String {
    let mut lines: Vec<String> = Vec::new();
    let path = escape(&r.transcript.path);
    match &r.verdict.invalid {
        Some(i) => lines.push(format!(
            "{path}: INVALID at line {}: {}",
            i.line,
            escape(&i.problem)
        )),
        None if r.verdict.status == "valid" => lines.push(format!("{path}: valid (pinned)")),
        None => lines.push(format!("{path}: valid but NOT PINNED")),
    }
    lines.push(format!("  verdict         {}", escape(&r.verdict.summary)));
    match (&r.pins.audit_key_sha256, r.pins.audit_key_pinned) {
        (_, true) => lines.push("  audit key pin   matches".into()),
        _ => lines.push(
            "  audit key pin   none: pass --audit-key-sha256 (or a pin file) from the paper record"
                .into(),
        ),
    }
    let Some(c) = &r.ceremony else {
        lines.push(format!(
            "  file SHA-256    {}",
            escape(&r.transcript.file_sha256)
        ));
        return lines.join("\n");
    };
    lines.push(format!("  ceremony        {}", escape(&c.ceremony_id)));
    lines.push(format!(
        "  kind            {}{}",
        escape(&c.kind),
        c.strategy
            .as_deref()
            .map(|s| format!(" ({})", escape(s)))
            .unwrap_or_default()
    ));
    if let Some(id) = &c.run_id {
        lines.push(format!("  run id          {}", escape(id)));
    }
    lines.push(format!("  operator        {}", escape(&c.operator)));
    lines.push(format!(
        "  time            {} to {} ({})",
        escape(&c.started),
        escape(&c.ended),
        super::html::duration(c.duration_ms)
    ));
    lines.push(format!("  outcome         {}", c.outcome));
    if let Some(s) = &c.stopped {
        lines.push(format!(
            "  stopped at      {}{} ({}): {}",
            escape(&s.step),
            s.target_index
                .map(|i| format!(" target {i}"))
                .unwrap_or_default(),
            escape(&s.error_class),
            escape(&s.message)
        ));
    }
    match c.dual_control.quorum {
        Some(m) => lines.push(format!(
            "  dual control    {m} of {} custodians",
            c.dual_control.custodians.len()
        )),
        None => {
            lines.push("  dual control    OFF (REHEARSAL): no custodian approved anything".into())
        }
    }
    for k in &c.dual_control.custodians {
        lines.push(format!(
            "  custodian       {} approval key SHA-256 {}",
            escape(&k.name),
            escape(&k.public_key_sha256)
        ));
    }
    for p in &c.approval_points {
        let names: Vec<String> = p
            .approvals
            .iter()
            .map(|s| escape(&s.custodian).into_owned())
            .collect();
        lines.push(format!(
            "  statement       {} SHA-256 {} approved by {}",
            escape(&p.point),
            escape(p.statement_sha256.as_deref().unwrap_or("-")),
            if names.is_empty() {
                "nobody".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    for t in &c.targets {
        lines.push(format!(
            "  target {:<8} {} {} key {} kcv {}",
            t.index,
            escape(t.status.as_deref().unwrap_or("-")),
            escape(&t.key),
            escape(t.key_arn.as_deref().unwrap_or("-")),
            escape(t.kcv.as_deref().unwrap_or("-"))
        ));
    }
    lines.push(format!(
        "  ceremony file   SHA-256 {}",
        escape(&c.ceremony_file_sha256)
    ));
    lines.push(format!(
        "  audit key       SHA-256 {}",
        escape(&c.audit_key_sha256)
    ));
    lines.push(format!(
        "  last line       SHA-256 {} (the transcript fingerprint)",
        escape(&c.last_line_sha256)
    ));
    lines.join("\n")
}
