//! The device side of the protocol over HTTP(S): what the agent and the
//! simulated fleet call.

use crate::protocol::*;
use palisade_contract::{ErrorBody, MachineAction};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Why a call to the server did not succeed.
#[derive(Debug)]
pub enum DeviceError {
    /// 401: the credential (or onboarding token) is not, or no longer, valid;
    /// after an offboard this is final.
    Unauthorized(String),
    /// 401 because the device was offboarded: its offboarding took effect.
    Offboarded,
    /// The server refused the call (4xx other than 401), with its MDE error code and message.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// 429: too many calls (enrollments with one onboarding token); come back
    /// after `retry_after`, as the server's `Retry-After` says.
    Throttled {
        retry_after: Duration,
        message: String,
    },
    /// The server could not be reached or answered 5xx: worth retrying.
    Unavailable(String),
}

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceError::Unauthorized(message) => write!(f, "unauthorized: {message}"),
            DeviceError::Offboarded => write!(f, "{OFFBOARDED_MESSAGE}"),
            DeviceError::Refused {
                status,
                code,
                message,
            } => write!(f, "refused ({status} {code}): {message}"),
            DeviceError::Throttled {
                retry_after,
                message,
            } => write!(
                f,
                "throttled (retry in {} s): {message}",
                retry_after.as_secs()
            ),
            DeviceError::Unavailable(message) => write!(f, "server unavailable: {message}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// Longest time a call may take beyond the long poll it asked for.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the HTTP client devices use: HTTPS trusting the system roots and,
/// if given, the CA in `ca_file` (a self-signed Palisade's `ca.pem`).
pub fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .user_agent(concat!("palisade-device/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", path.display()))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate: {e}", path.display()))?;
        builder = builder.add_root_certificate(certificate);
    }
    Ok(builder.build()?)
}

/// One device's connection to the server.
#[derive(Clone)]
pub struct DeviceClient {
    http: reqwest::Client,
    /// `https://host:port`, without a trailing slash.
    server: String,
    credential: Option<String>,
}

impl DeviceClient {
    pub fn new(http: reqwest::Client, server: &str) -> DeviceClient {
        DeviceClient {
            http,
            server: server.trim_end_matches('/').to_string(),
            credential: None,
        }
    }

    /// The same connection, calling as the enrolled device with `credential`.
    pub fn with_credential(&self, credential: &str) -> DeviceClient {
        DeviceClient {
            credential: Some(credential.to_string()),
            ..self.clone()
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: &str,
        body: &B,
        wait: Duration,
    ) -> Result<T, DeviceError> {
        let request = self
            .http
            .post(format!("{}{path}", self.server))
            .bearer_auth(bearer)
            .json(body)
            .timeout(CALL_TIMEOUT + wait);
        answer(request).await
    }

    /// Uploads the investigation package of the InProgress action
    /// `action_id`: `body` (`size` bytes; a file's is streamed).
    pub async fn upload_package(
        &self,
        action_id: &str,
        body: impl Into<reqwest::Body>,
        size: u64,
    ) -> Result<serde_json::Value, DeviceError> {
        self.upload(&package_path(action_id), "application/zip", body, size)
            .await
    }

    /// Uploads what command `index` of the InProgress session `action_id`
    /// left: `body` (`size` bytes).
    pub async fn upload_command_result(
        &self,
        action_id: &str,
        index: u32,
        body: impl Into<reqwest::Body>,
        size: u64,
    ) -> Result<serde_json::Value, DeviceError> {
        let path = command_result_path(action_id, index);
        self.upload(&path, "application/octet-stream", body, size)
            .await
    }

    async fn upload(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        size: u64,
    ) -> Result<serde_json::Value, DeviceError> {
        let request = self
            .http
            .put(format!("{}{path}", self.server))
            .bearer_auth(self.credential()?)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .timeout(UPLOAD_TIMEOUT);
        answer(request).await
    }

    /// Downloads library file `file_name` of the InProgress session
    /// `action_id`: the response, its body still to be read a chunk at a time.
    pub async fn download_session_file(
        &self,
        action_id: &str,
        file_name: &str,
    ) -> Result<reqwest::Response, DeviceError> {
        let response = self
            .http
            .get(format!(
                "{}{}",
                self.server,
                session_library_path(action_id, file_name)
            ))
            .bearer_auth(self.credential()?)
            .timeout(UPLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| DeviceError::Unavailable(format!("{e:#}")))?;
        if response.status().is_success() {
            return Ok(response);
        }
        // The refusal, read as every other answer is.
        Err(refusal(response).await)
    }
}

/// How long an upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Sends `request` and reads its answer: the JSON of a success, or the
/// error the server gave.
async fn answer<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, DeviceError> {
    let response = request
        .send()
        .await
        .map_err(|e| DeviceError::Unavailable(format!("{e:#}")))?;
    if !response.status().is_success() {
        return Err(refusal(response).await);
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| DeviceError::Unavailable(format!("{e:#}")))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        DeviceError::Unavailable(format!("the server's answer is not understood: {e}"))
    })
}

/// The error an unsuccessful answer gives.
async fn refusal(response: reqwest::Response) -> DeviceError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return DeviceError::Unavailable(format!("{e:#}")),
    };
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => (body.error.code.as_str().to_string(), body.error.message),
        Err(_) => (
            status.as_str().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
    };
    match status {
        StatusCode::UNAUTHORIZED if message == OFFBOARDED_MESSAGE => DeviceError::Offboarded,
        StatusCode::UNAUTHORIZED => DeviceError::Unauthorized(message),
        StatusCode::TOO_MANY_REQUESTS => DeviceError::Throttled {
            retry_after: Duration::from_secs(retry_after.unwrap_or(1).max(1)),
            message,
        },
        s if s.is_server_error() => DeviceError::Unavailable(format!("{status}: {message}")),
        _ => DeviceError::Refused {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

impl DeviceClient {
    fn credential(&self) -> Result<&str, DeviceError> {
        self.credential
            .as_deref()
            .ok_or_else(|| DeviceError::Unauthorized("the device is not enrolled".into()))
    }

    /// Enrolls with `onboarding_token`, presenting this client's credential
    /// (unless the request names one) so that an enrolled device re-enrolls
    /// in place.
    pub async fn enroll(
        &self,
        onboarding_token: &str,
        request: &EnrollRequest,
    ) -> Result<Enrollment, DeviceError> {
        let request = EnrollRequest {
            credential: request.credential.clone().or(self.credential.clone()),
            ..request.clone()
        };
        self.post(ENROLL_PATH, onboarding_token, &request, Duration::ZERO)
            .await
    }

    /// Reports the device's state and answers its open actions; with none
    /// open, the server holds the call up to `wait` for one to arrive.
    pub async fn check_in(
        &self,
        report: &CheckIn,
        wait: Duration,
    ) -> Result<CheckInReply, DeviceError> {
        let path = format!("{CHECK_IN_PATH}?wait={}", wait.as_secs());
        self.post(&path, self.credential()?, report, wait).await
    }

    /// Reports the device's inventory, whole.
    pub async fn report_inventory(&self, inventory: &Inventory) -> Result<(), DeviceError> {
        let request = self
            .http
            .put(format!("{}{INVENTORY_PATH}", self.server))
            .bearer_auth(self.credential()?)
            .json(inventory)
            .timeout(CALL_TIMEOUT);
        let response = request
            .send()
            .await
            .map_err(|e| DeviceError::Unavailable(format!("{e:#}")))?;
        match response.status().is_success() {
            true => Ok(()),
            false => Err(refusal(response).await),
        }
    }

    pub async fn start(&self, action_id: &str) -> Result<MachineAction, DeviceError> {
        self.post(
            &action_start_path(action_id),
            self.credential()?,
            &serde_json::json!({}),
            Duration::ZERO,
        )
        .await
    }

    pub async fn finish(
        &self,
        action_id: &str,
        result: &ActionResult,
    ) -> Result<MachineAction, DeviceError> {
        self.post(
            &action_result_path(action_id),
            self.credential()?,
            result,
            Duration::ZERO,
        )
        .await
    }

    /// Raises an alert on the device's machine: a partial MDE alert (title,
    /// severity, category, evidence, ...).
    pub async fn raise_alert(
        &self,
        alert: &serde_json::Value,
    ) -> Result<palisade_contract::Alert, DeviceError> {
        self.post(ALERTS_PATH, self.credential()?, alert, Duration::ZERO)
            .await
    }
}
