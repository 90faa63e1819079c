//! `/api/machineactions`: list, get, cancel, and the links to what actions collected.

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::{JsonBody, OData, RequestBase};
use crate::http::odata::{collection, Entity, Selection};
use crate::http::paths::FunctionParameters;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use palisade_contract::odata::ODataQuery;
use palisade_contract::requests::{parse_result_index, CancelBody, ValidateBody};
use palisade_contract::{ErrorBody, MachineAction};
use palisade_domain::Caller;

/// List machine actions, newest first (OData `$filter` on id, status, machineId, type, requestor, creationDateTimeUtc).
#[utoipa::path(get, path = "/api/machineactions", tag = "Machine actions",
    params(
        ("$filter" = Option<String>, Query, description = "OData filter"),
        ("$top" = Option<u32>, Query, description = "At most 10,000"),
        ("$skip" = Option<u64>, Query),
        ("$orderby" = Option<String>, Query),
        ("$count" = Option<bool>, Query),
        ("$select" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "A collection of MachineAction (`value`)", body = [MachineAction]),
        (status = 400, body = ErrorBody),
    ))]
pub async fn list_actions(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    OData(query): OData,
) -> ApiResult<Response> {
    action_collection(app, caller, base, None, query).await
}

/// List one machine's actions (the `machineactions` navigation property of
/// MDE's Machine), newest first, with the OData options of `/api/machineactions`.
#[utoipa::path(get, path = "/api/machines/{id}/machineactions", tag = "Machine actions",
    params(
        ("id" = String, Path, description = "Machine id, Entra device id or computerDnsName"),
        ("$filter" = Option<String>, Query, description = "OData filter"),
        ("$top" = Option<u32>, Query, description = "At most 10,000"),
        ("$skip" = Option<u64>, Query),
        ("$orderby" = Option<String>, Query),
        ("$count" = Option<bool>, Query),
        ("$select" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "A collection of MachineAction (`value`)", body = [MachineAction]),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No such machine (or not seen within retention)", body = ErrorBody),
    ))]
pub async fn list_machine_actions(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    OData(query): OData,
) -> ApiResult<Response> {
    action_collection(app, caller, base, Some(&id), query).await
}

async fn action_collection(
    app: AppState,
    caller: Caller,
    base: RequestBase,
    machine: Option<&str>,
    query: ODataQuery,
) -> ApiResult<Response> {
    let selection = Selection::resolve::<MachineAction>(&query)?;
    let page = app.palisade.list_actions(&caller, machine, &query).await?;
    collection(&base, &query, selection, page)
}

/// Get one machine action.
#[utoipa::path(get, path = "/api/machineactions/{id}", tag = "Machine actions",
    params(("id" = String, Path, format = Uuid, description = "Action id (GUID)")),
    responses(
        (status = 200, body = MachineAction),
        (status = 400, description = "Not a GUID", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn get_action(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
) -> ApiResult<Entity<MachineAction>> {
    let action = app.palisade.get_action(&caller, &id).await?;
    Ok(Entity::ok(&base, action))
}

/// Cancel an action that is not yet in a final state; the action itself becomes Cancelled.
#[utoipa::path(post, path = "/api/machineactions/{id}/cancel", tag = "Machine actions",
    params(("id" = String, Path, format = Uuid, description = "Action id (GUID)")),
    request_body = CancelBody,
    responses(
        (status = 200, body = MachineAction),
        (status = 400, description = "Already final, or not a GUID", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn cancel_action(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CancelBody>,
) -> ApiResult<Entity<MachineAction>> {
    let comment = body.validate()?;
    let action = app.palisade.cancel_action(&caller, &id, comment).await?;
    Ok(Entity::ok(&base, action))
}

/// A short-lived link that downloads the investigation package of a
/// CollectInvestigationPackage action, without a bearer token
/// (`{"@odata.context": ".../$metadata#Edm.String", "value": "<url>"}`);
/// 404 until the device has uploaded it.
#[utoipa::path(get, path = "/api/machineactions/{id}/GetPackageUri", tag = "Machine actions",
    params(("id" = String, Path, format = Uuid, description = "Action id (GUID)")),
    responses(
        (status = 200, description = "The link (`value`), valid 15 minutes", body = Object),
        (status = 404, description = "No such action, or its package is not there (yet)", body = ErrorBody),
    ))]
pub async fn get_package_uri(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let (token, _) = app.palisade.package_link(&caller, &id).await?;
    Ok(link(&base, crate::downloads::PACKAGE_DOWNLOAD_PATH, &token))
}

/// `{"@odata.context": ".../$metadata#Edm.String", "value": "<url>"}` for a download link.
fn link(base: &RequestBase, path: &str, token: &str) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "@odata.context": format!("{}/api/$metadata#Edm.String", base.origin),
        "value": format!("{}{path}/{token}", base.origin),
    }))
}

/// A link, valid 30 minutes, that downloads what command `index` of a
/// live-response session left (a RunScript's transcript as JSON, a
/// GetFile's file), without a bearer token; asked again, a new link.
/// Called as an OData function: `GetLiveResponseResultDownloadLink(index=0)`.
#[utoipa::path(get, path = "/api/machineactions/{id}/GetLiveResponseResultDownloadLink()", tag = "Machine actions",
    params(("id" = String, Path, format = Uuid, description = "Action id (GUID)")),
    responses(
        (status = 200, description = "The link (`value`), valid 30 minutes", body = Object),
        (status = 400, description = "Not a live-response action, no such command, or a command without a result", body = ErrorBody),
        (status = 404, description = "No such action, or the command has not Completed", body = ErrorBody),
    ))]
pub async fn get_live_response_result_download_link(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    parameters: Option<Extension<FunctionParameters>>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let raw = parameters.as_ref().map_or("", |Extension(p)| p.0.as_str());
    let index = parse_result_index(raw)?;
    let (token, _) = app
        .palisade
        .live_response_result_link(&caller, &id, index)
        .await?;
    Ok(link(&base, crate::downloads::RESULT_DOWNLOAD_PATH, &token))
}
