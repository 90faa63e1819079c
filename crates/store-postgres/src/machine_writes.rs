//! Many machines written at once: their rows, their tags and their address
//! histories, each in a few statements over arrays (`unnest`), however many
//! machines there are, so that a bulk write costs what its rows do and not a
//! round trip each.

use crate::rows::{Db, Param};
use palisade_contract::Machine;
use palisade_domain::rules::ip_history::IpHistorySync;
use palisade_domain::store::StoreError;
use palisade_store_sql::fields::{machine_fields, machines_upsert_unnest, Kind};
use palisade_store_sql::{TagRows, Value};
use tokio_postgres::types::ToSql;

/// Creates or overwrites each machine's row (no id twice), then brings its
/// tags from the old tags beside it to the machine's.
pub(crate) async fn save_machines(
    db: &impl Db,
    tenant_id: &str,
    machines: &[(&Machine, &[String])],
) -> Result<(), StoreError> {
    let rows = machines
        .iter()
        .map(|(machine, _)| machine_fields::values(machine));
    let kinds = machine_fields::kinds();
    upsert_rows(db, machines_upsert_unnest(), tenant_id, &kinds, rows).await?;
    sync_tags(db, tenant_id, machines).await
}

/// Runs an `unnest` upsert (`fields::machines_upsert_unnest`, ...) of
/// `rows` (each the values of `kinds`' columns) in one statement.
pub(crate) async fn upsert_rows(
    db: &impl Db,
    sql: &str,
    tenant_id: &str,
    kinds: &[Kind],
    rows: impl Iterator<Item = Vec<Value>>,
) -> Result<(), StoreError> {
    // One array per column, from each row's values.
    let mut columns: Vec<Vec<Value>> = kinds.iter().map(|_| Vec::new()).collect();
    for row in rows {
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    let arrays: Vec<Box<dyn ToSql + Sync + Send>> = kinds
        .iter()
        .zip(columns)
        .map(|(kind, values)| array(*kind, values))
        .collect::<Result<_, _>>()?;
    let mut params: Vec<Param<'_>> = vec![&tenant_id];
    params.extend(arrays.iter().map(|a| a.as_ref() as Param<'_>));
    db.run(sql, &params).await.map(|_| ())
}

/// A column of field-table values as the typed array PostgreSQL unnests.
fn array(kind: Kind, values: Vec<Value>) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    fn mismatch(value: &Value, kind: Kind) -> StoreError {
        StoreError::Internal(format!("a {kind:?} column was given {value:?}"))
    }
    Ok(match kind {
        Kind::Text => Box::new(
            values
                .into_iter()
                .map(|value| match value {
                    Value::Text(text) => Ok(Some(text)),
                    Value::Null => Ok(None),
                    other => Err(mismatch(&other, kind)),
                })
                .collect::<Result<Vec<Option<String>>, _>>()?,
        ),
        Kind::Integer => Box::new(
            values
                .into_iter()
                .map(|value| match value {
                    Value::Integer(n) => Ok(Some(n)),
                    Value::Null => Ok(None),
                    other => Err(mismatch(&other, kind)),
                })
                .collect::<Result<Vec<Option<i64>>, _>>()?,
        ),
        Kind::Boolean => Box::new(
            values
                .into_iter()
                .map(|value| match value {
                    Value::Boolean(b) => Ok(Some(b)),
                    Value::Null => Ok(None),
                    other => Err(mismatch(&other, kind)),
                })
                .collect::<Result<Vec<Option<bool>>, _>>()?,
        ),
    })
}

/// Brings each machine's tag rows from its old tags to its own (`TagRows`):
/// the rows removed, then those of the machines rewritten, then the new ones
/// appended after each machine's last position, in order.
pub(crate) async fn sync_tags(
    db: &impl Db,
    tenant_id: &str,
    machines: &[(&Machine, &[String])],
) -> Result<(), StoreError> {
    let (mut removed_from, mut removed) = (Vec::new(), Vec::new());
    let mut rewritten = Vec::new();
    let (mut added_to, mut added_nth, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for (machine, old_tags) in machines {
        let id = machine.id.as_str();
        let inserted = match TagRows::between(old_tags, &machine.machine_tags) {
            TagRows::Unchanged => continue,
            TagRows::InPlace {
                removed: gone,
                appended,
            } => {
                removed_from.extend(gone.iter().map(|_| id));
                removed.extend(gone.into_iter().map(String::as_str));
                appended
            }
            TagRows::Rewrite(all) => {
                rewritten.push(id);
                all
            }
        };
        for (nth, tag) in (0_i64..).zip(inserted) {
            added_to.push(id);
            added_nth.push(nth);
            added.push(tag.as_str());
        }
    }
    if !removed.is_empty() {
        db.run(
            "DELETE FROM machine_tags t USING unnest($2::text[], $3::text[]) AS u(machine_id, tag) \
             WHERE t.tenant_id = $1 AND t.machine_id = u.machine_id AND t.tag = u.tag",
            &[&tenant_id, &removed_from, &removed],
        )
        .await?;
    }
    if !rewritten.is_empty() {
        db.run(
            "DELETE FROM machine_tags WHERE tenant_id = $1 AND machine_id = ANY($2)",
            &[&tenant_id, &rewritten],
        )
        .await?;
    }
    if !added.is_empty() {
        // Each after its machine's last position as the statement began.
        db.run(
            "INSERT INTO machine_tags (tenant_id, machine_id, position, tag) \
             SELECT $1, u.machine_id, \
                 COALESCE((SELECT MAX(t.position) FROM machine_tags t \
                           WHERE t.tenant_id = $1 AND t.machine_id = u.machine_id), -1) \
                 + 1 + u.nth, u.tag \
             FROM unnest($2::text[], $3::int8[], $4::text[]) AS u(machine_id, nth, tag)",
            &[&tenant_id, &added_to, &added_nth, &added],
        )
        .await?;
    }
    Ok(())
}

/// Brings each machine's address history (no machine twice) in line with
/// its sync (`rules::ip_history`): the open spans of the addresses it no
/// longer shows end, then a span opens for each address it shows that has
/// no open one (or one that began at the same time opens again).
pub(crate) async fn save_ip_history(
    db: &impl Db,
    tenant_id: &str,
    syncs: &[(&str, IpHistorySync)],
) -> Result<(), StoreError> {
    let machine_ids: Vec<&str> = syncs.iter().map(|(id, _)| *id).collect();
    let left_at: Vec<i64> = syncs.iter().map(|(_, s)| s.left_at.ticks()).collect();
    let (mut shown_by, mut shown, mut joined_at) = (Vec::new(), Vec::new(), Vec::new());
    for (id, sync) in syncs {
        for address in &sync.addresses {
            shown_by.push(*id);
            shown.push(address.as_str());
            joined_at.push(sync.joined_at.ticks());
        }
    }
    db.run(
        "UPDATE machine_ip_history h SET last_seen = u.left_at \
         FROM unnest($2::text[], $3::int8[]) AS u(machine_id, left_at) \
         WHERE h.tenant_id = $1 AND h.machine_id = u.machine_id AND h.last_seen IS NULL \
         AND (h.machine_id, h.ip) NOT IN (SELECT * FROM unnest($4::text[], $5::text[]))",
        &[&tenant_id, &machine_ids, &left_at, &shown_by, &shown],
    )
    .await?;
    if !shown.is_empty() {
        db.run(
            "INSERT INTO machine_ip_history (tenant_id, machine_id, ip, first_seen) \
             SELECT $1, u.machine_id, u.ip, u.joined_at \
             FROM unnest($2::text[], $3::text[], $4::int8[]) AS u(machine_id, ip, joined_at) \
             WHERE NOT EXISTS (SELECT 1 FROM machine_ip_history o WHERE o.tenant_id = $1 \
                 AND o.machine_id = u.machine_id AND o.ip = u.ip AND o.last_seen IS NULL) \
             ON CONFLICT (tenant_id, machine_id, ip, first_seen) DO UPDATE SET last_seen = NULL",
            &[&tenant_id, &shown_by, &shown, &joined_at],
        )
        .await?;
    }
    Ok(())
}
