//! `byok policy`: the least-privilege IAM policy for the role that runs a ceremony, derived
//! from the parsed ceremony file and the KMS calls each kind of ceremony makes (see the
//! [`crate::kms::Kms`] trait and `src/ceremony/`). Never calls AWS; the statements are
//! documented one by one in docs/iam-policy.md.
//!
//! STS GetCallerIdentity (the `kms_identity` record) needs no permission: AWS answers it for
//! every authenticated caller, so it has no statement here.

use serde_json::{Value, json};

use crate::ceremony::preflight::{CREATED_BY_TAG, created_by};
use crate::spec::{Ceremony, Kind};

/// The `Sid` (and prefix of the `Sid`s) of the statements whose actions only a resumed run
/// (or a lost answer) calls.
pub const RESUME_SID: &str = "OnlyWhenResumingOrReconciling";

/// `ARN` prefix `arn:aws:kms:REGION:ACCOUNT:` for a target.
fn prefix(c: &Ceremony, region: &str, key: &str) -> String {
    // An ARN names its own partition, region and account; otherwise the file's account, or
    // any account (`*`) when the file does not pin one.
    if let Some(rest) = key.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if let [partition, _kms, region, account, _] = parts.as_slice() {
            return format!("arn:{partition}:kms:{region}:{account}:");
        }
    }
    let account = c.kms.account.as_deref().unwrap_or("*");
    format!("arn:aws:kms:{region}:{account}:")
}

/// Where the KMS calls on a ceremony's existing keys may go: exact key ARNs, and for targets
/// named by alias, any key in the account that carries that alias (`kms:ResourceAliases`).
struct Targets {
    key_arns: Vec<String>,
    alias_arns: Vec<String>,
    aliases: Vec<String>,
    key_wildcards: Vec<String>,
    created_tags: Vec<String>,
}

fn targets(c: &Ceremony) -> Targets {
    let mut t = Targets {
        key_arns: Vec::new(),
        alias_arns: Vec::new(),
        aliases: Vec::new(),
        key_wildcards: Vec::new(),
        created_tags: Vec::new(),
    };
    for target in &c.targets {
        let p = prefix(c, &target.region, &target.key);
        let wildcard = format!("{p}key/*");
        if !t.key_wildcards.contains(&wildcard) {
            t.key_wildcards.push(wildcard);
        }
        let alias = target
            .create
            .as_ref()
            .map(|cr| cr.alias.clone())
            .or_else(|| {
                let name = target.key.rsplit_once(":alias/").map(|(_, a)| a);
                match name {
                    Some(a) => Some(format!("alias/{a}")),
                    None => target.key.starts_with("alias/").then(|| target.key.clone()),
                }
            });
        match alias {
            Some(alias) => {
                t.alias_arns.push(format!("{p}{alias}"));
                if target.create.is_some() || target.swap.is_some() {
                    t.created_tags.push(created_by(&c.id, &alias));
                }
                t.aliases.push(alias);
            }
            None if target.key.starts_with("arn:") => t.key_arns.push(target.key.clone()),
            None => t.key_arns.push(format!("{p}key/{}", target.key)),
        }
        if let Some(swap) = &target.swap {
            t.key_arns.push(swap.previous_key.clone());
        }
    }
    t
}

/// The actions a run of this ceremony's kind calls on its keys, before conditions.
fn key_actions(kind: &Kind) -> Vec<&'static str> {
    match kind {
        Kind::Import | Kind::Reimport => vec!["kms:DescribeKey", "kms:Encrypt", "kms:Decrypt"],
        Kind::Rotate { .. } => vec![
            "kms:DescribeKey",
            "kms:ListKeyRotations",
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:RotateKeyOnDemand",
        ],
        Kind::AliasSwap { .. } => vec![
            "kms:DescribeKey",
            "kms:ListResourceTags",
            "kms:Encrypt",
            "kms:Decrypt",
        ],
        Kind::Rollback => vec!["kms:DescribeKey", "kms:Encrypt", "kms:Decrypt"],
    }
}

/// Statements granting `actions` on the ceremony's keys: exact ARNs, keys carrying a target
/// alias, and keys the ceremony created (tagged [`CREATED_BY_TAG`]).
fn on_keys(sid: &str, actions: &[&str], t: &Targets, extra: Option<Value>) -> Vec<Value> {
    let with = |mut cond: serde_json::Map<String, Value>| {
        if let Some(Value::Object(more)) = &extra {
            for (k, v) in more {
                cond.insert(k.clone(), v.clone());
            }
        }
        Value::Object(cond)
    };
    let mut out = Vec::new();
    let mut statement = |suffix: &str, resource: Value, cond: serde_json::Map<String, Value>| {
        let mut s = json!({"Sid": format!("{sid}{suffix}"), "Effect": "Allow",
            "Action": actions, "Resource": resource});
        let cond = with(cond);
        if cond.as_object().is_some_and(|m| !m.is_empty()) {
            s["Condition"] = cond;
        }
        out.push(s);
    };
    if !t.key_arns.is_empty() {
        statement("ByArn", json!(t.key_arns), serde_json::Map::new());
    }
    if !t.aliases.is_empty() {
        let mut cond = serde_json::Map::new();
        cond.insert(
            "ForAnyValue:StringEquals".into(),
            json!({"kms:ResourceAliases": t.aliases}),
        );
        statement("ByAlias", json!(t.key_wildcards), cond);
    }
    if !t.created_tags.is_empty() {
        let mut cond = serde_json::Map::new();
        cond.insert(
            "StringEquals".into(),
            json!({ format!("aws:ResourceTag/{CREATED_BY_TAG}"): t.created_tags }),
        );
        statement("Created", json!(t.key_wildcards), cond);
    }
    out
}

/// The policy for the role that runs ceremony `c`.
pub fn for_ceremony(c: &Ceremony) -> Value {
    let t = targets(c);
    let kind = &c.import.kind;
    let creates = c
        .targets
        .iter()
        .any(|t| t.create.is_some() || t.swap.is_some());
    let mut statements = on_keys("UseTargetKeys", &key_actions(kind), &t, None);
    if kind.imports() {
        statements.extend(on_keys(
            "GetParametersForImport",
            &["kms:GetParametersForImport"],
            &t,
            Some(json!({"StringEquals": {
                "kms:WrappingAlgorithm": c.import.algorithm.kms_name(),
                "kms:WrappingKeySpec": c.import.key_spec.kms_name(),
            }})),
        ));
        let mut cond = json!({"StringEquals": {
            "kms:ExpirationModel": c.import.expiration.model()}});
        if let Some(valid_to) = c.import.expiration.valid_to() {
            cond["NumericLessThanEquals"] = json!({"kms:ValidTo": valid_to.unix_timestamp()});
        }
        statements.extend(on_keys(
            "ImportKeyMaterial",
            &["kms:ImportKeyMaterial"],
            &t,
            Some(cond),
        ));
    }
    if creates {
        let request_tag = json!({
            format!("aws:RequestTag/{CREATED_BY_TAG}"): t.created_tags,
        });
        statements.push(json!({
            "Sid": "CreateExternalKeys",
            "Effect": "Allow",
            "Action": "kms:CreateKey",
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "kms:KeyOrigin": "EXTERNAL",
                    format!("aws:RequestTag/{CREATED_BY_TAG}"): t.created_tags,
                },
            },
        }));
        // CreateKey with Tags also needs kms:TagResource (no call of its own).
        statements.push(json!({
            "Sid": "TagKeysAtCreation",
            "Effect": "Allow",
            "Action": "kms:TagResource",
            "Resource": "*",
            "Condition": {"StringEquals": request_tag},
        }));
    }
    let alias_action = if kind.moves_aliases() {
        Some("kms:UpdateAlias")
    } else if c.targets.iter().any(|t| t.create.is_some()) {
        Some("kms:CreateAlias")
    } else {
        None
    };
    if let Some(action) = alias_action {
        statements.push(json!({
            "Sid": "AliasesByName",
            "Effect": "Allow",
            "Action": action,
            "Resource": t.alias_arns,
        }));
        // CreateAlias and UpdateAlias are also authorized on the keys. A rollback's keys
        // come from its source transcript, so they are granted by region and account; the
        // alias ARNs above still bound which aliases can move.
        let mut s = json!({
            "Sid": "AliasesOnKeys",
            "Effect": "Allow",
            "Action": action,
            "Resource": t.key_wildcards,
        });
        if !kind.moves_aliases() {
            s["Condition"] = json!({"StringEquals": {
                format!("aws:ResourceTag/{CREATED_BY_TAG}"): t.created_tags}});
        }
        statements.push(s);
    }
    // Only a resumed run, or a run that lost an import's answer, asks these: ListKeyRotations
    // to settle an import, and (when keys are created) ListKeys and ListResourceTags to find
    // a key whose CreateKey answer was lost. ListKeys has no resource but `*`.
    if kind.imports() {
        let mut on_keys = vec!["kms:ListKeyRotations"];
        if creates {
            on_keys.push("kms:ListResourceTags");
            statements.push(json!({
                "Sid": format!("{RESUME_SID}ListKeys"),
                "Effect": "Allow",
                "Action": "kms:ListKeys",
                "Resource": "*",
            }));
        }
        statements.push(json!({
            "Sid": RESUME_SID,
            "Effect": "Allow",
            "Action": on_keys,
            "Resource": t.key_wildcards,
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The read-only policy `byok inventory` needs: exactly the calls it makes (ListKeys and
/// ListAliases per region, then DescribeKey, ListResourceTags and ListKeyRotations per key).
pub fn for_inventory() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadOnlyInventory",
        "Effect": "Allow",
        "Action": [
            "kms:ListKeys",
            "kms:ListAliases",
            "kms:DescribeKey",
            "kms:ListKeyRotations",
            "kms:ListResourceTags",
        ],
        "Resource": "*",
    }]})
}

/// Every action `policy` allows (`Allow` statements only).
pub fn allowed_actions(policy: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for s in policy["Statement"].as_array().into_iter().flatten() {
        if s["Effect"] != "Allow" {
            continue;
        }
        match &s["Action"] {
            Value::String(a) => {
                out.insert(a.clone());
            }
            Value::Array(list) => {
                out.extend(list.iter().filter_map(|a| a.as_str().map(String::from)))
            }
            _ => {}
        }
    }
    out
}
