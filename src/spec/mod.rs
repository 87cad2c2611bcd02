//! Ceremony files: strict parsing into [`raw`] structs, then validation into [`Ceremony`].
//!
//! Every problem names the file, the line and the field path, and says what is allowed.
//! A ceremony file never holds a PIN: byok asks for PINs at run time.

mod plain;
pub mod raw;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use crate::hsm::ModuleSource;
use crate::hsm::TokenSelector;
use crate::kms::Expiration;
use crate::wrap::{WrapLocation, WrappingAlgorithm, WrappingKeySpec};

/// Longest time ahead KMS accepts for `ValidTo`.
pub const MAX_VALID_TO_DAYS: i64 = 365;

/// A validated ceremony file.
#[derive(Debug, Clone)]
pub struct Ceremony {
    pub id: String,
    pub description: String,
    pub operator: String,
    pub hsm: HsmSpec,
    pub kms: KmsSpec,
    /// The keys this ceremony imports into, in file order (after expansion); at least one.
    pub targets: Vec<Target>,
    pub import: ImportSpec,
    pub dual_control: DualControl,
    pub source: Source,
    /// `[source]`: the earlier transcript this ceremony builds on (required for
    /// `kind = "reimport"`, refused for the kinds that do not use one).
    pub source_transcript: Option<SourceTranscript>,
}

/// `[source]` of a ceremony file: an earlier transcript, pinned by its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTranscript {
    /// The path as the file writes it (recorded in `source_verified`).
    pub as_written: String,
    /// The path resolved against the ceremony file's directory (or absolute as written).
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the transcript's last line.
    pub last_line_sha256: String,
}

/// Who must approve the critical steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DualControl {
    /// Rehearsal only: the operator alone confirms. Stated loudly by check, run and transcript.
    Off,
    /// `quorum` distinct custodians of `custodians` must approve each approval point.
    Quorum {
        quorum: usize,
        custodians: Vec<Custodian>,
    },
}

/// A custodian and the approval key on their own token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custodian {
    pub name: String,
    /// The custodian's own PKCS#11 module (`module` or `module_env`); `None`: the HSM's.
    pub module: Option<ModuleSource>,
    pub token: TokenSelector,
    pub key_label: String,
    /// Lowercase hex SHA-256 of the approval key's SPKI DER.
    pub public_key_sha256: String,
}

/// The file as read, for record 0.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct HsmSpec {
    pub module: ModuleSource,
    pub token: TokenSelector,
    pub audit_key_label: String,
    /// Lowercase hex.
    pub audit_key_sha256: String,
    /// Keep the generated key on the token under this label.
    pub keep_key_label: Option<String>,
}

#[derive(Debug, Clone)]
pub struct KmsSpec {
    /// The region of every target that is not an ARN (ARNs carry their own region).
    pub region: String,
    /// Requests per second per operation (`[kms.rates]` over AWS's defaults).
    pub rates: crate::kms::Rates,
    /// Longest time one KMS call may take (`kms.call_timeout_seconds`, default 30).
    pub call_timeout: std::time::Duration,
    /// `kms.endpoint`: where every KMS and STS call goes instead of AWS's regional endpoints
    /// (LocalStack in tests and rehearsals). An endpoint set in the environment is refused
    /// unless it is this one.
    pub endpoint: Option<String>,
    /// `kms.account`: the 12-digit AWS account the ceremony must run as; checked with STS
    /// GetCallerIdentity before any approval.
    pub account: Option<String>,
}

/// Most targets one ceremony may hold.
pub const MAX_TARGETS: usize = 1000;

/// One KMS key the ceremony imports into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Position in the expanded list (0-based), as records name it.
    pub index: usize,
    /// ARN, key id or `alias/…`.
    pub key: String,
    /// The ARN's region, or `kms.region`.
    pub region: String,
    /// CreateKey and CreateAlias first (the key must then be `alias/…`).
    pub create: Option<CreateSpec>,
    /// The token label of the kept copy (`hsm.keep_key_label`, expanded).
    pub keep_key_label: Option<String>,
    /// `strategy = "alias-swap"`: the key the alias names now, and what the new key gets.
    pub swap: Option<SwapSpec>,
}

/// An alias-swap target: `key` is the alias, which must name `previous_key` when the
/// ceremony starts; a new EXTERNAL key is created (with the previous key's tags, over which
/// `tags` are laid), imported into, and then the alias is moved to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapSpec {
    /// The ARN of the key the alias names now (`previous_key`).
    pub previous_key: String,
    /// The new key's description (default: says which key it replaces).
    pub description: Option<String>,
    /// Tags for the new key on top of those copied from the previous key.
    pub tags: std::collections::BTreeMap<String, String>,
}

/// What `create = true` creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec {
    pub alias: String,
    pub description: String,
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub algorithm: WrappingAlgorithm,
    pub key_spec: WrappingKeySpec,
    pub wrap: WrapLocation,
    pub expiration: Expiration,
    /// What the ceremony does with the material (`[ceremony] kind`).
    pub kind: Kind,
}

/// `[ceremony] kind`: what a ceremony does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// First material into new EXTERNAL keys in PendingImport (ImportType NEW_KEY_MATERIAL).
    Import,
    /// New material into Enabled EXTERNAL keys (ImportType NEW_KEY_MATERIAL with a
    /// KeyMaterialDescription), then, after its own approval, RotateKeyOnDemand.
    Rotate {
        /// The KeyMaterialDescription sent: the file's text and the ceremony id.
        key_material_description: String,
    },
    /// `kind = "rotate"` with `strategy = "alias-swap"`: per target a new EXTERNAL key
    /// (tags copied from the previous key), its first material (NEW_KEY_MATERIAL with a
    /// KeyMaterialDescription), then, after its own approval, UpdateAlias to the new key. The
    /// previous key stays Enabled.
    AliasSwap {
        /// The KeyMaterialDescription sent: the file's text and the ceremony id.
        key_material_description: String,
    },
    /// Points each target alias back to the key a finished alias-swap ceremony (`[source]`)
    /// moved it away from, after its own approval. Imports nothing.
    Rollback,
    /// Material kept in the HSM by an earlier ceremony (`[source]`), imported again into the
    /// same key (or a multi-Region replica of it) with ImportType EXISTING_KEY_MATERIAL and
    /// the earlier KeyMaterialId, after the HSM shows the kept key's KCV unchanged.
    Reimport,
}

impl Kind {
    /// The name in the ceremony file and the transcript.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Import => "import",
            Kind::Rotate { .. } | Kind::AliasSwap { .. } => "rotate",
            Kind::Rollback => "rollback",
            Kind::Reimport => "reimport",
        }
    }

    /// `[rotation] strategy` for a rotation, recorded in record 0.
    pub fn strategy(&self) -> Option<&'static str> {
        match self {
            Kind::Rotate { .. } => Some("new-material"),
            Kind::AliasSwap { .. } => Some("alias-swap"),
            Kind::Import | Kind::Rollback | Kind::Reimport => None,
        }
    }

    /// The KeyMaterialDescription this kind sends with its imports.
    pub fn key_material_description(&self) -> Option<&str> {
        match self {
            Kind::Rotate {
                key_material_description,
            }
            | Kind::AliasSwap {
                key_material_description,
            } => Some(key_material_description),
            Kind::Import | Kind::Rollback | Kind::Reimport => None,
        }
    }

    /// Whether the ceremony moves aliases (alias-swap and rollback).
    pub fn moves_aliases(&self) -> bool {
        matches!(self, Kind::AliasSwap { .. } | Kind::Rollback)
    }

    /// Whether the ceremony generates and imports material.
    pub fn imports(&self) -> bool {
        !matches!(self, Kind::Rollback)
    }
}

/// KMS's limit on a KeyMaterialDescription: at most 256 characters from `[a-zA-Z0-9:/_\s.-]`.
pub fn check_key_material_description(text: &str) -> Result<(), String> {
    if text.chars().count() > 256 {
        return Err(format!(
            "is {} characters long; KMS takes at most 256",
            text.chars().count()
        ));
    }
    if let Some(c) = text.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '.' | '-' | ' ' | '\t'))
    }) {
        return Err(format!(
            "contains {c:?}; KMS takes only A-Z a-z 0-9 : / _ . - and spaces"
        ));
    }
    Ok(())
}

impl HsmSpec {
    /// Resolves the module path (reading the environment for `module_env`).
    pub fn module_path(&self) -> Result<PathBuf, SpecError> {
        resolve_module(&self.module, "hsm.module_env")
    }
}

impl Ceremony {
    /// Resolves every custodian's own module (reading the environment for `module_env`), in
    /// file order: the custodian's index, the module as the file gives it, and its path. A
    /// custodian who names no module uses the HSM's and is left out.
    pub fn custodian_module_paths(&self) -> Result<Vec<(usize, ModuleSource, PathBuf)>, SpecError> {
        let DualControl::Quorum { custodians, .. } = &self.dual_control else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, c) in custodians.iter().enumerate() {
            if let Some(source) = &c.module {
                let path = resolve_module(source, &format!("custodian[{i}].module_env"))?;
                out.push((i, source.clone(), path));
            }
        }
        Ok(out)
    }
}

/// The path of `source`; `field` names the setting in the message when its variable is unset.
fn resolve_module(source: &ModuleSource, field: &str) -> Result<PathBuf, SpecError> {
    match source {
        ModuleSource::Path(p) => Ok(p.clone()),
        ModuleSource::Env(var) => match std::env::var_os(var) {
            Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
            _ => Err(SpecError::ModuleEnvUnset {
                field: field.to_string(),
                var: var.clone(),
            }),
        },
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted path, e.g. `import.wrapping_algorithm`.
    pub field: String,
    pub message: String,
}

/// Why a ceremony file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read ceremony file {path}")]
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
    #[error(
        "{field} names the environment variable {var}, which is not set; export {var}=/path/to/module.so"
    )]
    ModuleEnvUnset {
        /// `hsm.module_env` or `custodian[N].module_env`.
        field: String,
        var: String,
    },
}

fn render(path: &Path, problems: &[FieldProblem]) -> String {
    render_problems(
        "ceremony file",
        path,
        problems,
        "fix it and run `byok check` again",
    )
}

/// `WHAT PATH is invalid (N problems); NEXT:` and one `FILE:LINE: field: message` line per
/// problem: how every strictly validated file byok reads reports itself.
pub(crate) fn render_problems(
    what: &str,
    path: &Path,
    problems: &[FieldProblem],
    next: &str,
) -> String {
    let mut out = format!(
        "{what} {} is invalid ({} problem{}); {next}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string(path));
    }
    out
}

impl FieldProblem {
    /// `FILE:LINE: field: message`.
    pub fn to_string(&self, path: &Path) -> String {
        match self.line {
            Some(line) => format!(
                "{}:{}: {}: {}",
                path.display(),
                line,
                self.field,
                self.message
            ),
            None => format!("{}: {}: {}", path.display(), self.field, self.message),
        }
    }
}

/// Reads and validates a ceremony file; time-dependent rules are checked against `now`.
pub fn load(path: &Path, now: OffsetDateTime) -> Result<Ceremony, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, now)
}

/// Parses and validates ceremony file text.
pub fn parse(path: &Path, text: &str, now: OffsetDateTime) -> Result<Ceremony, SpecError> {
    parse_at(path, text, Some(now))
}

/// The ceremony file embedded in a transcript, validated by the same code and rules as
/// `byok check` except the time-dependent ones (`import.valid_to` in the future and at most
/// 365 days ahead): `byok verify` reads old transcripts long after their run. The
/// [`Ceremony`] returned is for its rules only: a `valid_for` is counted from the Unix epoch,
/// not from the run's start.
pub fn validate_offline(text: &str) -> Result<Ceremony, SpecError> {
    parse_at(Path::new("(the embedded ceremony file)"), text, None)
}

/// [`parse`], with the time-dependent rules checked against `now`, or not at all (`None`).
fn parse_at(path: &Path, text: &str, now: Option<OffsetDateTime>) -> Result<Ceremony, SpecError> {
    let invalid = |problems: Vec<FieldProblem>| SpecError::Invalid {
        path: path.to_path_buf(),
        problems,
    };
    let raw: raw::RawFile = match serde_path_to_error::deserialize(toml::Deserializer::new(text)) {
        Ok(raw) => raw,
        Err(e) => return Err(invalid(vec![serde_problem(text, &e)])),
    };
    // Plain text first: a control character or a look-alike custodian name is reported alone,
    // before any other rule prints the value.
    let mut problems = plain::problems(&raw);
    problems.extend(plain::confusable_names(&raw));
    let ceremony = if problems.is_empty() {
        validate(raw, now, &mut problems)
    } else {
        None
    };
    if !problems.is_empty() {
        for p in &mut problems {
            p.line = line_of_field(text, &p.field);
        }
        return Err(invalid(problems));
    }
    match ceremony {
        Some((id, description, operator, hsm, kms, targets, import, dual_control, input)) => {
            // `[source] transcript` is relative to the ceremony file's directory.
            let source_transcript = input.map(|mut s| {
                let written = PathBuf::from(&s.as_written);
                if written.is_relative() {
                    s.path = path.parent().unwrap_or(Path::new("")).join(written);
                }
                s
            });
            Ok(Ceremony {
                id,
                description,
                operator,
                hsm,
                kms,
                targets,
                import,
                dual_control,
                source: Source {
                    path: path.to_path_buf(),
                    text: text.to_string(),
                    sha256: hex::encode(Sha256::digest(text.as_bytes())),
                },
                source_transcript,
            })
        }
        // validate returns None only alongside a problem.
        None => Err(invalid(Vec::new())),
    }
}

/// `[source] transcript` and `last_line_sha256` as a ceremony file's text writes them, without
/// validating the rest (for the verifier).
pub fn pinned_source(text: &str) -> Option<(String, String)> {
    let table: toml::Table = text.parse().ok()?;
    let source = table.get("source")?;
    Some((
        source.get("transcript")?.as_str()?.to_string(),
        source.get("last_line_sha256")?.as_str()?.to_string(),
    ))
}

/// `[kms] account` and `endpoint` as a ceremony file's text writes them, without validating
/// the rest (for the verifier): what `kms_identity` must agree with.
pub fn pinned_kms(text: &str) -> (Option<String>, Option<String>) {
    let table: Option<toml::Table> = text.parse().ok();
    let kms = table.as_ref().and_then(|t| t.get("kms"));
    let get = |k: &str| {
        kms.and_then(|kms| kms.get(k))
            .and_then(toml::Value::as_str)
            .map(str::to_string)
    };
    (get("account"), get("endpoint"))
}

/// The audit key fingerprint pinned in a ceremony file's text, without validating the rest
/// (the verifier reads old files whose `valid_to` has passed).
pub fn pinned_audit_key_sha256(text: &str) -> Option<String> {
    let table: toml::Table = text.parse().ok()?;
    table
        .get("hsm")?
        .get("audit_key_sha256")?
        .as_str()
        .map(str::to_string)
}

/// The dual-control pins of a ceremony file's text, without validating the rest: `None` when
/// dual control is off (or absent); else the quorum and each custodian's name and key
/// fingerprint.
pub fn pinned_dual_control(text: &str) -> Option<(usize, Vec<(String, String)>)> {
    let table: toml::Table = text.parse().ok()?;
    let dc = table.get("dual_control")?;
    if dc.get("enabled").and_then(toml::Value::as_bool) == Some(false) {
        return None;
    }
    let quorum = usize::try_from(dc.get("quorum")?.as_integer()?).ok()?;
    let custodians = table
        .get("custodian")
        .and_then(toml::Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|c| {
                    Some((
                        c.get("name")?.as_str()?.to_string(),
                        c.get("public_key_sha256")?.as_str()?.to_ascii_lowercase(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Some((quorum, custodians))
}

/// `kms.key` of a ceremony file's text.
pub fn pinned_target_key(text: &str) -> Option<String> {
    let table: toml::Table = text.parse().ok()?;
    table.get("kms")?.get("key")?.as_str().map(str::to_string)
}

pub(crate) fn serde_problem(
    text: &str,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> FieldProblem {
    let inner = e.inner();
    let mut message = inner.message().to_string();
    let field = e.path().to_string();
    if let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
        && unknown
            .to_ascii_lowercase()
            .split(['_', '-'])
            .any(|word| word == "pin" || word == "pins")
    {
        message = format!(
            "unknown field `{unknown}`: a ceremony file never holds a PIN; byok asks for PINs when it needs them"
        );
    }
    let line = inner
        .span()
        .map(|s| line_at(text, s.start))
        .or_else(|| line_of_field(text, &field));
    FieldProblem {
        line,
        field: if field == "." { "(file)".into() } else { field },
        message,
    }
}

/// 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Line of the deepest existing part of a dotted field path.
pub(crate) fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text.to_string()).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut span = None;
    for part in field.split('.') {
        // `custodian[1]`: a key and an index into an array of tables.
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((key, item)) = table.get_key_value(name) else {
            break;
        };
        span = key.span().or_else(|| item.span()).or(span);
        let item = match (index, item.as_array_of_tables()) {
            (Some(i), Some(array)) => match array.get(i) {
                Some(t) => {
                    span = t.span().or(span);
                    table = t;
                    continue;
                }
                None => break,
            },
            _ => item,
        };
        match item.as_table_like() {
            Some(t) => table = t,
            None => break,
        }
    }
    span.map(|s| line_at(text, s.start))
}

type Validated = (
    String,
    String,
    String,
    HsmSpec,
    KmsSpec,
    Vec<Target>,
    ImportSpec,
    DualControl,
    Option<SourceTranscript>,
);

fn validate(
    raw: raw::RawFile,
    now: Option<OffsetDateTime>,
    problems: &mut Vec<FieldProblem>,
) -> Option<Validated> {
    let mut bad = |field: &str, message: String| {
        problems.push(FieldProblem {
            line: None,
            field: field.to_string(),
            message,
        })
    };

    // [ceremony]
    let id = raw.ceremony.id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        bad(
            "ceremony.id",
            format!("expected 1 to 64 characters from A-Z a-z 0-9 . _ -, found {id:?}"),
        );
    }
    if raw.ceremony.operator.trim().is_empty() {
        bad(
            "ceremony.operator",
            "must name the person running the ceremony".into(),
        );
    }
    let kind = match raw.ceremony.kind.as_deref() {
        None | Some("import") => {
            if raw.rotation.is_some() {
                bad(
                    "rotation",
                    "is for kind = \"rotate\"; remove [rotation] or set kind = \"rotate\"".into(),
                );
            }
            Some(Kind::Import)
        }
        Some("rotate") => {
            let rotation = raw.rotation.as_ref();
            let swap = match rotation.and_then(|r| r.strategy.as_deref()) {
                None | Some("new-material") => Some(false),
                Some("alias-swap") => Some(true),
                Some(other) => {
                    bad(
                        "rotation.strategy",
                        format!("expected \"new-material\" or \"alias-swap\", found {other:?}"),
                    );
                    None
                }
            };
            let text = match rotation.and_then(|r| r.key_material_description.as_deref()) {
                Some(d) if !d.trim().is_empty() => format!("{} ceremony {id}", d.trim()),
                _ => format!("byok ceremony {id}"),
            };
            match (check_key_material_description(&text), swap) {
                (Ok(()), Some(false)) => Some(Kind::Rotate {
                    key_material_description: text,
                }),
                (Ok(()), Some(true)) => Some(Kind::AliasSwap {
                    key_material_description: text,
                }),
                (Ok(()), None) => None,
                (Err(why), _) => {
                    bad(
                        "rotation.key_material_description",
                        format!("with the ceremony id appended ({text:?}) it {why}"),
                    );
                    None
                }
            }
        }
        Some("rollback") => {
            if raw.rotation.is_some() {
                bad(
                    "rotation",
                    "is for kind = \"rotate\"; a rollback takes its aliases and keys from [source]"
                        .into(),
                );
            }
            Some(Kind::Rollback)
        }
        Some("reimport") => {
            if raw.rotation.is_some() {
                bad(
                    "rotation",
                    "is for kind = \"rotate\"; remove [rotation] or set kind = \"rotate\"".into(),
                );
            }
            if raw.hsm.keep_key_label.is_some() {
                bad(
                    "hsm.keep_key_label",
                    "a reimport imports material the token keeps already, under the label the [source] transcript recorded (key_kept); remove keep_key_label".into(),
                );
            }
            if raw.import.as_ref().and_then(|i| i.wrap.as_deref()) == Some("host") {
                bad(
                    "import.wrap",
                    "a reimport wraps the kept material inside the HSM only; it never leaves the HSM in plaintext: remove wrap or set wrap = \"hsm\"".into(),
                );
            }
            Some(Kind::Reimport)
        }
        Some(other) => {
            bad(
                "ceremony.kind",
                format!(
                    "expected \"import\", \"rotate\", \"rollback\" or \"reimport\", found {other:?}"
                ),
            );
            None
        }
    };
    let rollback = matches!(kind, Some(Kind::Rollback));
    let swapping = matches!(kind, Some(Kind::AliasSwap { .. }));
    let raw_import = match raw.import {
        Some(_) if rollback => {
            bad(
                "import",
                "a rollback imports nothing; remove [import]".into(),
            );
            raw::RawImport::default()
        }
        Some(i) => i,
        None if rollback => raw::RawImport {
            expiration: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
            ..Default::default()
        },
        None => {
            bad(
                "import",
                "missing: give [import] with at least expiration (see docs/ceremony-file.md)"
                    .into(),
            );
            raw::RawImport {
                expiration: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
                ..Default::default()
            }
        }
    };

    // [hsm]
    let hsm_module = raw.hsm.module.clone();
    let hsm_module_env = raw.hsm.module_env.clone();
    let module = match (raw.hsm.module, raw.hsm.module_env) {
        (Some(p), None) if !p.is_empty() => Some(ModuleSource::Path(PathBuf::from(p))),
        (None, Some(v)) if is_env_name(&v) => Some(ModuleSource::Env(v)),
        (None, Some(v)) => {
            bad(
                "hsm.module_env",
                format!(
                    "expected an environment variable name like BYOK_PKCS11_MODULE, found {v:?}"
                ),
            );
            None
        }
        (Some(_), Some(_)) => {
            bad(
                "hsm.module",
                "give either module or module_env, not both".into(),
            );
            None
        }
        _ => {
            bad(
                "hsm.module",
                "missing: give module = \"/path/to/pkcs11.so\" or module_env = \"VARIABLE\"".into(),
            );
            None
        }
    };
    let token = match (raw.hsm.token_label, raw.hsm.token_serial) {
        (Some(l), None) if !l.is_empty() && l.len() <= 32 => Some(TokenSelector::Label(l)),
        (Some(l), None) => {
            bad(
                "hsm.token_label",
                format!("expected 1 to 32 characters (a PKCS#11 token label), found {l:?}"),
            );
            None
        }
        (None, Some(s)) if !s.is_empty() && s.len() <= 16 => Some(TokenSelector::Serial(s)),
        (None, Some(s)) => {
            bad(
                "hsm.token_serial",
                format!("expected 1 to 16 characters (a PKCS#11 serial number), found {s:?}"),
            );
            None
        }
        (Some(_), Some(_)) => {
            bad(
                "hsm.token_label",
                "give either token_label or token_serial, not both".into(),
            );
            None
        }
        (None, None) => {
            bad(
                "hsm.token_label",
                "missing: select the token by token_label or token_serial (never by slot number)"
                    .into(),
            );
            None
        }
    };
    let hsm_token = token.clone();
    if raw.hsm.audit_key_label.is_empty() {
        bad("hsm.audit_key_label", "must not be empty".into());
    }
    let audit_fp = raw.hsm.audit_key_sha256.to_ascii_lowercase();
    if audit_fp.len() != 64 || !audit_fp.chars().all(|c| c.is_ascii_hexdigit()) {
        bad(
            "hsm.audit_key_sha256",
            format!(
                "expected 64 hex digits (the SHA-256 printed by `byok audit-key create`), found {:?}",
                raw.hsm.audit_key_sha256
            ),
        );
    }
    if let Some(label) = &raw.hsm.keep_key_label
        && label.is_empty()
    {
        bad("hsm.keep_key_label", "must not be empty when given".into());
    }

    // [kms]
    let region = raw.kms.region;
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bad(
            "kms.region",
            format!("expected an AWS region like us-east-1, found {region:?}"),
        );
    }
    let single = raw.kms.key.clone();
    if let Some(key) = &single {
        if let Some(arn_region) = key.strip_prefix("arn:").and_then(|r| r.split(':').nth(2))
            && is_key_reference(key)
            && arn_region != region
        {
            bad(
                "kms.key",
                format!(
                    "the ARN is in region {arn_region}, but kms.region is {region}; make them agree"
                ),
            );
        }
        if !is_key_reference(key) {
            bad(
                "kms.key",
                format!(
                    "expected a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), a key id or alias/NAME, found {key:?}"
                ),
            );
        }
    }
    let rates = rates("kms.rates", raw.kms.rates.as_ref(), &mut bad);
    let call_timeout = match raw.kms.call_timeout_seconds {
        None => Some(crate::kms::aws::DEFAULT_CALL_TIMEOUT),
        Some(n @ 1..=600) => Some(std::time::Duration::from_secs(n.unsigned_abs())),
        Some(n) => {
            bad(
                "kms.call_timeout_seconds",
                format!("expected 1 to 600 seconds, found {n}"),
            );
            None
        }
    };
    let endpoint = raw.kms.endpoint.filter(|e| {
        let ok = crate::kms::endpoint::is_endpoint_url(e);
        if !ok {
            bad(
                "kms.endpoint",
                format!(
                    "expected an http:// or https:// URL with a host and no path, like \"http://127.0.0.1:4566\", found \"{}\"",
                    crate::text::escape(e)
                ),
            );
        }
        ok
    });
    let account = raw.kms.account.filter(|a| {
        let ok = a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            bad(
                "kms.account",
                format!(
                    "expected a 12-digit AWS account id like \"123456789012\", found \"{}\"",
                    crate::text::escape(a)
                ),
            );
        }
        ok
    });
    let targets = targets(
        single,
        raw.target,
        raw.targets,
        &region,
        raw.hsm.keep_key_label.as_deref(),
        swapping,
        &mut bad,
    );

    // [import]
    let algorithm = match raw_import.wrapping_algorithm.as_deref() {
        None => Some(WrappingAlgorithm::RsaesOaepSha256),
        Some(name) => match WrappingAlgorithm::from_kms_name(name) {
            Ok(a) => Some(a),
            Err(why) => {
                bad("import.wrapping_algorithm", why);
                None
            }
        },
    };
    let key_spec = match raw_import.wrapping_key_spec.as_deref() {
        None => Some(WrappingKeySpec::Rsa4096),
        Some(name) => match WrappingKeySpec::from_kms_name(name) {
            Some(s) => Some(s),
            None => {
                bad(
                    "import.wrapping_key_spec",
                    format!("expected RSA_2048, RSA_3072 or RSA_4096, found {name:?}"),
                );
                None
            }
        },
    };
    let wrap = match raw_import.wrap.as_deref() {
        None | Some("hsm") => Some(WrapLocation::Hsm),
        Some("host") => Some(WrapLocation::Host),
        Some(other) => {
            bad(
                "import.wrap",
                format!("expected \"hsm\" or \"host\", found {other:?}"),
            );
            None
        }
    };
    if wrap == Some(WrapLocation::Host) && raw.hsm.keep_key_label.is_some() {
        bad(
            "hsm.keep_key_label",
            "cannot keep a key generated for wrap = \"host\" (it is not sensitive); remove keep_key_label or use wrap = \"hsm\"".into(),
        );
    }
    // `valid_for = "<N>d"`: ValidTo N whole days after `now` (the run's start), to the second.
    let valid_to = match (raw_import.valid_to, raw_import.valid_for.as_deref()) {
        (Some(_), Some(_)) => {
            bad(
                "import.valid_for",
                "give either valid_to (a date) or valid_for (a number of days), not both".into(),
            );
            Err(())
        }
        (Some(dt), None) => Ok(Some(ValidTo::At(dt))),
        (None, Some(text)) => match text
            .strip_suffix('d')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| (1..=MAX_VALID_TO_DAYS).contains(n))
        {
            Some(days) => Ok(Some(ValidTo::For(days))),
            None => {
                bad(
                    "import.valid_for",
                    format!(
                        "expected a number of days from 1 to {MAX_VALID_TO_DAYS} followed by d, e.g. \"365d\", found {text:?}"
                    ),
                );
                Err(())
            }
        },
        (None, None) => Ok(None),
    };
    let expiration = match (raw_import.expiration.as_str(), valid_to) {
        (_, Err(())) => None,
        ("KEY_MATERIAL_DOES_NOT_EXPIRE", Ok(None)) => Some(Expiration::DoesNotExpire),
        ("KEY_MATERIAL_DOES_NOT_EXPIRE", Ok(Some(_))) => {
            bad(
                "import.valid_to",
                "must not be set when expiration is KEY_MATERIAL_DOES_NOT_EXPIRE (nor valid_for)"
                    .into(),
            );
            None
        }
        ("KEY_MATERIAL_EXPIRES", Ok(None)) => {
            bad(
                "import.valid_to",
                "missing: KEY_MATERIAL_EXPIRES needs valid_to, e.g. valid_to = 2027-06-30T00:00:00Z, or valid_for = \"365d\"".into(),
            );
            None
        }
        ("KEY_MATERIAL_EXPIRES", Ok(Some(ValidTo::For(days)))) => {
            // Offline (verify) no run's start is known; the value is not used there.
            let start = now.unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let valid_to =
                start.replace_nanosecond(0).unwrap_or(start) + time::Duration::days(days);
            Some(Expiration::Expires { valid_to })
        }
        ("KEY_MATERIAL_EXPIRES", Ok(Some(ValidTo::At(dt)))) => match datetime(&dt) {
            None => {
                bad(
                    "import.valid_to",
                    format!(
                        "expected a date-time with a UTC offset, e.g. 2027-06-30T00:00:00Z, found {dt}"
                    ),
                );
                None
            }
            Some(valid_to) => match now.map_or(Ok(()), |now| check_valid_to(valid_to, now)) {
                Ok(()) => Some(Expiration::Expires { valid_to }),
                Err(why) => {
                    bad("import.valid_to", why);
                    None
                }
            },
        },
        (other, _) => {
            bad(
                "import.expiration",
                format!(
                    "expected KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE, found {other:?}"
                ),
            );
            None
        }
    };

    // [dual_control] and [[custodian]]
    let dual_control = match (raw.dual_control.enabled, raw.dual_control.quorum) {
        (Some(false), _) => Some(DualControl::Off),
        (_, None) => {
            bad(
                "dual_control.quorum",
                "missing: set quorum = M (at least 2 custodians must approve), or enabled = false for a rehearsal".into(),
            );
            None
        }
        (_, Some(m)) => {
            let mut custodians = Vec::new();
            let mut names = std::collections::HashSet::new();
            let mut keys = std::collections::HashSet::new();
            for (i, c) in raw.custodian.iter().enumerate() {
                let at = |field: &str| format!("custodian[{i}].{field}");
                if c.name.trim().is_empty() {
                    bad(&at("name"), "must not be empty".into());
                } else if !names.insert(c.name.clone()) {
                    bad(
                        &at("name"),
                        format!("{:?} is listed twice; each custodian once", c.name),
                    );
                }
                let fp = c.public_key_sha256.to_ascii_lowercase();
                if fp.len() != 64 || !fp.chars().all(|ch| ch.is_ascii_hexdigit()) {
                    bad(
                        &at("public_key_sha256"),
                        format!(
                            "expected 64 hex digits (printed by `byok custodian enroll`), found {:?}",
                            c.public_key_sha256
                        ),
                    );
                } else if !keys.insert(fp.clone()) {
                    bad(
                        &at("public_key_sha256"),
                        "the same approval key is listed for two custodians; each needs their own key".into(),
                    );
                }
                if c.key_label.is_empty() {
                    bad(&at("key_label"), "must not be empty".into());
                }
                let token = match (&c.token_label, &c.token_serial) {
                    (Some(l), None) if !l.is_empty() => Some(TokenSelector::Label(l.clone())),
                    (None, Some(s)) if !s.is_empty() => Some(TokenSelector::Serial(s.clone())),
                    _ => {
                        bad(
                            &at("token_label"),
                            "give exactly one of token_label or token_serial: the custodian's own token".into(),
                        );
                        None
                    }
                };
                let module = match (&c.module, &c.module_env) {
                    (None, None) => Ok(None),
                    (Some(p), None) if !p.is_empty() => {
                        Ok(Some(ModuleSource::Path(PathBuf::from(p))))
                    }
                    (Some(_), None) => {
                        bad(
                            &at("module"),
                            "must not be empty; give the path of the custodian's PKCS#11 module, or leave module out to use the HSM's".into(),
                        );
                        Err(())
                    }
                    (None, Some(v)) if is_env_name(v) => Ok(Some(ModuleSource::Env(v.clone()))),
                    (None, Some(v)) => {
                        bad(
                            &at("module_env"),
                            format!(
                                "expected an environment variable name like BYOK_PKCS11_MODULE, found {v:?}"
                            ),
                        );
                        Err(())
                    }
                    (Some(_), Some(_)) => {
                        bad(
                            &at("module"),
                            "give either module or module_env, not both".into(),
                        );
                        Err(())
                    }
                };
                // Tokens can be compared here only within the HSM's module as written; on
                // another module the same label or serial is another token, and `byok run`
                // compares module and serial at every approval.
                let same_module = match &module {
                    Ok(None) => true,
                    Ok(Some(ModuleSource::Path(p))) => {
                        hsm_module.as_deref().map(Path::new) == Some(p.as_path())
                    }
                    Ok(Some(ModuleSource::Env(v))) => hsm_module_env.as_ref() == Some(v),
                    Err(()) => false,
                };
                if same_module && token.is_some() && token == hsm_token {
                    bad(
                        &at("token_label"),
                        "is the ceremony's HSM token; approvals must be made on the custodian's own token".into(),
                    );
                }
                if let (Some(token), Ok(module)) = (token, module) {
                    custodians.push(Custodian {
                        name: c.name.clone(),
                        module,
                        token,
                        key_label: c.key_label.clone(),
                        public_key_sha256: fp,
                    });
                }
            }
            let n = raw.custodian.len();
            if m < 2 || usize::try_from(m).map_or(true, |m| m > n) {
                bad(
                    "dual_control.quorum",
                    format!("expected 2 ≤ quorum ≤ the number of custodians ({n}), found {m}"),
                );
                None
            } else {
                usize::try_from(m)
                    .ok()
                    .map(|quorum| DualControl::Quorum { quorum, custodians })
            }
        }
    };

    // [source]: required where the kind builds on an earlier transcript, refused elsewhere.
    let input = match (&kind, raw.source) {
        (Some(Kind::Reimport), None) => {
            bad(
                "source",
                "missing: kind = \"reimport\" needs [source] with transcript = \"PATH\" (the transcript of the ceremony that kept the key) and last_line_sha256 = \"HEX\" (its fingerprint, written on paper)".into(),
            );
            None
        }
        (Some(Kind::Rollback), None) => {
            bad(
                "source",
                "missing: a rollback needs [source] with transcript = \"PATH\" (the finished alias-swap ceremony's transcript) and last_line_sha256 = \"HEX\" (its fingerprint, written on paper)".into(),
            );
            None
        }
        (Some(Kind::Reimport | Kind::Rollback), Some(s)) => {
            let mut ok = true;
            if s.transcript.trim().is_empty() {
                bad(
                    "source.transcript",
                    "must name the earlier transcript's file".into(),
                );
                ok = false;
            }
            if s.last_line_sha256.len() != 64
                || !s.last_line_sha256.chars().all(|c| c.is_ascii_hexdigit())
            {
                bad(
                    "source.last_line_sha256",
                    format!(
                        "expected 64 hex digits (the SHA-256 of the transcript's last line, printed by byok run and byok verify), found {:?}",
                        s.last_line_sha256
                    ),
                );
                ok = false;
            }
            ok.then(|| SourceTranscript {
                path: PathBuf::from(&s.transcript),
                as_written: s.transcript,
                last_line_sha256: s.last_line_sha256.to_ascii_lowercase(),
            })
        }
        (Some(k), Some(_)) => {
            bad(
                "source",
                format!(
                    "is for kind = \"rollback\" or \"reimport\"; remove [source] (this ceremony is kind = {:?})",
                    k.name()
                ),
            );
            None
        }
        (None, _) | (_, None) => None,
    };
    if let (Some(Kind::Rotate { .. } | Kind::Reimport), Some(list)) = (&kind, &targets)
        && let Some(t) = list.iter().find(|t| t.create.is_some())
    {
        bad(
            "target.create",
            format!(
                "target {} ({}) has create = true, but {}; remove create",
                t.index,
                t.key,
                if kind == Some(Kind::Reimport) {
                    "a reimport puts material back into the key that held it (or a multi-Region replica of it), which exists"
                } else {
                    "a rotation puts new material into a key that exists and is Enabled"
                }
            ),
        );
        return None;
    }
    if let (Some(k), Some(list)) = (&kind, &targets)
        && k.moves_aliases()
    {
        let what = if rollback {
            "a rollback"
        } else {
            "an alias swap"
        };
        for t in list {
            if t.create.is_some() {
                bad(
                    "target.create",
                    format!(
                        "target {} ({}): {what} creates no alias; remove create",
                        t.index, t.key
                    ),
                );
                return None;
            }
            if !t.key.starts_with("alias/") {
                bad(
                    "target.key",
                    format!(
                        "target {}: {what} moves an alias, so the target must be alias/NAME, found {:?}",
                        t.index, t.key
                    ),
                );
                return None;
            }
        }
        if rollback && raw.hsm.keep_key_label.is_some() {
            bad(
                "hsm.keep_key_label",
                "a rollback generates no key to keep; remove keep_key_label".into(),
            );
            return None;
        }
    }
    Some((
        id,
        raw.ceremony.description,
        raw.ceremony.operator,
        HsmSpec {
            module: module?,
            token: token?,
            audit_key_label: raw.hsm.audit_key_label,
            audit_key_sha256: audit_fp,
            keep_key_label: raw.hsm.keep_key_label,
        },
        KmsSpec {
            region,
            rates: rates?,
            call_timeout: call_timeout?,
            endpoint,
            account,
        },
        targets?,
        ImportSpec {
            algorithm: algorithm?,
            key_spec: key_spec?,
            wrap: wrap?,
            expiration: expiration?,
            kind: kind?,
        },
        dual_control?,
        input,
    ))
}

/// `[kms.rates]` (or the rotation policy's `[rates]`, at `table`): positive requests per
/// second for known operations.
pub(crate) fn rates(
    table: &str,
    raw: Option<&std::collections::BTreeMap<String, toml::Value>>,
    bad: &mut impl FnMut(&str, String),
) -> Option<crate::kms::Rates> {
    use crate::kms::Operation;
    let mut overrides = std::collections::BTreeMap::new();
    let mut ok = true;
    for (name, value) in raw.into_iter().flatten() {
        let field = format!("{table}.{name}");
        let Some(op) = Operation::from_name(name) else {
            let known: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
            bad(
                &field,
                format!(
                    "unknown KMS operation; expected one of {}",
                    known.join(", ")
                ),
            );
            ok = false;
            continue;
        };
        let rate = match value {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        match rate {
            Some(r) if r > 0.0 && r <= 1_000_000.0 && r.is_finite() => {
                overrides.insert(op, r);
            }
            _ => {
                bad(
                    &field,
                    format!(
                        "expected requests per second, a number above 0 (e.g. 1 or 0.25), found {value}"
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then(|| crate::kms::Rates::new(overrides))
}

/// The target list from exactly one of `kms.key`, `[[target]]` and `[targets]`.
fn targets(
    single: Option<String>,
    list: Option<Vec<raw::RawTarget>>,
    product: Option<raw::RawTargets>,
    region: &str,
    keep_key_label: Option<&str>,
    swapping: bool,
    bad: &mut impl FnMut(&str, String),
) -> Option<Vec<Target>> {
    type Draft = (
        String,
        bool,
        Option<String>,
        std::collections::BTreeMap<String, String>,
        Vec<(&'static str, String)>,
        Option<String>,
    );
    let drafts: Vec<(String, Draft)> = match (single, list, product) {
        (Some(key), None, None) => vec![(
            "kms.key".into(),
            (key, false, None, Default::default(), Vec::new(), None),
        )],
        (None, Some(list), None) => {
            if list.is_empty() {
                bad(
                    "target",
                    "names no target; give at least one [[target]] with a key".into(),
                );
                return None;
            }
            list.into_iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        format!("target[{i}].key"),
                        (
                            t.key,
                            t.create.unwrap_or(false),
                            t.description,
                            t.tags.unwrap_or_default(),
                            Vec::new(),
                            t.previous_key,
                        ),
                    )
                })
                .collect()
        }
        (None, None, Some(p)) => {
            let mut ok = true;
            for (field, names) in [
                ("targets.services", &p.services),
                ("targets.environments", &p.environments),
            ] {
                if names.is_empty() {
                    bad(field, "must name at least one".into());
                    ok = false;
                }
                for n in names {
                    if n.is_empty()
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                    {
                        bad(
                            field,
                            format!("{n:?}: expected 1 or more of A-Z a-z 0-9 _ -"),
                        );
                        ok = false;
                    }
                }
            }
            if p.key
                .replace("{service}", "")
                .replace("{environment}", "")
                .contains(['{', '}'])
            {
                bad(
                    "targets.key",
                    format!(
                        "{:?}: the only placeholders are {{service}} and {{environment}}",
                        p.key
                    ),
                );
                ok = false;
            }
            if !ok {
                return None;
            }
            let mut out = Vec::new();
            for s in &p.services {
                for e in &p.environments {
                    let fill = |t: &str| t.replace("{service}", s).replace("{environment}", e);
                    let tags = p
                        .tags
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (fill(&k), fill(&v)))
                        .collect();
                    out.push((
                        "targets.key".to_string(),
                        (
                            fill(&p.key),
                            p.create.unwrap_or(false),
                            p.description.as_deref().map(fill),
                            tags,
                            vec![("service", s.clone()), ("environment", e.clone())],
                            None,
                        ),
                    ));
                }
            }
            out
        }
        (None, None, None) => {
            bad("kms.key", "missing: name the target key with kms.key (one key), [[target]] tables or one [targets] table".into());
            return None;
        }
        (Some(_), _, _) => {
            bad("kms.key", "give the targets one way: kms.key (one key), [[target]] tables or one [targets] table, not several".into());
            return None;
        }
        (None, Some(_), Some(_)) => {
            bad(
                "targets",
                "give the targets one way: [[target]] tables or one [targets] table, not both"
                    .into(),
            );
            return None;
        }
    };
    if drafts.len() > MAX_TARGETS {
        bad(
            "targets",
            format!(
                "{} targets; a ceremony holds at most {MAX_TARGETS}: split it into several ceremonies",
                drafts.len()
            ),
        );
        return None;
    }
    let mut ok = true;
    // The expansions of one `[targets]` template share its mistakes: report the first only.
    let mut template_reported = false;
    let mut bad = |field: &str, message: String| {
        if field == "targets.key" {
            if template_reported {
                return;
            }
            template_reported = true;
        }
        bad(field, message);
    };
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut labels: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (index, (field, (key, create, description, tags, vars, previous_key))) in
        drafts.into_iter().enumerate()
    {
        if !is_key_reference(&key) {
            // `kms.key` was checked above with its own message.
            if field != "kms.key" {
                bad(
                    &field,
                    format!(
                        "target {index}: expected a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), a key id or alias/NAME, found {key:?}"
                    ),
                );
            }
            ok = false;
            continue;
        }
        if let Some(first) = seen.insert(key.clone(), index) {
            bad(
                &field,
                format!("{key} is listed twice (targets {first} and {index}); each key once"),
            );
            ok = false;
        }
        let key_region = key
            .strip_prefix("arn:")
            .and_then(|r| r.split(':').nth(2))
            .unwrap_or(region)
            .to_string();
        let swap = match (swapping, previous_key) {
            (true, Some(previous)) => {
                let arn_region = previous
                    .strip_prefix("arn:")
                    .filter(|_| is_key_reference(&previous) && previous.contains(":key/"))
                    .and_then(|r| r.split(':').nth(2));
                if arn_region != Some(key_region.as_str()) {
                    bad(
                        &field,
                        format!(
                            "target {index}: previous_key must be the full ARN of the key {key} names now (arn:aws:kms:{key_region}:ACCOUNT:key/ID), found {previous:?}"
                        ),
                    );
                    ok = false;
                }
                Some(SwapSpec {
                    previous_key: previous,
                    description: description.clone(),
                    tags: tags.clone(),
                })
            }
            (true, None) => {
                bad(
                    &field,
                    if field == "targets.key" {
                        "strategy = \"alias-swap\" needs each target's previous_key: list the targets as [[target]] tables, each with key = \"alias/…\" and previous_key = \"arn:…\"".to_string()
                    } else {
                        format!(
                            "target {index} ({key}): strategy = \"alias-swap\" needs previous_key, the ARN of the key the alias names now"
                        )
                    },
                );
                ok = false;
                None
            }
            (false, Some(_)) => {
                bad(
                    &field,
                    format!(
                        "target {index}: previous_key is for kind = \"rotate\" with strategy = \"alias-swap\"; remove it"
                    ),
                );
                ok = false;
                None
            }
            (false, None) => None,
        };
        let create = if create {
            match key.strip_prefix("alias/") {
                Some(_) => Some(CreateSpec {
                    alias: key.clone(),
                    description: description.unwrap_or_default(),
                    tags,
                }),
                None => {
                    bad(
                        &field,
                        format!(
                            "target {index}: create = true needs an alias (alias/NAME) to create, found {key:?}"
                        ),
                    );
                    ok = false;
                    None
                }
            }
        } else {
            if (description.is_some() || !tags.is_empty()) && swap.is_none() {
                bad(
                    &field,
                    format!(
                        "target {index}: description and tags are for create = true; remove them or set create = true"
                    ),
                );
                ok = false;
            }
            None
        };
        let keep = keep_key_label.map(|l| {
            let mut label = l
                .replace("{key}", &key)
                .replace("{index}", &index.to_string());
            for (name, value) in &vars {
                label = label.replace(&format!("{{{name}}}"), value);
            }
            label
        });
        if let Some(label) = &keep
            && label.contains(['{', '}'])
        {
            bad(
                "hsm.keep_key_label",
                format!(
                    "{label:?} (target {index}) has an unknown placeholder; use {{key}} or {{index}}, and {{service}} or {{environment}} with [targets]"
                ),
            );
            ok = false;
        } else if let Some(label) = &keep
            && let Some(first) = labels.insert(label.clone(), index)
        {
            bad(
                "hsm.keep_key_label",
                format!(
                    "expands to {label:?} for targets {first} and {index}; put {{key}} or {{index}} in it so each target gets its own label"
                ),
            );
            ok = false;
        }
        out.push(Target {
            index,
            key,
            region: key_region,
            create,
            keep_key_label: keep,
            swap,
        });
    }
    ok.then_some(out)
}

/// `import.valid_to` or `import.valid_for`, as written.
enum ValidTo {
    At(toml::value::Datetime),
    For(i64),
}

/// KMS's rule for `ValidTo`: in the future, at most 365 days ahead of `now`.
pub fn check_valid_to(valid_to: OffsetDateTime, now: OffsetDateTime) -> Result<(), String> {
    if valid_to <= now {
        return Err(format!(
            "{} is in the past; choose a time after now and at most {MAX_VALID_TO_DAYS} days ahead",
            crate::rfc3339::format(valid_to)
        ));
    }
    if valid_to > now + time::Duration::days(MAX_VALID_TO_DAYS) {
        return Err(format!(
            "{} is more than {MAX_VALID_TO_DAYS} days ahead, which KMS refuses; choose an earlier time",
            crate::rfc3339::format(valid_to)
        ));
    }
    Ok(())
}

fn datetime(dt: &toml::value::Datetime) -> Option<OffsetDateTime> {
    dt.date?;
    dt.time?;
    dt.offset?;
    OffsetDateTime::parse(
        &dt.to_string(),
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_key_reference(key: &str) -> bool {
    if let Some(rest) = key.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return parts.len() == 5
            && parts[1] == "kms"
            && (parts[4].starts_with("key/") || parts[4].starts_with("alias/"))
            && parts[4].len() > 6;
    }
    if let Some(name) = key.strip_prefix("alias/") {
        return !name.is_empty()
            && !name.starts_with("aws/")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'));
    }
    let id = key.strip_prefix("mrk-").unwrap_or(key);
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
