//! The [`Store`], written once for both databases over a [`Database`]: the
//! statements come from this crate's builders and field tables, the writes
//! from `palisade_domain::writes`; each database runs them.

use crate::alerts;
use crate::control;
use crate::database::{Database, Reading};
use crate::fields::{
    alert_fields, app_fields, app_upsert, audit_fields, clock_fields, device_fields,
    fault_rule_fields, fault_rule_insert, file_fields, grant_fields, grant_insert, group_fields,
    indicator_fields, key_fields, key_insert, library_fields, operator_fields, operator_upsert,
    outcome_rule_fields, outcome_rule_insert, recorded_call_fields, recorded_call_insert, required,
    tenant_fields, token_fields, token_upsert, user_fields, user_upsert, StoredRow,
};
use crate::files;
use crate::inventory;
use crate::machine_cache::{machine_probes, machine_rows, MachineCache, MACHINE_CACHE_BYTES};
use crate::{
    action_lookup, any_deliverable_action, audit_entries, forget_ip_history, machine_lookup,
    machines_seen_with_ip, time_out_stale_actions, ListSql, Sql, Value, ACTIONS, ALERTS,
    INDICATORS, MACHINES,
};
use async_trait::async_trait;
use palisade_contract::control::ClockChange;
use palisade_contract::{
    Alert, Indicator, Machine, MachineAction, MdeError, SerializedMachine, Timestamp,
};
use palisade_domain::caller::{Tenant, Visibility};
use palisade_domain::control::{
    OperatorCredential, RecordFilter, RecordedCall, RulePlace, StoredFaultRule, StoredOutcomeRule,
};
use palisade_domain::devices::wakeups::Wakeups;
use palisade_domain::devices::{CheckInRecord, Device, DeviceActionDecision, OnboardingToken};
use palisade_domain::files::{FileKind, StoredFile};
use palisade_domain::identity::{
    AppRegistration, AuditEntry, GrantsOf, OAuthGrant, Redeemed, SigningKey, User,
};
use palisade_domain::inventory::{StoredLogon, StoredSoftware};
use palisade_domain::live_response::LibraryEntry;
use palisade_domain::query::ListQuery;
use palisade_domain::rate_limit::{RateKey, RateLimits, Throttled};
use palisade_domain::seed::TenantState;
use palisade_domain::store::{
    ActionDecision, DeviceGroup, MachineChange, MachineDecision, MachineKey, MachineRef, Page,
    Store, StoreError, WriteError,
};
use palisade_domain::writes::{
    AdvanceScripts, ChangeAction, ChangeAlerts, ChangeClock, ChangeDeviceAction, ChangeMachines,
    CreateTenant, DeleteIndicators, EnrollDevice, PutDeviceGroup, PutMachines, RaiseAlert,
    RecordCheckIns, SeedTenant, Seeding, SubmitIndicators, TakeFaultCall,
};
use palisade_domain::{TenantClock, TenantScope};
use std::future::Future;
use std::sync::Arc;

pub struct SqlStore<D> {
    db: D,
    machine_cache: Arc<MachineCache>,
}

impl<D: Database> SqlStore<D> {
    pub fn new(db: D) -> SqlStore<D> {
        SqlStore {
            db,
            machine_cache: Arc::new(MachineCache::new(MACHINE_CACHE_BYTES)),
        }
    }

    pub fn database(&self) -> &D {
        &self.db
    }

    /// Every row `sql` selects, decoded by `decode`.
    async fn rows<T: Send + 'static>(
        &self,
        reading: Reading,
        sql: Sql,
        decode: fn(&dyn StoredRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.db.read(reading, sql, decode).await
    }

    /// The first row `sql` selects, if any.
    async fn row<T: Send + 'static>(
        &self,
        sql: Sql,
        decode: fn(&dyn StoredRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .rows(Reading::Few, sql, decode)
            .await?
            .into_iter()
            .next())
    }

    /// The tenant's rows of `from` (`columns` of them), in `order`.
    async fn tenant_rows<T: Send + 'static>(
        &self,
        (columns, from): (&str, &str),
        tenant_id: &str,
        order: &str,
        decode: fn(&dyn StoredRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let equal = [("tenant_id", text(tenant_id))];
        let sql = Sql::select_where(D::DIALECT, columns, from, &equal, order);
        self.rows(Reading::Many, sql, decode).await
    }

    /// The row of `from` (`columns` of it) whose columns equal `equal`.
    async fn row_where<T: Send + 'static>(
        &self,
        (columns, from): (&str, &str),
        equal: &[(&str, Value)],
        decode: fn(&dyn StoredRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let sql = Sql::select_where(D::DIALECT, columns, from, equal, "");
        self.row(sql, decode).await
    }

    /// Runs one fixed statement durably; how many rows it changed.
    async fn execute(&self, text: &str, params: Vec<Value>) -> Result<u64, StoreError> {
        let changed = self
            .db
            .execute(vec![Sql::fixed(D::DIALECT, text, params)])
            .await?;
        Ok(changed.into_iter().sum())
    }

    /// A list's count (if asked for) and page, read by `items` (`limit`
    /// rows, and one more to tell whether more exist). Counted first: the
    /// two are separate reads, and while rows are only added (a fleet
    /// enrolling) a count of n then comes with a page that has all n.
    async fn list<T>(
        &self,
        count: Option<Sql>,
        limit: u32,
        items: impl Future<Output = Result<Vec<T>, StoreError>>,
    ) -> Result<Page<T>, StoreError> {
        let count = match count {
            Some(count) => {
                // A count may read every row that matches.
                let total = self
                    .rows(Reading::Many, count, |row| Ok(row.integer(0)?.unwrap_or(0)))
                    .await?;
                Some(total.first().copied().unwrap_or(0) as u64)
            }
            None => None,
        };
        let mut items = items.await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page { items, count, more })
    }

    /// The list of machines `query` asks for, among those the caller sees:
    /// `table`'s columns.
    fn machine_list(visibility: &Visibility, query: &ListQuery, table: (&str, &str)) -> ListSql {
        let visible = |sql: &mut Sql| {
            sql.machine_visibility(visibility);
        };
        let tenant_id = &visibility.tenant_id;
        ListSql::new(D::DIALECT, &MACHINES, table, visible, tenant_id, query)
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

fn ticks(at: Timestamp) -> Value {
    Value::Integer(at.ticks())
}

#[async_trait]
impl<D: Database> Store for SqlStore<D> {
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let equal = [("id", text(id))];
        self.row_where(tenants_of::<D>(), &equal, |row| {
            tenant_fields::from_row(row, 0)
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let (columns, from) = tenants_of::<D>();
        let sql = Sql::fixed(
            D::DIALECT,
            &format!("SELECT {columns} FROM {from} ORDER BY name, id"),
            vec![],
        );
        self.rows(Reading::Many, sql, |row| tenant_fields::from_row(row, 0))
            .await
    }

    async fn create_tenant(
        &self,
        tenant: &Tenant,
        groups: &[DeviceGroup],
        machines: &[Machine],
    ) -> Result<bool, StoreError> {
        let write = CreateTenant {
            tenant: tenant.clone(),
            groups: groups.to_vec(),
            machines: machines.to_vec(),
            now: Timestamp::now(),
        };
        self.db
            .bulk_write(write, machines.len())
            .await
            .map_err(WriteError::into_store_error)
    }

    async fn put_device_group(
        &self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> Result<(), StoreError> {
        let write = PutDeviceGroup {
            tenant_id: tenant_id.to_string(),
            group: group.clone(),
        };
        // Moves machines, adds none.
        self.db
            .bulk_write(write, 0)
            .await
            .map_err(WriteError::into_store_error)
    }

    async fn put_machines(&self, tenant_id: &str, machines: &[Machine]) -> Result<(), StoreError> {
        let write = PutMachines {
            tenant_id: tenant_id.to_string(),
            machines: machines.to_vec(),
        };
        self.db
            .bulk_write(write, machines.len())
            .await
            .map_err(WriteError::into_store_error)
    }

    async fn machines_seen_with_ip(
        &self,
        tenant_id: &str,
        ip: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let params = vec![text(tenant_id), text(ip), ticks(from), ticks(to)];
        let sql = Sql::fixed(D::DIALECT, machines_seen_with_ip(D::DIALECT), params);
        self.rows(Reading::Few, sql, |row| {
            row.text(0)?
                .ok_or_else(|| StoreError::Internal("a machine id is NULL".into()))
        })
        .await
    }

    async fn forget_ip_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.execute(forget_ip_history(D::DIALECT), vec![ticks(before)])
            .await
    }

    async fn create_file(&self, file: &StoredFile) -> Result<(), StoreError> {
        let sql = files::insert_file(D::DIALECT, file);
        self.db.execute(vec![sql]).await.map(drop)
    }

    async fn append_file_chunk(
        &self,
        tenant_id: &str,
        file_id: &str,
        seq: i64,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        let sql = files::insert_chunk(D::DIALECT, tenant_id, file_id, seq, data);
        self.db.execute(vec![sql]).await.map(drop)
    }

    async fn complete_file(&self, file: &StoredFile) -> Result<(), StoreError> {
        // One transaction: the new file replaces the others at once.
        let statements = files::complete_file(D::DIALECT, file);
        self.db.execute(statements).await.map(drop)
    }

    async fn delete_file(&self, tenant_id: &str, file_id: &str) -> Result<(), StoreError> {
        let sql = files::delete_file(D::DIALECT, tenant_id, file_id);
        self.db.execute(vec![sql]).await.map(drop)
    }

    async fn action_file(
        &self,
        tenant_id: &str,
        action_id: &str,
        kind: (FileKind, i64),
    ) -> Result<Option<StoredFile>, StoreError> {
        let sql = files::action_file(D::DIALECT, tenant_id, action_id, kind);
        self.row(sql, |row| file_fields::from_row(row, 0)).await
    }

    async fn file_chunk(
        &self,
        tenant_id: &str,
        file_id: &str,
        seq: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = files::chunk(D::DIALECT, tenant_id, file_id, seq);
        self.row(sql, |row| required(row.bytes(0)?, 0)).await
    }

    async fn create_file_link(
        &self,
        token_hash: &str,
        tenant_id: &str,
        file_id: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let sql = files::insert_link(D::DIALECT, token_hash, tenant_id, file_id, expires_at);
        self.db.execute(vec![sql]).await.map(drop)
    }

    async fn linked_file(
        &self,
        token_hash: &str,
    ) -> Result<Option<(StoredFile, Timestamp)>, StoreError> {
        let sql = files::linked_file(D::DIALECT, token_hash);
        self.row(sql, |row| {
            let file = file_fields::from_row(row, 0)?;
            let at = file_fields::READ_COLUMNS;
            let expires_at = Timestamp::from_ticks(required(row.integer(at)?, at)?);
            Ok((file, expires_at))
        })
        .await
    }

    async fn forget_files(&self, before: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        let changed = self
            .db
            .execute(files::forget_files(D::DIALECT, before, now))
            .await?;
        Ok(changed.first().copied().unwrap_or(0))
    }

    async fn replace_inventory(
        &self,
        tenant_id: &str,
        machine_id: &str,
        software: &[StoredSoftware],
        logons: &[StoredLogon],
    ) -> Result<(), StoreError> {
        let statements =
            inventory::replace_inventory(D::DIALECT, tenant_id, machine_id, software, logons);
        self.db.execute(statements).await.map(drop)
    }

    async fn machine_software(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> Result<Vec<(StoredSoftware, i64)>, StoreError> {
        let sql = inventory::machine_software(D::DIALECT, tenant_id, machine_id);
        self.rows(Reading::Many, sql, |row| inventory::software_row(row))
            .await
    }

    async fn machine_logons(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> Result<Vec<StoredLogon>, StoreError> {
        let sql = inventory::machine_logons(D::DIALECT, tenant_id, machine_id);
        self.rows(Reading::Few, sql, |row| inventory::logon_row(row))
            .await
    }

    async fn library_files(&self, tenant_id: &str) -> Result<Vec<LibraryEntry>, StoreError> {
        let sql = files::library_files(D::DIALECT, tenant_id, None);
        self.rows(Reading::Few, sql, |row| library_fields::from_row(row, 0))
            .await
    }

    async fn library_file(
        &self,
        tenant_id: &str,
        file_name: &str,
    ) -> Result<Option<LibraryEntry>, StoreError> {
        let sql = files::library_files(D::DIALECT, tenant_id, Some(file_name));
        self.row(sql, |row| library_fields::from_row(row, 0)).await
    }

    async fn put_library_file(
        &self,
        entry: &LibraryEntry,
        file: &StoredFile,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let statements = files::put_library_file(D::DIALECT, entry, file, replace);
        let changed = self.db.execute(statements).await?;
        // The file was completed only if the entry is its.
        Ok(changed.get(1).copied().unwrap_or(0) == 1)
    }

    async fn delete_library_file(
        &self,
        tenant_id: &str,
        file_name: &str,
    ) -> Result<bool, StoreError> {
        let Some(entry) = self.library_file(tenant_id, file_name).await? else {
            return Ok(false);
        };
        let changed = self
            .db
            .execute(files::delete_library_file(D::DIALECT, &entry))
            .await?;
        Ok(changed.first().copied().unwrap_or(0) > 0)
    }

    async fn machines(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<SerializedMachine>, StoreError> {
        let probes = machine_probes(D::DIALECT, None);
        let ListSql { page, count } = Self::machine_list(visibility, query, probes);
        let full = || Self::machine_list(visibility, query, machine_rows(D::DIALECT)).page;
        let items =
            self.machine_cache
                .read(&self.db, Reading::Many, &visibility.tenant_id, page, full);
        self.list(count, query.limit, items).await
    }

    async fn machine(
        &self,
        visibility: &Visibility,
        key: MachineKey<'_>,
    ) -> Result<Option<SerializedMachine>, StoreError> {
        let lookup = |table| machine_lookup(D::DIALECT, visibility, key, table, false);
        let probe = lookup(machine_probes(D::DIALECT, Some(key)));
        let full = || lookup(machine_rows(D::DIALECT));
        let found = self
            .machine_cache
            .read(&self.db, Reading::Few, &visibility.tenant_id, probe, full)
            .await?;
        Ok(found.into_iter().next())
    }

    async fn change_machines(
        &self,
        visibility: &Visibility,
        machines: Vec<MachineRef>,
        decide: MachineDecision,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<MachineChange>, WriteError> {
        let write = ChangeMachines::new(visibility.clone(), machines, decide, audit);
        self.db.write(write).await
    }

    async fn actions(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<MachineAction>, StoreError> {
        let visible = |sql: &mut Sql| {
            sql.action_visibility(visibility);
        };
        let table = (
            crate::fields::action_fields::select(D::DIALECT),
            "machine_actions a",
        );
        let tenant_id = &visibility.tenant_id;
        let ListSql { page, count } =
            ListSql::new(D::DIALECT, &ACTIONS, table, visible, tenant_id, query);
        let items = self.rows(Reading::Many, page, |row| {
            crate::fields::action_fields::from_row(row, 0)
        });
        self.list(count, query.limit, items).await
    }

    async fn action(
        &self,
        visibility: &Visibility,
        id: &str,
    ) -> Result<Option<MachineAction>, StoreError> {
        let sql = action_lookup(D::DIALECT, visibility, id, false);
        self.row(sql, |row| crate::fields::action_fields::from_row(row, 0))
            .await
    }

    async fn time_out_actions(
        &self,
        scope: &TenantScope,
        stale_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let sql = time_out_stale_actions(D::DIALECT, scope, stale_before, now);
        self.execute(&sql.text, sql.params).await
    }

    async fn change_action(
        &self,
        visibility: &Visibility,
        id: &str,
        decide: ActionDecision,
        audit: Option<AuditEntry>,
    ) -> Result<MachineAction, WriteError> {
        let write = ChangeAction {
            visibility: visibility.clone(),
            id: id.to_string(),
            decide: Some(decide),
            audit,
        };
        self.db.write(write).await
    }

    async fn alerts(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
        with_evidence: bool,
    ) -> Result<Page<Alert>, StoreError> {
        let visible = |sql: &mut Sql| alerts::alert_visibility(sql, visibility);
        let table = (alerts::alert_columns(D::DIALECT, with_evidence), "alerts l");
        let tenant_id = &visibility.tenant_id;
        let ListSql { page, count } =
            ListSql::new(D::DIALECT, &ALERTS, table, visible, tenant_id, query);
        let items = self.rows(Reading::Many, page, |row| alert_fields::from_row(row, 0));
        self.list(count, query.limit, items).await
    }

    async fn alert(&self, visibility: &Visibility, id: &str) -> Result<Option<Alert>, StoreError> {
        let sql = alerts::alerts_with_ids(D::DIALECT, visibility, &[id.to_string()], false);
        self.row(sql, |row| alert_fields::from_row(row, 0)).await
    }

    async fn change_alerts(&self, write: ChangeAlerts) -> Result<Vec<Alert>, WriteError> {
        self.db.write(write).await
    }

    async fn raise_alert(&self, write: RaiseAlert) -> Result<Alert, WriteError> {
        self.db.write(write).await
    }

    async fn indicators(
        &self,
        tenant_id: &str,
        created_by: Option<&str>,
        now: Timestamp,
        query: &ListQuery,
    ) -> Result<Page<Indicator>, StoreError> {
        let visible = |sql: &mut Sql| alerts::indicator_visibility(sql, tenant_id, created_by, now);
        let table = (indicator_fields::select(D::DIALECT), "indicators i");
        let ListSql { page, count } =
            ListSql::new(D::DIALECT, &INDICATORS, table, visible, tenant_id, query);
        let items = self.rows(Reading::Many, page, |row| {
            indicator_fields::from_row(row, 0)
        });
        self.list(count, query.limit, items).await
    }

    async fn submit_indicators(
        &self,
        write: SubmitIndicators,
    ) -> Result<Vec<Result<Indicator, MdeError>>, WriteError> {
        self.db.write(write).await
    }

    async fn delete_indicators(&self, write: DeleteIndicators) -> Result<(), WriteError> {
        self.db.write(write).await
    }

    async fn put_app(&self, app: &AppRegistration) -> Result<(), StoreError> {
        let values = app_fields::values(app);
        self.execute(app_upsert(D::DIALECT), values).await?;
        Ok(())
    }

    async fn app(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<AppRegistration>, StoreError> {
        let equal = [
            ("tenant_id", text(tenant_id)),
            ("client_id", text(client_id)),
        ];
        self.row_where(apps_of::<D>(), &equal, |row| app_fields::from_row(row, 0))
            .await
    }

    async fn apps(&self, tenant_id: &str) -> Result<Vec<AppRegistration>, StoreError> {
        let order = " ORDER BY display_name, client_id";
        self.tenant_rows(apps_of::<D>(), tenant_id, order, |row| {
            app_fields::from_row(row, 0)
        })
        .await
    }

    async fn delete_app(&self, tenant_id: &str, client_id: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM apps WHERE tenant_id = ?1 AND client_id = ?2";
        let deleted = self
            .execute(
                &D::DIALECT.numbered(sql),
                vec![text(tenant_id), text(client_id)],
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let values = user_fields::values(user);
        self.execute(user_upsert(D::DIALECT), values).await?;
        Ok(())
    }

    async fn user(&self, tenant_id: &str, id: &str) -> Result<Option<User>, StoreError> {
        let equal = [("tenant_id", text(tenant_id)), ("id", text(id))];
        self.row_where(users_of::<D>(), &equal, |row| user_fields::from_row(row, 0))
            .await
    }

    async fn user_by_name(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<Option<User>, StoreError> {
        let (columns, from) = users_of::<D>();
        let mut sql = Sql::new(D::DIALECT);
        sql.push(&format!("SELECT {columns} FROM {from} WHERE tenant_id = "))
            .bind(text(tenant_id))
            .push(" AND ")
            .equal_ignoring_case("username", text(username));
        self.row(sql, |row| user_fields::from_row(row, 0)).await
    }

    async fn users(&self, tenant_id: &str) -> Result<Vec<User>, StoreError> {
        self.tenant_rows(users_of::<D>(), tenant_id, " ORDER BY username", |row| {
            user_fields::from_row(row, 0)
        })
        .await
    }

    async fn delete_user(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM users WHERE tenant_id = ?1 AND id = ?2";
        let deleted = self
            .execute(&D::DIALECT.numbered(sql), vec![text(tenant_id), text(id)])
            .await?;
        Ok(deleted > 0)
    }

    async fn put_grant(&self, grant: &OAuthGrant) -> Result<(), StoreError> {
        self.execute(grant_insert(D::DIALECT), grant_fields::values(grant))
            .await?;
        Ok(())
    }

    async fn grant(&self, tenant_id: &str, key: &str) -> Result<Option<OAuthGrant>, StoreError> {
        let equal = [("tenant_id", text(tenant_id)), ("key", text(key))];
        self.row_where(grants_of::<D>(), &equal, |row| {
            grant_fields::from_row(row, 0)
        })
        .await
    }

    async fn device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<OAuthGrant>, StoreError> {
        let equal = [("user_code", text(user_code))];
        self.row_where(grants_of::<D>(), &equal, |row| {
            grant_fields::from_row(row, 0)
        })
        .await
    }

    async fn redeem_grant(
        &self,
        tenant_id: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Redeemed, StoreError> {
        let sql = "UPDATE oauth_grants SET used_at = ?3 \
                   WHERE tenant_id = ?1 AND key = ?2 AND used_at IS NULL";
        let params = vec![text(tenant_id), text(key), ticks(now)];
        let won = self.execute(&D::DIALECT.numbered(sql), params).await? > 0;
        Ok(match self.grant(tenant_id, key).await? {
            Some(grant) if won => Redeemed::Fresh(grant),
            Some(grant) => Redeemed::Replayed(grant),
            None => Redeemed::Missing,
        })
    }

    async fn approve_device_grant(
        &self,
        tenant_id: &str,
        key: &str,
        user_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE oauth_grants SET user_id = ?3 \
                   WHERE tenant_id = ?1 AND key = ?2 AND kind = 'device' \
                   AND user_id IS NULL AND used_at IS NULL AND expires_at > ?4";
        let params = vec![text(tenant_id), text(key), text(user_id), ticks(now)];
        Ok(self.execute(&D::DIALECT.numbered(sql), params).await? > 0)
    }

    async fn poll_device_grant(
        &self,
        tenant_id: &str,
        key: &str,
        now: Timestamp,
        not_after: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE oauth_grants SET polled_at = ?3 \
                   WHERE tenant_id = ?1 AND key = ?2 \
                   AND (polled_at IS NULL OR polled_at <= ?4)";
        let params = vec![text(tenant_id), text(key), ticks(now), ticks(not_after)];
        Ok(self.execute(&D::DIALECT.numbered(sql), params).await? > 0)
    }

    async fn revoke_grants(&self, tenant_id: &str, of: GrantsOf<'_>) -> Result<u64, StoreError> {
        let (column, value) = match of {
            GrantsOf::Family(family) => ("family", family),
            GrantsOf::User(user_id) => ("user_id", user_id),
            GrantsOf::App(client_id) => ("client_id", client_id),
        };
        let sql = format!("DELETE FROM oauth_grants WHERE tenant_id = ?1 AND {column} = ?2");
        self.execute(
            &D::DIALECT.numbered(&sql),
            vec![text(tenant_id), text(value)],
        )
        .await
    }

    async fn forget_expired_grants(&self, before: Timestamp) -> Result<u64, StoreError> {
        let sql = "DELETE FROM oauth_grants WHERE expires_at < ?1";
        self.execute(&D::DIALECT.numbered(sql), vec![ticks(before)])
            .await
    }

    async fn signing_keys(&self, tenant_id: &str) -> Result<Vec<SigningKey>, StoreError> {
        let table = (key_fields::select(D::DIALECT), "signing_keys");
        self.tenant_rows(table, tenant_id, " ORDER BY created_at DESC, kid", |row| {
            key_fields::from_row(row, 0)
        })
        .await
    }

    async fn rotate_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        let retire = "UPDATE signing_keys SET retired_at = ?2 \
                      WHERE tenant_id = ?1 AND retired_at IS NULL";
        let statements = vec![
            Sql::fixed(
                D::DIALECT,
                &D::DIALECT.numbered(retire),
                vec![text(&key.tenant_id), ticks(key.created_at)],
            ),
            Sql::fixed(D::DIALECT, key_insert(D::DIALECT), key_fields::values(key)),
        ];
        self.db.execute(statements).await?;
        Ok(())
    }

    async fn seal_signing_key(
        &self,
        tenant_id: &str,
        kid: &str,
        plaintext: &str,
        sealed: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE signing_keys SET private_key_pem = ?4 \
                   WHERE tenant_id = ?1 AND kid = ?2 AND private_key_pem = ?3";
        let params = [tenant_id, kid, plaintext, sealed].map(text).to_vec();
        Ok(self.execute(&D::DIALECT.numbered(sql), params).await? > 0)
    }

    async fn device_groups(&self, tenant_id: &str) -> Result<Vec<DeviceGroup>, StoreError> {
        let table = (group_fields::select(D::DIALECT), "device_groups");
        self.tenant_rows(table, tenant_id, " ORDER BY id", |row| {
            group_fields::from_row(row, 0)
        })
        .await
    }

    async fn put_onboarding_token(&self, token: &OnboardingToken) -> Result<(), StoreError> {
        let values = token_fields::values(token);
        self.execute(token_upsert(D::DIALECT), values).await?;
        Ok(())
    }

    async fn onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<OnboardingToken>, StoreError> {
        let table = (token_fields::select(D::DIALECT), "onboarding_tokens");
        let equal = [("tenant_id", text(tenant_id)), ("id", text(id))];
        self.row_where(table, &equal, |row| token_fields::from_row(row, 0))
            .await
    }

    async fn onboarding_tokens(&self, tenant_id: &str) -> Result<Vec<OnboardingToken>, StoreError> {
        let table = (token_fields::select(D::DIALECT), "onboarding_tokens");
        self.tenant_rows(table, tenant_id, " ORDER BY created_at, id", |row| {
            token_fields::from_row(row, 0)
        })
        .await
    }

    async fn revoke_onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE onboarding_tokens SET revoked_at = ?3 \
                   WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL";
        let params = vec![text(tenant_id), text(id), ticks(at)];
        Ok(self.execute(&D::DIALECT.numbered(sql), params).await? > 0)
    }

    async fn enroll_device(
        &self,
        machine: &Machine,
        device: &Device,
        presented_credential_id: Option<&str>,
    ) -> Result<(Machine, Device), StoreError> {
        let write = EnrollDevice {
            machine: machine.clone(),
            device: device.clone(),
            presented_credential_id: presented_credential_id.map(str::to_string),
        };
        self.db
            .write(write)
            .await
            .map_err(WriteError::into_store_error)
    }

    async fn device_by_credential(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<Option<Device>, StoreError> {
        let table = (device_fields::select(D::DIALECT), "devices");
        let equal = [
            ("tenant_id", text(tenant_id)),
            ("credential_id", text(credential_id)),
        ];
        self.row_where(table, &equal, |row| device_fields::from_row(row, 0))
            .await
    }

    async fn devices(&self, tenant_id: &str) -> Result<Vec<Device>, StoreError> {
        let table = (device_fields::select(D::DIALECT), "devices");
        let order = " ORDER BY enrolled_at DESC, machine_id";
        self.tenant_rows(table, tenant_id, order, |row| {
            device_fields::from_row(row, 0)
        })
        .await
    }

    async fn device_of_machine(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> Result<Option<Device>, StoreError> {
        let equal = [
            ("tenant_id", text(tenant_id)),
            ("machine_id", text(machine_id)),
        ];
        let table = (device_fields::select(D::DIALECT), "devices");
        self.row_where(table, &equal, |row| device_fields::from_row(row, 0))
            .await
    }

    async fn record_check_ins(&self, check_ins: &[CheckInRecord]) -> Result<(), StoreError> {
        let write = RecordCheckIns(check_ins.to_vec());
        self.db
            .bulk_write(write, 0)
            .await
            .map_err(WriteError::into_store_error)
    }

    async fn claim_device_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
        now: Timestamp,
        held_until: Timestamp,
    ) -> Result<Vec<MachineAction>, StoreError> {
        // Most check-ins find nothing: a read answers them without a write.
        let params = vec![text(tenant_id), text(machine_id), ticks(now)];
        let sql = Sql::fixed(D::DIALECT, any_deliverable_action(D::DIALECT), params);
        let deliverable = self.row(sql, |_| Ok(())).await?;
        if deliverable.is_none() {
            return Ok(vec![]);
        }
        self.db
            .claim_device_actions(tenant_id, machine_id, now, held_until)
            .await
    }

    fn relay_new_actions(&self, wakeups: Arc<Wakeups>) {
        self.db.relay_new_actions(wakeups)
    }

    async fn change_device_action(
        &self,
        device: &Device,
        action_id: &str,
        decide: DeviceActionDecision,
    ) -> Result<MachineAction, WriteError> {
        let write = ChangeDeviceAction {
            device: device.clone(),
            action_id: action_id.to_string(),
            decide: Some(decide),
        };
        self.db.write(write).await
    }

    async fn admit_call(
        &self,
        key: &RateKey,
        limits: RateLimits,
        now: Timestamp,
    ) -> Result<Result<(), Throttled>, StoreError> {
        self.db.admit_call(key, limits, now).await
    }

    async fn forget_idle_calls(&self, now: Timestamp) -> Result<(), StoreError> {
        self.db.forget_idle_calls(now).await
    }

    async fn append_audit(
        &self,
        entry: &AuditEntry,
        machine_ids: &[String],
    ) -> Result<(), StoreError> {
        self.db
            .append_audit(entry.clone(), machine_ids.to_vec())
            .await
    }

    async fn audit_entries(
        &self,
        visibility: &Visibility,
        skip: u64,
        top: u32,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let sql = audit_entries(D::DIALECT, visibility, skip, i64::from(top) + 1);
        let items = self.rows(Reading::Many, sql, |row| audit_fields::from_row(row, 0));
        self.list(None, top, items).await
    }

    async fn operator_credential(&self) -> Result<Option<OperatorCredential>, StoreError> {
        let table = (operator_fields::select(D::DIALECT), "operator_credential");
        let equal = [("id", Value::Integer(1))];
        self.row_where(table, &equal, |row| operator_fields::from_row(row, 0))
            .await
    }

    async fn put_operator_credential(
        &self,
        credential: &OperatorCredential,
        replace: bool,
    ) -> Result<(), StoreError> {
        let values = operator_fields::values(credential);
        self.execute(operator_upsert(D::DIALECT, replace), values)
            .await?;
        Ok(())
    }

    async fn outcome_rules(&self, tenant_id: &str) -> Result<Vec<StoredOutcomeRule>, StoreError> {
        let sql = control::outcome_rules_of(D::DIALECT, tenant_id);
        self.rows(Reading::Many, sql, |row| {
            outcome_rule_fields::from_row(row, 0)
        })
        .await
    }

    async fn add_outcome_rule(
        &self,
        rule: &StoredOutcomeRule,
        place: RulePlace,
    ) -> Result<(), StoreError> {
        let values = outcome_rule_fields::values(&StoredOutcomeRule {
            position: place.offset(),
            ..rule.clone()
        });
        self.execute(outcome_rule_insert(D::DIALECT, place), values)
            .await?;
        Ok(())
    }

    async fn delete_outcome_rule(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let sql = control::delete_rules(D::DIALECT, "outcome_rules", tenant_id, Some(id));
        Ok(self.execute(&sql.text, sql.params).await? > 0)
    }

    async fn delete_outcome_rules(&self, tenant_id: &str) -> Result<u64, StoreError> {
        let sql = control::delete_rules(D::DIALECT, "outcome_rules", tenant_id, None);
        self.execute(&sql.text, sql.params).await
    }

    async fn fault_rules(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<StoredFaultRule>, StoreError> {
        let sql = control::fault_rules_of(D::DIALECT, tenant_id, None);
        self.rows(Reading::Many, sql, |row| {
            fault_rule_fields::from_row(row, 0)
        })
        .await
    }

    async fn add_fault_rule(
        &self,
        rule: &StoredFaultRule,
        place: RulePlace,
    ) -> Result<(), StoreError> {
        let values = fault_rule_fields::values(&StoredFaultRule {
            position: place.offset(),
            ..rule.clone()
        });
        self.execute(fault_rule_insert(D::DIALECT, place), values)
            .await?;
        Ok(())
    }

    async fn delete_fault_rule(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let sql = control::delete_rules(D::DIALECT, "fault_rules", tenant_id, Some(id));
        Ok(self.execute(&sql.text, sql.params).await? > 0)
    }

    async fn delete_fault_rules(&self, tenant_id: &str) -> Result<u64, StoreError> {
        let sql = control::delete_rules(D::DIALECT, "fault_rules", tenant_id, None);
        self.execute(&sql.text, sql.params).await
    }

    async fn take_fault_call(
        &self,
        tenant_id: &str,
        id: &str,
        draw: f64,
    ) -> Result<Option<StoredFaultRule>, StoreError> {
        let write = TakeFaultCall {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
            draw,
        };
        self.db
            .write(write)
            .await
            .map_err(WriteError::into_store_error)
    }

    async fn advance_scripted_actions(
        &self,
        tenant_id: &str,
        action_ids: Vec<String>,
        now: Timestamp,
        polled: bool,
    ) -> Result<Vec<MachineAction>, StoreError> {
        let write = AdvanceScripts {
            tenant_id: tenant_id.to_string(),
            action_ids,
            now,
            polled,
        };
        self.db
            .write(write)
            .await
            .map_err(WriteError::into_store_error)
    }

    async fn scripted_among(
        &self,
        tenant_id: &str,
        action_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let sql = control::scripted_among(D::DIALECT, tenant_id, action_ids);
        self.rows(Reading::Few, sql, |row| required(row.text(0)?, 0))
            .await
    }

    async fn seed_tenant(
        &self,
        state: TenantState,
        seeding: Seeding,
        now: Timestamp,
    ) -> Result<bool, WriteError> {
        let write = SeedTenant {
            state,
            seeding,
            now,
        };
        self.db.write(write).await
    }

    async fn forget_calls_of(&self, tenant_id: &str) -> Result<(), StoreError> {
        self.db.forget_calls_of(tenant_id).await
    }

    async fn tenant_seed(&self, tenant_id: &str) -> Result<Option<String>, StoreError> {
        let sql = control::tenant_seed_of(D::DIALECT, tenant_id);
        self.row(sql, |row| required(row.text(0)?, 0)).await
    }

    async fn set_recorder(&self, tenant_id: &str, enabled: bool) -> Result<(), StoreError> {
        let sql = control::set_recorder(D::DIALECT, tenant_id, enabled);
        self.execute(&sql.text, sql.params).await.map(|_| ())
    }

    async fn recording_tenants(&self) -> Result<Vec<String>, StoreError> {
        let sql = Sql::fixed(D::DIALECT, "SELECT tenant_id FROM recorders", vec![]);
        self.rows(Reading::Few, sql, |row| required(row.text(0)?, 0))
            .await
    }

    async fn append_recorded_call(&self, call: &RecordedCall) -> Result<(), StoreError> {
        let values = recorded_call_fields::values(call);
        self.execute(recorded_call_insert(D::DIALECT), values)
            .await
            .map(|_| ())
    }

    async fn recorded_calls(
        &self,
        tenant_id: &str,
        filter: &RecordFilter,
        skip: u64,
        top: u64,
    ) -> Result<Vec<RecordedCall>, StoreError> {
        let sql = control::recorded_calls_of(D::DIALECT, tenant_id, filter, skip, top);
        self.rows(Reading::Many, sql, |row| {
            recorded_call_fields::from_row(row, 0)
        })
        .await
    }

    async fn prune_recorded_calls(&self, tenant_id: &str, keep: u64) -> Result<(), StoreError> {
        let sql = control::prune_recorded_calls(D::DIALECT, tenant_id, keep);
        self.execute(&sql.text, sql.params).await.map(|_| ())
    }

    async fn delete_recorded_calls(&self, tenant_id: &str) -> Result<u64, StoreError> {
        let sql = control::delete_rules(D::DIALECT, "recorded_calls", tenant_id, None);
        self.execute(&sql.text, sql.params).await
    }

    async fn tenant_clocks(&self) -> Result<Vec<(String, TenantClock)>, StoreError> {
        let sql = control::tenant_clocks(D::DIALECT);
        self.rows(Reading::Few, sql, |row| {
            Ok((required(row.text(0)?, 0)?, clock_fields::from_row(row, 1)?))
        })
        .await
    }

    async fn change_tenant_clock(
        &self,
        tenant_id: &str,
        change: &ClockChange,
        server_now: Timestamp,
    ) -> Result<TenantClock, WriteError> {
        let write = ChangeClock {
            tenant_id: tenant_id.to_string(),
            change: change.clone(),
            server_now,
        };
        self.db.write(write).await
    }

    async fn due_scripted_actions(
        &self,
        scope: &TenantScope,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = control::due_action_scripts(D::DIALECT, scope, now, i64::from(limit));
        self.rows(Reading::Few, sql, |row| {
            Ok((required(row.text(0)?, 0)?, required(row.text(1)?, 1)?))
        })
        .await
    }
}

fn tenants_of<D: Database>() -> (&'static str, &'static str) {
    (tenant_fields::select(D::DIALECT), "tenants")
}

fn apps_of<D: Database>() -> (&'static str, &'static str) {
    (app_fields::select(D::DIALECT), "apps")
}

fn grants_of<D: Database>() -> (&'static str, &'static str) {
    (grant_fields::select(D::DIALECT), "oauth_grants")
}

fn users_of<D: Database>() -> (&'static str, &'static str) {
    (user_fields::select(D::DIALECT), "users")
}
