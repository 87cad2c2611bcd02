//! Pacing KMS calls to KMS's request quotas, and backing off when KMS throttles anyway.
//!
//! KMS limits each operation per account and region (requests per second, shared with every
//! other workload in the account). [`Paced`] wraps any [`Kms`] and gives each (region,
//! operation) pair its own schedule: calls leave at most `rate` per second, evenly spaced, so
//! a ceremony stays under the quota instead of bouncing off it. A `ThrottlingException` (another
//! workload may share the quota) is retried after an exponential back-off with full jitter;
//! KMS did nothing for a throttled call, so this is safe for writes too. Reads (DescribeKey,
//! GetParametersForImport, ListKeyRotations, Encrypt, Decrypt, ListKeys) are also retried when
//! no answer came. Writes (CreateKey, CreateAlias, UpdateAlias, ImportKeyMaterial,
//! RotateKeyOnDemand) never are: their outcome
//! is for the caller to ask KMS about.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    Expiration, ImportParameters, ImportToken, ImportType, KeyInfo, KeyMaterialInfo, Kms, KmsError,
};
use crate::wrap::{WrappingAlgorithm, WrappingKeySpec};

/// The KMS operations byok paces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    DescribeKey,
    CreateKey,
    CreateAlias,
    ListKeys,
    GetParametersForImport,
    ImportKeyMaterial,
    ListKeyRotations,
    Encrypt,
    Decrypt,
    RotateKeyOnDemand,
    UpdateAlias,
    ListResourceTags,
    ListAliases,
}

impl Operation {
    /// Every paced operation.
    pub const ALL: [Operation; 13] = [
        Operation::DescribeKey,
        Operation::CreateKey,
        Operation::CreateAlias,
        Operation::ListKeys,
        Operation::GetParametersForImport,
        Operation::ImportKeyMaterial,
        Operation::ListKeyRotations,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::RotateKeyOnDemand,
        Operation::UpdateAlias,
        Operation::ListResourceTags,
        Operation::ListAliases,
    ];

    /// The API name, as `[kms.rates]` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::DescribeKey => "DescribeKey",
            Operation::CreateKey => "CreateKey",
            Operation::CreateAlias => "CreateAlias",
            Operation::ListKeys => "ListKeys",
            Operation::GetParametersForImport => "GetParametersForImport",
            Operation::ImportKeyMaterial => "ImportKeyMaterial",
            Operation::ListKeyRotations => "ListKeyRotations",
            Operation::Encrypt => "Encrypt",
            Operation::Decrypt => "Decrypt",
            Operation::RotateKeyOnDemand => "RotateKeyOnDemand",
            Operation::UpdateAlias => "UpdateAlias",
            Operation::ListResourceTags => "ListResourceTags",
            Operation::ListAliases => "ListAliases",
        }
    }

    /// Parses an API name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// AWS's default request quota (requests per second, per account and region), as
    /// documented in November 2026. GetParametersForImport was once one every 4 seconds.
    pub fn default_rate(self) -> f64 {
        match self {
            Operation::DescribeKey => 2000.0,
            Operation::CreateKey => 5.0,
            Operation::CreateAlias => 5.0,
            Operation::ListKeys | Operation::ListAliases => 500.0,
            Operation::GetParametersForImport => 1.0,
            Operation::ImportKeyMaterial => 15.0,
            Operation::ListKeyRotations => 100.0,
            Operation::RotateKeyOnDemand => 5.0,
            Operation::UpdateAlias => 5.0,
            Operation::ListResourceTags => 50.0,
            // Shared symmetric cryptographic quota; the lowest regional default.
            Operation::Encrypt | Operation::Decrypt => 10_000.0,
        }
    }

    /// Whether a call with no answer may be sent again (it changes nothing in KMS).
    pub fn is_read(self) -> bool {
        !matches!(
            self,
            Operation::CreateKey
                | Operation::CreateAlias
                | Operation::ImportKeyMaterial
                | Operation::RotateKeyOnDemand
                | Operation::UpdateAlias
        )
    }
}

/// Requests per second for each operation: the defaults, overridden by `[kms.rates]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    overrides: BTreeMap<Operation, f64>,
}

impl Default for Rates {
    fn default() -> Self {
        Rates::new(BTreeMap::new())
    }
}

impl Rates {
    /// The defaults with `overrides`.
    pub fn new(overrides: BTreeMap<Operation, f64>) -> Self {
        Rates { overrides }
    }

    /// The rate in force for `op`.
    pub fn of(&self, op: Operation) -> f64 {
        self.overrides
            .get(&op)
            .copied()
            .unwrap_or_else(|| op.default_rate())
    }

    /// The operations whose rate the ceremony file overrides.
    pub fn overrides(&self) -> &BTreeMap<Operation, f64> {
        &self.overrides
    }

    /// The least time `counts` calls take in one region at these rates: the slowest
    /// operation's count divided by its rate (calls of different operations overlap).
    pub fn least_time(&self, counts: &[(Operation, usize)]) -> Duration {
        counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(op, n)| Duration::from_secs_f64((*n as f64 - 1.0).max(0.0) / self.of(*op)))
            .max()
            .unwrap_or_default()
    }
}

/// Calls leave this much slower than the rate in force.
const SPACING_MARGIN: f64 = 1.02;

/// Back-off after a throttled call: exponential from 100 ms, at most 5 s, full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Throttled attempts before the error reaches the operator.
const THROTTLE_ATTEMPTS: u32 = 10;
/// Attempts of a read that got no answer.
const READ_ATTEMPTS: u32 = 3;

/// The schedule every paced call goes through: one slot sequence per (region, operation),
/// and the retry rules described above. [`Paced`] (ceremonies) and
/// [`super::fleet::PacedFleet`] (inventories) share it.
pub struct Pacer {
    rates: Rates,
    default_region: String,
    schedule: Mutex<HashMap<(String, Operation), Instant>>,
    throttled: std::sync::atomic::AtomicU64,
}

impl Pacer {
    /// Paces at `rates`; keys that are not ARNs are in `default_region`.
    pub fn new(rates: Rates, default_region: &str) -> Self {
        Pacer {
            rates,
            default_region: default_region.to_string(),
            schedule: Mutex::new(HashMap::new()),
            throttled: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many throttled calls were retried so far.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn region_of<'k>(&'k self, key: &'k str) -> &'k str {
        key.strip_prefix("arn:")
            .and_then(|r| r.split(':').nth(2))
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.default_region)
    }

    /// Waits for `op`'s next slot in `region`.
    fn wait_turn(&self, region: &str, op: Operation) {
        // 2 % slower than the quota: calls spaced exactly at it arrive a hair early now and
        // then (network jitter), and KMS throttles them.
        let spacing = Duration::from_secs_f64(SPACING_MARGIN / self.rates.of(op));
        let at = {
            // A poisoned lock only means another thread panicked while holding it; the
            // schedule itself is a plain map of instants and stays usable.
            let mut schedule = self
                .schedule
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let next = schedule.entry((region.to_string(), op)).or_insert(now);
            let at = (*next).max(now);
            *next = at + spacing;
            at
        };
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    }

    /// Calls `f` for `key` (an ARN, key id or alias) in its region's slot for `op`.
    pub fn call<T>(
        &self,
        key: &str,
        op: Operation,
        f: impl Fn() -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let region = self.region_of(key).to_string();
        self.call_in(&region, op, f)
    }

    /// Calls `f` in `region`'s slot for `op` (calls that name no key: ListKeys, ListAliases).
    pub fn call_in<T>(
        &self,
        region: &str,
        op: Operation,
        f: impl Fn() -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let mut throttled = 0;
        let mut unanswered = 0;
        loop {
            self.wait_turn(region, op);
            match f() {
                Err(e) if e.is_throttling() && throttled + 1 < THROTTLE_ATTEMPTS => {
                    throttled += 1;
                    self.throttled
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(backoff(throttled));
                }
                Err(e)
                    if op.is_read()
                        && e.failure != super::KmsFailure::Service
                        && e.failure != super::KmsFailure::BadResponse
                        && unanswered + 1 < READ_ATTEMPTS =>
                {
                    unanswered += 1;
                    std::thread::sleep(backoff(unanswered));
                }
                other => return other,
            }
        }
    }
}

/// A [`Kms`] whose calls are paced per (region, operation) and retried as described above.
pub struct Paced<'a> {
    inner: &'a dyn Kms,
    pacer: Pacer,
}

impl<'a> Paced<'a> {
    /// Paces `inner` at `rates`; keys that are not ARNs are in `default_region`.
    pub fn new(inner: &'a dyn Kms, rates: Rates, default_region: &str) -> Self {
        Paced {
            inner,
            pacer: Pacer::new(rates, default_region),
        }
    }

    /// How many throttled calls were retried so far.
    pub fn throttled(&self) -> u64 {
        self.pacer.throttled()
    }

    fn call<T>(
        &self,
        key: &str,
        op: Operation,
        f: impl Fn() -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        self.pacer.call(key, op, f)
    }
}

/// Full-jitter exponential back-off for the `attempt`-th retry.
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_MAX);
    let mut b = [0u8; 4];
    // Without randomness, back off the whole cap: slower, never wrong.
    let fraction = match rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    cap.mul_f64(fraction)
}

impl Kms for Paced<'_> {
    fn describe_key(&self, key: &str) -> Result<KeyInfo, KmsError> {
        self.call(key, Operation::DescribeKey, || self.inner.describe_key(key))
    }

    fn create_key(
        &self,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<KeyInfo, KmsError> {
        self.call("", Operation::CreateKey, || {
            self.inner.create_key(description, tags)
        })
    }

    fn create_alias(&self, alias: &str, key_arn: &str) -> Result<(), KmsError> {
        self.call(key_arn, Operation::CreateAlias, || {
            self.inner.create_alias(alias, key_arn)
        })
    }

    fn update_alias(&self, alias: &str, key_arn: &str) -> Result<(), KmsError> {
        self.call(key_arn, Operation::UpdateAlias, || {
            self.inner.update_alias(alias, key_arn)
        })
    }

    fn list_resource_tags(&self, key_arn: &str) -> Result<BTreeMap<String, String>, KmsError> {
        self.call(key_arn, Operation::ListResourceTags, || {
            self.inner.list_resource_tags(key_arn)
        })
    }

    fn find_tagged_keys(&self, key: &str, value: &str) -> Result<Vec<String>, KmsError> {
        self.call("", Operation::ListKeys, || {
            self.inner.find_tagged_keys(key, value)
        })
    }

    fn get_parameters_for_import(
        &self,
        key_arn: &str,
        algorithm: WrappingAlgorithm,
        spec: WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError> {
        self.call(key_arn, Operation::GetParametersForImport, || {
            self.inner
                .get_parameters_for_import(key_arn, algorithm, spec)
        })
    }

    fn import_key_material(
        &self,
        key_arn: &str,
        token: &ImportToken,
        encrypted_key_material: &[u8],
        expiration: Expiration,
        import_type: ImportType<'_>,
        description: Option<&str>,
    ) -> Result<Option<String>, KmsError> {
        self.call(key_arn, Operation::ImportKeyMaterial, || {
            self.inner.import_key_material(
                key_arn,
                token,
                encrypted_key_material,
                expiration,
                import_type,
                description,
            )
        })
    }

    fn rotate_key_on_demand(&self, key_arn: &str) -> Result<(), KmsError> {
        self.call(key_arn, Operation::RotateKeyOnDemand, || {
            self.inner.rotate_key_on_demand(key_arn)
        })
    }

    fn list_key_materials(&self, key_arn: &str) -> Result<Vec<KeyMaterialInfo>, KmsError> {
        self.call(key_arn, Operation::ListKeyRotations, || {
            self.inner.list_key_materials(key_arn)
        })
    }

    fn encrypt(&self, key_arn: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        self.call(key_arn, Operation::Encrypt, || {
            self.inner.encrypt(key_arn, plaintext)
        })
    }

    fn decrypt(&self, key_arn: &str, ciphertext: &[u8]) -> Result<(Vec<u8>, String), KmsError> {
        self.call(key_arn, Operation::Decrypt, || {
            self.inner.decrypt(key_arn, ciphertext)
        })
    }

    fn whereabouts(&self, probe_key: &str) -> Result<super::Whereabouts, KmsError> {
        // Once per ceremony, with a DescribeKey inside: paced as one DescribeKey.
        self.call(probe_key, Operation::DescribeKey, || {
            self.inner.whereabouts(probe_key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_time_is_set_by_the_slowest_operation() {
        let rates = Rates::default();
        let t = rates.least_time(&[
            (Operation::GetParametersForImport, 31),
            (Operation::ImportKeyMaterial, 31),
            (Operation::DescribeKey, 62),
        ]);
        assert_eq!(t, Duration::from_secs(30));
        let fast = Rates::new(BTreeMap::from([(Operation::GetParametersForImport, 2.0)]));
        assert_eq!(
            fast.least_time(&[(Operation::GetParametersForImport, 21)]),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 1..20 {
            assert!(backoff(attempt) <= BACKOFF_MAX);
        }
    }
}
