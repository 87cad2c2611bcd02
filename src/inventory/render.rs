//! The inventory for people (a table, coloured only on a terminal) and for machines: JSON
//! (schema `byok.inventory/1`), CSV, Prometheus text format (node_exporter's textfile
//! collector) and AWS Config `Evaluation` objects. Formats: docs/inventory.md.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::judge::{Class, KeyReport, Status};
use super::ledger::TranscriptEntry;

/// The output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Prometheus,
    ConfigEvaluations,
}

/// Everything a report shows.
pub struct Inventory<'a> {
    pub generated_at: OffsetDateTime,
    /// `BYOK_NOW` was set: ages and expiries are judged at `generated_at`, not the real time.
    pub clock_shifted: bool,
    pub regions: &'a [String],
    pub policy: Option<&'a std::path::Path>,
    pub listed: usize,
    pub keys: &'a [KeyReport],
    /// None without `--transcripts`.
    pub transcripts: Option<&'a [TranscriptEntry]>,
}

impl Inventory<'_> {
    /// The worst finding: a key's status or flag, or a transcript that does not verify.
    pub fn class(&self) -> Class {
        let keys = self
            .keys
            .iter()
            .map(KeyReport::class)
            .max()
            .unwrap_or(Class::Ok);
        let transcripts = if self
            .transcripts
            .is_some_and(|t| t.iter().any(|t| !t.verified))
        {
            Class::Action
        } else {
            Class::Ok
        };
        keys.max(transcripts)
    }

    /// The keys with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.keys.iter().filter(|k| k.status == status).count()
    }
}

fn time(t: OffsetDateTime) -> String {
    crate::rfc3339::format(t)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Renders `inv` in `format`; `colour` only for the table.
pub fn render(inv: &Inventory<'_>, format: Format, colour: bool) -> String {
    match format {
        Format::Table => table(inv, colour),
        Format::Json => serde_json::to_string_pretty(&json_value(inv)).unwrap_or_default() + "\n",
        Format::Csv => csv(inv),
        Format::Prometheus => prometheus(inv),
        Format::ConfigEvaluations => {
            serde_json::to_string_pretty(&config_evaluations(inv)).unwrap_or_default() + "\n"
        }
    }
}

/// The JSON document (`--format json`).
pub fn json_value(inv: &Inventory<'_>) -> Value {
    let by_status: serde_json::Map<String, Value> = Status::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(inv.count(*s))))
        .collect();
    json!({
        "schema": "byok.inventory/1",
        "generated_at": time(inv.generated_at),
        "clock_shifted": inv.clock_shifted,
        "regions": inv.regions,
        "policy": inv.policy.map(|p| p.display().to_string()),
        "summary": {
            "listed": inv.listed,
            "external": inv.keys.iter().filter(|k| !k.only_in_transcripts()).count(),
            "by_status": by_status,
            "flagged": inv.keys.iter().filter(|k| !k.flags.is_empty()).count(),
            "transcripts_unverified": inv.transcripts.map(|t| t.iter().filter(|t| !t.verified).count()),
            "exit_code": exit_code(inv.class()),
        },
        "keys": inv.keys.iter().map(key_json).collect::<Vec<_>>(),
        "transcripts": inv.transcripts.map(|ts| ts.iter().map(|t| json!({
            "file": t.file.display().to_string(),
            "verified": t.verified,
            "ceremony_id": t.ceremony_id,
            "audit_key_sha256": t.audit_key_sha256,
            "imports": t.claims,
            "problem": t.problem,
        })).collect::<Vec<_>>()),
    })
}

fn key_json(k: &KeyReport) -> Value {
    json!({
        "region": k.region,
        "key_id": k.key_id,
        "arn": k.arn,
        "aliases": k.aliases,
        "state": k.state,
        "enabled": k.enabled,
        "multi_region": {
            "role": k.multi_region_role,
            "primary_arn": k.primary_arn,
            "replica_arns": k.replica_arns,
        },
        "creation_date": k.creation_date.map(time),
        "current_key_material_id": k.current_key_material_id,
        "expiration_model": k.expiration_model,
        "valid_to": k.valid_to.map(time),
        "tags": k.tags,
        "materials_source": k.materials_source,
        "materials_note": k.materials_note,
        "materials": k.materials.iter().map(|m| json!({
            "key_material_id": m.key_material_id,
            "state": m.state,
            "import_state": m.import_state,
            "expiration_model": m.expiration_model,
            "valid_to": m.valid_to.map(time),
            "current_since": m.current_since.map(time),
            "imported_at": m.imported_at.map(time),
            "rotation_type": m.rotation_type,
            "source": m.source,
            "transcripts": m.transcripts,
        })).collect::<Vec<_>>(),
        "rule": k.rule,
        "max_age_days": k.max_age_days,
        "warn_days": k.warn_days,
        "age_days": k.age_days.map(round),
        "age_basis": k.age_basis,
        "days_to_expiry": k.days_to_expiry.map(round),
        "on_demand_rotations": k.on_demand_rotations,
        "status": k.status.as_str(),
        "reason": k.reason,
        "flags": k.flags.iter().map(|f| json!({"flag": f.name, "reason": f.reason})).collect::<Vec<_>>(),
    })
}

/// The exit code of a class (documented in docs/inventory.md and `byok::error::exit`).
pub fn exit_code(class: Class) -> i32 {
    match class {
        Class::Ok => crate::error::exit::OK,
        Class::Attention => crate::error::exit::ATTENTION,
        Class::Action => crate::error::exit::ACTION,
    }
}

/// One CSV field, RFC 4180: quoted when it holds a comma, quote or line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `--format csv`: a header and one row per key.
pub fn csv(inv: &Inventory<'_>) -> String {
    let mut out = String::from(
        "region,key_id,arn,aliases,state,multi_region_role,current_key_material_id,materials,age_days,age_basis,days_to_expiry,expiration_model,valid_to,rule,status,flags,reason\r\n",
    );
    for k in inv.keys {
        let row = [
            k.region.clone(),
            k.key_id.clone(),
            k.arn.clone(),
            k.aliases.join(" "),
            k.state.clone(),
            k.multi_region_role.clone().unwrap_or_default(),
            k.current_key_material_id.clone().unwrap_or_default(),
            k.materials.len().to_string(),
            k.age_days.map(|a| round(a).to_string()).unwrap_or_default(),
            k.age_basis.unwrap_or_default().to_string(),
            k.days_to_expiry
                .map(|d| round(d).to_string())
                .unwrap_or_default(),
            k.expiration_model.clone().unwrap_or_default(),
            k.valid_to.map(time).unwrap_or_default(),
            k.rule.clone().unwrap_or_default(),
            k.status.as_str().to_string(),
            k.flags.iter().map(|f| f.name).collect::<Vec<_>>().join(" "),
            k.reason.clone(),
        ];
        let row: Vec<String> = row.iter().map(|s| field(s)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A Prometheus label value: backslash, double quote and line feed escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(k: &KeyReport) -> String {
    format!(
        "region=\"{}\",key_id=\"{}\",alias=\"{}\"",
        label(&k.region),
        label(&k.key_id),
        label(k.aliases.first().map_or("", String::as_str))
    )
}

/// `--format prometheus`: text exposition format for node_exporter's textfile collector.
pub fn prometheus(inv: &Inventory<'_>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<String>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for s in samples {
            out.push_str(&s);
            out.push('\n');
        }
    };
    family(
        "byok_key_material_age_days",
        "Days since the key's current material became current (see age_basis in docs/inventory.md).",
        inv.keys
            .iter()
            .filter_map(|k| {
                k.age_days
                    .map(|a| format!("byok_key_material_age_days{{{}}} {}", labels(k), round(a)))
            })
            .collect(),
    );
    family(
        "byok_key_material_expiry_days",
        "Days until the earliest expiry of any of the key's materials (negative once past).",
        inv.keys
            .iter()
            .filter_map(|k| {
                k.days_to_expiry.map(|d| {
                    format!(
                        "byok_key_material_expiry_days{{{}}} {}",
                        labels(k),
                        round(d)
                    )
                })
            })
            .collect(),
    );
    family(
        "byok_key_status",
        "1 for the key's inventory status, 0 for the others.",
        inv.keys
            .iter()
            .flat_map(|k| {
                Status::ALL.iter().map(move |s| {
                    format!(
                        "byok_key_status{{{},status=\"{}\"}} {}",
                        labels(k),
                        s.as_str(),
                        u8::from(k.status == *s)
                    )
                })
            })
            .collect(),
    );
    family(
        "byok_key_flag",
        "1 for each flag raised on a key (rotation-limit-near, replica-missing-material, replica-expiry-differs).",
        inv.keys
            .iter()
            .flat_map(|k| {
                k.flags
                    .iter()
                    .map(move |f| format!("byok_key_flag{{{},flag=\"{}\"}} 1", labels(k), f.name))
            })
            .collect(),
    );
    family(
        "byok_inventory_keys",
        "Keys per inventory status.",
        Status::ALL
            .iter()
            .map(|s| {
                format!(
                    "byok_inventory_keys{{status=\"{}\"}} {}",
                    s.as_str(),
                    inv.count(*s)
                )
            })
            .collect(),
    );
    family(
        "byok_inventory_timestamp_seconds",
        "When the inventory was judged (Unix time; BYOK_NOW when set).",
        vec![format!(
            "byok_inventory_timestamp_seconds {}",
            inv.generated_at.unix_timestamp()
        )],
    );
    out
}

/// The longest annotation AWS Config accepts.
pub const ANNOTATION_MAX: usize = 256;

/// `--format config-evaluations`: one AWS Config `Evaluation` per key KMS has, for
/// PutEvaluations. `compliant`, `rotation-due-soon` and `expiring-soon` are COMPLIANT (the
/// annotation says what is coming); every other status is NON_COMPLIANT. A key only a
/// transcript names has no Config resource and is left out.
pub fn config_evaluations(inv: &Inventory<'_>) -> Value {
    Value::Array(
        inv.keys
            .iter()
            .filter(|k| k.state != "NotFound")
            .map(|k| {
                let compliant = matches!(
                    k.status,
                    Status::Compliant | Status::RotationDueSoon | Status::ExpiringSoon
                );
                let mut text = format!("{}: {}", k.status.as_str(), k.reason);
                for f in &k.flags {
                    text.push_str(&format!("; {}: {}", f.name, f.reason));
                }
                json!({
                    "ComplianceResourceType": "AWS::KMS::Key",
                    "ComplianceResourceId": k.key_id,
                    "ComplianceType": if compliant { "COMPLIANT" } else { "NON_COMPLIANT" },
                    "Annotation": truncate(&text, ANNOTATION_MAX),
                    "OrderingTimestamp": time(inv.generated_at),
                })
            })
            .collect(),
    )
}

/// At most `max` characters, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn paint(text: &str, class: Class, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let style = match class {
        Class::Ok => console::Style::new().green(),
        Class::Attention => console::Style::new().yellow(),
        Class::Action => console::Style::new().red().bold(),
    };
    style.apply_to(text).force_styling(true).to_string()
}

/// The table for people.
pub fn table(inv: &Inventory<'_>, colour: bool) -> String {
    let esc = crate::text::escape;
    let rows: Vec<[String; 7]> = inv
        .keys
        .iter()
        .map(|k| {
            let mut status = k.status.as_str().to_string();
            for f in &k.flags {
                status.push('+');
                status.push_str(f.name);
            }
            [
                status,
                esc(&k.region).into_owned(),
                esc(k.display_name()).into_owned(),
                esc(&k.state).into_owned(),
                k.age_days
                    .map_or("-".into(), |a| format!("{:.0}d", a.floor())),
                k.days_to_expiry
                    .map_or("never".into(), |d| format!("{:.0}d", d.floor())),
                k.rule
                    .as_deref()
                    .map_or("-".into(), |r| esc(r).into_owned()),
            ]
        })
        .collect();
    let head = ["STATUS", "REGION", "KEY", "STATE", "AGE", "EXPIRES", "RULE"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 7]| {
        cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&head.map(str::to_string)) + "\n";
    for (k, r) in inv.keys.iter().zip(&rows) {
        let text = line(r);
        let (status, rest) = text.split_at(width[0].min(text.len()));
        out.push_str(&paint(status, k.class(), colour));
        out.push_str(rest);
        out.push('\n');
        out.push_str(&format!("    {}\n", esc(&k.reason)));
        for f in &k.flags {
            out.push_str(&format!("    {}: {}\n", f.name, esc(&f.reason)));
        }
    }
    if let Some(ts) = inv.transcripts {
        out.push_str(&format!("\ntranscripts: {}\n", ts.len()));
        for t in ts {
            let verdict = if t.verified {
                format!("verified, {} imports", t.claims)
            } else {
                paint(
                    &format!("NOT BELIEVED: {}", t.problem.as_deref().unwrap_or("")),
                    Class::Action,
                    colour,
                )
            };
            out.push_str(&format!(
                "  {}: {}\n",
                esc(&t.file.display().to_string()),
                verdict
            ));
        }
    }
    let counts: Vec<String> = Status::ALL
        .iter()
        .filter(|s| inv.count(**s) > 0)
        .map(|s| format!("{} {}", inv.count(*s), s.as_str()))
        .collect();
    out.push_str(&format!(
        "\n{} EXTERNAL keys of {} listed in {}{}: {}\n",
        inv.keys.iter().filter(|k| !k.only_in_transcripts()).count(),
        inv.listed,
        inv.regions.join(", "),
        if inv.clock_shifted {
            format!(" (judged at BYOK_NOW={})", time(inv.generated_at))
        } else {
            String::new()
        },
        if counts.is_empty() {
            "nothing to judge".to_string()
        } else {
            counts.join(", ")
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_cut_to_256_characters() {
        let long = "é".repeat(300);
        let t = truncate(&long, ANNOTATION_MAX);
        assert_eq!(t.chars().count(), 256);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short", ANNOTATION_MAX), "short");
    }

    #[test]
    fn csv_fields_and_prometheus_labels_are_escaped() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(field("plain"), "plain");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
