//! The emulator control plane (`/_palisade/v1`, `control-plane.md`): what a
//! test of MDE automation sets up around the MDE API (how actions turn out,
//! and more to come). Guarded by the operator token alone (never by an MDE
//! token), described by an OpenAPI document of its own, per tenant.

pub mod alerts;
pub mod clock;
pub mod faults;
pub mod outcomes;
pub mod recorder;
pub mod state;

use crate::app::AppState;
use crate::http::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use palisade_contract::{ErrorCode, MdeError};
use palisade_identity::{bearer_token, operator};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the control plane is served.
pub const BASE: &str = "/_palisade/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade emulator control plane",
        description = "Sets up what the MDE API of a tenant does: how machine actions of machines \
            without an enrolled device turn out, the tenant's time, and the errors and latency its \
            calls meet. Every call carries `Authorization: Bearer \
            <operator token>` (printed at start, in the demo credentials as `operator_token`; \
            MDE tokens are refused). Errors have the MDE API's body."
    ),
    servers((url = "/_palisade/v1")),
    modifiers(&OperatorToken),
    tags(
        (name = "Outcomes", description = "How actions of machines without a device go on"),
        (name = "Clock", description = "The tenant's time: frozen, running, advanced"),
        (name = "Faults", description = "Errors and latency injected into the MDE API and the token service"),
        (name = "State", description = "A tenant's whole state as a document: export, replace, reset, create"),
        (name = "Alerts", description = "Alerts raised on machines, as a detection would raise them"),
        (name = "Recorder", description = "The tenant's MDE API calls, kept, as HAR, and a report on each client")
    )
)]
struct ControlDoc;

struct OperatorToken;

impl utoipa::Modify for OperatorToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operatorToken",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "operatorToken",
            Vec::<String>::new(),
        )]);
    }
}

/// The control plane's routes (under [`BASE`]) and its OpenAPI document.
pub fn routes(state: AppState) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ControlDoc::openapi())
        .routes(routes!(
            outcomes::list_outcome_rules,
            outcomes::add_outcome_rule,
            outcomes::delete_outcome_rules
        ))
        .routes(routes!(outcomes::delete_outcome_rule))
        .routes(routes!(clock::get_clock, clock::set_clock))
        .routes(routes!(alerts::raise_alert))
        .routes(routes!(
            faults::list_fault_rules,
            faults::add_fault_rule,
            faults::delete_fault_rules
        ))
        .routes(routes!(faults::delete_fault_rule))
        .routes(routes!(state::get_state, state::put_state))
        .routes(routes!(state::reset))
        .routes(routes!(state::create_tenant))
        .routes(routes!(recorder::get_recorder, recorder::set_recorder))
        .routes(routes!(recorder::list_entries, recorder::delete_entries))
        .routes(routes!(recorder::har))
        .routes(routes!(recorder::report))
        .split_for_parts();
    let document: Bytes = openapi
        .to_json()
        .expect("the control plane's OpenAPI document serialises")
        .into();
    let guarded = router.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        operator_only,
    ));
    Router::new()
        .nest(BASE, guarded)
        .route(
            &format!("{BASE}/openapi.json"),
            get(move || {
                let body = document.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .with_state(state)
}

/// Lets through only calls with the operator token.
async fn operator_only(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let presented = bearer_token(request.headers().get(AUTHORIZATION).map(|v| v.as_bytes()));
    let refusal = |message: &str| {
        let mut response =
            ApiError(MdeError::new(ErrorCode::Unauthorized, message)).into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    };
    let Ok(token) = presented else {
        return refusal("The control plane needs Authorization: Bearer <operator token>.");
    };
    match operator::is_operator_token(app.palisade.store().as_ref(), token).await {
        Ok(true) => next.run(request).await,
        Ok(false) => refusal(
            "The bearer token is not the operator token (MDE access tokens do not reach the control plane).",
        ),
        // What went wrong stays in the log: the caller is not known yet.
        Err(error) => {
            tracing::warn!(%error, "could not check an operator token");
            ApiError(MdeError::new(
                ErrorCode::ServiceUnavailable,
                "The operator token cannot be checked now; try again.",
            ))
            .into_response()
        }
    }
}
