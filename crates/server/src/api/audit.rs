//! `/api/auditlog`: Palisade's own record of every change made through the
//! API or the CLI (who, what, to what, with what result, when).

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::{OData, RequestBase};
use crate::http::odata::{collection, Selection};
use axum::extract::State;
use axum::response::Response;
use palisade_contract::ErrorBody;
use palisade_domain::identity::AuditEntry;
use palisade_domain::Caller;

/// List the tenant's audit entries, newest first (`$top`, `$skip`, `$select`).
#[utoipa::path(get, path = "/api/auditlog", tag = "Audit",
    operation_id = "list_audit_log",
    params(
        ("$top" = Option<u32>, Query, description = "At most 10,000; without it, pages of 10,000 with @odata.nextLink"),
        ("$skip" = Option<u64>, Query),
        ("$select" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "A collection of audit entries (`value`)", body = [AuditEntry]),
        (status = 400, body = ErrorBody),
    ))]
pub async fn list_audit_log(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    OData(query): OData,
) -> ApiResult<Response> {
    let selection = Selection::resolve::<AuditEntry>(&query)?;
    let page = app.palisade.list_audit(&caller, &query).await?;
    collection(&base, &query, selection, page)
}
