//! The MDE management API: one module per entity set, each handler annotated
//! with its OpenAPI operation. The router and the OpenAPI document are built
//! from the same annotations, so they cannot drift apart; `document` adds
//! what all operations share before the document is published. An annotation
//! names its success (`body = [T]` for a list: it is published as T's OData
//! collection) and an error only where it has more to say than the standard
//! description; the operation id is the handler's name, the access table's
//! operation in snake case.

pub mod alerts;
pub mod audit;
pub mod document;
pub mod indicators;
pub mod library;
pub mod machine_actions;
pub mod machines;

use crate::app::AppState;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade",
        description = "A self-hosted control plane that speaks the Microsoft Defender for Endpoint API: machines, machine actions, alerts and indicators. \
            Every path is also served under /api/v1.0/..., and path segments match case-insensitively. \
            Not described here: the token service (Entra ID's paths, /{tenant}/oauth2/v2.0/token and \
            discovery) and the device plane (/device/v1/...), which speak Entra ID's and the agent's \
            protocols with credentials of their own."
    ),
    tags(
        (name = "Machines", description = "Machines and their tags"),
        (name = "Machine actions", description = "Isolate, offboard, scan... and the actions they create"),
        (name = "Live response", description = "The library of scripts and files live-response sessions use"),
        (name = "Alerts", description = "Alerts, their machines, and the changes of their life cycle"),
        (name = "Indicators", description = "Indicators of compromise: files, addresses, domains and URLs to block, warn on or allow"),
        (name = "Audit", description = "Who changed what, through the API or the CLI")
    )
)]
struct ApiDoc;

/// Every API route, with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(machines::list_machines))
        .routes(routes!(machines::get_machine, machines::update_machine))
        .routes(routes!(machines::find_by_tag))
        .routes(routes!(machines::find_machines_by_ip))
        .routes(routes!(machines::list_machine_software))
        .routes(routes!(machines::list_machine_logon_users))
        .routes(routes!(machines::tag_machine))
        .routes(routes!(machines::tag_machines))
        .routes(routes!(machines::set_device_value))
        .routes(routes!(machines::isolate))
        .routes(routes!(machines::unisolate))
        .routes(routes!(machines::offboard))
        .routes(routes!(machines::restrict_code_execution))
        .routes(routes!(machines::unrestrict_code_execution))
        .routes(routes!(machines::run_antivirus_scan))
        .routes(routes!(machines::collect_investigation_package))
        .routes(routes!(machines::stop_and_quarantine_file))
        .routes(routes!(machines::run_live_response))
        .routes(routes!(machine_actions::list_actions))
        .routes(routes!(machine_actions::list_machine_actions))
        .routes(routes!(machine_actions::get_action))
        .routes(routes!(machine_actions::cancel_action))
        .routes(routes!(machine_actions::get_package_uri))
        .routes(routes!(
            machine_actions::get_live_response_result_download_link
        ))
        .routes(routes!(
            library::list_library_files,
            library::upload_library_file
        ))
        .routes(routes!(library::delete_library_file))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::get_alert, alerts::update_alert))
        .routes(routes!(alerts::batch_update_alerts))
        .routes(routes!(alerts::create_alert_by_reference))
        .routes(routes!(alerts::get_alert_machine))
        .routes(routes!(alerts::list_machine_alerts))
        .routes(routes!(
            indicators::list_indicators,
            indicators::submit_indicator
        ))
        .routes(routes!(indicators::import_indicators))
        .routes(routes!(indicators::delete_indicator))
        .routes(routes!(indicators::batch_delete_indicators))
        .routes(routes!(audit::list_audit_log))
}
