//! The audit log's entries, as a batch appends them.

use crate::rows::Db;
use palisade_domain::identity::AuditEntry;
use palisade_domain::store::StoreError;

/// Entries of any tenants, one statement per tenant, in tenant order.
pub(crate) async fn append_all(
    db: &impl Db,
    mut entries: Vec<(&AuditEntry, &[String])>,
) -> Result<(), StoreError> {
    // Stable: a tenant's entries keep their order, and so their ids.
    entries.sort_by(|a, b| a.0.tenant_id.cmp(&b.0.tenant_id));
    for tenant in entries.chunk_by(|a, b| a.0.tenant_id == b.0.tenant_id) {
        append_audits(db, &tenant[0].0.tenant_id, tenant).await?;
    }
    Ok(())
}

/// Entries of one tenant, in one statement: their ids (the next of the
/// tenant's `audit_sequences` row, locked until the commit), the entries,
/// and the machines each is about.
async fn append_audits(
    db: &impl Db,
    tenant_id: &str,
    entries: &[(&AuditEntry, &[String])],
) -> Result<(), StoreError> {
    let column =
        |f: fn(&AuditEntry) -> String| entries.iter().map(|(e, _)| f(e)).collect::<Vec<_>>();
    let times: Vec<i64> = entries.iter().map(|(e, _)| e.time.ticks()).collect();
    let targets: Vec<Option<&str>> = entries.iter().map(|(e, _)| e.target.as_deref()).collect();
    let results: Vec<i64> = entries.iter().map(|(e, _)| i64::from(e.result)).collect();
    // Each machine with the position of its entry (from 1, as WITH ORDINALITY counts).
    let (positions, machines): (Vec<i64>, Vec<&str>) = entries
        .iter()
        .zip(1..)
        .flat_map(|((_, ids), n)| ids.iter().map(move |id| (n, id.as_str())))
        .unzip();
    db.run(
        "WITH next AS ( \
             INSERT INTO audit_sequences AS s (tenant_id, last_id) \
             VALUES ($1, cardinality($2::int8[])) \
             ON CONFLICT (tenant_id) DO UPDATE SET last_id = s.last_id + excluded.last_id \
             RETURNING last_id - cardinality($2::int8[]) AS base \
         ), entries AS ( \
             INSERT INTO audit_log (tenant_id, id, time, actor_type, actor_id, actor_name, \
                 operation, target, result, request_id) \
             SELECT $1, next.base + e.n, e.time, e.actor_type, e.actor_id, e.actor_name, \
                 e.operation, e.target, e.result, e.request_id \
             FROM next, unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::int8[], $9::text[]) WITH ORDINALITY \
                 AS e(time, actor_type, actor_id, actor_name, operation, target, result, \
                     request_id, n) \
             RETURNING id \
         ) \
         INSERT INTO audit_machines (tenant_id, entry_id, machine_id) \
         SELECT DISTINCT $1, next.base + m.n, m.machine_id \
         FROM next, unnest($10::int8[], $11::text[]) AS m(n, machine_id)",
        &[
            &tenant_id,
            &times,
            &column(|e| e.actor_type.clone()),
            &column(|e| e.actor_id.clone()),
            &column(|e| e.actor_name.clone()),
            &column(|e| e.operation.clone()),
            &targets,
            &results,
            &column(|e| e.request_id.clone()),
            &positions,
            &machines,
        ],
    )
    .await?;
    Ok(())
}
