//! Downloads by link (the answers of `GetPackageUri` and
//! `GetLiveResponseResultDownloadLink`): no bearer token, the link's random
//! token is the credential, until it expires. The file is streamed a
//! stored chunk at a time.

use crate::app::AppState;
use crate::http::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use palisade_contract::{ErrorCode, MdeError};
use palisade_domain::files::{FileKind, StoredFile};

/// Where package links point; the token follows.
pub const PACKAGE_DOWNLOAD_PATH: &str = "/downloads/packages";
/// Where live-response result links point; the token follows.
pub const RESULT_DOWNLOAD_PATH: &str = "/downloads/results";

/// `path` as it may be logged: a download link's token left out.
pub fn without_token(path: &str) -> String {
    for linked in [PACKAGE_DOWNLOAD_PATH, RESULT_DOWNLOAD_PATH] {
        let prefix = format!("{linked}/");
        let starts = path
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(&prefix));
        if starts && path.len() > prefix.len() {
            return format!("{prefix}…");
        }
    }
    path.to_string()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{PACKAGE_DOWNLOAD_PATH}/{{token}}"), get(download))
        .route(&format!("{RESULT_DOWNLOAD_PATH}/{{token}}"), get(download))
}

async fn download(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    let file = match app.palisade.linked_file(&token).await {
        Ok(Some(file)) => file,
        Ok(None) => {
            return ApiError(MdeError::new(
                ErrorCode::NotFound,
                "The link is not valid or has expired; ask for a new one.",
            ))
            .into_response()
        }
        Err(error) => return ApiError(error).into_response(),
    };
    // A package is a zip; a result is a transcript (JSON) or a file as collected.
    let (name, content_type) = match file.kind {
        FileKind::InvestigationPackage => (format!("{}.zip", file.action_id), "application/zip"),
        _ => (
            format!("{}-{}", file.action_id, file.part),
            "application/octet-stream",
        ),
    };
    stream_file(app, file, content_type, &name)
}

/// `file` as a response body, a stored chunk at a time, named `name`.
pub fn stream_file(app: AppState, file: StoredFile, content_type: &str, name: &str) -> Response {
    let size = file.size;
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", header_safe(name)),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(chunks(app, file)),
    )
        .into_response()
}

/// `name` as a quoted header parameter holds it: printable ASCII, no
/// quote or backslash (anything else becomes `_`).
fn header_safe(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect()
}

/// The file's chunks in order, each read when the client is ready for it.
fn chunks(
    app: AppState,
    file: StoredFile,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(Some(0i64), move |next| {
        let (app, file) = (app.clone(), file.clone());
        async move {
            let seq = next?;
            let chunk = app
                .palisade
                .store()
                .file_chunk(&file.tenant_id, &file.id, seq)
                .await;
            match chunk {
                Ok(Some(data)) => Some((Ok(Bytes::from(data)), Some(seq + 1))),
                Ok(None) => None,
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    })
}
