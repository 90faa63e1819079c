//! The domain's writes (`palisade_domain::writes`) on PostgreSQL: the rows a
//! write loads, locks and saves, in a transaction of a pooled connection (a
//! write of its own, or one savepoint of a batch: `batch`).

use crate::database::NEW_ACTION_CHANNEL;
use crate::devices::{device_by_credential, device_by_machine, open_actions, save_device};
use crate::machine_writes::{save_ip_history, save_machines, sync_tags, upsert_rows};
use crate::rows::{action_from_row, execute, machine_columns, run_values, PostgresRow};
use crate::rows::{get, machine_from_row, save_action, to_json, Db};
use palisade_contract::{Alert, Indicator, Machine, MachineAction, Timestamp};
use palisade_domain::caller::{Tenant, Visibility};
use palisade_domain::control::{ScriptRun, StoredFaultRule, StoredOutcomeRule};
use palisade_domain::devices::Device;
use palisade_domain::identity::AuditEntry;
use palisade_domain::rules::ip_history::IpHistorySync;
use palisade_domain::store::{DeviceGroup, MachineKey, StoreError};
use palisade_domain::writes::{Counter, Transaction};
use palisade_domain::TenantClock;
use palisade_store_sql::fields::{
    alert_fields, alerts_upsert_unnest, indicator_fields, indicator_row, indicator_row_kinds,
    indicators_upsert_unnest,
};
use palisade_store_sql::fields::{
    clock_fields, fault_rule_fields, outcome_rule_fields, script_run_fields,
};
use palisade_store_sql::fields::{device_fields, group_fields, group_upsert};
use palisade_store_sql::fields::{machine_fields, MACHINE_FROM};
use palisade_store_sql::{action_lookup, machine_lookup, Dialect, Value};
use palisade_store_sql::{alerts, control};
use std::collections::HashMap;
use std::future::Future;

/// A write inside an open transaction of `tx`.
pub(crate) struct PostgresTransaction<'a, D> {
    tx: &'a D,
    /// The machines with a new action, `"{tenant} {machine}"`: announced
    /// once the write has succeeded, together, just before the commit.
    announced: Vec<String>,
    /// The write's audit entries, with the machines each is about: written
    /// last in the transaction (`batch`'s notes on lock order).
    audits: Vec<(AuditEntry, Vec<String>)>,
}

/// What a write leaves for the end of its transaction.
pub(crate) struct Finished {
    pub(crate) announced: Vec<String>,
    pub(crate) audits: Vec<(AuditEntry, Vec<String>)>,
}

impl<'a, D: Db> PostgresTransaction<'a, D> {
    pub(crate) fn new(tx: &'a D) -> Self {
        PostgresTransaction {
            tx,
            announced: Vec::new(),
            audits: Vec::new(),
        }
    }

    /// The connection, for the tests' own statements.
    #[cfg(test)]
    pub(crate) fn db(&self) -> &'a D {
        self.tx
    }

    /// What the write announced (for [`announce`]) and audited, for the
    /// end of its transaction.
    pub(crate) fn finish(self) -> Finished {
        Finished {
            announced: self.announced,
            audits: self.audits,
        }
    }
}

/// Sends the announcements of the writes of a transaction (one statement);
/// `NOTIFY` is transactional: delivered to every node's `LISTEN` connection
/// at the commit, and never if the transaction rolls back.
pub(crate) async fn announce(db: &impl Db, announced: &[String]) -> Result<(), StoreError> {
    if !announced.is_empty() {
        db.run(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
            &[&NEW_ACTION_CHANNEL, &announced],
        )
        .await?;
    }
    Ok(())
}

impl<D: Db> Transaction for PostgresTransaction<'_, D> {
    async fn machine(
        &mut self,
        visibility: &Visibility,
        key: MachineKey<'_>,
        lock: bool,
    ) -> Result<Option<Machine>, StoreError> {
        let table = (machine_columns(), MACHINE_FROM);
        let sql = machine_lookup(Dialect::Postgres, visibility, key, table, lock);
        let rows = self.tx.built(&sql).await?;
        rows.first().map(machine_from_row).transpose()
    }

    async fn stored_machines(
        &mut self,
        tenant_id: &str,
        ids: &[&str],
    ) -> Result<Vec<Machine>, StoreError> {
        self.tx
            .rows(
                &format!(
                    "SELECT {} FROM {MACHINE_FROM} \
                     WHERE m.tenant_id = $1 AND m.id = ANY($2) ORDER BY m.id FOR UPDATE OF m",
                    machine_columns()
                ),
                &[&tenant_id, &ids],
            )
            .await?
            .iter()
            .map(machine_from_row)
            .collect()
    }

    async fn lock_machines(&mut self, tenant_id: &str, ids: &[&str]) -> Result<(), StoreError> {
        self.tx
            .run(
                "SELECT 1 FROM machines WHERE tenant_id = $1 AND id = ANY($2) \
                 ORDER BY id FOR UPDATE",
                &[&tenant_id, &ids],
            )
            .await?;
        Ok(())
    }

    async fn tenant_machines(&mut self, tenant_id: &str) -> Result<Vec<Machine>, StoreError> {
        self.tx
            .rows(
                &format!(
                    "SELECT {} FROM {MACHINE_FROM} WHERE m.tenant_id = $1 \
                     ORDER BY m.id FOR UPDATE OF m",
                    machine_columns()
                ),
                &[&tenant_id],
            )
            .await?
            .iter()
            .map(machine_from_row)
            .collect()
    }

    fn open_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> impl Future<Output = Result<Vec<MachineAction>, StoreError>> + Send {
        open_actions(self.tx, tenant_id, machine_id)
    }

    async fn action(
        &mut self,
        visibility: &Visibility,
        id: &str,
    ) -> Result<Option<MachineAction>, StoreError> {
        let sql = action_lookup(Dialect::Postgres, visibility, id, true);
        let rows = self.tx.built(&sql).await?;
        rows.first().map(action_from_row).transpose()
    }

    fn device_of_machine(
        &self,
        tenant_id: &str,
        machine_id: &str,
        lock: bool,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send {
        device_by_machine(self.tx, tenant_id, machine_id, lock)
    }

    fn device_by_credential(
        &mut self,
        tenant_id: &str,
        credential_id: &str,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send {
        device_by_credential(self.tx, tenant_id, credential_id)
    }

    async fn hardware_enrolled(
        &mut self,
        tenant_id: &str,
        hardware_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .row(
                "SELECT 1 FROM devices WHERE tenant_id = $1 AND hardware_id = $2 \
                 AND offboarded_at IS NULL LIMIT 1",
                &[&tenant_id, &hardware_id],
            )
            .await?
            .is_some())
    }

    async fn lock_hardware(
        &mut self,
        tenant_id: &str,
        hardware_id: &str,
    ) -> Result<(), StoreError> {
        // Across nodes: an advisory lock on the hardware, held to the commit.
        self.tx
            .run(
                "SELECT pg_advisory_xact_lock(hashtext($1 || ' ' || $2))",
                &[&tenant_id, &hardware_id],
            )
            .await?;
        Ok(())
    }

    async fn device_groups(&mut self, tenant_id: &str) -> Result<Vec<DeviceGroup>, StoreError> {
        let sql = format!(
            "SELECT {} FROM device_groups WHERE tenant_id = $1 ORDER BY id",
            group_fields::select(Dialect::Postgres)
        );
        let rows = self.tx.rows(&sql, &[&tenant_id]).await?;
        rows.iter()
            .map(|row| group_fields::from_row(&PostgresRow(row), 0))
            .collect()
    }

    async fn reporting_machines(
        &mut self,
        keys: &[(&str, &str)],
    ) -> Result<Vec<(Machine, Device)>, StoreError> {
        let tenants: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let machine_ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let machine_rows = self
            .tx
            .rows(
                &format!(
                    "SELECT {}, m.tenant_id FROM {MACHINE_FROM} \
                     WHERE (m.tenant_id, m.id) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                     ORDER BY m.tenant_id, m.id FOR UPDATE OF m",
                    machine_columns()
                ),
                &[&tenants, &machine_ids],
            )
            .await?;
        let mut machines = HashMap::with_capacity(machine_rows.len());
        for row in &machine_rows {
            let tenant_id: String = get(row, machine_fields::READ_COLUMNS)?;
            let machine = machine_from_row(row)?;
            machines.insert((tenant_id, machine.id.clone()), machine);
        }
        let device_rows = self
            .tx
            .rows(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices \
                     WHERE (tenant_id, machine_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                     ORDER BY tenant_id, machine_id FOR UPDATE", DEVICE_COLUMNS = device_fields::select(Dialect::Postgres)),
                &[&tenants, &machine_ids],
            )
            .await?;
        let mut found = Vec::with_capacity(device_rows.len());
        for row in &device_rows {
            let device = crate::devices::device_from_row(row)?;
            let key = (device.tenant_id.clone(), device.machine_id.clone());
            if let Some(machine) = machines.remove(&key) {
                found.push((machine, device));
            }
        }
        Ok(found)
    }

    async fn insert_tenant(
        &mut self,
        tenant: &Tenant,
        created_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .tx
            .run(
                "INSERT INTO tenants (id, name, retention_days, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                &[
                    &tenant.id,
                    &tenant.name,
                    &i64::from(tenant.retention_days),
                    &created_at.ticks(),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn save_device_group(
        &mut self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> Result<(), StoreError> {
        let values = std::iter::once(Value::Text(tenant_id.to_string()))
            .chain(group_fields::values(group))
            .collect();
        run_values(self.tx, group_upsert(Dialect::Postgres), values).await?;
        Ok(())
    }

    fn save_machines(
        &mut self,
        tenant_id: &str,
        machines: &[(&Machine, &[String])],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        save_machines(self.tx, tenant_id, machines)
    }

    fn save_tags(
        &mut self,
        tenant_id: &str,
        machines: &[(&Machine, &[String])],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        sync_tags(self.tx, tenant_id, machines)
    }

    async fn move_machines(
        &mut self,
        tenant_id: &str,
        moves: &[(&str, i64)],
    ) -> Result<(), StoreError> {
        let ids: Vec<&str> = moves.iter().map(|m| m.0).collect();
        let groups: Vec<i64> = moves.iter().map(|m| m.1).collect();
        self.tx
            .run(
                "UPDATE machines m SET rbac_group_id = u.rbac_group_id \
                 FROM unnest($2::text[], $3::int8[]) AS u(id, rbac_group_id) \
                 WHERE m.tenant_id = $1 AND m.id = u.id",
                &[&tenant_id, &ids, &groups],
            )
            .await?;
        Ok(())
    }

    async fn save_reports(&mut self, reports: &[(&Machine, &Device)]) -> Result<(), StoreError> {
        let column =
            |f: fn(&(&Machine, &Device)) -> String| reports.iter().map(f).collect::<Vec<_>>();
        let optional = |f: fn(&(&Machine, &Device)) -> Option<String>| {
            reports.iter().map(f).collect::<Vec<_>>()
        };
        let tenant_ids = column(|(_, d)| d.tenant_id.clone());
        let ids = column(|(m, _)| m.id.clone());
        let last_seen: Vec<i64> = reports.iter().map(|(m, _)| m.last_seen.ticks()).collect();
        let ip_addresses = column(|(m, _)| to_json(&m.ip_addresses));
        let last_ip = optional(|(m, _)| m.last_ip_address.clone());
        let last_external_ip = optional(|(m, _)| m.last_external_ip_address.clone());
        let health = column(|(m, _)| m.health_status.as_str().to_string());
        let agent_version = optional(|(m, _)| m.agent_version.clone());
        let isolation = column(|(_, d)| d.isolation.as_str().to_string());
        let isolation_at: Vec<i64> = reports
            .iter()
            .map(|(_, d)| d.isolation_at.ticks())
            .collect();
        self.tx
            .run(
                "UPDATE machines m SET last_seen = u.last_seen, ip_addresses = u.ip_addresses, \
                 last_ip_address = u.last_ip, last_external_ip_address = u.last_external_ip, \
                 health_status = u.health, agent_version = u.agent_version \
                 FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], \
                             $7::text[], $8::text[]) \
                      AS u(tenant_id, id, last_seen, ip_addresses, last_ip, last_external_ip, health, agent_version) \
                 WHERE m.tenant_id = u.tenant_id AND m.id = u.id",
                &[
                    &tenant_ids,
                    &ids,
                    &last_seen,
                    &ip_addresses,
                    &last_ip,
                    &last_external_ip,
                    &health,
                    &agent_version,
                ],
            )
            .await?;
        self.tx
            .run(
                "UPDATE devices d SET isolation = u.isolation, isolation_at = u.isolation_at \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) \
                      AS u(tenant_id, machine_id, isolation, isolation_at) \
                 WHERE d.tenant_id = u.tenant_id AND d.machine_id = u.machine_id",
                &[&tenant_ids, &ids, &isolation, &isolation_at],
            )
            .await?;
        Ok(())
    }

    fn save_ip_history(
        &mut self,
        tenant_id: &str,
        syncs: &[(&str, IpHistorySync)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        save_ip_history(self.tx, tenant_id, syncs)
    }

    fn save_action(
        &mut self,
        tenant_id: &str,
        action: &MachineAction,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        save_action(self.tx, tenant_id, action)
    }

    async fn announce_new_action(
        &mut self,
        tenant_id: &str,
        machine_id: &str,
    ) -> Result<(), StoreError> {
        self.announced.push(format!("{tenant_id} {machine_id}"));
        Ok(())
    }

    fn save_device(
        &mut self,
        device: &Device,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        save_device(self.tx, device)
    }

    async fn append_audit(
        &mut self,
        entry: &AuditEntry,
        machine_ids: &[String],
    ) -> Result<(), StoreError> {
        self.audits.push((entry.clone(), machine_ids.to_vec()));
        Ok(())
    }

    async fn outcome_rules(&self, tenant_id: &str) -> Result<Vec<StoredOutcomeRule>, StoreError> {
        let sql = control::outcome_rules_of(Dialect::Postgres, tenant_id);
        let rows = self.tx.built(&sql).await?;
        rows.iter()
            .map(|row| outcome_rule_fields::from_row(&PostgresRow(row), 0))
            .collect()
    }

    async fn count_outcome_hit(
        &mut self,
        tenant_id: &str,
        rule_id: &str,
    ) -> Result<(), StoreError> {
        let sql = control::count_outcome_hit(Dialect::Postgres, tenant_id, rule_id);
        execute(self.tx, &sql).await.map(|_| ())
    }

    async fn action_script(
        &self,
        tenant_id: &str,
        action_id: &str,
    ) -> Result<Option<ScriptRun>, StoreError> {
        let sql = control::action_script_of(Dialect::Postgres, tenant_id, action_id);
        let rows = self.tx.built(&sql).await?;
        rows.first()
            .map(|row| script_run_fields::from_row(&PostgresRow(row), 0))
            .transpose()
    }

    async fn save_action_script(
        &mut self,
        tenant_id: &str,
        action_id: &str,
        run: Option<&ScriptRun>,
    ) -> Result<(), StoreError> {
        let sql = control::save_action_script(Dialect::Postgres, tenant_id, action_id, run);
        execute(self.tx, &sql).await.map(|_| ())
    }
    async fn tenant_clock(&mut self, tenant_id: &str) -> Result<Option<TenantClock>, StoreError> {
        let sql = control::tenant_clock_of(Dialect::Postgres, tenant_id);
        let rows = self.tx.built(&sql).await?;
        rows.first()
            .map(|row| clock_fields::from_row(&PostgresRow(row), 0))
            .transpose()
    }

    async fn save_tenant_clock(
        &mut self,
        tenant_id: &str,
        clock: &TenantClock,
    ) -> Result<(), StoreError> {
        let sql = control::save_tenant_clock(Dialect::Postgres, tenant_id, clock);
        execute(self.tx, &sql).await.map(|_| ())
    }
    async fn fault_rule(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<StoredFaultRule>, StoreError> {
        let sql = control::fault_rules_of(Dialect::Postgres, Some(tenant_id), Some(id));
        let rows = self.tx.built(&sql).await?;
        rows.first()
            .map(|row| fault_rule_fields::from_row(&PostgresRow(row), 0))
            .transpose()
    }

    async fn save_fault_counts(&mut self, rule: &StoredFaultRule) -> Result<(), StoreError> {
        let sql = control::save_fault_counts(Dialect::Postgres, rule);
        execute(self.tx, &sql).await.map(|_| ())
    }
    async fn clear_tenant_state(
        &mut self,
        tenant_id: &str,
        control: bool,
    ) -> Result<(), StoreError> {
        for sql in control::clear_tenant_state(Dialect::Postgres, tenant_id, control) {
            execute(self.tx, &sql).await?;
        }
        Ok(())
    }

    async fn update_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError> {
        let sql = control::update_tenant(Dialect::Postgres, tenant);
        execute(self.tx, &sql).await.map(|_| ())
    }

    async fn save_outcome_rule(&mut self, rule: &StoredOutcomeRule) -> Result<(), StoreError> {
        let sql = control::save_outcome_rule(Dialect::Postgres, rule);
        execute(self.tx, &sql).await.map(|_| ())
    }

    async fn save_fault_rule(&mut self, rule: &StoredFaultRule) -> Result<(), StoreError> {
        let sql = control::save_fault_rule(Dialect::Postgres, rule);
        execute(self.tx, &sql).await.map(|_| ())
    }

    async fn save_tenant_seed(
        &mut self,
        tenant_id: &str,
        document: &str,
    ) -> Result<(), StoreError> {
        let sql = control::save_tenant_seed(Dialect::Postgres, tenant_id, document);
        execute(self.tx, &sql).await.map(|_| ())
    }

    async fn reserve(
        &mut self,
        tenant_id: &str,
        counter: Counter,
        at_least: i64,
        count: i64,
    ) -> Result<i64, StoreError> {
        let sql = alerts::reserve(Dialect::Postgres, tenant_id, counter, at_least, count);
        let rows = self.tx.built(&sql).await?;
        let last: Option<i64> = rows.first().map(|row| get(row, 0)).transpose()?;
        alerts::first_reserved(last, count)
    }

    async fn alerts(
        &mut self,
        visibility: &Visibility,
        ids: &[String],
    ) -> Result<Vec<Alert>, StoreError> {
        let sql = alerts::alerts_with_ids(Dialect::Postgres, visibility, ids, true);
        let rows = self.tx.built(&sql).await?;
        rows.iter()
            .map(|row| alert_fields::from_row(&PostgresRow(row), 0))
            .collect()
    }

    async fn open_alert_titled(
        &mut self,
        tenant_id: &str,
        machine_id: &str,
        title: &str,
    ) -> Result<Option<Alert>, StoreError> {
        let sql = alerts::open_alert_titled(Dialect::Postgres, tenant_id, machine_id, title);
        let rows = self.tx.built(&sql).await?;
        rows.first()
            .map(|row| alert_fields::from_row(&PostgresRow(row), 0))
            .transpose()
    }

    async fn save_alerts(&mut self, tenant_id: &str, alerts: &[Alert]) -> Result<(), StoreError> {
        // One statement for a batch update's hundreds.
        let rows = alerts.iter().map(alert_fields::values);
        let kinds = alert_fields::kinds();
        upsert_rows(self.tx, alerts_upsert_unnest(), tenant_id, &kinds, rows).await
    }

    async fn indicators_with_keys(
        &mut self,
        tenant_id: &str,
        keys: &[String],
    ) -> Result<Vec<Indicator>, StoreError> {
        let sql = alerts::indicators_with_keys(Dialect::Postgres, tenant_id, keys);
        let rows = self.tx.built(&sql).await?;
        rows.iter()
            .map(|row| indicator_fields::from_row(&PostgresRow(row), 0))
            .collect()
    }

    async fn indicators_with_ids(
        &mut self,
        tenant_id: &str,
        ids: &[i64],
    ) -> Result<Vec<Indicator>, StoreError> {
        let sql = alerts::indicators_with_ids(Dialect::Postgres, tenant_id, ids);
        let rows = self.tx.built(&sql).await?;
        rows.iter()
            .map(|row| indicator_fields::from_row(&PostgresRow(row), 0))
            .collect()
    }

    async fn active_indicator_count(
        &mut self,
        tenant_id: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let sql = alerts::active_indicator_count(Dialect::Postgres, tenant_id, now);
        let rows = self.tx.built(&sql).await?;
        let count: i64 = match rows.first() {
            Some(row) => get(row, 0)?,
            None => 0,
        };
        Ok(count.max(0) as u64)
    }

    async fn save_indicators(
        &mut self,
        tenant_id: &str,
        indicators: &[(Indicator, String)],
    ) -> Result<(), StoreError> {
        // One statement for an import's hundreds.
        let rows = indicators
            .iter()
            .map(|(indicator, key)| indicator_row(indicator, key));
        let kinds = indicator_row_kinds();
        upsert_rows(self.tx, indicators_upsert_unnest(), tenant_id, &kinds, rows).await
    }

    async fn delete_indicators(&mut self, tenant_id: &str, ids: &[i64]) -> Result<(), StoreError> {
        let sql = alerts::delete_indicators(Dialect::Postgres, tenant_id, ids);
        execute(self.tx, &sql).await.map(|_| ())
    }
}
