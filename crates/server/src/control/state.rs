//! A tenant's whole state as a document (`palisade_contract::seed`):
//! exported, replaced, reset to what it was made from, or made into a new
//! tenant; JSON, or YAML with `Content-Type: application/yaml`.

use crate::app::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::{media_type, read_body_up_to};
use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use palisade_contract::seed::TenantDocument;
use palisade_contract::{ErrorBody, ErrorCode, MdeError};
use palisade_domain::seed::{self, TenantState};
use palisade_domain::Palisade;
use palisade_identity::admin::{Admin, AdminError, Administrator};

/// Largest document taken: some 40,000 machines.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// YAML for `.yaml`/`.yml` files, else JSON.
    pub fn of_file(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Json,
        }
    }
}

/// Reads a document; the message of what does not read names the entry and
/// field (`machines[3].osPlatform`), and the line.
pub fn read_document(bytes: &[u8], format: Format) -> Result<TenantDocument, MdeError> {
    let invalid = |path: String, why: String| seed::unreadable("", &path, &why);
    match format {
        Format::Json => {
            let mut reader = serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(&mut reader)
                .map_err(|e| invalid(e.path().to_string(), e.into_inner().to_string()))
        }
        Format::Yaml => {
            let reader = serde_norway::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(reader)
                .map_err(|e| invalid(e.path().to_string(), e.into_inner().to_string()))
        }
    }
}

/// A document in a request body.
pub struct DocumentBody(pub TenantDocument);

impl<S: Send + Sync> FromRequest<S> for DocumentBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let content_type = media_type(request.headers()).unwrap_or_default();
        let format = match content_type.as_str() {
            "application/json" => Format::Json,
            "application/yaml" | "application/x-yaml" | "text/yaml" => Format::Yaml,
            _ => {
                return Err(MdeError::new(
                    ErrorCode::BadRequest,
                    "A tenant document is sent with Content-Type: application/json or application/yaml.",
                )
                .with_status(415)
                .into())
            }
        };
        let bytes = read_body_up_to(Body::new(request.into_body()), MAX_DOCUMENT_BYTES)
            .await
            .map_err(|error| error.refusal(MAX_DOCUMENT_BYTES))?;
        Ok(DocumentBody(read_document(&bytes, format)?))
    }
}

/// Writes the apps and users of a document just written.
pub async fn seed_identities(
    palisade: &Palisade,
    state: &TenantState,
    by: Administrator,
) -> Result<(), MdeError> {
    let admin = Admin::new(palisade.store().clone(), palisade.clock().clone(), by);
    admin
        .seed_identities(&state.tenant.id, &state.apps, &state.users)
        .await
        .map_err(|error| match error {
            AdminError::Store(error) => MdeError::from(error),
            AdminError::NoTenant(_) | AdminError::Invalid(_) => {
                MdeError::invalid_input(format!("Invalid input: {error}"))
            }
        })
}

/// `palisade serve --seed FILE`: creates the tenant the file describes
/// unless it exists; what is wrong with the file names it, the entry and
/// the field.
pub async fn seed_from_file(palisade: &Palisade, path: &std::path::Path) -> anyhow::Result<()> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the seed file {shown}: {e}"))?;
    let in_file = |error: MdeError| anyhow::anyhow!("seed file {shown}: {}", error.message);
    let document = read_document(&bytes, Format::of_file(path)).map_err(in_file)?;
    match palisade
        .create_seeded_tenant(&document)
        .await
        .map_err(in_file)?
    {
        Some(state) => {
            let by = Administrator {
                kind: "seed",
                name: shown.to_string(),
            };
            seed_identities(palisade, &state, by)
                .await
                .map_err(in_file)?;
            println!("Seeded tenant {} from {shown}", state.tenant.id);
        }
        None => println!(
            "Tenant {} exists: {shown} was not applied (POST .../reset puts it back to its seed)",
            document.tenant_id
        ),
    }
    Ok(())
}

fn control_plane() -> Administrator {
    Administrator {
        kind: "control plane",
        name: "operator".into(),
    }
}

/// The tenant as a document: groups, every machine, actions, rules, apps
/// and users (no secrets), in a stable order. `PUT` takes it back.
#[utoipa::path(get, path = "/tenants/{tenantId}/state", tag = "State",
    operation_id = "GetTenantState",
    params(("tenantId" = String, Path)),
    responses(
        (status = 200, body = TenantDocument),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn get_state(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<TenantDocument>> {
    Ok(Json(app.palisade.export_tenant(&tenant_id).await?))
}

/// Replaces the tenant's state with the document's, in one transaction,
/// after checking all of it (nothing changes on an error); the clock and
/// recorder stay. Apps and users it names are then created or updated;
/// others stay.
#[utoipa::path(put, path = "/tenants/{tenantId}/state", tag = "State",
    operation_id = "SetTenantState",
    params(("tenantId" = String, Path)),
    request_body(content((TenantDocument = "application/json"), (TenantDocument = "application/yaml"))),
    responses(
        (status = 200, description = "The state as it now is", body = TenantDocument),
        (status = 400, description = "The document is not valid: the message names the entry and field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn put_state(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    DocumentBody(document): DocumentBody,
) -> ApiResult<Json<TenantDocument>> {
    let state = app
        .palisade
        .replace_tenant_state(&tenant_id, &document)
        .await?;
    seed_identities(&app.palisade, &state, control_plane()).await?;
    Ok(Json(app.palisade.export_tenant(&tenant_id).await?))
}

/// Puts the tenant back to the document it was made from (none: empty):
/// machines, groups, tags, actions, audit, outcome and fault rules, clock,
/// recorder. Apps and users stay.
#[utoipa::path(post, path = "/tenants/{tenantId}/reset", tag = "State",
    operation_id = "ResetTenant",
    params(("tenantId" = String, Path)),
    responses(
        (status = 204, description = "Reset"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn reset(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<StatusCode> {
    app.palisade.reset_tenant(&tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates the tenant a document describes; a reset puts it back to this document.
#[utoipa::path(post, path = "/tenants", tag = "State",
    operation_id = "CreateTenant",
    request_body(content((TenantDocument = "application/json"), (TenantDocument = "application/yaml"))),
    responses(
        (status = 201, description = "The tenant as created", body = TenantDocument),
        (status = 400, description = "The document is not valid: the message names the entry and field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "A tenant with this id exists", body = ErrorBody),
    ))]
pub async fn create_tenant(
    State(app): State<AppState>,
    DocumentBody(document): DocumentBody,
) -> ApiResult<impl IntoResponse> {
    let Some(state) = app.palisade.create_seeded_tenant(&document).await? else {
        return Err(MdeError::new(
            ErrorCode::InvalidInput,
            format!(
                "Invalid input tenantId: tenant {} exists",
                document.tenant_id
            ),
        )
        .with_status(409)
        .into());
    };
    seed_identities(&app.palisade, &state, control_plane()).await?;
    let created = app.palisade.export_tenant(&state.tenant.id).await?;
    Ok((StatusCode::CREATED, Json(created)))
}
