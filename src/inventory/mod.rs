//! `byok inventory`: which imported keys are due, expiring or unexplained.
//!
//! Three steps, one module each: [`observe`] asks KMS (every key of every region, EXTERNAL
//! ones described in full, with bounded concurrency and paced to the request quotas),
//! [`ledger`] reads what the ceremonies' verified transcripts say they imported, and
//! [`judge`] gives each key one status under the [`rules`] of the rotation policy. [`render`]
//! prints the result for people or machines. docs/inventory.md is the reference.

pub mod judge;
pub mod ledger;
pub mod render;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::kms::KmsError;
use crate::kms::fleet::{KeyDetail, PacedFleet, Rotation};

/// ListKeys page size (KMS's maximum).
pub const LIST_KEYS_LIMIT: i32 = 1000;
/// ListAliases page size (KMS's maximum).
pub const LIST_ALIASES_LIMIT: i32 = 100;

/// One EXTERNAL key as KMS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedKey {
    pub region: String,
    pub detail: KeyDetail,
    /// Its aliases (ListAliases), sorted.
    pub aliases: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// ListKeyRotations, or why KMS did not serve it (LocalStack does not emulate it).
    pub rotations: Result<Vec<Rotation>, String>,
}

/// What KMS showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub regions: Vec<String>,
    /// Every key listed, of any origin.
    pub listed: usize,
    /// The EXTERNAL ones, sorted by region and ARN.
    pub keys: Vec<ObservedKey>,
}

/// Page sizes, for tests that make a small fleet span many pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    pub keys: i32,
    pub aliases: i32,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            keys: LIST_KEYS_LIMIT,
            aliases: LIST_ALIASES_LIMIT,
        }
    }
}

/// Lists every key of `regions` and describes the EXTERNAL ones, at most `concurrency`
/// requests in flight. A failed call (after the pacer's retries) stops the inventory: a
/// report that silently left keys out would say they are fine. ListKeyRotations is the
/// exception: where KMS does not serve it the key's materials come from the transcripts.
pub fn observe(
    kms: &PacedFleet<'_>,
    regions: &[String],
    concurrency: usize,
    limits: PageLimits,
) -> Result<Observation, KmsError> {
    let concurrency = concurrency.max(1);
    // Listing: per region, ListKeys and ListAliases side by side.
    let mut listed: Vec<(String, String)> = Vec::new();
    let mut aliases: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    std::thread::scope(|s| -> Result<(), KmsError> {
        let jobs: Vec<_> = regions
            .iter()
            .map(|region| {
                let keys = s.spawn(move || kms.list_keys(region, limits.keys));
                let names = s.spawn(move || kms.list_aliases(region, limits.aliases));
                (region, keys, names)
            })
            .collect();
        for (region, keys, names) in jobs {
            let keys = join(keys)?;
            let names = join(names)?;
            listed.extend(keys.into_iter().map(|arn| (region.clone(), arn)));
            for a in names {
                if let Some(id) = a.target_key_id {
                    aliases
                        .entry((region.clone(), id))
                        .or_default()
                        .push(a.name);
                }
            }
        }
        Ok(())
    })?;
    // Describing: a pool of `concurrency` threads over every listed key.
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let found: Mutex<Vec<ObservedKey>> = Mutex::new(Vec::new());
    let failed: Mutex<Option<KmsError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..concurrency.min(listed.len().max(1)) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((region, arn)) = listed.get(i) else {
                        break;
                    };
                    match describe_one(kms, region, arn, &aliases) {
                        Ok(Some(key)) => lock(&found).push(key),
                        Ok(None) => {}
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            lock(&failed).get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    let mut keys = found
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    keys.sort_by(|a, b| (&a.region, &a.detail.info.arn).cmp(&(&b.region, &b.detail.info.arn)));
    Ok(Observation {
        regions: regions.to_vec(),
        listed: listed.len(),
        keys,
    })
}

/// A worker's result; a panic in it (a bug) becomes an error instead of a second panic.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, KmsError>>) -> Result<T, KmsError> {
    h.join().unwrap_or_else(|_| {
        Err(KmsError {
            operation: "inventory",
            failure: crate::kms::KmsFailure::BadResponse,
            code: None,
            status: None,
            message: "a listing thread panicked".into(),
        })
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The vectors behind these locks are only pushed to; a poisoned one is still whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// DescribeKey of one listed key; for an EXTERNAL one also its tags and materials.
fn describe_one(
    kms: &PacedFleet<'_>,
    region: &str,
    arn: &str,
    aliases: &BTreeMap<(String, String), Vec<String>>,
) -> Result<Option<ObservedKey>, KmsError> {
    let detail = match kms.describe(arn) {
        Ok(d) => d,
        // Deleted between ListKeys and DescribeKey: no longer a key.
        Err(e) if e.is_code("NotFoundException") => return Ok(None),
        Err(e) => return Err(e),
    };
    if detail.info.origin != "EXTERNAL" {
        return Ok(None);
    }
    let tags = kms.tags(arn)?;
    let rotations = kms.rotations(arn).map_err(|e| e.to_string());
    let mut names = aliases
        .get(&(region.to_string(), detail.info.key_id.clone()))
        .cloned()
        .unwrap_or_default();
    names.sort();
    Ok(Some(ObservedKey {
        region: region.to_string(),
        detail,
        aliases: names,
        tags,
        rotations,
    }))
}

/// What a failed KMS call of an inventory says: the call, KMS's code and words (escaped), and
/// what to do, for an inventory (it only reads, so running it again is always safe).
pub fn failure_message(e: &KmsError) -> String {
    use crate::kms::KmsFailure;
    let next = match (e.failure, e.code.as_deref()) {
        (_, _) if e.message.contains("credentials") => {
            "check the AWS credentials (environment, profile, instance role)"
        }
        (KmsFailure::Unreachable, _) => {
            "check the network, --region and AWS_ENDPOINT_URL_KMS (unset for AWS itself)"
        }
        (KmsFailure::NoAnswer, _) => {
            "KMS did not answer in time; run the inventory again (it only reads)"
        }
        (_, Some("AccessDeniedException" | "UnrecognizedClientException")) => {
            "grant the role what `byok policy --inventory` prints, in IAM and in every key's key policy"
        }
        (_, Some("ThrottlingException" | "Throttling" | "TooManyRequestsException")) => {
            "KMS kept throttling after byok backed off; lower [rates] in the rotation policy or run again later"
        }
        _ => "run the inventory again; if it fails the same way, check the key named above in KMS",
    };
    format!(
        "byok inventory stopped: KMS {} failed: {}{}; {next}",
        e.operation,
        e.code
            .as_deref()
            .map(|c| format!("{}: ", crate::text::escape(c)))
            .unwrap_or_default(),
        crate::text::escape(&e.message)
    )
}

/// DescribeKey of each key a verified transcript names, in a listed region, that the listing
/// did not show: the ARN and KMS's words for each. `NotFoundException` is the expected answer
/// (the key is gone); any other failure stops the inventory like a failed listing.
pub fn look_for_missing(
    kms: &PacedFleet<'_>,
    observation: &Observation,
    ledger: &ledger::Ledger,
) -> Result<Vec<(String, String)>, KmsError> {
    let mut gone = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in &ledger.claims {
        let region = c.key_arn.split(':').nth(3).unwrap_or_default();
        if !observation.regions.iter().any(|r| r == region)
            || observation
                .keys
                .iter()
                .any(|k| k.detail.info.arn == c.key_arn)
            || !seen.insert(c.key_arn.clone())
        {
            continue;
        }
        match kms.describe(&c.key_arn) {
            Ok(d) => gone.push((
                c.key_arn.clone(),
                format!(
                    "KMS describes it as {} with Origin {}, but ListKeys did not list it",
                    d.info.state, d.info.origin
                ),
            )),
            Err(e) if e.is_code("NotFoundException") => {
                gone.push((c.key_arn.clone(), e.code_and_message()))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::KmsFailure;

    fn error(failure: KmsFailure, code: Option<&str>, message: &str) -> KmsError {
        KmsError {
            operation: "DescribeKey",
            failure,
            code: code.map(str::to_string),
            status: Some(400),
            message: message.into(),
        }
    }

    #[test]
    fn failures_say_what_to_do_for_an_inventory() {
        let denied = failure_message(&error(
            KmsFailure::Service,
            Some("AccessDeniedException"),
            "not authorized to perform kms:DescribeKey on key\r\nx",
        ));
        assert!(denied.starts_with("byok inventory stopped: KMS DescribeKey failed: AccessDeniedException: not authorized"), "{denied}");
        assert!(denied.contains("key\\u{d}\\u{a}x"), "escaped: {denied}");
        assert!(
            denied.ends_with(
                "`byok policy --inventory` prints, in IAM and in every key's key policy"
            )
        );
        let lost = failure_message(&error(KmsFailure::NoAnswer, None, "timeout"));
        assert!(
            lost.ends_with("run the inventory again (it only reads)"),
            "{lost}"
        );
        assert!(!lost.contains("--resume"));
    }
}
