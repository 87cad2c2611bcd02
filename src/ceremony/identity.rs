//! Record `kms_identity`, at the start of step `kms_preflight` of every kind: where the KMS and
//! STS requests really went (the URLs the SDK sent them to) and as whom (STS
//! GetCallerIdentity), before any key is described and before any approval. A pinned
//! `kms.account` that differs, or an endpoint other than the one the ceremony file names (or,
//! when it names none, other than AWS's own), stops the ceremony here: the record is written
//! first, so the aborted transcript says where it would have run.

use crate::error::Error;
use crate::kms::Kms as _;
use crate::kms::endpoint::{is_aws_origin, normalize};
use crate::text::escape;
use crate::transcript::payload::KmsIdentity;

use super::{Run, refused};

/// Asks STS and KMS where the ceremony runs, records it, and checks the pins.
pub(super) fn check(run: &mut Run<'_>) -> Result<(), Error> {
    let c = run.ceremony;
    // Any target's key will do for the probe: DescribeKey is read only.
    let probe = run
        .targets
        .first()
        .map(|t| t.spec.key.clone())
        .unwrap_or_default();
    let found = run.kms.whereabouts(&probe)?;
    let named_owned = run.endpoint.named.clone();
    let named = named_owned.as_deref();
    run.record(&KmsIdentity {
        region: c.kms.region.clone(),
        endpoint: found.endpoint.clone(),
        endpoint_overridden: named.is_some(),
        endpoint_source: if named.is_some() {
            "ceremony_file"
        } else {
            "aws"
        }
        .into(),
        endpoint_env: run
            .endpoint
            .env_vars
            .iter()
            .map(|v| v.to_string())
            .collect(),
        sts_endpoint: found.sts_endpoint.clone(),
        account: found.account.clone(),
        caller_arn: found.caller_arn.clone(),
        pinned_account: c.kms.account.clone(),
    })?;
    if let Some(pinned) = &c.kms.account
        && *pinned != found.account
    {
        return Err(refused(format!(
            "the AWS credentials belong to account {} ({}), but the ceremony file pins kms.account = \"{pinned}\"; use credentials of account {pinned}, or correct kms.account if the file is wrong",
            escape(&found.account),
            escape(&found.caller_arn)
        )));
    }
    for (what, sent) in [("KMS", &found.endpoint), ("STS", &found.sts_endpoint)] {
        let expected = match named {
            Some(n) => normalize(n) == *sent,
            None => is_aws_origin(sent),
        };
        if !expected {
            return Err(refused(format!(
                "{what} requests went to {}, not to {}; check the AWS profile's endpoint settings and [kms] endpoint in the ceremony file",
                escape(sent),
                named.map_or("AWS's own endpoint".to_string(), |n| n.to_string())
            )));
        }
    }
    run.prompter.say(&format!(
        "  KMS at {}{}; STS at {}; account {} as {}{}",
        escape(&found.endpoint),
        if named.is_some() {
            " (named in the ceremony file)"
        } else {
            ""
        },
        escape(&found.sts_endpoint),
        escape(&found.account),
        escape(&found.caller_arn),
        if c.kms.account.is_some() {
            " (the pinned account)"
        } else {
            ""
        }
    ));
    run.whereabouts = Some(found);
    Ok(())
}
