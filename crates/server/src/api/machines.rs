//! `/api/machines`: list, get, tags, device value, and the machine actions.

use crate::app::AppState;
use crate::http::auth::AuditTarget;
use crate::http::error::ApiResult;
use crate::http::extract::{JsonBody, OData, RequestBase};
use crate::http::odata::{collection, list, Entity, Selection};
use crate::http::paths::FunctionParameters;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use palisade_contract::inventory::{LogonUser, Software};
use palisade_contract::requests::{
    ActionKind, ActionRequest, BulkTagBody, CommentBody, DeviceValueBody, FindByIpRequest,
    IsolateBody, LiveResponseBody, ScanBody, StopAndQuarantineBody, TagBody, UpdateMachineBody,
    ValidateBody,
};
use palisade_contract::{ErrorBody, Machine, MachineAction, MdeError, SerializedMachine};
use palisade_domain::Caller;
use serde::Deserialize;

/// List machines seen within the retention period (OData `$filter`, `$top`, `$skip`, `$orderby`, `$count`, `$select`).
#[utoipa::path(get, path = "/api/machines", tag = "Machines",
    params(
        ("$filter" = Option<String>, Query, description = "e.g. machineTags/any(t: t eq 'x'), healthStatus eq 'Active'"),
        ("$top" = Option<u32>, Query, description = "At most 10,000; without it, pages of 10,000 with @odata.nextLink"),
        ("$skip" = Option<u64>, Query),
        ("$orderby" = Option<String>, Query),
        ("$count" = Option<bool>, Query),
        ("$select" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "A collection of Machine (`value`)", body = [Machine]),
        (status = 400, body = ErrorBody),
    ))]
pub async fn list_machines(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    OData(query): OData,
) -> ApiResult<Response> {
    let selection = Selection::resolve::<Machine>(&query)?;
    let page = app.palisade.list_machines(&caller, &query).await?;
    collection(&base, &query, selection, page)
}

/// Get a machine by its id, or by its computer name.
#[utoipa::path(get, path = "/api/machines/{id}", tag = "Machines",
    params(("id" = String, Path, description = "Machine id (40 hex) or computerDnsName")),
    responses((status = 200, body = Machine), (status = 404, body = ErrorBody)))]
pub async fn get_machine(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
) -> ApiResult<Entity<SerializedMachine>> {
    let machine = app.palisade.get_machine(&caller, &id).await?;
    Ok(Entity::ok(&base, machine))
}

/// Update a machine: `machineTags` replaces all tags; `deviceValue` sets the value.
#[utoipa::path(patch, path = "/api/machines/{id}", tag = "Machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = UpdateMachineBody,
    responses((status = 200, body = Machine), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_machine(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateMachineBody>,
) -> ApiResult<Entity<Machine>> {
    let machine = app
        .palisade
        .update_machine(&caller, &id, body.validate()?)
        .await?;
    Ok(Entity::ok(&base, machine))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindByTagParams {
    /// The tag to look for.
    #[param(required = true)]
    tag: Option<String>,
    /// `true`: tags starting with `tag`; default `false` (exact).
    #[serde(rename = "useStartsWithFilter")]
    #[param(value_type = Option<bool>)]
    use_starts_with_filter: Option<String>,
}

/// Find machines by tag.
#[utoipa::path(get, path = "/api/machines/findbytag", tag = "Machines",
    params(FindByTagParams),
    responses((status = 200, description = "A collection of Machine (`value`)", body = [Machine]), (status = 400, body = ErrorBody)))]
pub async fn find_by_tag(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Query(params): Query<FindByTagParams>,
) -> ApiResult<Response> {
    let tag = params.tag.ok_or_else(|| MdeError::missing("tag"))?;
    let starts_with = match params.use_starts_with_filter.as_deref() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(MdeError::invalid_input(format!(
                "Invalid input {v} for useStartsWithFilter: true or false."
            ))
            .into())
        }
    };
    let machines = app
        .palisade
        .find_machines_by_tag(&caller, &tag, starts_with)
        .await?;
    list(&base, machines)
}

/// Find the machines seen with an internal IP address within 15 minutes before
/// or after a timestamp of the past 30 days (default now). Called as an OData
/// function: `GET /api/machines/findbyip(ip='10.248.240.38',timestamp=2019-09-22T08:44:05Z)`.
#[utoipa::path(get, path = "/api/machines/findbyip()", tag = "Machines",
    responses(
        (status = 200, description = "A collection of Machine (`value`)", body = [Machine]),
        (status = 400, description = "No or an invalid ip, a timestamp older than 30 days, or a malformed parameter list", body = ErrorBody),
    ))]
pub async fn find_machines_by_ip(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    parameters: Option<Extension<FunctionParameters>>,
) -> ApiResult<Response> {
    let raw = parameters.as_ref().map_or("", |Extension(p)| p.0.as_str());
    let request = FindByIpRequest::parse(raw)?;
    let machines = app.palisade.find_machines_by_ip(&caller, &request).await?;
    list(&base, machines)
}

/// The software installed on a machine (its device's report; a machine
/// without a device, what its seed implies).
#[utoipa::path(get, path = "/api/machines/{id}/software", tag = "Machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 200, description = "A collection of Software (`value`)", body = [Software]),
        (status = 404, body = ErrorBody),
    ))]
pub async fn list_machine_software(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    list(&base, app.palisade.machine_software(&caller, &id).await?)
}

/// The users who logged on to a machine, most recently seen first.
#[utoipa::path(get, path = "/api/machines/{id}/logonusers", tag = "Machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 200, description = "A collection of users (`value`)", body = [LogonUser]),
        (status = 404, body = ErrorBody),
    ))]
pub async fn list_machine_logon_users(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    list(&base, app.palisade.machine_logon_users(&caller, &id).await?)
}

/// Add or remove a tag on a machine (PATCH is accepted too, as older docs said).
#[utoipa::path(method(post, patch), path = "/api/machines/{id}/tags", tag = "Machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = TagBody,
    responses((status = 200, body = Machine), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tag_machine(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TagBody>,
) -> ApiResult<Entity<Machine>> {
    let machine = app
        .palisade
        .tag_machine(&caller, &id, body.validate()?)
        .await?;
    Ok(Entity::ok(&base, machine))
}

/// Add or remove a tag on up to 500 machines: all of them, or none.
#[utoipa::path(post, path = "/api/machines/AddOrRemoveTagForMultipleMachines", tag = "Machines",
    request_body = BulkTagBody,
    responses(
        (status = 200, description = "A collection of the updated Machine (`value`)", body = [Machine]),
        (status = 400, body = ErrorBody),
        (status = 404, description = "An id is unknown; nothing changed", body = ErrorBody),
    ))]
pub async fn tag_machines(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    JsonBody(body): JsonBody<BulkTagBody>,
) -> ApiResult<Response> {
    let request = body.validate()?;
    let target = AuditTarget(request.machine_ids.join(","));
    let machines = app.palisade.tag_machines(&caller, request).await?;
    let mut response = list(&base, machines)?;
    response.extensions_mut().insert(target);
    Ok(response)
}

/// Set a machine's device value (`Normal`, `Low`, `High`).
#[utoipa::path(post, path = "/api/machines/{id}/setDeviceValue", tag = "Machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = DeviceValueBody,
    responses((status = 200, body = Machine), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_device_value(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DeviceValueBody>,
) -> ApiResult<Entity<Machine>> {
    let machine = app
        .palisade
        .set_device_value(&caller, &id, body.validate()?)
        .await?;
    Ok(Entity::ok(&base, machine))
}

async fn create_action(
    app: AppState,
    caller: Caller,
    base: RequestBase,
    machine_id: String,
    request: Result<ActionRequest, MdeError>,
) -> ApiResult<Entity<MachineAction>> {
    let action = app
        .palisade
        .request_action(&caller, &machine_id, request?)
        .await?;
    Ok(Entity::created(&base, action))
}

/// Declares the handler of one machine-action endpoint: its path, body and
/// how the body becomes an `ActionRequest`. All of them answer 201 and the new action.
macro_rules! action_endpoint {
    ($(#[$doc:meta])* $name:ident, $path:literal, $body:ty, |$b:ident| $request:expr) => {
        $(#[$doc])*
        #[utoipa::path(post, path = $path, tag = "Machine actions",
            params(("id" = String, Path, description = "Machine id")),
            request_body = $body,
            responses(
                (status = 201, description = "The new, Pending action", body = MachineAction),
                (status = 400, description = "Missing or invalid input, unsupported OS, or an action of this type already in progress", body = ErrorBody),
                (status = 404, description = "No such machine (or not seen within retention)", body = ErrorBody),
            ))]
        pub async fn $name(
            State(app): State<AppState>,
            caller: Caller,
            base: RequestBase,
            Path(id): Path<String>,
            JsonBody($b): JsonBody<$body>,
        ) -> ApiResult<Entity<MachineAction>> {
            create_action(app, caller, base, id, $request).await
        }
    };
}

action_endpoint!(
    /// Isolate a machine from the network (`Full`, `Selective`, or `UnManagedDevice`).
    isolate, "/api/machines/{id}/isolate", IsolateBody, |body| body.validate()
);
action_endpoint!(
    /// Release a machine from isolation.
    unisolate, "/api/machines/{id}/unisolate", CommentBody,
    |body| body.into_request(ActionKind::Unisolate)
);
action_endpoint!(
    /// Offboard a machine (Windows 10 1703+, Windows 11, Server 2019+, Server 2012 R2/2016 with the unified agent).
    offboard, "/api/machines/{id}/offboard", CommentBody,
    |body| body.into_request(ActionKind::Offboard)
);
action_endpoint!(
    /// Restrict application execution to Microsoft-signed code.
    restrict_code_execution, "/api/machines/{id}/restrictCodeExecution", CommentBody,
    |body| body.into_request(ActionKind::RestrictCodeExecution)
);
action_endpoint!(
    /// Remove the code-execution restriction.
    unrestrict_code_execution, "/api/machines/{id}/unrestrictCodeExecution", CommentBody,
    |body| body.into_request(ActionKind::UnrestrictCodeExecution)
);
action_endpoint!(
    /// Run an antivirus scan (`Quick` or `Full`).
    run_antivirus_scan, "/api/machines/{id}/runAntiVirusScan", ScanBody, |body| body.validate()
);
action_endpoint!(
    /// Collect an investigation package.
    collect_investigation_package, "/api/machines/{id}/collectInvestigationPackage", CommentBody,
    |body| body.into_request(ActionKind::CollectInvestigationPackage)
);
action_endpoint!(
    /// Run a live-response session: PutFile, RunScript and GetFile commands
    /// with library files, in that order; a failed command skips the rest.
    /// One session at a time per machine (`ActiveRequestAlreadyExists`).
    run_live_response, "/api/machines/{id}/runliveresponse", LiveResponseBody, |body| body.validate()
);
action_endpoint!(
    /// Stop a file's processes and quarantine it, by SHA-1.
    stop_and_quarantine_file, "/api/machines/{id}/StopAndQuarantineFile", StopAndQuarantineBody,
    |body| body.validate()
);
