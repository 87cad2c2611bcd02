//! The plan `byok check` prints: what the ceremony will do, in the order it will do it.

use crate::spec::Ceremony;
use crate::wrap::WrapLocation;

use super::target::{Status, TargetState};

/// Rows of the target table shown at the plan approval; the rest are summarised.
const PLAN_ROWS: usize = 40;

/// The plan in words, for the plan approval screen: what the custodians sign for, shown right
/// above the statement's SHA-256. Every value comes from the validated ceremony file and what
/// the KMS preflight found.
///
/// `ran_at` is what `kms_identity` recorded: the account and caller STS named, and the KMS
/// endpoint the requests went to.
pub fn approval_view(
    c: &Ceremony,
    targets: &[TargetState],
    resumes: Option<&str>,
    ran_at: Option<&crate::kms::Whereabouts>,
) -> String {
    let wrap = match c.import.wrap {
        WrapLocation::Hsm => format!("inside the HSM (token {})", c.hsm.token),
        WrapLocation::Host => {
            "on the HOST: the material leaves the HSM in plaintext (wrap = \"host\")".to_string()
        }
    };
    let expiry = match c.import.expiration.valid_to() {
        Some(t) => format!("expires {}{}", crate::rfc3339::format(t), expiry_warning(c)),
        None => "does not expire (KEY_MATERIAL_DOES_NOT_EXPIRE)".to_string(),
    };
    let quorum = match &c.dual_control {
        crate::spec::DualControl::Off => "OFF: REHEARSAL, the operator alone confirms".to_string(),
        crate::spec::DualControl::Quorum { quorum, custodians } => format!(
            "{quorum} of {} custodians ({})",
            custodians.len(),
            custodians
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let to_import = targets.iter().filter(|t| t.to_import()).count();
    let mut out = format!(
        "  What you approve (the plan):\n    ceremony       {id}: {desc}\n    operator       {op}\n{aws}{work}    quorum         {quorum}\n",
        id = c.id,
        desc = c.description,
        op = c.operator,
        aws = ran_at
            .map(|w| {
                let e = |s: &str| crate::text::escape(s).into_owned();
                format!(
                    "    AWS account    {}{} as {}; KMS at {}\n",
                    e(&w.account),
                    if c.kms.account.is_some() {
                        " (pinned)"
                    } else {
                        " (not pinned)"
                    },
                    e(&w.caller_arn),
                    e(&w.endpoint)
                )
            })
            .unwrap_or_default(),
        work = if c.import.kind.imports() {
            format!(
                "    targets        {n} ({to_import} to import in this run)\n    algorithm      {alg} with {spec}\n    key material   {material}\n    wrap           {wrap}\n    expiry         {expiry}\n",
                n = c.targets.len(),
                alg = c.import.algorithm,
                spec = c.import.key_spec,
                material = match &c.hsm.keep_key_label {
                    _ if c.import.kind == crate::spec::Kind::Reimport => "none generated: each key's kept copy on the token, checked now (KCV) against the source transcript; its session copy destroyed after the import".to_string(),
                    Some(l) => format!("AES-256 generated in the HSM, a copy kept on the token as {l:?}"),
                    None => "AES-256 generated in the HSM, destroyed after the import".to_string(),
                },
            )
        } else {
            format!(
                "    targets        {n} alias(es) to move back\n    key material   none: nothing is generated or imported\n    source         {source}\n",
                n = c.targets.len(),
                source = c
                    .source_transcript
                    .as_ref()
                    .map(|s| format!("{}, last line SHA-256 {}", s.as_written, s.last_line_sha256))
                    .unwrap_or_default()
            )
        },
    );
    match &c.import.kind {
        crate::spec::Kind::Rotate {
            key_material_description,
        } => out.push_str(&format!(
            "    kind           rotate: new material into Enabled keys (NEW_KEY_MATERIAL, description {key_material_description:?}), then RotateKeyOnDemand after its own approval\n"
        )),
        crate::spec::Kind::AliasSwap {
            key_material_description,
        } => out.push_str(&format!(
            "    kind           rotate, alias-swap: a new EXTERNAL key per alias (the previous key's tags), its first material (description {key_material_description:?}), then UpdateAlias after its own approval; the previous keys stay Enabled\n"
        )),
        crate::spec::Kind::Rollback => out.push_str(
            "    kind           rollback: each alias goes back to the key the source ceremony moved it from (UpdateAlias after its own approval); nothing is generated or imported\n",
        ),
        crate::spec::Kind::Import | crate::spec::Kind::Reimport => {}
    }
    if c.import.kind == crate::spec::Kind::Reimport
        && let Some(s) = &c.source_transcript
    {
        out.push_str(&format!(
            "    kind           reimport: kept material back into PendingImport keys (EXISTING_KEY_MATERIAL with the source's KeyMaterialId)\n    source         {} (last line SHA-256 {})\n",
            s.as_written, s.last_line_sha256
        ));
    }
    if let Some(name) = resumes {
        out.push_str(&format!("    resumes        {name}\n"));
    }
    for t in targets.iter().take(PLAN_ROWS) {
        let state = match t.status {
            Status::DoneEarlier => "done in the earlier run".to_string(),
            Status::ImportedUnrecorded => {
                "KMS already holds material: not imported again".to_string()
            }
            Status::Checked => match &c.import.kind {
                crate::spec::Kind::Import => {
                    format!("{} (PendingImport)", t.arn.as_deref().unwrap_or("?"))
                }
                crate::spec::Kind::Reimport => match &t.reimport {
                    Some(r) => format!(
                        "{} (PendingImport; material from kept key {:?}, KCV {} as the source recorded, {} of source target {}; KeyMaterialId {})",
                        t.arn.as_deref().unwrap_or("?"),
                        r.label,
                        r.kcv,
                        r.relation,
                        r.source_index,
                        r.key_material_id
                    ),
                    None => format!("{} (PendingImport)", t.arn.as_deref().unwrap_or("?")),
                },
                crate::spec::Kind::Rotate { .. } => format!(
                    "{} (Enabled, current material {})",
                    t.arn.as_deref().unwrap_or("?"),
                    t.previous_material.as_deref().unwrap_or("not reported")
                ),
                crate::spec::Kind::Rollback | crate::spec::Kind::AliasSwap { .. } => format!(
                    "names {}; goes back to {}",
                    t.alias_from.as_deref().unwrap_or("?"),
                    t.alias_to.as_deref().unwrap_or("?")
                ),
            },
            _ if t.spec.swap.is_some() => format!(
                "names {}; a new key (CreateKey, Origin EXTERNAL, its tags) replaces it",
                t.alias_from.as_deref().unwrap_or("?")
            ),
            _ if t.spec.create.is_some() => {
                "to be created (CreateKey, Origin EXTERNAL)".to_string()
            }
            _ => "not checked".to_string(),
        };
        out.push_str(&format!(
            "    {:>4}  {}  {}  {state}\n",
            t.spec.index, t.spec.key, t.spec.region
        ));
    }
    if targets.len() > PLAN_ROWS {
        out.push_str(&format!(
            "    ... and {} more targets (`byok check` lists every one; the statement names all)\n",
            targets.len() - PLAN_ROWS
        ));
    }
    out
}

/// What expiring material risks, for the plan and its approval screen: KMS makes the whole
/// key `PendingImport` when any one of its materials expires or is deleted.
fn expiry_warning(c: &Ceremony) -> String {
    let mut out = String::new();
    if matches!(c.import.kind, crate::spec::Kind::Rotate { .. }) {
        out.push_str(
            "\n                  WARNING: when this material expires (or any one material of a key is deleted), KMS makes the WHOLE key PendingImport: nothing encrypted under it decrypts, under any of its materials, until the material is imported again",
        );
    }
    if c.hsm.keep_key_label.is_none() {
        out.push_str(
            "\n                  WARNING: no copy is kept (no hsm.keep_key_label): after ValidTo the material cannot be imported again, and what it protects is lost for good",
        );
    }
    out
}

/// Human-readable plan of a validated ceremony.
pub fn render(c: &Ceremony) -> String {
    let module = c.hsm.module.to_string();
    let wrap = match c.import.wrap {
        WrapLocation::Hsm if c.import.algorithm.is_rsa_aes() => "inside the HSM (CKM_RSA_AES_KEY_WRAP, or an ephemeral AES key with RFC 5649 wrap and CKM_RSA_PKCS_OAEP; the known-answer test picks)".to_string(),
        WrapLocation::Hsm => "inside the HSM (C_WrapKey, CKM_RSA_PKCS_OAEP)".to_string(),
        WrapLocation::Host => "on the HOST: the material leaves the HSM in plaintext into locked memory (wrap = \"host\")".to_string(),
    };
    let expiry = match c.import.expiration.valid_to() {
        Some(t) => format!(
            "{} (ValidTo {}){}",
            c.import.expiration.model(),
            crate::rfc3339::format(t),
            expiry_warning(c)
        ),
        None => c.import.expiration.model().to_string(),
    };
    let keep = match &c.hsm.keep_key_label {
        _ if c.import.kind == crate::spec::Kind::Reimport => "none generated: the kept copy named by the [source] transcript, copied by the HSM into a session key (under a trusted key the Security Officer makes at open_hsm), destroyed after the import".to_string(),
        Some(l) => format!(
            "a session object; once KMS holds it, copied to the token as {l:?} (wrap-with-trusted only, not modifiable, no encrypt/decrypt)"
        ),
        None => "a session object, destroyed after the import".to_string(),
    };
    let dual = match &c.dual_control {
        crate::spec::DualControl::Off => "OFF — REHEARSAL ONLY: the operator alone confirms the import; no custodian approves anything".to_string(),
        crate::spec::DualControl::Quorum { quorum, custodians } => {
            let points = match c.import.kind {
                crate::spec::Kind::Import | crate::spec::Kind::Reimport => {
                    "the plan and the import"
                }
                crate::spec::Kind::Rotate { .. } => "the plan, the import and the rotation",
                crate::spec::Kind::AliasSwap { .. } => "the plan, the import and the alias move",
                crate::spec::Kind::Rollback => "the plan and the alias move",
            };
            let mut s = format!("{quorum} of {} custodians approve {points}:", custodians.len());
            for k in custodians {
                // A custodian's module is shown only when it is not the HSM's.
                let module = match &k.module {
                    Some(m) if *m != c.hsm.module => format!(", module {m}"),
                    _ => String::new(),
                };
                s.push_str(&format!("\n                    {} ({}{module}, key {:?}, SHA-256 {})", k.name, k.token, k.key_label, k.public_key_sha256));
            }
            s
        }
    };
    use crate::spec::Kind;
    let kind = &c.import.kind;
    let mut steps: Vec<&str> = vec![
        "start: record the ceremony file, the audit key and the target list",
        "open_hsm: log in to the token (PIN asked at the terminal); refuse kept-key labels that exist",
    ];
    match kind {
        Kind::Rollback => steps.extend([
            "source_check before open_hsm: verify the [source] transcript under this file's audit key; its last line must have the pinned SHA-256; it must be an alias-swap ceremony that moved every target alias",
            "kms_preflight: where it runs (kms_identity: STS GetCallerIdentity, the endpoints really used, kms.account checked), then DescribeKey of every alias (read only), before any approval: it must name the key the source moved it to; the key it goes back to must be Enabled",
            "approve_plan: the plan in words above its SHA-256; the custodian quorum signs the plan statement (every target)",
        ]),
        Kind::AliasSwap { .. } => steps.extend([
            "capability_check: known-answer test of the wrap on this token (once), before any approval",
            "kms_preflight: where it runs (kms_identity: STS GetCallerIdentity, the endpoints really used, kms.account checked), then DescribeKey of every alias (read only), before any approval: it must name previous_key, Enabled, EXTERNAL; ListResourceTags of previous_key",
            "approve_plan: the plan in words above its SHA-256; the custodian quorum signs the plan statement (every target)",
            "import_parameters, generate, wrap: per target, CreateKey (Origin EXTERNAL, the previous key's tags; the alias is not touched), DescribeKey; GetParametersForImport; AES-256 generated in the HSM (KCV recorded), wrapped under the KMS public key",
            "confirm_import: the custodian quorum signs one import statement listing every target (ARN, algorithm, spec, public key, blob and import token hashes, KCV)",
            "import, keep, verify: per target, ImportKeyMaterial (NEW_KEY_MATERIAL with the KeyMaterialDescription; sent once, never retried), the token copy when keep_key_label is set, DescribeKey and an Encrypt/Decrypt round trip",
        ]),
        Kind::Import | Kind::Rotate { .. } | Kind::Reimport => steps.extend([
            "capability_check: known-answer test of the wrap on this token (once), before any approval",
            "kms_preflight: where it runs (kms_identity: STS GetCallerIdentity, the endpoints really used, kms.account checked), then DescribeKey of every existing target key (read only), before any approval: EXTERNAL, SYMMETRIC_DEFAULT, PendingImport (kind = \"rotate\": Enabled, its materials counted, a probe encrypted)",
            "approve_plan: the plan in words above its SHA-256; the custodian quorum signs the plan statement (every target)",
            "import_parameters, generate, wrap: per target, CreateKey + CreateAlias when create = true (then DescribeKey); GetParametersForImport; AES-256 generated in the HSM (KCV recorded), wrapped under the KMS public key",
            "confirm_import: the custodian quorum signs one import statement listing every target (ARN, algorithm, spec, public key, blob and import token hashes, KCV)",
            "import, keep, verify: per target, ImportKeyMaterial (sent once, never retried), the token copy when keep_key_label is set, DescribeKey and an Encrypt/Decrypt round trip",
        ]),
    }
    match kind {
        Kind::Rotate { .. } => steps.push(
            "confirm_rotate, rotate: the quorum signs the rotate statement (per target, the material that becomes current); RotateKeyOnDemand (sent once), then DescribeKey shows the imported material current, the probe still decrypts, a new round trip works",
        ),
        Kind::AliasSwap { .. } | Kind::Rollback => steps.push(
            "confirm_swap, swap: the quorum signs the swap statement (per target, the alias and the keys it moves from and to); per alias DescribeKey (still the approved key), UpdateAlias (sent once), then DescribeKey shows the alias on the new key and both keys Enabled, and an Encrypt through the alias is answered by the new key",
        ),
        Kind::Reimport => steps.push(
            "(kind = \"reimport\") source_check before open_hsm: the [source] transcript verifies under this audit key, ends with ceremony_finished, its last line's SHA-256 is the pinned one; open_hsm asks the Security Officer PIN first (trusted transfer key); kept_key_check after kms_preflight: per target, the source target it matches (same key ARN, or a multi-Region replica), the kept key by its label, its KCV computed now equal to the source's, before any approval",
        ),
        Kind::Import => {}
    }
    steps.extend([
        "cleanup: destroy session objects",
        "finish: ceremony_finished; print the last line's SHA-256",
    ]);
    let mut out = format!(
        "Ceremony {id}: {desc}\n  kind            {kind}\n  operator        {op}\n  HSM module      {module}\n  token           {token}\n  audit key       {label:?}, SHA-256 {fp}\n  KMS region      {region}\n  KMS endpoint    {endpoint}\n  AWS account     {account}\n{material}  dual control    {dual}\n",
        id = c.id,
        desc = c.description,
        kind = match &c.import.kind {
            crate::spec::Kind::Import =>
                "import (first material into new EXTERNAL keys)".to_string(),
            crate::spec::Kind::Rotate {
                key_material_description,
            } => format!(
                "rotate, strategy new-material (KeyMaterialDescription {key_material_description:?})"
            ),
            crate::spec::Kind::AliasSwap {
                key_material_description,
            } => format!(
                "rotate, strategy alias-swap (new keys; KeyMaterialDescription {key_material_description:?})"
            ),
            crate::spec::Kind::Rollback => format!(
                "rollback (aliases back to the keys the source ceremony moved them from; source {})",
                c.source_transcript
                    .as_ref()
                    .map(|s| format!(
                        "{}, last line SHA-256 {}",
                        s.path.display(),
                        s.last_line_sha256
                    ))
                    .unwrap_or_default()
            ),
            crate::spec::Kind::Reimport => match &c.source_transcript {
                Some(s) => format!(
                    "reimport (kept material back into PendingImport keys, EXISTING_KEY_MATERIAL)\n  source          {} (last line SHA-256 {})",
                    s.as_written, s.last_line_sha256
                ),
                None => "reimport".to_string(),
            },
        },
        op = c.operator,
        token = c.hsm.token,
        label = c.hsm.audit_key_label,
        fp = c.hsm.audit_key_sha256,
        region = c.kms.region,
        endpoint = match &c.kms.endpoint {
            Some(e) =>
                format!("{e} (kms.endpoint: KMS and STS go there; tests and rehearsals only)"),
            None => "AWS's own; an endpoint set in the environment is refused".to_string(),
        },
        account = match &c.kms.account {
            Some(a) =>
                format!("{a} (kms.account), checked with STS GetCallerIdentity before any approval"),
            None => "not pinned (kms.account): recorded, not checked".to_string(),
        },
        material = if kind.imports() {
            format!(
                "  algorithm       {alg} with {spec}\n  wrap            {wrap}\n  expiration      {expiry}\n  generated key   {keep}\n",
                alg = c.import.algorithm,
                spec = c.import.key_spec,
            )
        } else {
            "  key material    none: a rollback generates and imports nothing\n".to_string()
        },
        dual = dual,
    );
    out.push_str(&targets(c));
    out.push_str(&pace(c));
    out.push_str("Steps:\n");
    for (i, s) in steps.iter().enumerate() {
        out.push_str(&format!("  {:>2}. {s}\n", i + 1));
    }
    out
}

/// The expanded target list, with the KMS calls each target makes.
fn targets(c: &Ceremony) -> String {
    let mut out = format!("Targets ({}):\n", c.targets.len());
    for t in &c.targets {
        let calls = if c.import.kind == crate::spec::Kind::Reimport {
            "DescribeKey (PendingImport), before the plan approval; then GetParametersForImport, ImportKeyMaterial (ImportType EXISTING_KEY_MATERIAL, KeyMaterialId from the source), DescribeKey, Encrypt, Decrypt"
        } else if matches!(c.import.kind, crate::spec::Kind::Rotate { .. }) {
            "before the plan approval: DescribeKey, ListKeyRotations, Encrypt (a probe under the current material); then GetParametersForImport, ImportKeyMaterial (ImportType NEW_KEY_MATERIAL, KeyMaterialDescription), DescribeKey, Encrypt, Decrypt; after the rotate approval: RotateKeyOnDemand, DescribeKey, Decrypt (the probe), Encrypt, Decrypt"
        } else if matches!(c.import.kind, crate::spec::Kind::AliasSwap { .. }) {
            "before the plan approval: DescribeKey (the alias), ListResourceTags (the previous key); then CreateKey (Origin EXTERNAL, the previous key's tags), DescribeKey, GetParametersForImport, ImportKeyMaterial (ImportType NEW_KEY_MATERIAL, KeyMaterialDescription), DescribeKey, Encrypt, Decrypt; after the swap approval: DescribeKey (the alias), UpdateAlias, DescribeKey (the alias and both keys), Encrypt (through the alias), Decrypt"
        } else if c.import.kind == crate::spec::Kind::Rollback {
            "before the plan approval: DescribeKey (the alias, and the key to restore); after the swap approval: DescribeKey (the alias), UpdateAlias, DescribeKey (the alias and both keys), Encrypt (through the alias), Decrypt"
        } else if t.create.is_some() {
            "DescribeKey (the alias; NotFound), CreateKey, CreateAlias, GetParametersForImport, ImportKeyMaterial, DescribeKey, Encrypt, Decrypt"
        } else {
            "DescribeKey, GetParametersForImport, ImportKeyMaterial, DescribeKey, Encrypt, Decrypt"
        };
        out.push_str(&format!(
            "  {:>4}  {}  ({}{}{})\n        KMS calls: {calls}\n",
            t.index,
            t.key,
            t.region,
            if t.create.is_some() { ", create" } else { "" },
            t.keep_key_label
                .as_deref()
                .map(|l| format!(", keep as {l:?}"))
                .unwrap_or_default(),
        ));
    }
    out
}

/// The least time KMS's quotas allow, per region, at the rates in force.
fn pace(c: &Ceremony) -> String {
    use crate::kms::Operation;
    let mut regions: Vec<&str> = c.targets.iter().map(|t| t.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    let mut out = String::from("KMS pace (requests/s):");
    for op in [
        Operation::GetParametersForImport,
        Operation::ImportKeyMaterial,
        Operation::CreateKey,
        Operation::CreateAlias,
        Operation::DescribeKey,
        Operation::RotateKeyOnDemand,
    ] {
        out.push_str(&format!(" {} {}", op.name(), c.kms.rates.of(op)));
    }
    out.push('\n');
    let mut longest = std::time::Duration::ZERO;
    for region in regions {
        let n = c.targets.iter().filter(|t| t.region == region).count();
        let created = c
            .targets
            .iter()
            .filter(|t| t.region == region && t.create.is_some())
            .count();
        // Each target's preflight (and creation) and import parameters overlap with other
        // targets'; the imports follow the one import approval.
        let rates = &c.kms.rates;
        // An alias swap creates one key per target; a rollback imports nothing.
        let created = if c.import.kind.strategy() == Some("alias-swap") {
            n
        } else {
            created
        };
        let imports = if c.import.kind.imports() { n } else { 0 };
        let least = rates.least_time(&[
            (Operation::DescribeKey, n),
            (Operation::CreateKey, created),
            (
                Operation::CreateAlias,
                c.targets
                    .iter()
                    .filter(|t| t.region == region && t.create.is_some())
                    .count(),
            ),
            (Operation::GetParametersForImport, imports),
        ]) + rates.least_time(&[
            (Operation::ImportKeyMaterial, imports),
            (Operation::DescribeKey, imports),
            (Operation::Encrypt, imports),
            (Operation::Decrypt, imports),
        ]) + match c.import.kind {
            crate::spec::Kind::Import | crate::spec::Kind::Reimport => std::time::Duration::ZERO,
            crate::spec::Kind::AliasSwap { .. } | crate::spec::Kind::Rollback => {
                rates.least_time(&[
                    (Operation::UpdateAlias, n),
                    (Operation::DescribeKey, 4 * n),
                    (Operation::Encrypt, n),
                    (Operation::Decrypt, n),
                ])
            }
            // After the rotate approval: RotateKeyOnDemand and its checks.
            crate::spec::Kind::Rotate { .. } => rates.least_time(&[
                (Operation::RotateKeyOnDemand, n),
                (Operation::DescribeKey, n),
                (Operation::Encrypt, n),
                (Operation::Decrypt, 2 * n),
            ]),
        };
        longest = longest.max(least);
        out.push_str(&format!(
            "  {region}: {n} target{}, at least {} s of KMS calls\n",
            if n == 1 { "" } else { "s" },
            least.as_secs()
        ));
    }
    out.push_str(&format!(
        "ETA: at least {} s at KMS's pace, plus the approvals and KMS's answer times\n",
        longest.as_secs()
    ));
    out
}
