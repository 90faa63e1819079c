//! `/api/libraryfiles`: the live-response library (list, upload, delete).

use crate::app::AppState;
use crate::http::auth::AuditTarget;
use crate::http::error::ApiResult;
use crate::http::extract::RequestBase;
use crate::http::odata::{list, Entity};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use palisade_contract::live_response::{LibraryFile, MAX_LIBRARY_FILE_BYTES};
use palisade_contract::{ErrorBody, ErrorCode, MdeError};
use palisade_domain::live_response::LibraryUpload;
use palisade_domain::Caller;

/// List the live-response library's files, by name.
#[utoipa::path(get, path = "/api/libraryfiles", tag = "Live response",
    responses((status = 200, description = "A collection of library files (`value`)", body = [LibraryFile])))]
pub async fn list_library_files(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
) -> ApiResult<Response> {
    list(&base, app.palisade.library_files(&caller).await?)
}

/// Upload a file to the library (multipart/form-data, at most 20 MB): the
/// part `file` (its file name names it), and optionally `Description`,
/// `ParametersDescription`, `HasParameters` and `OverrideIfExists`
/// (`true` replaces a file of the same name; otherwise that is refused).
#[utoipa::path(post, path = "/api/libraryfiles", tag = "Live response",
    request_body(content_type = "multipart/form-data", content = Object),
    responses(
        (status = 200, description = "The library file", body = LibraryFile),
        (status = 400, description = "No file, a name that is no plain file name, or a name taken", body = ErrorBody),
        (status = 413, description = "Larger than 20 MB", body = ErrorBody),
    ))]
pub async fn upload_library_file(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (file, name) = take_upload(&app, &caller, &headers, body).await?;
    let mut response = Entity::ok(&base, file).into_response();
    response.extensions_mut().insert(AuditTarget(name));
    Ok(response)
}

/// Delete a library file: 204; 404 if the library has none of that name.
#[utoipa::path(delete, path = "/api/libraryfiles/{fileName}", tag = "Live response",
    params(("fileName" = String, Path, description = "The file's name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_library_file(
    State(app): State<AppState>,
    caller: Caller,
    Path(file_name): Path<String>,
) -> ApiResult<StatusCode> {
    app.palisade
        .delete_library_file(&caller, &file_name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn bad_form(message: impl Into<String>) -> MdeError {
    MdeError::new(ErrorCode::BadRequest, message)
}

/// Room for the form's other fields and part headers beside the file.
const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Reads the form: its fields may come before or after the file, so the
/// file is streamed into the store as it comes and its entry written once
/// the form has ended.
async fn take_upload(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<(LibraryFile, String), MdeError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| bad_form("The body must be multipart/form-data with a boundary."))?;
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_LIBRARY_FILE_BYTES + FORM_OVERHEAD_BYTES)
            .per_field(MAX_LIBRARY_FILE_BYTES),
    );
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);
    let mut fields = LibraryUpload::default();
    let mut upload = None;
    let outcome: Result<(), MdeError> = async {
        while let Some(mut field) = form.next_field().await.map_err(form_error)? {
            let name = field.name().unwrap_or_default().to_ascii_lowercase();
            if name == "file" {
                if upload.is_some() {
                    return Err(bad_form("The form has more than one file."));
                }
                let file_name = field.file_name().unwrap_or_default().to_string();
                // OverrideIfExists may come after the file: a taken name is
                // checked again when the entry is written.
                let mut taking = app
                    .palisade
                    .begin_library_upload(caller, &file_name)
                    .await?;
                let streamed: Result<(), MdeError> = async {
                    while let Some(bytes) = field.chunk().await.map_err(form_error)? {
                        app.palisade.upload_bytes(&mut taking, &bytes).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(error) = streamed {
                    app.palisade.abandon_upload(taking).await?;
                    return Err(error);
                }
                upload = Some(taking);
                continue;
            }
            let value = bounded_text(field).await?;
            match name.as_str() {
                "description" => fields.description = Some(value).filter(|v| !v.is_empty()),
                "parametersdescription" => {
                    fields.parameters_description = Some(value).filter(|v| !v.is_empty())
                }
                "hasparameters" => fields.has_parameters = Some(flag("HasParameters", &value)?),
                "overrideifexists" => fields.override_if_exists = flag("OverrideIfExists", &value)?,
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    let Some(upload) = upload else {
        outcome?;
        return Err(MdeError::missing("File"));
    };
    if let Err(error) = outcome {
        app.palisade.abandon_upload(upload).await?;
        return Err(error);
    }
    for text in [&fields.description, &fields.parameters_description] {
        if text
            .as_ref()
            .is_some_and(|t| t.contains('\0') || t.chars().count() > 4_000)
        {
            app.palisade.abandon_upload(upload).await?;
            return Err(MdeError::invalid_input(
                "Invalid input: Description and ParametersDescription are at most 4,000 characters, without NUL.",
            ));
        }
    }
    let file = app
        .palisade
        .finish_library_upload(caller, upload, fields)
        .await?;
    let name = file.file_name.clone();
    Ok((file, name))
}

/// Longest text field of the form held (its limit is 4,000 characters).
const MAX_TEXT_FIELD_BYTES: usize = 16 * 1024;

/// A text field, read only up to [`MAX_TEXT_FIELD_BYTES`].
async fn bounded_text(mut field: multer::Field<'_>) -> Result<String, MdeError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
            return Err(MdeError::invalid_input(
                "Invalid input: Description and ParametersDescription are at most 4,000 characters, without NUL.",
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| bad_form("A text field of the form is not UTF-8."))
}

/// `true` or `false`, in any case; empty is false (MDE's default is an empty string).
fn flag(field: &str, value: &str) -> Result<bool, MdeError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        other => Err(MdeError::invalid_input(format!(
            "Invalid input {other} for {field}. Allowed values are: 'true', 'false'."
        ))),
    }
}

fn form_error(error: multer::Error) -> MdeError {
    match error {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            palisade_domain::files::too_large(MAX_LIBRARY_FILE_BYTES)
        }
        other => bad_form(format!("The form could not be read: {other}")),
    }
}
