//! The rotation policy file (`byok inventory --policy FILE`): how old a key's material may
//! grow, per alias or tag pattern, how early to warn, and which audit keys sign the
//! transcripts that explain materials. Parsed strictly (unknown fields, wrong types and
//! out-of-range values are errors naming file, line and field), like a ceremony file.
//! Format: docs/inventory.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::spec::FieldProblem;

/// The on-demand rotations KMS allows an imported key, as the API reference states it (the
/// developer guide says 25): override with `[defaults] rotation_limit`.
pub const DEFAULT_ROTATION_LIMIT: u32 = 10;
/// Flag a key when this many on-demand rotations or fewer remain.
pub const DEFAULT_ROTATION_LIMIT_WARNING: u32 = 2;
/// Warn this many days before any material expires.
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 30;
/// The longest age a rule may allow (100 years): a larger number is a typo.
const MAX_DAYS: u32 = 36_500;

/// A validated rotation policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationPolicy {
    /// Where it was read from (shown in reports).
    pub path: Option<PathBuf>,
    pub expiry_warning_days: u32,
    pub rotation_limit: u32,
    pub rotation_limit_warning: u32,
    /// In file order: the first rule that matches a key is its rule.
    pub rules: Vec<Rule>,
    /// SHA-256 (lowercase hex) of the audit keys whose transcripts are trusted.
    pub audit_keys: Vec<String>,
    /// `[rates]`: requests per second per KMS operation (default: AWS's default quotas).
    pub rates: crate::kms::Rates,
}

impl Default for RotationPolicy {
    /// No rules: every key is `no-policy`; expiries still warn at the default window.
    fn default() -> Self {
        RotationPolicy {
            path: None,
            expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS,
            rotation_limit: DEFAULT_ROTATION_LIMIT,
            rotation_limit_warning: DEFAULT_ROTATION_LIMIT_WARNING,
            rules: Vec::new(),
            audit_keys: Vec::new(),
            rates: crate::kms::Rates::default(),
        }
    }
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Any alias of the key matches this glob (`*`, `?`), e.g. `alias/*-prod`.
    Alias(String),
    /// The key has tag `key` whose value matches this glob.
    Tag { key: String, value: String },
}

/// One `[[rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `rule[N]` or the rule's `name`.
    pub name: String,
    pub selector: Selector,
    pub max_age_days: u32,
    pub warn_days: u32,
    pub expiry_warning_days: u32,
}

impl Rule {
    /// How the rule reads in a report: `alias/*-prod` or `tag environment=prod*`.
    pub fn pattern(&self) -> String {
        match &self.selector {
            Selector::Alias(p) => p.clone(),
            Selector::Tag { key, value } => format!("tag {key}={value}"),
        }
    }

    /// Whether a key with these aliases and tags falls under the rule.
    pub fn matches(&self, aliases: &[String], tags: &BTreeMap<String, String>) -> bool {
        match &self.selector {
            Selector::Alias(p) => aliases.iter().any(|a| glob(p, a)),
            Selector::Tag { key, value } => tags.get(key).is_some_and(|v| glob(value, v)),
        }
    }
}

impl RotationPolicy {
    /// The first rule that matches.
    pub fn rule_for(&self, aliases: &[String], tags: &BTreeMap<String, String>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(aliases, tags))
    }
}

/// Why a rotation policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read rotation policy {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<FieldProblem>,
    },
}

fn render(path: &Path, problems: &[FieldProblem]) -> String {
    crate::spec::render_problems(
        "rotation policy",
        path,
        problems,
        "fix it (format: docs/inventory.md) and run again",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    transcripts: RawTranscripts,
    rates: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    expiry_warning_days: Option<u32>,
    rotation_limit: Option<u32>,
    rotation_limit_warning: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    alias: Option<String>,
    tag: Option<RawTag>,
    max_age_days: u32,
    warn_days: Option<u32>,
    expiry_warning_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    key: String,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTranscripts {
    #[serde(default)]
    audit_key_sha256: Vec<String>,
}

/// Reads and validates a rotation policy file.
pub fn load(path: &Path) -> Result<RotationPolicy, PolicyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates rotation policy text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<RotationPolicy, PolicyFileError> {
    let invalid = |mut problems: Vec<FieldProblem>| {
        for p in &mut problems {
            if p.line.is_none() {
                p.line = crate::spec::line_of_field(text, &p.field);
            }
        }
        PolicyFileError::Invalid {
            path: path.to_path_buf(),
            problems,
        }
    };
    let raw: RawFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| invalid(vec![crate::spec::serde_problem(text, &e)]))?;
    let mut problems = Vec::new();
    let mut problem = |field: String, message: String| {
        problems.push(FieldProblem {
            line: None,
            field,
            message,
        })
    };
    if raw.version != 1 {
        problem(
            "version".into(),
            format!(
                "{} is not a policy version this byok reads; write version = 1",
                raw.version
            ),
        );
    }
    let expiry_warning_days = raw
        .defaults
        .expiry_warning_days
        .unwrap_or(DEFAULT_EXPIRY_WARNING_DAYS);
    let rotation_limit = raw
        .defaults
        .rotation_limit
        .unwrap_or(DEFAULT_ROTATION_LIMIT);
    let rotation_limit_warning = raw
        .defaults
        .rotation_limit_warning
        .unwrap_or(DEFAULT_ROTATION_LIMIT_WARNING);
    if expiry_warning_days > 365 {
        problem(
            "defaults.expiry_warning_days".into(),
            format!(
                "{expiry_warning_days} days is more than imported material can last (365); use 0 to 365"
            ),
        );
    }
    if rotation_limit == 0 {
        problem(
            "defaults.rotation_limit".into(),
            "must be at least 1 (KMS allows 10 on-demand rotations per key by its API reference)"
                .into(),
        );
    }
    if rotation_limit_warning >= rotation_limit.max(1) {
        problem(
            "defaults.rotation_limit_warning".into(),
            format!("{rotation_limit_warning} must be less than rotation_limit ({rotation_limit})"),
        );
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rule.into_iter().enumerate() {
        let field = |f: &str| format!("rule[{i}].{f}");
        let selector = match (r.alias, r.tag) {
            (Some(a), None) => {
                if !a.starts_with("alias/") || a.len() <= "alias/".len() {
                    problem(
                        field("alias"),
                        format!(
                            "{:?} must start with alias/ and name a pattern, e.g. \"alias/*-prod\"",
                            crate::text::escape(&a)
                        ),
                    );
                }
                Selector::Alias(a)
            }
            (None, Some(t)) => {
                if t.key.is_empty() || t.value.is_empty() {
                    problem(
                        field("tag"),
                        "key and value must not be empty (the value may be a pattern: \"prod*\")"
                            .into(),
                    );
                }
                Selector::Tag {
                    key: t.key,
                    value: t.value,
                }
            }
            (Some(_), Some(_)) => {
                problem(
                    field("alias"),
                    "a rule matches by alias or by tag, not both: split it into two rules".into(),
                );
                continue;
            }
            (None, None) => {
                problem(
                    format!("rule[{i}]"),
                    "says what it matches with alias = \"alias/…\" or tag = { key = \"…\", value = \"…\" }"
                        .into(),
                );
                continue;
            }
        };
        if r.max_age_days == 0 || r.max_age_days > MAX_DAYS {
            problem(
                field("max_age_days"),
                format!("{} must be 1 to {MAX_DAYS}", r.max_age_days),
            );
        }
        let warn_days = r.warn_days.unwrap_or(0);
        if warn_days >= r.max_age_days.max(1) {
            problem(
                field("warn_days"),
                format!(
                    "{warn_days} must be less than max_age_days ({})",
                    r.max_age_days
                ),
            );
        }
        let rule_expiry = r.expiry_warning_days.unwrap_or(expiry_warning_days);
        if rule_expiry > 365 {
            problem(
                field("expiry_warning_days"),
                format!("{rule_expiry} must be 0 to 365"),
            );
        }
        let name = match r.name {
            Some(n) if n.trim().is_empty() || n.chars().any(char::is_control) => {
                problem(field("name"), "must be printable text and not empty".into());
                format!("rule[{i}]")
            }
            Some(n) => n,
            None => format!("rule[{i}]"),
        };
        rules.push(Rule {
            name,
            selector,
            max_age_days: r.max_age_days,
            warn_days,
            expiry_warning_days: rule_expiry,
        });
    }
    let mut audit_keys: Vec<String> = Vec::new();
    for (i, hex) in raw.transcripts.audit_key_sha256.iter().enumerate() {
        let f = format!("transcripts.audit_key_sha256[{i}]");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            problem(
                f,
                "must be 64 hex digits: the audit key's SHA-256 from the paper record".into(),
            );
        } else if audit_keys.contains(&hex.to_ascii_lowercase()) {
            problem(f, "is listed twice".into());
        } else {
            audit_keys.push(hex.to_ascii_lowercase());
        }
    }
    let rates = crate::spec::rates("rates", raw.rates.as_ref(), &mut |f: &str, m: String| {
        problem(f.to_string(), m)
    });
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(RotationPolicy {
        rates: rates.unwrap_or_default(),
        path: Some(path.to_path_buf()),
        expiry_warning_days,
        rotation_limit,
        rotation_limit_warning,
        rules,
        audit_keys,
    })
}

/// `*` matches any run of characters (`/` included), `?` one character; the rest matches
/// itself. Linear in the worst case (the classic two-pointer backtrack).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<RotationPolicy, String> {
        parse(Path::new("p.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn globs_match_as_documented() {
        assert!(glob("alias/*-prod", "alias/payments-prod"));
        assert!(glob("alias/*-prod", "alias/team/payments-prod"));
        assert!(!glob("alias/*-prod", "alias/payments-prod2"));
        assert!(!glob("alias/*-prod", "alias/payments-dev"));
        assert!(glob("alias/?-dev", "alias/a-dev"));
        assert!(!glob("alias/?-dev", "alias/ab-dev"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let p = parse_str(
            r#"version = 1
[[rule]]
alias = "alias/*-prod"
max_age_days = 365
warn_days = 30
[[rule]]
tag = { key = "environment", value = "prod*" }
max_age_days = 180
[[rule]]
alias = "alias/*"
max_age_days = 730
"#,
        )
        .unwrap();
        let tags = BTreeMap::from([("environment".to_string(), "production".to_string())]);
        let r = p.rule_for(&["alias/x-prod".into()], &tags).unwrap();
        assert_eq!((r.max_age_days, r.warn_days), (365, 30));
        let r = p.rule_for(&["alias/x-dev".into()], &tags).unwrap();
        assert_eq!(r.max_age_days, 180);
        let r = p
            .rule_for(&["alias/x-dev".into()], &BTreeMap::new())
            .unwrap();
        assert_eq!(r.max_age_days, 730);
        assert!(p.rule_for(&[], &BTreeMap::new()).is_none());
    }

    #[test]
    fn bad_policies_name_the_field_and_line() {
        let e = parse_str(
            "version = 1\n[[rule]]\nalias = \"alias/*\"\nmax_age_days = 30\nwarn_days = 30\n",
        )
        .unwrap_err();
        assert!(
            e.contains("p.toml:5: rule[0].warn_days: 30 must be less than max_age_days (30)"),
            "{e}"
        );
        let e =
            parse_str("version = 1\n[[rule]]\nalias = \"alias/*\"\nmax_age = 30\n").unwrap_err();
        assert!(e.contains("unknown field `max_age`"), "{e}");
        let e = parse_str("version = 1\n[[rule]]\nalias = \"*-prod\"\nmax_age_days = 30\n")
            .unwrap_err();
        assert!(e.contains("rule[0].alias"), "{e}");
        let e = parse_str("version = 1\n[[rule]]\nmax_age_days = 30\n").unwrap_err();
        assert!(
            e.contains("alias = \\\"alias/…\\\"") || e.contains("says what it matches"),
            "{e}"
        );
        let e =
            parse_str("version = 1\n[transcripts]\naudit_key_sha256 = [\"abc\"]\n").unwrap_err();
        assert!(
            e.contains("transcripts.audit_key_sha256[0]: must be 64 hex digits"),
            "{e}"
        );
        let e = parse_str("version = 2\n").unwrap_err();
        assert!(e.contains("version: 2 is not a policy version"), "{e}");
        let e =
            parse_str("version = 1\n[defaults]\nrotation_limit = 2\nrotation_limit_warning = 2\n")
                .unwrap_err();
        assert!(e.contains("defaults.rotation_limit_warning"), "{e}");
    }

    #[test]
    fn the_shipped_policy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremonies/rotation-policy.toml");
        let p = load(&path).unwrap();
        assert!(!p.rules.is_empty());
    }
}
