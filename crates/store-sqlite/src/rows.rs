//! Rows to entities and back.

use palisade_contract::{Machine, MachineAction, Timestamp};
use palisade_store_sql::{machine_upsert, Dialect, TagRows};
use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, Row, ToSql};
use std::str::FromStr;

/// A column holding one of the contract's wire enums, stored as its wire text.
pub(crate) fn wire<T: FromStr>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    text.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown value '{text}'").into(),
        )
    })
}

pub(crate) fn wire_opt<T: FromStr>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>> {
    match row.get_ref(index)? {
        ValueRef::Null => Ok(None),
        _ => wire(row, index).map(Some),
    }
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    index: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

pub(crate) fn json_opt<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<T>> {
    match row.get_ref(index)? {
        ValueRef::Null => Ok(None),
        _ => json(row, index).map(Some),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("contract types serialise")
}

/// Timestamps are stored as integer ticks.
pub(crate) struct Ticks(pub Timestamp);

impl FromSql for Ticks {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(|t| Ticks(Timestamp::from_ticks(t)))
    }
}

impl ToSql for Ticks {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.ticks()))
    }
}

pub(crate) fn ticks(row: &Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    Ok(row.get::<_, Ticks>(index)?.0)
}

/// The columns `machine_from_row` reads, in its order; `m` is `machines`,
/// `g` the device group joined on `rbac_group_id`.
pub(crate) const MACHINE_COLUMNS: &str = "m.id, m.merged_into_machine_id, \
    m.is_potential_duplication, m.is_excluded, m.exclusion_reason, m.computer_dns_name, \
    m.first_seen, m.last_seen, m.os_platform, m.os_version, m.os_processor, m.version, \
    m.last_ip_address, m.last_external_ip_address, m.agent_version, m.os_build, \
    m.health_status, m.device_value, m.rbac_group_id, g.name, m.risk_score, \
    m.exposure_level, m.is_aad_joined, m.aad_device_id, \
    (SELECT json_group_array(tag) FROM (SELECT t.tag FROM machine_tags t \
        WHERE t.tenant_id = m.tenant_id AND t.machine_id = m.id ORDER BY t.position)), \
    m.defender_av_status, m.onboarding_status, m.os_architecture, m.managed_by, \
    m.managed_by_status, m.ip_addresses, m.vm_metadata, m.revision";

/// (columns, table) of a machine's whole row, as `machine_from_row` reads it.
pub(crate) const MACHINE_ROWS: (&str, &str) = (MACHINE_COLUMNS, MACHINE_FROM);

/// (columns, table) of what the machine cache checks a machine by, before it
/// reads the machine itself: its id and revision, from an index alone.
pub(crate) const MACHINE_PROBES: (&str, &str) = ("m.id, m.revision", "machines m");

/// `MACHINE_PROBES` of one machine by id: left to itself SQLite takes the
/// primary key's index for a single id, and then reads the row.
pub(crate) const MACHINE_PROBE_BY_ID: (&str, &str) = (
    "m.id, m.revision",
    "machines m INDEXED BY machines_revision",
);

/// Where `MACHINE_COLUMNS` puts what the machine cache checks a row by.
pub(crate) const MACHINE_ID_COLUMN: usize = 0;
pub(crate) const MACHINE_REVISION_COLUMN: usize = 32;

const MACHINE_FROM: &str = "machines m LEFT JOIN device_groups g \
    ON g.tenant_id = m.tenant_id AND g.id = m.rbac_group_id";

pub(crate) fn machine_from_row(row: &Row<'_>) -> rusqlite::Result<Machine> {
    Ok(Machine {
        id: row.get(MACHINE_ID_COLUMN)?,
        merged_into_machine_id: row.get(1)?,
        is_potential_duplication: row.get(2)?,
        is_excluded: row.get(3)?,
        exclusion_reason: row.get(4)?,
        computer_dns_name: row.get(5)?,
        first_seen: ticks(row, 6)?,
        last_seen: ticks(row, 7)?,
        os_platform: wire(row, 8)?,
        os_version: row.get(9)?,
        os_processor: row.get(10)?,
        version: row.get(11)?,
        last_ip_address: row.get(12)?,
        last_external_ip_address: row.get(13)?,
        agent_version: row.get(14)?,
        os_build: row.get(15)?,
        health_status: wire(row, 16)?,
        device_value: wire_opt(row, 17)?,
        rbac_group_id: row.get(18)?,
        rbac_group_name: row.get(19)?,
        risk_score: wire_opt(row, 20)?,
        exposure_level: wire_opt(row, 21)?,
        is_aad_joined: row.get(22)?,
        aad_device_id: row.get(23)?,
        machine_tags: json(row, 24)?,
        defender_av_status: row.get(25)?,
        onboarding_status: wire(row, 26)?,
        os_architecture: row.get(27)?,
        managed_by: row.get(28)?,
        managed_by_status: row.get(29)?,
        ip_addresses: json(row, 30)?,
        vm_metadata: json_opt(row, 31)?,
    })
}

/// Creates or overwrites a machine row, then brings its tags from `old_tags` to the machine's.
pub(crate) fn save_machine(
    conn: &Connection,
    tenant_id: &str,
    machine: &Machine,
    old_tags: &[String],
) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(machine_upsert(Dialect::Sqlite))?;
    let m = machine;
    statement.execute(params![
        tenant_id,
        m.id,
        m.merged_into_machine_id,
        m.is_potential_duplication,
        m.is_excluded,
        m.exclusion_reason,
        m.computer_dns_name,
        Ticks(m.first_seen),
        Ticks(m.last_seen),
        m.os_platform.as_str(),
        m.os_version,
        m.os_processor,
        m.version,
        m.last_ip_address,
        m.last_external_ip_address,
        m.agent_version,
        m.os_build,
        m.health_status.as_str(),
        m.device_value.map(|v| v.as_str()),
        m.rbac_group_id,
        m.risk_score.map(|v| v.as_str()),
        m.exposure_level.map(|v| v.as_str()),
        m.is_aad_joined,
        m.aad_device_id,
        m.defender_av_status,
        m.onboarding_status.as_str(),
        m.os_architecture,
        m.managed_by,
        m.managed_by_status,
        to_json(&m.ip_addresses),
        m.vm_metadata.as_ref().map(to_json),
    ])?;
    sync_tags(conn, tenant_id, &m.id, old_tags, &m.machine_tags)
}

/// Brings a machine's tag rows from `old` to `new` (`TagRows`).
fn sync_tags(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
    old: &[String],
    new: &[String],
) -> rusqlite::Result<()> {
    let inserted = match TagRows::between(old, new) {
        TagRows::Unchanged => return Ok(()),
        TagRows::InPlace { removed, appended } => {
            let mut delete = conn.prepare_cached(
                "DELETE FROM machine_tags WHERE tenant_id = ?1 AND machine_id = ?2 AND tag = ?3",
            )?;
            for gone in removed {
                delete.execute(params![tenant_id, machine_id, gone])?;
            }
            appended
        }
        TagRows::Rewrite(all) => {
            conn.prepare_cached(
                "DELETE FROM machine_tags WHERE tenant_id = ?1 AND machine_id = ?2",
            )?
            .execute(params![tenant_id, machine_id])?;
            all
        }
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO machine_tags (tenant_id, machine_id, position, tag) VALUES (?1, ?2, \
            (SELECT COALESCE(MAX(position), -1) + 1 FROM machine_tags \
             WHERE tenant_id = ?1 AND machine_id = ?2), ?3)",
    )?;
    for tag in inserted {
        insert.execute(params![tenant_id, machine_id, tag])?;
    }
    Ok(())
}

pub(crate) fn action_from_row(row: &Row<'_>) -> rusqlite::Result<MachineAction> {
    Ok(MachineAction {
        id: row.get(0)?,
        action_type: wire(row, 1)?,
        title: row.get(2)?,
        requestor: row.get(3)?,
        requestor_comment: row.get(4)?,
        status: wire(row, 5)?,
        machine_id: row.get(6)?,
        computer_dns_name: row.get(7)?,
        creation_date_time_utc: ticks(row, 8)?,
        last_update_date_time_utc: ticks(row, 9)?,
        cancellation_requestor: row.get(10)?,
        cancellation_comment: row.get(11)?,
        cancellation_date_time_utc: row.get::<_, Option<Ticks>>(12)?.map(|t| t.0),
        error_h_result: row.get(13)?,
        scope: row.get(14)?,
        external_id: row.get(15)?,
        request_source: row.get(16)?,
        related_file_info: json_opt(row, 17)?,
        commands: json(row, 18)?,
        troubleshoot_info: json_opt(row, 19)?,
    })
}

/// Creates or overwrites an action row.
pub(crate) fn save_action(
    conn: &Connection,
    tenant_id: &str,
    action: &MachineAction,
) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO machine_actions (tenant_id, id, type, title, requestor, requestor_comment, \
            status, machine_id, computer_dns_name, creation_time, last_update_time, \
            cancellation_requestor, cancellation_comment, cancellation_time, error_hresult, \
            scope, external_id, request_source, related_file_info, commands, troubleshoot_info) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
            ?18, ?19, ?20, ?21) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status, \
            last_update_time = excluded.last_update_time, \
            cancellation_requestor = excluded.cancellation_requestor, \
            cancellation_comment = excluded.cancellation_comment, \
            cancellation_time = excluded.cancellation_time, \
            error_hresult = excluded.error_hresult, commands = excluded.commands, \
            troubleshoot_info = excluded.troubleshoot_info",
    )?;
    let a = action;
    statement.execute(params![
        tenant_id,
        a.id,
        a.action_type.as_str(),
        a.title,
        a.requestor,
        a.requestor_comment,
        a.status.as_str(),
        a.machine_id,
        a.computer_dns_name,
        Ticks(a.creation_date_time_utc),
        Ticks(a.last_update_date_time_utc),
        a.cancellation_requestor,
        a.cancellation_comment,
        a.cancellation_date_time_utc.map(Ticks),
        a.error_h_result,
        a.scope,
        a.external_id,
        a.request_source,
        a.related_file_info.as_ref().map(to_json),
        to_json(&a.commands),
        a.troubleshoot_info.as_ref().map(to_json),
    ])?;
    Ok(())
}
