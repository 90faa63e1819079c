//! Downloads by link (`GetPackageUri`'s answer): no bearer token, the
//! link's random token is the credential, until it expires. The file is
//! streamed a stored chunk at a time.

use crate::app::AppState;
use crate::http::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use palisade_contract::{ErrorCode, MdeError};
use palisade_domain::files::StoredFile;

/// Where package links point; the token follows.
pub const PACKAGE_DOWNLOAD_PATH: &str = "/downloads/packages";

/// `path` as it may be logged: a download link's token left out.
pub fn without_token(path: &str) -> String {
    let prefix = format!("{PACKAGE_DOWNLOAD_PATH}/");
    let linked = path
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(&prefix));
    if linked && path.len() > prefix.len() {
        return format!("{prefix}…");
    }
    path.to_string()
}

pub fn routes() -> Router<AppState> {
    Router::new().route(
        &format!("{PACKAGE_DOWNLOAD_PATH}/{{token}}"),
        get(download_package),
    )
}

async fn download_package(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    let file = match app.palisade.linked_file(&token).await {
        Ok(Some(file)) => file,
        Ok(None) => {
            return ApiError(MdeError::new(
                ErrorCode::NotFound,
                "The link is not valid or has expired; ask GetPackageUri for a new one.",
            ))
            .into_response()
        }
        Err(error) => return ApiError(error).into_response(),
    };
    let name = format!("{}.zip", file.action_id);
    let size = file.size;
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(chunks(app, file)),
    )
        .into_response()
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
