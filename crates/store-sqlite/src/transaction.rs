//! The domain's writes (`palisade_domain::writes`) on SQLite: the rows a
//! write loads and saves, on the writer thread's connection, inside the
//! batch's savepoint. The single writer holds the database for the whole
//! write, so nothing needs a lock.

use crate::database::{append_audit, execute, query_rows};
use crate::devices::{device_where, machine_actions, save_device};
use crate::rows::{
    action_from_row, bind, decoding, machine_from_row, save_action, save_machine, sync_tags,
    to_json, SqliteRow, Ticks,
};
use crate::workers::store_error;
use palisade_contract::{Alert, Indicator, Machine, MachineAction, Timestamp};
use palisade_domain::caller::{Tenant, Visibility};
use palisade_domain::control::{ScriptRun, StoredFaultRule, StoredOutcomeRule};
use palisade_domain::devices::Device;
use palisade_domain::identity::AuditEntry;
use palisade_domain::rules::ip_history::IpHistorySync;
use palisade_domain::store::{DeviceGroup, MachineKey, StoreError};
use palisade_domain::writes::{Counter, Transaction};
use palisade_domain::TenantClock;
use palisade_store_sql::fields::{alert_fields, indicator_fields};
use palisade_store_sql::fields::{
    clock_fields, fault_rule_fields, group_fields, group_upsert, outcome_rule_fields,
    script_run_fields,
};
use palisade_store_sql::machine_cache::machine_rows;
use palisade_store_sql::{
    action_lookup, machine_lookup, open_actions, sync_ip_history, Dialect, Sql, Value,
};
use palisade_store_sql::{alerts, control};
use rusqlite::{params, params_from_iter, Connection};
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Holds the writer's connection mutably (not shared, as rusqlite's
/// `Savepoint` does): a `&mut Connection` may be sent between threads, so the
/// domain's writes, whose futures must be `Send` for PostgreSQL's writer
/// tasks, can be run on it too.
pub(crate) struct SqliteTransaction<'c> {
    conn: &'c mut Connection,
}

impl<'c> SqliteTransaction<'c> {
    pub(crate) fn new(conn: &'c mut Connection) -> Self {
        SqliteTransaction { conn }
    }
}

fn find_machine(
    conn: &Connection,
    visibility: &Visibility,
    key: MachineKey<'_>,
) -> rusqlite::Result<Option<Machine>> {
    let sql = machine_lookup(
        Dialect::Sqlite,
        visibility,
        key,
        machine_rows(Dialect::Sqlite),
        false,
    );
    Ok(query_rows(conn, &sql, machine_from_row)?.pop())
}

fn device_by_machine(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
) -> rusqlite::Result<Option<Device>> {
    device_where(conn, tenant_id, "machine_id", machine_id)
}

/// Runs one of the domain's writes to its end on this thread. Every step
/// of [`SqliteTransaction`] is done by the time it returns, so the write
/// never waits and one poll finishes it. (No executor: there is nothing to
/// wait for, and a blocking one would hide a write that waited, stalling
/// the writer thread.)
pub(crate) fn run_now<T, E: From<StoreError>>(
    write: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let write = pin!(write);
    match write.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => Err(StoreError::Internal("a SQLite write waited".into()).into()),
    }
}

fn done<T>(outcome: rusqlite::Result<T>) -> Ready<Result<T, StoreError>> {
    ready(outcome.map_err(store_error))
}

impl Transaction for SqliteTransaction<'_> {
    fn machine(
        &mut self,
        visibility: &Visibility,
        key: MachineKey<'_>,
        _lock: bool,
    ) -> impl Future<Output = Result<Option<Machine>, StoreError>> + Send {
        done(find_machine(self.conn, visibility, key))
    }

    fn stored_machines(
        &mut self,
        tenant_id: &str,
        ids: &[&str],
    ) -> impl Future<Output = Result<Vec<Machine>, StoreError>> + Send {
        let whole_tenant = Visibility::whole_tenant(tenant_id);
        done(
            ids.iter()
                .filter_map(|id| {
                    find_machine(self.conn, &whole_tenant, MachineKey::Id(id)).transpose()
                })
                .collect(),
        )
    }

    fn lock_machines(
        &mut self,
        _tenant_id: &str,
        _ids: &[&str],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }

    fn tenant_machines(
        &mut self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Vec<Machine>, StoreError>> + Send {
        let equal = [("m.tenant_id", Value::Text(tenant_id.to_string()))];
        let (columns, from) = machine_rows(Dialect::Sqlite);
        let sql = Sql::select_where(Dialect::Sqlite, columns, from, &equal, "");
        done(query_rows(self.conn, &sql, machine_from_row))
    }

    fn open_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> impl Future<Output = Result<Vec<MachineAction>, StoreError>> + Send {
        let open = open_actions(Dialect::Sqlite);
        done(machine_actions(
            self.conn, open, tenant_id, machine_id, None,
        ))
    }

    fn action(
        &mut self,
        visibility: &Visibility,
        id: &str,
    ) -> impl Future<Output = Result<Option<MachineAction>, StoreError>> + Send {
        let sql = action_lookup(Dialect::Sqlite, visibility, id, false);
        done(query_rows(self.conn, &sql, action_from_row).map(|mut found| found.pop()))
    }

    fn device_of_machine(
        &self,
        tenant_id: &str,
        machine_id: &str,
        _lock: bool,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send {
        done(device_by_machine(self.conn, tenant_id, machine_id))
    }

    fn device_by_credential(
        &mut self,
        tenant_id: &str,
        credential_id: &str,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send {
        done(device_where(
            self.conn,
            tenant_id,
            "credential_id",
            credential_id,
        ))
    }

    fn hardware_enrolled(
        &mut self,
        tenant_id: &str,
        hardware_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        done(
            self.conn
                .prepare_cached(
                    "SELECT 1 FROM devices WHERE tenant_id = ?1 AND hardware_id = ?2 \
                     AND offboarded_at IS NULL LIMIT 1",
                )
                .and_then(|mut s| s.exists([tenant_id, hardware_id])),
        )
    }

    fn lock_hardware(
        &mut self,
        _tenant_id: &str,
        _hardware_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }

    fn device_groups(
        &mut self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Vec<DeviceGroup>, StoreError>> + Send {
        let equal = [("tenant_id", Value::Text(tenant_id.to_string()))];
        let columns = group_fields::select(Dialect::Sqlite);
        let sql = Sql::select_where(
            Dialect::Sqlite,
            columns,
            "device_groups",
            &equal,
            " ORDER BY id",
        );
        done(query_rows(self.conn, &sql, |row| {
            group_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
        }))
    }

    fn reporting_machines(
        &mut self,
        keys: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<(Machine, Device)>, StoreError>> + Send {
        done((|| {
            let mut found = Vec::with_capacity(keys.len());
            for (tenant_id, machine_id) in keys {
                let whole_tenant = Visibility::whole_tenant(tenant_id);
                let device = device_by_machine(self.conn, tenant_id, machine_id)?;
                let machine = find_machine(self.conn, &whole_tenant, MachineKey::Id(machine_id))?;
                if let (Some(machine), Some(device)) = (machine, device) {
                    found.push((machine, device));
                }
            }
            Ok(found)
        })())
    }

    fn insert_tenant(
        &mut self,
        tenant: &Tenant,
        created_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        done(
            self.conn
                .execute(
                    "INSERT INTO tenants (id, name, retention_days, created_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                    params![
                        tenant.id,
                        tenant.name,
                        tenant.retention_days,
                        Ticks(created_at)
                    ],
                )
                .map(|inserted| inserted == 1),
        )
    }

    fn save_device_group(
        &mut self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let values =
            std::iter::once(Value::Text(tenant_id.to_string())).chain(group_fields::values(group));
        done(
            self.conn
                .prepare_cached(group_upsert(Dialect::Sqlite))
                .and_then(|mut s| s.execute(params_from_iter(bind(values))))
                .map(drop),
        )
    }

    fn save_machines(
        &mut self,
        tenant_id: &str,
        machines: &[(&Machine, &[String])],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done(machines.iter().try_for_each(|(machine, old_tags)| {
            save_machine(self.conn, tenant_id, machine, old_tags)
        }))
    }

    fn save_tags(
        &mut self,
        tenant_id: &str,
        machines: &[(&Machine, &[String])],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done(machines.iter().try_for_each(|(machine, old_tags)| {
            sync_tags(
                self.conn,
                tenant_id,
                &machine.id,
                old_tags,
                &machine.machine_tags,
            )
        }))
    }

    fn move_machines(
        &mut self,
        tenant_id: &str,
        moves: &[(&str, i64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done((|| {
            let mut update = self.conn.prepare_cached(
                "UPDATE machines SET rbac_group_id = ?3, revision = random() \
                 WHERE tenant_id = ?1 AND id = ?2",
            )?;
            for (machine_id, group) in moves {
                update.execute(params![tenant_id, machine_id, group])?;
            }
            Ok(())
        })())
    }

    fn save_reports(
        &mut self,
        reports: &[(&Machine, &Device)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done((|| {
            let mut update_machine = self.conn.prepare_cached(
                "UPDATE machines SET last_seen = ?3, ip_addresses = ?4, last_ip_address = ?5, \
                 last_external_ip_address = ?6, health_status = ?7, agent_version = ?8, \
                 revision = random() WHERE tenant_id = ?1 AND id = ?2",
            )?;
            let mut update_device = self.conn.prepare_cached(
                "UPDATE devices SET isolation = ?3, isolation_at = ?4 \
                 WHERE tenant_id = ?1 AND machine_id = ?2",
            )?;
            for (machine, device) in reports {
                update_machine.execute(params![
                    device.tenant_id,
                    machine.id,
                    Ticks(machine.last_seen),
                    to_json(&machine.ip_addresses),
                    machine.last_ip_address,
                    machine.last_external_ip_address,
                    machine.health_status.as_str(),
                    machine.agent_version,
                ])?;
                update_device.execute(params![
                    device.tenant_id,
                    device.machine_id,
                    device.isolation.as_str(),
                    Ticks(device.isolation_at),
                ])?;
            }
            Ok(())
        })())
    }

    fn save_ip_history(
        &mut self,
        tenant_id: &str,
        syncs: &[(&str, IpHistorySync)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done((|| {
            for (machine_id, sync) in syncs {
                for statement in sync_ip_history(Dialect::Sqlite, tenant_id, machine_id, sync) {
                    execute(self.conn, &statement)?;
                }
            }
            Ok(())
        })())
    }

    fn save_action(
        &mut self,
        tenant_id: &str,
        action: &MachineAction,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done(save_action(self.conn, tenant_id, action))
    }

    /// SQLite serves one node, whose own wakeups are woken directly.
    fn announce_new_action(
        &mut self,
        _tenant_id: &str,
        _machine_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }

    fn save_device(
        &mut self,
        device: &Device,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done(save_device(self.conn, device))
    }

    fn append_audit(
        &mut self,
        entry: &AuditEntry,
        machine_ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done(append_audit(self.conn, entry, machine_ids))
    }

    fn outcome_rules(
        &self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredOutcomeRule>, StoreError>> + Send {
        let sql = control::outcome_rules_of(Dialect::Sqlite, tenant_id);
        done(query_rows(self.conn, &sql, |row| {
            outcome_rule_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
        }))
    }

    fn count_outcome_hit(
        &mut self,
        tenant_id: &str,
        rule_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::count_outcome_hit(Dialect::Sqlite, tenant_id, rule_id);
        done(execute(self.conn, &sql).map(|_| ()))
    }

    fn action_script(
        &self,
        tenant_id: &str,
        action_id: &str,
    ) -> impl Future<Output = Result<Option<ScriptRun>, StoreError>> + Send {
        let sql = control::action_script_of(Dialect::Sqlite, tenant_id, action_id);
        done(
            query_rows(self.conn, &sql, |row| {
                script_run_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
            })
            .map(|runs| runs.into_iter().next()),
        )
    }

    fn save_action_script(
        &mut self,
        tenant_id: &str,
        action_id: &str,
        run: Option<&ScriptRun>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::save_action_script(Dialect::Sqlite, tenant_id, action_id, run);
        done(execute(self.conn, &sql).map(|_| ()))
    }
    fn tenant_clock(
        &mut self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Option<TenantClock>, StoreError>> + Send {
        let sql = control::tenant_clock_of(Dialect::Sqlite, tenant_id);
        done(
            query_rows(self.conn, &sql, |row| {
                clock_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
            })
            .map(|clocks| clocks.into_iter().next()),
        )
    }

    fn save_tenant_clock(
        &mut self,
        tenant_id: &str,
        clock: &TenantClock,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::save_tenant_clock(Dialect::Sqlite, tenant_id, clock);
        done(execute(self.conn, &sql).map(|_| ()))
    }
    fn fault_rule(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredFaultRule>, StoreError>> + Send {
        let sql = control::fault_rules_of(Dialect::Sqlite, Some(tenant_id), Some(id));
        done(
            query_rows(self.conn, &sql, |row| {
                fault_rule_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
            })
            .map(|rules| rules.into_iter().next()),
        )
    }

    fn save_fault_counts(
        &mut self,
        rule: &StoredFaultRule,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::save_fault_counts(Dialect::Sqlite, rule);
        done(execute(self.conn, &sql).map(|_| ()))
    }
    fn clear_tenant_state(
        &mut self,
        tenant_id: &str,
        control: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let statements = control::clear_tenant_state(Dialect::Sqlite, tenant_id, control);
        done(
            statements
                .iter()
                .try_for_each(|sql| execute(self.conn, sql).map(|_| ())),
        )
    }

    fn update_tenant(
        &mut self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::update_tenant(Dialect::Sqlite, tenant);
        done(execute(self.conn, &sql).map(|_| ()))
    }

    fn save_outcome_rule(
        &mut self,
        rule: &StoredOutcomeRule,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::save_outcome_rule(Dialect::Sqlite, rule);
        done(execute(self.conn, &sql).map(|_| ()))
    }

    fn save_fault_rule(
        &mut self,
        rule: &StoredFaultRule,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::save_fault_rule(Dialect::Sqlite, rule);
        done(execute(self.conn, &sql).map(|_| ()))
    }

    fn save_tenant_seed(
        &mut self,
        tenant_id: &str,
        document: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = control::save_tenant_seed(Dialect::Sqlite, tenant_id, document);
        done(execute(self.conn, &sql).map(|_| ()))
    }

    fn reserve(
        &mut self,
        tenant_id: &str,
        counter: Counter,
        at_least: i64,
        count: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        let sql = alerts::reserve(Dialect::Sqlite, tenant_id, counter, at_least, count);
        let last = query_rows(self.conn, &sql, |row| row.get::<_, i64>(0));
        ready(
            last.map_err(store_error)
                .and_then(|last| alerts::first_reserved(last.first().copied(), count)),
        )
    }

    fn alerts(
        &mut self,
        visibility: &Visibility,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Alert>, StoreError>> + Send {
        let sql = alerts::alerts_with_ids(Dialect::Sqlite, visibility, ids, true);
        done(query_rows(self.conn, &sql, alert_from_row))
    }

    fn open_alert_titled(
        &mut self,
        tenant_id: &str,
        machine_id: &str,
        title: &str,
    ) -> impl Future<Output = Result<Option<Alert>, StoreError>> + Send {
        let sql = alerts::open_alert_titled(Dialect::Sqlite, tenant_id, machine_id, title);
        done(query_rows(self.conn, &sql, alert_from_row).map(|mut found| found.pop()))
    }

    fn save_alerts(
        &mut self,
        tenant_id: &str,
        alerts: &[Alert],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done(alerts.iter().try_for_each(|alert| {
            execute(
                self.conn,
                &alerts::save_alert(Dialect::Sqlite, tenant_id, alert),
            )
            .map(|_| ())
        }))
    }

    fn indicators_with_keys(
        &mut self,
        tenant_id: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Indicator>, StoreError>> + Send {
        let sql = alerts::indicators_with_keys(Dialect::Sqlite, tenant_id, keys);
        done(query_rows(self.conn, &sql, indicator_from_row))
    }

    fn indicators_with_ids(
        &mut self,
        tenant_id: &str,
        ids: &[i64],
    ) -> impl Future<Output = Result<Vec<Indicator>, StoreError>> + Send {
        let sql = alerts::indicators_with_ids(Dialect::Sqlite, tenant_id, ids);
        done(query_rows(self.conn, &sql, indicator_from_row))
    }

    fn active_indicator_count(
        &mut self,
        tenant_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let sql = alerts::active_indicator_count(Dialect::Sqlite, tenant_id, now);
        let count = query_rows(self.conn, &sql, |row| row.get::<_, i64>(0));
        done(count.map(|c| c.first().copied().unwrap_or(0).max(0) as u64))
    }

    fn save_indicators(
        &mut self,
        tenant_id: &str,
        indicators: &[(Indicator, String)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        done(indicators.iter().try_for_each(|(indicator, key)| {
            let sql = alerts::save_indicator(Dialect::Sqlite, tenant_id, indicator, key);
            execute(self.conn, &sql).map(|_| ())
        }))
    }

    fn delete_indicators(
        &mut self,
        tenant_id: &str,
        ids: &[i64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let sql = alerts::delete_indicators(Dialect::Sqlite, tenant_id, ids);
        done(execute(self.conn, &sql).map(|_| ()))
    }
}

fn alert_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    alert_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

fn indicator_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Indicator> {
    indicator_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}
