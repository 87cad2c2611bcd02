//! KMS as an inventory reads it: a narrow, read-only, blocking trait over the listing and
//! describing calls (`byok inventory`), and its paced form.
//!
//! Each method is one KMS request (a list call returns one page), so that [`PacedFleet`] can
//! give every request its slot under the request quotas: ListKeys and ListAliases 500/s,
//! DescribeKey 2,000/s, ListKeyRotations 100/s, ListResourceTags 50/s per account and region.
//! Nothing here writes: every call may be sent again after a throttle or a lost answer.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::pace::{Operation, Pacer, Rates};
use super::{KeyInfo, KmsError};

/// One page of a list call and the marker of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `NextMarker` when KMS says the list is truncated.
    pub next: Option<String>,
}

/// One alias of ListAliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    /// `alias/…`.
    pub name: String,
    /// The key id the alias names (none for an alias without a key).
    pub target_key_id: Option<String>,
}

/// DescribeKey, with what an inventory reports beyond [`KeyInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDetail {
    pub info: KeyInfo,
    pub creation_date: Option<OffsetDateTime>,
    /// `MultiRegionConfiguration.MultiRegionKeyType`: `PRIMARY` or `REPLICA`.
    pub multi_region_role: Option<String>,
    /// The primary key's ARN (for a replica, and for a primary itself).
    pub primary_arn: Option<String>,
    /// The replica keys' ARNs, as the primary lists them.
    pub replica_arns: Vec<String>,
}

/// One entry of ListKeyRotations with `IncludeKeyMaterial = ALL_KEY_MATERIAL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub key_material_id: String,
    pub description: Option<String>,
    /// `IMPORTED` or `PENDING_IMPORT`.
    pub import_state: Option<String>,
    /// `CURRENT`, `NON_CURRENT`, `PENDING_ROTATION` or
    /// `PENDING_MULTI_REGION_IMPORT_AND_ROTATION`.
    pub key_material_state: Option<String>,
    pub expiration_model: Option<String>,
    pub valid_to: Option<OffsetDateTime>,
    /// When the material became current (none for a key's first material).
    pub rotation_date: Option<OffsetDateTime>,
    /// `AUTOMATIC` or `ON_DEMAND`.
    pub rotation_type: Option<String>,
}

/// The read-only KMS calls of an inventory. Shared by its worker threads.
pub trait FleetKms: Sync {
    /// One page of ListKeys in `region`: key ARNs.
    fn list_keys_page(
        &self,
        region: &str,
        marker: Option<&str>,
        limit: i32,
    ) -> Result<Page<String>, KmsError>;
    /// One page of ListAliases in `region`.
    fn list_aliases_page(
        &self,
        region: &str,
        marker: Option<&str>,
        limit: i32,
    ) -> Result<Page<AliasEntry>, KmsError>;
    /// DescribeKey of `key_arn`.
    fn describe_key_detail(&self, key_arn: &str) -> Result<KeyDetail, KmsError>;
    /// One page of ListResourceTags of `key_arn`.
    fn tags_page(
        &self,
        key_arn: &str,
        marker: Option<&str>,
    ) -> Result<Page<(String, String)>, KmsError>;
    /// One page of ListKeyRotations (`IncludeKeyMaterial = ALL_KEY_MATERIAL`) of `key_arn`.
    fn rotations_page(
        &self,
        key_arn: &str,
        marker: Option<&str>,
    ) -> Result<Page<Rotation>, KmsError>;
}

/// A [`FleetKms`] whose every request waits for its (region, operation) slot and is retried
/// after a throttle or a lost answer (they are all reads), with every page of a list fetched.
pub struct PacedFleet<'a> {
    inner: &'a dyn FleetKms,
    pacer: Pacer,
}

/// Pages of one list, fetched until KMS says there are no more. A marker KMS repeats would
/// loop for ever: it ends the list with an error instead.
fn all_pages<T>(
    operation: &'static str,
    mut page: impl FnMut(Option<&str>) -> Result<Page<T>, KmsError>,
) -> Result<Vec<T>, KmsError> {
    let mut items = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let p = page(marker.as_deref())?;
        items.extend(p.items);
        match p.next {
            Some(next) if marker.as_deref() == Some(next.as_str()) => {
                return Err(KmsError {
                    operation,
                    failure: super::KmsFailure::BadResponse,
                    code: None,
                    status: None,
                    message: format!("KMS returned the same NextMarker twice ({next})"),
                });
            }
            Some(next) => marker = Some(next),
            None => return Ok(items),
        }
    }
}

impl<'a> PacedFleet<'a> {
    /// Paces `inner` at `rates` (the default region is only used for keys that are not ARNs).
    pub fn new(inner: &'a dyn FleetKms, rates: Rates, default_region: &str) -> Self {
        PacedFleet {
            inner,
            pacer: Pacer::new(rates, default_region),
        }
    }

    /// How many throttled calls were retried.
    pub fn throttled(&self) -> u64 {
        self.pacer.throttled()
    }

    /// Every key ARN in `region` (ListKeys, every page of `limit`).
    pub fn list_keys(&self, region: &str, limit: i32) -> Result<Vec<String>, KmsError> {
        all_pages("ListKeys", |m| {
            self.pacer.call_in(region, Operation::ListKeys, || {
                self.inner.list_keys_page(region, m, limit)
            })
        })
    }

    /// Every alias in `region` (ListAliases, every page of `limit`).
    pub fn list_aliases(&self, region: &str, limit: i32) -> Result<Vec<AliasEntry>, KmsError> {
        all_pages("ListAliases", |m| {
            self.pacer.call_in(region, Operation::ListAliases, || {
                self.inner.list_aliases_page(region, m, limit)
            })
        })
    }

    /// DescribeKey.
    pub fn describe(&self, key_arn: &str) -> Result<KeyDetail, KmsError> {
        self.pacer.call(key_arn, Operation::DescribeKey, || {
            self.inner.describe_key_detail(key_arn)
        })
    }

    /// Every tag of `key_arn`.
    pub fn tags(&self, key_arn: &str) -> Result<BTreeMap<String, String>, KmsError> {
        Ok(all_pages("ListResourceTags", |m| {
            self.pacer.call(key_arn, Operation::ListResourceTags, || {
                self.inner.tags_page(key_arn, m)
            })
        })?
        .into_iter()
        .collect())
    }

    /// Every material of `key_arn`.
    pub fn rotations(&self, key_arn: &str) -> Result<Vec<Rotation>, KmsError> {
        all_pages("ListKeyRotations", |m| {
            self.pacer.call(key_arn, Operation::ListKeyRotations, || {
                self.inner.rotations_page(key_arn, m)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_marker_ends_the_list_with_an_error() {
        let mut calls = 0;
        let e = all_pages("ListKeys", |_| {
            calls += 1;
            Ok(Page {
                items: vec![calls],
                next: Some("same".to_string()),
            })
        })
        .err()
        .map(|e| e.to_string());
        assert_eq!(calls, 2);
        assert!(e.is_some_and(|m| m.contains("same NextMarker twice")));
    }

    #[test]
    fn pages_are_followed_to_the_end() {
        let pages = [
            (vec![1, 2], Some("a")),
            (vec![3], Some("b")),
            (vec![4], None),
        ];
        let mut i = 0;
        let all = all_pages("ListKeys", |m| {
            assert_eq!(m, [None, Some("a"), Some("b")][i]);
            let (items, next) = pages[i].clone();
            i += 1;
            Ok(Page {
                items,
                next: next.map(str::to_string),
            })
        });
        assert_eq!(all.ok(), Some(vec![1, 2, 3, 4]));
    }
}
