//! Where a ceremony ran (issue 11, item 5), end to end against LocalStack: `kms_identity` says
//! what the requests and STS really saw, a pinned account that differs stops the ceremony
//! before any approval with nothing created, and an endpoint override the ceremony file does
//! not name is refused before any prompt.

use std::path::Path;

use crate::common::{
    KmsProxy, SoftHsm, TestKms, assert_contains, ceremony_for, ceremony_pinned, rand_u32, records,
    reference_verify, run_with_stdin, stderr, stdout, use_endpoint,
};

fn first<'a>(recs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    recs.iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} record"))
}

fn types(recs: &[serde_json::Value]) -> Vec<String> {
    recs.iter()
        .map(|r| r["type"].as_str().unwrap().to_string())
        .collect()
}

/// STS GetCallerIdentity asked by the test itself, straight at LocalStack (not through byok).
fn caller_identity() -> (String, String) {
    let endpoint = crate::common::require_env("AWS_ENDPOINT_URL_KMS");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .http_client(http)
            .load(),
    );
    let out = rt
        .block_on(
            aws_sdk_sts::Client::new(&config)
                .get_caller_identity()
                .send(),
        )
        .expect("GetCallerIdentity");
    (
        out.account().unwrap().to_string(),
        out.arn().unwrap().to_string(),
    )
}

fn run(hsm: &SoftHsm, file: &Path, t: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    run_answering(hsm, file, t, envs, &hsm.all_answers())
}

fn run_answering(
    hsm: &SoftHsm,
    file: &Path,
    t: &Path,
    envs: &[(&str, &str)],
    stdin: &str,
) -> std::process::Output {
    let mut cmd = hsm.byok();
    cmd.arg("run").arg(file).arg("--transcript").arg(t);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_with_stdin(cmd, stdin)
}

#[test]
fn kms_identity_records_where_the_requests_went_and_who_sts_says_the_caller_is() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (_arn, alias) = kms.external_key();
    let file = ceremony_for(
        &hsm,
        "demo-softhsm.toml",
        &alias,
        &[("kms.account", "\"000000000000\"")],
    );
    // A logging proxy in front of LocalStack: what byok records must be where it really sent
    // its requests, which the proxy sees and byok cannot invent.
    let proxy = KmsProxy::start(&[]);
    let envs = use_endpoint(&file, &proxy.url);
    let t = hsm.path("t.jsonl");
    let out = run(&hsm, &file, &t, &envs);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let recs = records(&t);
    let id = &first(&recs, "kms_identity")["data"];
    let url = proxy.url.to_ascii_lowercase();
    assert_eq!(id["endpoint"], url.as_str());
    assert_eq!(id["sts_endpoint"], url.as_str());
    assert!(
        !proxy.calls("DescribeKey").is_empty() && !proxy.calls("ImportKeyMaterial").is_empty(),
        "the KMS calls went through the proxy"
    );
    // STS speaks the query protocol: no X-Amz-Target, logged as `-`.
    assert!(
        !proxy.calls("-").is_empty(),
        "GetCallerIdentity went through the proxy"
    );
    assert_eq!(id["endpoint_source"], "ceremony_file");
    assert_eq!(id["endpoint_overridden"], true);
    assert_eq!(
        id["endpoint_env"],
        serde_json::json!(["AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_STS"])
    );
    // The caller is who STS says it is, asked independently.
    let (account, arn) = caller_identity();
    assert_eq!(account, "000000000000", "LocalStack's default account");
    assert_eq!(id["account"], account.as_str());
    assert_eq!(id["caller_arn"], arn.as_str());
    assert_eq!(id["pinned_account"], "000000000000");
    // Recorded before any approval and before the first DescribeKey record.
    let kinds = types(&recs);
    let at = kinds.iter().position(|k| k == "kms_identity").unwrap();
    assert!(at < kinds.iter().position(|k| k == "approval").unwrap());
    assert!(at < kinds.iter().position(|k| k == "kms_preflight").unwrap());
    assert_contains(
        &stderr(&out),
        &format!(
            "KMS at {url} (named in the ceremony file); STS at {url}; account 000000000000 as {arn} (the pinned account)"
        ),
    );
    // The custodians see it in the plan they approve.
    assert_contains(
        &stderr(&out),
        &format!("    AWS account    000000000000 (pinned) as {arn}; KMS at {url}\n"),
    );
    let v = hsm
        .byok()
        .arg("verify")
        .arg(&t)
        .arg("--audit-key-sha256")
        .arg(&hsm.audit_sha256)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert_contains(
        &stdout(&v),
        &format!(
            "  ran at          KMS {url} (named in the ceremony file), STS {url}; account 000000000000 (pinned) as {arn}"
        ),
    );
    reference_verify(&t, &hsm.audit_sha256);
}

#[test]
fn a_pinned_account_that_differs_stops_before_any_approval_and_creates_nothing() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let prefix = format!("w{:08x}", rand_u32());
    let key = format!("\"alias/{prefix}-{{service}}-{{environment}}\"");
    // create = true targets: the keys would be created right after the plan approval.
    let file = ceremony_pinned(
        &hsm,
        "fleet-product.toml",
        &[
            ("targets.key", key.as_str()),
            ("targets.services", "[\"s3\"]"),
            ("kms.account", "\"123456789012\""),
        ],
    );
    let t = hsm.path("t.jsonl");
    let out = run(&hsm, &file, &t, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "the AWS credentials belong to account 000000000000 (arn:aws:iam::000000000000:root), but the ceremony file pins kms.account = \"123456789012\"; use credentials of account 123456789012, or correct kms.account if the file is wrong",
    );
    let recs = records(&t);
    let kinds = types(&recs);
    assert_eq!(
        kinds,
        [
            "ceremony_started",
            "hsm_opened",
            "capability_checked",
            "kms_identity",
            "ceremony_aborted"
        ]
    );
    let last = &recs.last().unwrap()["data"];
    assert_eq!(last["step"], "kms_preflight");
    assert_eq!(last["error_class"], "precondition");
    assert_eq!(
        first(&recs, "kms_identity")["data"]["account"],
        "000000000000"
    );
    // Nothing in KMS: no alias, no key tagged for this ceremony (the tag byok puts on every
    // key it creates: `byok:ceremony-target` = `<ceremony id> <alias>`).
    let id = recs[0]["data"]["ceremony_id"].as_str().unwrap().to_string();
    let real = byok::kms::AwsKms::new("us-east-1").unwrap();
    let aliases: Vec<String> = recs[0]["data"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect();
    assert!(!aliases.is_empty());
    for alias in &aliases {
        assert!(alias.starts_with(&format!("alias/{prefix}-s3-")), "{alias}");
        let tagged = byok::kms::Kms::find_tagged_keys(
            &real,
            "byok:ceremony-target",
            &format!("{id} {alias}"),
        )
        .unwrap();
        assert!(tagged.is_empty(), "keys created for {alias}: {tagged:?}");
        let e = kms
            .rt
            .block_on(kms.client.describe_key().key_id(alias.as_str()).send())
            .expect_err("the alias must not exist");
        assert_eq!(
            aws_sdk_kms::error::ProvideErrorMetadata::code(&e.into_service_error()),
            Some("NotFoundException")
        );
    }
    // The aborted transcript verifies: it says where it would have run, and why it stopped.
    let v = hsm
        .byok()
        .arg("verify")
        .arg(&t)
        .arg("--audit-key-sha256")
        .arg(&hsm.audit_sha256)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    reference_verify(&t, &hsm.audit_sha256);
}

#[test]
fn an_endpoint_override_the_ceremony_file_does_not_name_is_refused_before_any_prompt() {
    let hsm = SoftHsm::new();
    let env_url = crate::common::require_env("AWS_ENDPOINT_URL_KMS");
    let file = ceremony_for(&hsm, "demo-softhsm.toml", "alias/never-used", &[]);
    // The file without [kms] endpoint, the environment (scripts/testenv) still pointing at
    // LocalStack.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["kms"].as_table_mut().unwrap().remove("endpoint");
    std::fs::write(&file, doc.to_string()).unwrap();
    let t = hsm.path("t.jsonl");
    // No answers on stdin: byok must stop before it reads any.
    let out = run_answering(&hsm, &file, &t, &[], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "AWS_ENDPOINT_URL_KMS={env_url} sends KMS calls to another endpoint, but the ceremony file names none; for tests and rehearsals add endpoint = \"{env_url}\" under [kms] in the ceremony file, for a real ceremony unset AWS_ENDPOINT_URL_KMS"
        ),
    );
    assert!(!t.exists(), "no transcript is started");
    assert!(!stderr(&out).contains("PIN"), "{}", stderr(&out));

    // A file naming another endpoint than the environment's is refused the same way.
    let other = "http://127.0.0.1:9";
    use_endpoint(&file, other);
    let out = run_answering(&hsm, &file, &t, &[], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "AWS_ENDPOINT_URL_KMS={env_url} differs from [kms] endpoint = \"{other}\" in the ceremony file"
        ),
    );
    assert!(!t.exists());
}
