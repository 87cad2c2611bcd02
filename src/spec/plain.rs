//! Plain text in a ceremony file: no control character (C0 with CR, LF, TAB and ESC, DEL, C1)
//! and no bidirectional formatting character in any name, id, description, label, path, key,
//! alias, tag or other string of the file, and custodian names that stay distinct after
//! Unicode confusable-skeleton folding.
//!
//! Everything here is printed on the operator's and the custodians' terminals, signed in
//! statements and recorded in the transcript: a name holding ANSI escapes or CR/LF could erase
//! the "dual control OFF" line or forge a prompt line, and a Cyrillic "Аlice" next to "Alice"
//! would let one person look like two. Messages show the offending value escaped
//! ([`crate::text::escape`]), never raw.

use std::collections::BTreeMap;

use super::FieldProblem;
use super::raw::RawFile;

/// What a forbidden character is, in words.
fn class(c: char) -> &'static str {
    match c {
        '\u{7f}' => "DEL",
        c if (c as u32) < 0x20 => "a C0 control character",
        c if c.is_control() => "a C1 control character",
        _ => "a bidirectional formatting character",
    }
}

/// The problem with `value`, if it holds a forbidden character.
fn check(field: &str, value: &str, out: &mut Vec<FieldProblem>) {
    check_part(field, "", value, out);
}

/// [`check`] of a part of a field (`what`: e.g. "a tag key: ").
fn check_part(field: &str, what: &str, value: &str, out: &mut Vec<FieldProblem>) {
    if let Some((at, c)) = crate::text::forbidden_char(value) {
        out.push(FieldProblem {
            line: None,
            field: field.to_string(),
            message: format!(
                "{what}character {} is U+{:04X}, {}; names, ids, descriptions and labels must be plain text, found \"{}\"",
                at + 1,
                c as u32,
                class(c),
                crate::text::escape(value)
            ),
        });
    }
}

fn check_opt(field: &str, value: Option<&String>, out: &mut Vec<FieldProblem>) {
    if let Some(v) = value {
        check(field, v, out);
    }
}

fn check_tags(field: &str, tags: Option<&BTreeMap<String, String>>, out: &mut Vec<FieldProblem>) {
    for (k, v) in tags.into_iter().flatten() {
        check_part(field, "a tag key: ", k, out);
        check(&format!("{field}.{}", crate::text::escape(k)), v, out);
    }
}

/// Every string of the file that is not plain text, as problems naming the field.
pub(super) fn problems(raw: &RawFile) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    let o = &mut out;
    let c = &raw.ceremony;
    check("ceremony.id", &c.id, o);
    check_opt("ceremony.kind", c.kind.as_ref(), o);
    check("ceremony.description", &c.description, o);
    check("ceremony.operator", &c.operator, o);
    let h = &raw.hsm;
    check_opt("hsm.module", h.module.as_ref(), o);
    check_opt("hsm.module_env", h.module_env.as_ref(), o);
    check_opt("hsm.token_label", h.token_label.as_ref(), o);
    check_opt("hsm.token_serial", h.token_serial.as_ref(), o);
    check("hsm.audit_key_label", &h.audit_key_label, o);
    check("hsm.audit_key_sha256", &h.audit_key_sha256, o);
    check_opt("hsm.keep_key_label", h.keep_key_label.as_ref(), o);
    let k = &raw.kms;
    check("kms.region", &k.region, o);
    check_opt("kms.key", k.key.as_ref(), o);
    check_opt("kms.endpoint", k.endpoint.as_ref(), o);
    check_opt("kms.account", k.account.as_ref(), o);
    for op in k.rates.iter().flat_map(|r| r.keys()) {
        check_part("kms.rates", "an operation name: ", op, o);
    }
    for (i, t) in raw.target.iter().flatten().enumerate() {
        let at = |f: &str| format!("target[{i}].{f}");
        check(&at("key"), &t.key, o);
        check_opt(&at("previous_key"), t.previous_key.as_ref(), o);
        check_opt(&at("description"), t.description.as_ref(), o);
        check_tags(&at("tags"), t.tags.as_ref(), o);
    }
    if let Some(t) = &raw.targets {
        for (i, s) in t.services.iter().enumerate() {
            check(&format!("targets.services[{i}]"), s, o);
        }
        for (i, e) in t.environments.iter().enumerate() {
            check(&format!("targets.environments[{i}]"), e, o);
        }
        check("targets.key", &t.key, o);
        check_opt("targets.description", t.description.as_ref(), o);
        check_tags("targets.tags", t.tags.as_ref(), o);
    }
    if let Some(i) = &raw.import {
        check_opt(
            "import.wrapping_algorithm",
            i.wrapping_algorithm.as_ref(),
            o,
        );
        check_opt("import.wrapping_key_spec", i.wrapping_key_spec.as_ref(), o);
        check_opt("import.wrap", i.wrap.as_ref(), o);
        check("import.expiration", &i.expiration, o);
        check_opt("import.valid_for", i.valid_for.as_ref(), o);
    }
    for (i, k) in raw.custodian.iter().enumerate() {
        let at = |f: &str| format!("custodian[{i}].{f}");
        check(&at("name"), &k.name, o);
        check_opt(&at("module"), k.module.as_ref(), o);
        check_opt(&at("module_env"), k.module_env.as_ref(), o);
        check_opt(&at("token_label"), k.token_label.as_ref(), o);
        check_opt(&at("token_serial"), k.token_serial.as_ref(), o);
        check(&at("key_label"), &k.key_label, o);
        check(&at("public_key_sha256"), &k.public_key_sha256, o);
    }
    if let Some(r) = &raw.rotation {
        check_opt("rotation.strategy", r.strategy.as_ref(), o);
        check_opt(
            "rotation.key_material_description",
            r.key_material_description.as_ref(),
            o,
        );
    }
    if let Some(s) = &raw.source {
        check("source.transcript", &s.transcript, o);
        check("source.last_line_sha256", &s.last_line_sha256, o);
    }
    out
}

/// Custodian names that look the same: equal after UTS #39 confusable-skeleton folding, but
/// written differently (names written identically are reported as listed twice elsewhere).
pub(super) fn confusable_names(raw: &RawFile) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    let mut seen: Vec<(usize, &str, String)> = Vec::new();
    for (i, c) in raw.custodian.iter().enumerate() {
        let skeleton: String = unicode_security::skeleton(&c.name).collect();
        if let Some((j, other, _)) = seen
            .iter()
            .find(|(_, other, s)| *s == skeleton && *other != c.name)
        {
            out.push(FieldProblem {
                line: None,
                field: format!("custodian[{i}].name"),
                message: format!(
                    "{} looks like {} (custodian[{j}].name): the names differ only in look-alike characters (Unicode confusables, e.g. a Cyrillic letter for a Latin one); give each custodian a name that reads differently",
                    spelled(&c.name),
                    spelled(other)
                ),
            });
        }
        seen.push((i, &c.name, skeleton));
    }
    out
}

/// `"name"`, escaped, followed by its non-ASCII characters as `\u{…}` escapes, so that
/// look-alikes can be told apart on the screen: `"Аlice" (\u{410}lice)`.
fn spelled(name: &str) -> String {
    let shown = crate::text::escape(name);
    if name.is_ascii() {
        return format!("\"{shown}\"");
    }
    let code: String = shown
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\u{{{:x}}}", c as u32)
            }
        })
        .collect();
    format!("\"{shown}\" ({code})")
}
