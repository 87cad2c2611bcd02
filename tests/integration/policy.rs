//! `byok policy FILE` against what real ceremonies call: each ceremony runs through
//! `scripts/kms-proxy` in front of LocalStack, and the set of KMS actions the proxy saw must
//! equal the set the printed policy allows outside its resume-only statement, no more and no
//! less. `kms:TagResource` is the one permission without a call of its own: CreateKey with
//! tags needs it (AWS KMS docs, CreateKey).

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{
    KmsProxy, SoftHsm, TestKms, ceremony_pinned_as, rand_u32, run_with_stdin, stderr, stdout,
    use_endpoint,
};

/// The KMS actions the proxy forwarded (STS and anything without X-Amz-Target left out).
fn seen(proxy: &KmsProxy) -> BTreeSet<String> {
    std::fs::read_to_string(&proxy.log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .filter(|op| op != "-" && op != "GetCallerIdentity")
        .map(|op| format!("kms:{op}"))
        .collect()
}

/// The policy `byok policy FILE` prints.
fn policy(hsm: &SoftHsm, file: &Path) -> serde_json::Value {
    let out = hsm.byok().arg("policy").arg(file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let policy: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    policy
}

/// The actions the policy allows on a run that resumes nothing, less `kms:TagResource`.
fn granted(policy: &serde_json::Value) -> BTreeSet<String> {
    let mut out = allowed(policy, |sid| {
        !sid.starts_with("OnlyWhenResumingOrReconciling")
    });
    out.remove("kms:TagResource");
    out
}

/// The actions of the `Allow` statements whose `Sid` passes `keep`.
fn allowed(policy: &serde_json::Value, keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in policy["Statement"].as_array().unwrap() {
        if s["Effect"] != "Allow" || !keep(s["Sid"].as_str().unwrap_or_default()) {
            continue;
        }
        match &s["Action"] {
            serde_json::Value::String(a) => {
                out.insert(a.clone());
            }
            serde_json::Value::Array(l) => {
                out.extend(l.iter().map(|a| a.as_str().unwrap().to_string()))
            }
            other => panic!("Action {other}"),
        }
    }
    out
}

/// Runs `file` through a fresh proxy and checks the policy against what it saw.
fn run_and_compare(
    hsm: &SoftHsm,
    file: &Path,
    answers: &str,
    name: &str,
    must_call: &[&str],
) -> serde_json::Value {
    let proxy = KmsProxy::start(&[]);
    let envs = use_endpoint(file, &proxy.url);
    let mut cmd = hsm.byok();
    cmd.arg("run")
        .arg(file)
        .arg("--transcript")
        .arg(hsm.path(name))
        .envs(envs);
    let out = run_with_stdin(cmd, answers);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let policy = policy(hsm, file);
    let seen = seen(&proxy);
    for action in must_call {
        assert!(
            seen.contains(*action),
            "{name}: {action} not called: {seen:?}"
        );
    }
    assert_eq!(seen, granted(&policy), "{name}: called vs granted");
    policy
}

fn product(hsm: &SoftHsm, prefix: &str) -> std::path::PathBuf {
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    ceremony_pinned_as(
        hsm,
        "fleet-product.toml",
        &format!("import-{prefix}.toml"),
        &[
            ("targets.key", key.as_str()),
            ("targets.services", "[\"s3\", \"rds\"]"),
            ("targets.environments", "[\"prod\"]"),
        ],
    )
}

#[test]
fn policy_grants_exactly_what_import_rotate_swap_and_rollback_call() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let prefix = format!("p{:08x}", rand_u32());
    let alias = format!("alias/{prefix}-s3-prod");
    let alias2 = format!("alias/{prefix}-rds-prod");

    // import with create = true
    let file = product(&hsm, &prefix);
    let p = run_and_compare(
        &hsm,
        &file,
        &hsm.all_answers(),
        "import.jsonl",
        &["kms:CreateKey", "kms:CreateAlias", "kms:ImportKeyMaterial"],
    );
    let text = p.to_string();
    assert!(text.contains("\"kms:KeyOrigin\":\"EXTERNAL\""), "{text}");
    assert!(text.contains("kms:WrappingAlgorithm"), "{text}");
    assert!(text.contains("kms:ExpirationModel"), "{text}");
    assert!(text.contains(&format!(":{alias}\"")), "{text}");
    let old = kms.arn(&alias);
    let old2 = kms.arn(&alias2);

    // rotate, new material
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    let file = ceremony_pinned_as(
        &hsm,
        "fleet-rotate.toml",
        "rotate.toml",
        &[
            ("targets.key", key.as_str()),
            ("targets.services", "[\"s3\", \"rds\"]"),
            ("targets.environments", "[\"prod\"]"),
        ],
    );
    let answers = format!("{}{}", hsm.all_answers(), hsm.approve(&["Bob", "Carol"]));
    run_and_compare(
        &hsm,
        &file,
        &answers,
        "rotate.jsonl",
        &["kms:RotateKeyOnDemand", "kms:ImportKeyMaterial"],
    );

    // alias swap
    let a = format!("\"{alias}\"");
    let prev = format!("\"{old}\"");
    let a2 = format!("\"{alias2}\"");
    let prev2 = format!("\"{old2}\"");
    let file = ceremony_pinned_as(
        &hsm,
        "fleet-alias-swap.toml",
        "swap.toml",
        &[
            ("target[0].key", a.as_str()),
            ("target[0].previous_key", prev.as_str()),
            ("target[1].key", a2.as_str()),
            ("target[1].previous_key", prev2.as_str()),
        ],
    );
    let swap_t = hsm.path("swap.jsonl");
    let p = run_and_compare(
        &hsm,
        &file,
        &answers,
        "swap.jsonl",
        &["kms:CreateKey", "kms:UpdateAlias", "kms:ListResourceTags"],
    );
    assert!(p.to_string().contains(&old), "the previous key by ARN: {p}");
    assert_ne!(kms.arn(&alias), old);

    // rollback
    let text = std::fs::read_to_string(&swap_t).unwrap();
    let last = text.lines().last().unwrap();
    use sha2::Digest;
    let pin = format!("\"{}\"", hex::encode(sha2::Sha256::digest(last.as_bytes())));
    let source = format!("\"{}\"", swap_t.display());
    let file = ceremony_pinned_as(
        &hsm,
        "fleet-rollback.toml",
        "rollback.toml",
        &[
            ("source.transcript", source.as_str()),
            ("source.last_line_sha256", pin.as_str()),
            ("target[0].key", a.as_str()),
            ("target[1].key", a2.as_str()),
        ],
    );
    let answers = format!("{}{}", hsm.through_plan(), hsm.approve(&["Alice", "Carol"]));
    run_and_compare(
        &hsm,
        &file,
        &answers,
        "rollback.jsonl",
        &["kms:UpdateAlias"],
    );
    assert_eq!(kms.arn(&alias), old);
    assert_eq!(kms.arn(&alias2), old2);
}

/// `byok inventory` (with transcripts, so that it also looks for a transcript's gone key)
/// through the proxy: the actions it made are exactly what `byok policy --inventory` grants,
/// and all are reads.
#[test]
fn the_inventory_policy_grants_exactly_what_an_inventory_calls() {
    let hsm = SoftHsm::new();
    let out = hsm.byok().args(["policy", "--inventory"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let actions = allowed_all(&p);
    for a in &actions {
        assert!(
            a.starts_with("kms:List") || a.starts_with("kms:Describe"),
            "{a} is not read only"
        );
    }
    // A key in the region, and the sample transcript whose keys are gone.
    let kms = TestKms::new();
    kms.external_key();
    let dir = hsm.path("inventory-transcripts");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/fleet-6-targets.jsonl"),
        dir.join("sample.jsonl"),
    )
    .unwrap();
    let proxy = KmsProxy::start(&[]);
    let out = crate::common::byok()
        .args([
            "inventory",
            "--region",
            "us-east-1",
            "--format",
            "json",
            "--transcripts",
        ])
        .arg(&dir)
        .args([
            "--audit-key-sha256",
            "f2db8f72b376193f07cbb03226c68465e36a165319dfbe161b7767440a99344b",
        ])
        .env("AWS_ENDPOINT_URL_KMS", &proxy.url)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 10 | 11)),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        seen(&proxy),
        actions,
        "called (left) and granted (right) differ"
    );
}

/// Every action a policy allows, the resume-only statements included.
fn allowed_all(policy: &serde_json::Value) -> BTreeSet<String> {
    allowed(policy, |_| true)
}

/// An import with `create = true` killed between CreateKey and CreateAlias, then resumed: the
/// resumed run finds the created key by its tag (ListKeys, ListResourceTags), which only the
/// resume-only statements grant; everything both runs called is granted.
#[test]
fn policy_grants_what_a_resumed_import_calls() {
    let hsm = SoftHsm::new();
    let prefix = format!("q{:08x}", rand_u32());
    let file = product(&hsm, &prefix);
    let proxy = KmsProxy::start(&[]);
    let envs = use_endpoint(&file, &proxy.url);
    let t1 = hsm.path("killed.jsonl");
    let mut cmd = hsm.byok();
    cmd.arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(&t1)
        .envs(envs)
        .env("BYOK_FAILPOINT", "create:answered:2");
    let out = run_with_stdin(cmd, &hsm.all_answers());
    assert!(!out.status.success(), "not killed: {}", stderr(&out));
    let mut cmd = hsm.byok();
    cmd.arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(hsm.path("resumed.jsonl"))
        .arg("--resume")
        .arg(&t1)
        .envs(envs);
    let out = run_with_stdin(cmd, &hsm.all_answers());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));

    let p = policy(&hsm, &file);
    let seen = seen(&proxy);
    let all = allowed_all(&p);
    assert!(
        seen.is_subset(&all),
        "called but not granted: {:?}",
        seen.difference(&all)
    );
    let resume_only: BTreeSet<String> = seen.difference(&granted(&p)).cloned().collect();
    assert!(
        resume_only.contains("kms:ListKeys") && resume_only.contains("kms:ListResourceTags"),
        "{resume_only:?}"
    );
}
