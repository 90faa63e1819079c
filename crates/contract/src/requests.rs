//! Request bodies as clients send them, and their validation into typed requests.
//!
//! Property names are case-sensitive (`Comment`, not `comment`): a wrongly cased
//! required property is simply missing. Unknown properties are ignored. Every
//! field is read as optional so that a missing one is reported by name
//! (`MissingRequiredParameter`) rather than as a generic parse failure.

use crate::error::{ErrorCode, MdeError};
use crate::live_response::{Command, CommandParam, CommandType};
use crate::machine::{wire_enum, DeviceValue};
use crate::odata::{parse_datetime, parse_function_parameters, Literal};
use crate::time::Timestamp;
use serde::Deserialize;
use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;
use strum::VariantArray;
use utoipa::ToSchema;

/// At most this many machines in one `AddOrRemoveTagForMultipleMachines` call.
pub const MAX_BULK_MACHINES: usize = 500;
/// Longest `Comment` accepted (the docs name no limit; this keeps rows bounded).
pub const MAX_COMMENT_CHARS: usize = 4_000;
/// Longest `ExternalId` and `Title` accepted (neither has a documented limit;
/// correlation ids and titles are short, and this keeps rows bounded).
pub const MAX_LABEL_CHARS: usize = 1_000;
// The schemas' limits below are literals, as utoipa's attributes take no
// constants; the OpenAPI test holds them equal to these and to
// `rules::tags::MAX_TAG_CHARS`. A tag's pattern: no `char::is_control`.

wire_enum!(TagAction { Add, Remove });
wire_enum!(IsolationType {
    Full,
    Selective,
    UnManagedDevice
});
wire_enum!(ScanType { Quick, Full });

/// Reads an enum property by its exact documented spelling.
fn parse_enum<E>(field: &str, value: Option<String>) -> Result<Option<E>, MdeError>
where
    E: FromStr + VariantArray + Display,
{
    let Some(text) = value else { return Ok(None) };
    E::from_str(&text).map(Some).map_err(|_| {
        let allowed: Vec<String> = E::VARIANTS.iter().map(|v| format!("'{v}'")).collect();
        MdeError::invalid_input(format!(
            "Invalid input {text} for {field}. Allowed values are: {}.",
            allowed.join(", ")
        ))
    })
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, MdeError> {
    value.ok_or_else(|| MdeError::missing(field))
}

/// Free text as given, except a NUL: no store keeps one (PostgreSQL cannot).
fn text(field: &str, value: Option<String>) -> Result<Option<String>, MdeError> {
    match value {
        Some(text) if text.contains('\0') => Err(MdeError::invalid_input(format!(
            "Invalid input {field}: may not contain NUL characters."
        ))),
        other => Ok(other),
    }
}

/// Free text of at most `max` characters.
fn bounded_text(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, MdeError> {
    match text(field, value)? {
        Some(text) if text.chars().count() > max => Err(MdeError::invalid_input(format!(
            "Invalid input {field}: longer than {max} characters."
        ))),
        other => Ok(other),
    }
}

fn comment(value: Option<String>) -> Result<Option<String>, MdeError> {
    bounded_text("Comment", value, MAX_COMMENT_CHARS)
}

/// A request body that still has to be checked before the domain sees it.
pub trait ValidateBody {
    type Valid;
    fn validate(self) -> Result<Self::Valid, MdeError>;
}

/// Body of `POST /api/machines/{id}/tags`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TagBody {
    /// The tag.
    #[serde(rename = "Value")]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub value: Option<String>,
    /// `Add` or `Remove`.
    #[serde(rename = "Action")]
    #[schema(value_type = TagAction, required = true)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRequest {
    pub value: String,
    pub action: TagAction,
}

impl ValidateBody for TagBody {
    type Valid = TagRequest;
    fn validate(self) -> Result<TagRequest, MdeError> {
        let value = required("Value", self.value)?;
        let action = required("Action", parse_enum("Action", self.action)?)?;
        Ok(TagRequest { value, action })
    }
}

/// Body of `POST /api/machines/AddOrRemoveTagForMultipleMachines`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct BulkTagBody {
    #[serde(rename = "Value")]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub value: Option<String>,
    #[serde(rename = "Action")]
    #[schema(value_type = TagAction, required = true)]
    pub action: Option<String>,
    /// Up to 500 machine ids.
    #[serde(rename = "MachineIds")]
    #[schema(value_type = Vec<String>, required = true, min_items = 1, max_items = 500)]
    pub machine_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkTagRequest {
    pub tag: TagRequest,
    pub machine_ids: Vec<String>,
}

impl ValidateBody for BulkTagBody {
    type Valid = BulkTagRequest;
    fn validate(self) -> Result<BulkTagRequest, MdeError> {
        let tag = TagBody {
            value: self.value,
            action: self.action,
        }
        .validate()?;
        let machine_ids = required("MachineIds", self.machine_ids)?;
        if machine_ids.is_empty() {
            return Err(MdeError::invalid_input(
                "Invalid input MachineIds: at least one machine id is required.",
            ));
        }
        if machine_ids.len() > MAX_BULK_MACHINES {
            return Err(MdeError::new(
                ErrorCode::MaximumBatchSizeExceeded,
                format!(
                    "Maximum batch size exceeded. Received: {}, allowed: {MAX_BULK_MACHINES}.",
                    machine_ids.len()
                ),
            ));
        }
        Ok(BulkTagRequest { tag, machine_ids })
    }
}

/// What a machine-action request asks the device to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    Isolate(IsolationType),
    Unisolate,
    Offboard,
    RestrictCodeExecution,
    UnrestrictCodeExecution,
    RunAntiVirusScan(ScanType),
    CollectInvestigationPackage,
    StopAndQuarantineFile { sha1: String },
    LiveResponse(Vec<Command>),
}

/// A validated machine-action request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub kind: ActionKind,
    /// Required on every action but live response.
    pub comment: Option<String>,
    pub labels: Labels,
}

/// `ExternalId` and `Title`, validated: the optional properties MDE's
/// `$metadata` declares on every machine action and on cancel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub external_id: Option<String>,
    pub title: Option<String>,
}

impl Labels {
    fn validate(external_id: Option<String>, title: Option<String>) -> Result<Labels, MdeError> {
        Ok(Labels {
            external_id: bounded_text("ExternalId", external_id, MAX_LABEL_CHARS)?,
            title: bounded_text("Title", title, MAX_LABEL_CHARS)?,
        })
    }
}

/// Adds `ExternalId`, `Title` and `RequestSource` to a body struct. Written
/// into each body rather than flattened in: serde's `flatten` would hide the
/// name of a mistyped property from the 400 that reports it.
macro_rules! labelled_body {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            /// The caller's correlation id: stored and echoed as `externalId`.
            #[serde(rename = "ExternalId")]
            #[schema(max_length = 1000)]
            pub external_id: Option<String>,
            /// Stored and echoed as `title`.
            #[serde(rename = "Title")]
            #[schema(max_length = 1000)]
            pub title: Option<String>,
            /// Accepted (a string, or null) and not stored: an action created
            /// through the API has `requestSource` `PublicApi`.
            #[serde(rename = "RequestSource")]
            pub request_source: Option<String>,
        }
    };
}

labelled_body! {
/// Body of `isolate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct IsolateBody {
    #[serde(rename = "Comment")]
    #[schema(value_type = String, required = true, max_length = 4000)]
    pub comment: Option<String>,
    /// `Full` (default), `Selective` or `UnManagedDevice`.
    #[serde(rename = "IsolationType")]
    #[schema(value_type = Option<IsolationType>)]
    pub isolation_type: Option<String>,
}
}

impl ValidateBody for IsolateBody {
    type Valid = ActionRequest;
    fn validate(self) -> Result<ActionRequest, MdeError> {
        let isolation = parse_enum("IsolationType", self.isolation_type)?;
        Ok(ActionRequest {
            comment: Some(required("Comment", comment(self.comment)?)?),
            kind: ActionKind::Isolate(isolation.unwrap_or(IsolationType::Full)),
            labels: Labels::validate(self.external_id, self.title)?,
        })
    }
}

labelled_body! {
/// Body of the actions that take only a comment (`unisolate`, `offboard`,
/// `restrictCodeExecution`, `unrestrictCodeExecution`, `collectInvestigationPackage`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CommentBody {
    #[serde(rename = "Comment")]
    #[schema(value_type = String, required = true, max_length = 4000)]
    pub comment: Option<String>,
}
}

impl CommentBody {
    pub fn into_request(self, kind: ActionKind) -> Result<ActionRequest, MdeError> {
        Ok(ActionRequest {
            comment: Some(required("Comment", comment(self.comment)?)?),
            kind,
            labels: Labels::validate(self.external_id, self.title)?,
        })
    }
}

labelled_body! {
/// Body of `runAntiVirusScan`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ScanBody {
    #[serde(rename = "Comment")]
    #[schema(value_type = String, required = true, max_length = 4000)]
    pub comment: Option<String>,
    /// `Quick` or `Full`.
    #[serde(rename = "ScanType")]
    #[schema(value_type = ScanType, required = true)]
    pub scan_type: Option<String>,
}
}

impl ValidateBody for ScanBody {
    type Valid = ActionRequest;
    fn validate(self) -> Result<ActionRequest, MdeError> {
        let comment = Some(required("Comment", comment(self.comment)?)?);
        let scan = required("ScanType", parse_enum("ScanType", self.scan_type)?)?;
        Ok(ActionRequest {
            comment,
            kind: ActionKind::RunAntiVirusScan(scan),
            labels: Labels::validate(self.external_id, self.title)?,
        })
    }
}

labelled_body! {
/// Body of `StopAndQuarantineFile`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StopAndQuarantineBody {
    #[serde(rename = "Comment")]
    #[schema(value_type = String, required = true, max_length = 4000)]
    pub comment: Option<String>,
    /// SHA-1 of the file: 40 hexadecimal characters.
    #[serde(rename = "Sha1")]
    #[schema(value_type = String, required = true, pattern = "^[0-9a-fA-F]{40}$")]
    pub sha1: Option<String>,
}
}

impl ValidateBody for StopAndQuarantineBody {
    type Valid = ActionRequest;
    fn validate(self) -> Result<ActionRequest, MdeError> {
        let comment = Some(required("Comment", comment(self.comment)?)?);
        let sha1 = required("Sha1", self.sha1)?;
        if sha1.len() != 40 || !sha1.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MdeError::new(
                ErrorCode::InvalidHashValue,
                format!("Hash value {sha1} is invalid."),
            ));
        }
        Ok(ActionRequest {
            comment,
            kind: ActionKind::StopAndQuarantineFile {
                sha1: sha1.to_ascii_lowercase(),
            },
            labels: Labels::validate(self.external_id, self.title)?,
        })
    }
}

/// At most this many commands in one live-response session (MDE names no
/// limit; this keeps an action's row bounded).
pub const MAX_LIVE_RESPONSE_COMMANDS: usize = 50;
/// Longest parameter value of a live-response command (a path on Linux is
/// at most 4,096 bytes).
pub const MAX_COMMAND_VALUE_CHARS: usize = 4_096;

/// One command of `runliveresponse`, as sent: `{"type", "params": [{"key", "value"}]}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CommandBody {
    /// `PutFile`, `RunScript` or `GetFile`.
    #[serde(rename = "type")]
    #[schema(value_type = CommandType, required = true)]
    pub command_type: Option<String>,
    #[schema(value_type = Vec<CommandParam>)]
    pub params: Option<Vec<ParamBody>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ParamBody {
    #[schema(value_type = String, required = true)]
    pub key: Option<String>,
    #[schema(value_type = String, required = true)]
    pub value: Option<String>,
}

labelled_body! {
/// Body of `runliveresponse`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LiveResponseBody {
    /// Optional on live response.
    #[serde(rename = "Comment")]
    #[schema(max_length = 4000)]
    pub comment: Option<String>,
    /// PutFile commands, then RunScript, then GetFile (any number of each);
    /// a failed command skips the rest.
    #[serde(rename = "Commands")]
    #[schema(value_type = Vec<Command>, required = true, min_items = 1, max_items = 50)]
    pub commands: Option<Vec<CommandBody>>,
}
}

impl ValidateBody for LiveResponseBody {
    type Valid = ActionRequest;
    fn validate(self) -> Result<ActionRequest, MdeError> {
        let comment = comment(self.comment)?;
        let bodies = required("Commands", self.commands)?;
        if bodies.is_empty() || bodies.len() > MAX_LIVE_RESPONSE_COMMANDS {
            return Err(MdeError::invalid_input(format!(
                "Invalid input Commands: from 1 to {MAX_LIVE_RESPONSE_COMMANDS} commands."
            )));
        }
        let commands = bodies
            .into_iter()
            .enumerate()
            .map(|(index, body)| validate_command(index, body))
            .collect::<Result<Vec<_>, _>>()?;
        let rank = |c: &Command| c.command_type as u8;
        if commands.windows(2).any(|w| rank(&w[0]) > rank(&w[1])) {
            return Err(MdeError::invalid_input(
                "Invalid input Commands: PutFile commands come first, then RunScript, then GetFile.",
            ));
        }
        Ok(ActionRequest {
            comment,
            kind: ActionKind::LiveResponse(commands),
            labels: Labels::validate(self.external_id, self.title)?,
        })
    }
}

fn validate_command(index: usize, body: CommandBody) -> Result<Command, MdeError> {
    let field = format!("Commands[{index}]");
    let command_type: CommandType = required(
        &format!("{field}.type"),
        parse_enum("type", body.command_type)?,
    )?;
    let keys = command_type.keys();
    let mut params: Vec<CommandParam> = Vec::new();
    for param in body.params.unwrap_or_default() {
        let key = required(&format!("{field}.params.key"), param.key)?;
        let value = required(&format!("{field}.params.value"), param.value)?;
        if !keys.contains(&key.as_str()) {
            return Err(MdeError::invalid_input(format!(
                "Invalid input {field}: {command_type} takes no parameter {key}; it takes {}.",
                keys.join(", ")
            )));
        }
        if params.iter().any(|p| p.key == key) {
            return Err(MdeError::invalid_input(format!(
                "Invalid input {field}: parameter {key} is given twice."
            )));
        }
        let value = bounded_text(&key, Some(value), MAX_COMMAND_VALUE_CHARS)?.unwrap_or_default();
        params.push(CommandParam { key, value });
    }
    let command = Command {
        command_type,
        params,
    };
    let main = keys[0];
    match command.param(main) {
        None | Some("") => Err(MdeError::missing(&format!("{field}.{main}"))),
        Some(name)
            if command.library_file().is_some()
                && !crate::live_response::is_library_file_name(name) =>
        {
            Err(MdeError::invalid_input(format!(
                "Invalid input {main}: {name} is not the name of a library file."
            )))
        }
        Some(_) => Ok(command),
    }
}

labelled_body! {
/// Body of `POST /api/machineactions/{id}/cancel`; `Comment` is optional there.
/// `ExternalId` and `Title` are checked as on the actions but not stored: the
/// action keeps those of the request that created it.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CancelBody {
    #[serde(rename = "Comment")]
    #[schema(max_length = 4000)]
    pub comment: Option<String>,
}
}

impl ValidateBody for CancelBody {
    type Valid = Option<String>;
    fn validate(self) -> Result<Option<String>, MdeError> {
        Labels::validate(self.external_id, self.title)?;
        comment(self.comment)
    }
}

/// Body of `PATCH /api/machines/{id}`: a tags collection replaces all tags.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMachineBody {
    pub machine_tags: Option<Vec<String>>,
    #[schema(value_type = Option<DeviceValue>)]
    pub device_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateMachineRequest {
    pub machine_tags: Option<Vec<String>>,
    pub device_value: Option<DeviceValue>,
}

impl ValidateBody for UpdateMachineBody {
    type Valid = UpdateMachineRequest;
    fn validate(self) -> Result<UpdateMachineRequest, MdeError> {
        let device_value = parse_enum("deviceValue", self.device_value)?;
        if self.machine_tags.is_none() && device_value.is_none() {
            return Err(MdeError::invalid_input(
                "Invalid input: the body must set machineTags or deviceValue.",
            ));
        }
        Ok(UpdateMachineRequest {
            machine_tags: self.machine_tags,
            device_value,
        })
    }
}

/// Body of `POST /api/machines/{id}/setDeviceValue`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeviceValueBody {
    /// `Normal`, `Low` or `High`.
    #[serde(rename = "DeviceValue")]
    #[schema(value_type = DeviceValue, required = true)]
    pub device_value: Option<String>,
}

impl ValidateBody for DeviceValueBody {
    type Valid = DeviceValue;
    fn validate(self) -> Result<DeviceValue, MdeError> {
        required("DeviceValue", parse_enum("DeviceValue", self.device_value)?)
    }
}

/// The parameters of `GET /api/machines/findbyip(ip='…',timestamp=…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindByIpRequest {
    /// An internal address, IPv4 or IPv6.
    pub ip: IpAddr,
    /// When the machines were seen with it; absent: now.
    pub timestamp: Option<Timestamp>,
}

impl FindByIpRequest {
    /// From the function call's parameter list as it stands in the path.
    pub fn parse(raw_parameters: &str) -> Result<FindByIpRequest, MdeError> {
        let parameters = parse_function_parameters(raw_parameters)
            .map_err(|e| MdeError::new(ErrorCode::ODataError, e.0))?;
        let (mut ip, mut timestamp) = (None, None);
        for (name, value) in parameters {
            match (name.to_ascii_lowercase().as_str(), value) {
                ("ip", Literal::String(text)) => {
                    ip = Some(text.trim().parse().map_err(|_| invalid_ip(&text))?);
                }
                ("ip", other) => return Err(invalid_ip(&format!("{other:?}"))),
                ("timestamp", Literal::DateTime(at)) => {
                    timestamp = Some(Timestamp::from_datetime(at));
                }
                ("timestamp", Literal::String(text)) => {
                    let at = parse_datetime(&text).ok_or_else(|| invalid_timestamp(&text))?;
                    timestamp = Some(Timestamp::from_datetime(at));
                }
                ("timestamp", other) => return Err(invalid_timestamp(&format!("{other:?}"))),
                _ => {
                    return Err(MdeError::invalid_input(format!(
                        "Invalid input {name}: findbyip takes the parameters ip and timestamp."
                    )))
                }
            }
        }
        Ok(FindByIpRequest {
            ip: required("ip", ip)?,
            timestamp,
        })
    }
}

/// The `index` of `GetLiveResponseResultDownloadLink(index=n)`.
pub fn parse_result_index(raw_parameters: &str) -> Result<i64, MdeError> {
    let parameters = parse_function_parameters(raw_parameters)
        .map_err(|e| MdeError::new(ErrorCode::ODataError, e.0))?;
    match parameters.as_slice() {
        [(name, Literal::Int(index))] if name.eq_ignore_ascii_case("index") => Ok(*index),
        [] => Err(MdeError::missing("index")),
        _ => Err(MdeError::invalid_input(
            "Invalid input: GetLiveResponseResultDownloadLink takes one parameter, index, a whole number (index=0).",
        )),
    }
}

fn invalid_ip(text: &str) -> MdeError {
    MdeError::new(
        ErrorCode::InvalidIpAddress,
        format!(
            "IP address {} is invalid.",
            text.chars().take(64).collect::<String>()
        ),
    )
}

fn invalid_timestamp(text: &str) -> MdeError {
    MdeError::invalid_input(format!(
        "Invalid input timestamp {}: expected a date and time such as 2019-09-22T08:44:05Z.",
        text.chars().take(64).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn wrongly_cased_required_property_is_missing() {
        let err = parse::<IsolateBody>(r#"{"comment":"x"}"#)
            .validate()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::MissingRequiredParameter);
        assert_eq!(err.message, "Parameter Comment is missing.");
    }

    #[test]
    fn enum_values_match_exactly() {
        let err = parse::<IsolateBody>(r#"{"Comment":"x","IsolationType":"full"}"#)
            .validate()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(
            err.message
                .contains("'Full', 'Selective', 'UnManagedDevice'"),
            "{}",
            err.message
        );
        let ok = parse::<IsolateBody>(r#"{"Comment":"x"}"#)
            .validate()
            .unwrap();
        assert_eq!(ok.kind, ActionKind::Isolate(IsolationType::Full));
    }

    #[test]
    fn bulk_limit_is_500() {
        let ids: Vec<String> = (0..501).map(|i| format!("{i:040x}")).collect();
        let body = BulkTagBody {
            value: Some("t".into()),
            action: Some("Add".into()),
            machine_ids: Some(ids),
        };
        let err = body.validate().unwrap_err();
        assert_eq!(err.code, ErrorCode::MaximumBatchSizeExceeded);
        assert_eq!(
            err.message,
            "Maximum batch size exceeded. Received: 501, allowed: 500."
        );
    }

    #[test]
    fn sha1_must_be_40_hex() {
        let err = parse::<StopAndQuarantineBody>(r#"{"Comment":"x","Sha1":"abc"}"#)
            .validate()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidHashValue);
    }
}
