//! The indicators devices enforce, per tenant: those in force of the types
//! a device can act on (addresses, domains, file hashes), with a version
//! that changes whenever the set does (a submission, a deletion, an
//! expiry). Read again from the store at most every [`FRESH_FOR`], so that
//! a change on any node reaches every device within seconds without each
//! check-in reading the store.

use crate::query::ListQuery;
use crate::rules::indicators;
use crate::service::Palisade;
use palisade_contract::{Indicator, MdeError};
use palisade_device::{DeviceIndicator, DeviceIndicators};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a tenant's set is served before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// Each tenant's indicators, as last read, and when.
#[derive(Default)]
pub struct DeviceIndicatorSets {
    tenants: Mutex<HashMap<String, (Arc<TenantIndicators>, Instant)>>,
}

/// A tenant's indicators in force that devices act on, each with the
/// device groups it is scoped to (none: every device), and the set each
/// device group gets, made when first asked for.
pub struct TenantIndicators {
    scoped: Vec<(DeviceIndicator, Vec<String>)>,
    by_group: Mutex<HashMap<Option<String>, Arc<DeviceIndicators>>>,
}

impl TenantIndicators {
    fn new(scoped: Vec<(DeviceIndicator, Vec<String>)>) -> TenantIndicators {
        TenantIndicators {
            scoped,
            by_group: Mutex::default(),
        }
    }

    /// Whether any indicator applies to some device groups only: else every
    /// device gets the same set, whatever its group.
    pub fn depends_on_group(&self) -> bool {
        self.scoped.iter().any(|(_, groups)| !groups.is_empty())
    }

    /// The set a device of `group` (none: in no group) enforces: the
    /// indicators scoped to no group or to its own, as MDE applies
    /// `rbacGroupNames`.
    pub fn for_group(&self, group: Option<&str>) -> Arc<DeviceIndicators> {
        let group = group.filter(|_| self.depends_on_group());
        let mut by_group = self.by_group.lock().unwrap_or_else(|e| e.into_inner());
        let key = group.map(str::to_lowercase);
        by_group
            .entry(key)
            .or_insert_with(|| {
                let items: Vec<DeviceIndicator> = self
                    .scoped
                    .iter()
                    .filter(|(_, groups)| {
                        groups.is_empty()
                            || group
                                .is_some_and(|g| groups.iter().any(|n| n.eq_ignore_ascii_case(g)))
                    })
                    .map(|(indicator, _)| indicator.clone())
                    .collect();
                Arc::new(DeviceIndicators {
                    version: version_of(&items),
                    indicators: items,
                })
            })
            .clone()
    }
}

/// What a device enforces of `indicator`, if it is of a type devices act on.
fn enforced(indicator: &Indicator) -> Option<DeviceIndicator> {
    use palisade_contract::indicator::IndicatorType as T;
    if !matches!(
        indicator.indicator_type,
        T::IpAddress | T::DomainName | T::FileSha1 | T::FileSha256 | T::FileMd5
    ) {
        return None;
    }
    let value = indicators::value_key(indicator.indicator_type, &indicator.indicator_value).ok()?;
    Some(DeviceIndicator {
        id: indicator.id.clone(),
        indicator_type: indicator.indicator_type,
        value,
        action: indicator.action,
        title: indicator.title.clone(),
        severity: indicator.severity,
        generate_alert: indicator.generate_alert,
    })
}

/// The version of a set: a digest of what a device enforces of it.
fn version_of(items: &[DeviceIndicator]) -> String {
    let digest = Sha256::digest(serde_json::to_vec(items).unwrap_or_default());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The version of no indicators: what a device that holds none holds.
pub fn empty_version() -> &'static str {
    static EMPTY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| version_of(&[]));
    &EMPTY
}

impl DeviceIndicatorSets {
    /// The tenant's indicators now (read again when older than [`FRESH_FOR`]).
    pub async fn of(
        &self,
        palisade: &Palisade,
        tenant_id: &str,
    ) -> Result<Arc<TenantIndicators>, MdeError> {
        if let Some((set, read)) = self.lock().get(tenant_id) {
            if read.elapsed() < FRESH_FOR {
                return Ok(set.clone());
            }
        }
        let now = palisade.now_in(tenant_id);
        let mut items = Vec::new();
        let mut skip = 0;
        loop {
            let query = ListQuery {
                skip,
                limit: crate::query::PAGE_SIZE,
                ..ListQuery::default()
            };
            let page = palisade
                .store()
                .indicators(tenant_id, None, now, &query)
                .await?;
            skip += page.items.len() as u64;
            items.extend(page.items.iter().filter_map(|indicator| {
                Some((enforced(indicator)?, indicator.rbac_group_names.clone()))
            }));
            if !page.more {
                break;
            }
        }
        let set = Arc::new(TenantIndicators::new(items));
        self.lock()
            .insert(tenant_id.to_string(), (set.clone(), Instant::now()));
        Ok(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<TenantIndicators>, Instant)>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }
}
