//! The emulator control plane's wire types (`/_palisade/v1`, its contract in
//! `control-plane.md`): camelCase JSON, ISO-8601 durations, errors that name
//! the field.

use crate::action::{ActionStatus, ActionType};
use crate::error::MdeError;
use crate::machine::OsPlatform;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A duration as ISO-8601 writes it (`PT3S`, `PT0.5S`, `PT72H`, `P1D`).
/// Years and months are refused: their length depends on the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(value_type = String, example = "PT3S")]
pub struct IsoDuration(pub std::time::Duration);

impl IsoDuration {
    pub fn parse(text: &str) -> Result<IsoDuration, String> {
        let not_one = || format!("'{text}' is not an ISO-8601 duration (e.g. PT3S, PT72H, P1D)");
        // The parser lets a unit without a number through (`PTS`).
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            return Err(not_one());
        }
        let parsed = iso8601::duration(text).map_err(|_| not_one())?;
        if let iso8601::Duration::YMDHMS { year, month, .. } = parsed {
            if year != 0 || month != 0 {
                return Err(format!(
                    "'{text}' counts years or months, whose length varies: give days (P30D)"
                ));
            }
        }
        Ok(IsoDuration(parsed.into()))
    }

    pub fn millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl std::fmt::Display for IsoDuration {
    /// Days, hours, minutes and seconds, as `PT0S` for nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, millis) = (self.0.as_secs(), self.0.subsec_millis());
        let (days, hours, minutes, seconds) =
            (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
        write!(f, "P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if hours == 0 && minutes == 0 && seconds == 0 && millis == 0 && days > 0 {
            return Ok(());
        }
        write!(f, "T")?;
        if hours > 0 {
            write!(f, "{hours}H")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}M")?;
        }
        if seconds > 0 || millis > 0 || (hours == 0 && minutes == 0) {
            match millis {
                0 => write!(f, "{seconds}S"),
                _ => write!(f, "{seconds}.{millis:03}S"),
            }?;
        }
        Ok(())
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        IsoDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which actions a rule takes: every field given must hold (none: any action).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutcomeMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_type: Option<ActionType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// The start of the machine's `computerDnsName` (letters in any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// A tag the machine carries (exact, as tags compare).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_platform: Option<OsPlatform>,
}

/// One state of a scripted action, held until the action has been read
/// `polls` times or `duration` has passed (whichever comes first); the last
/// step is where the action stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutcomeStep {
    pub status: ActionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<IsoDuration>,
    /// With Failed: the action's `errorHResult`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_h_result: Option<i64>,
    /// With Failed or TimeOut: the action's `troubleshootInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub troubleshoot_info: Option<String>,
}

/// Most steps in one script.
pub const MAX_SCRIPT_STEPS: usize = 32;

/// What `POST /tenants/{t}/outcomes` takes: a rule without its id and hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOutcomeRule {
    #[serde(default, rename = "match")]
    pub matches: OutcomeMatch,
    pub script: Vec<OutcomeStep>,
}

impl NewOutcomeRule {
    /// Checks the script: some steps, at most [`MAX_SCRIPT_STEPS`]; every
    /// step before the last one still open (Pending, InProgress) and held
    /// by polls or a duration; an error code only where the action fails.
    pub fn validate(&self) -> Result<(), MdeError> {
        let invalid = |field: String, why: &str| {
            Err(MdeError::invalid_input(format!(
                "Invalid input {field}: {why}"
            )))
        };
        if self.script.is_empty() {
            return invalid("script".into(), "a rule needs at least one step");
        }
        if self.script.len() > MAX_SCRIPT_STEPS {
            return invalid(
                "script".into(),
                &format!("at most {MAX_SCRIPT_STEPS} steps"),
            );
        }
        for (i, step) in self.script.iter().enumerate() {
            let last = i + 1 == self.script.len();
            if !last && !step.status.is_active() {
                return invalid(
                    format!("script[{i}].status"),
                    "only the last step may end the action (Pending or InProgress before it)",
                );
            }
            if !last && step.polls.is_none() && step.duration.is_none() {
                return invalid(
                    format!("script[{i}]"),
                    "a step before the last needs polls or a duration",
                );
            }
            if step.polls == Some(0) {
                return invalid(format!("script[{i}].polls"), "at least 1");
            }
            if step.error_h_result.is_some() && step.status != ActionStatus::Failed {
                return invalid(
                    format!("script[{i}].errorHResult"),
                    "only a Failed step has one",
                );
            }
            if step.troubleshoot_info.is_some()
                && !matches!(step.status, ActionStatus::Failed | ActionStatus::TimeOut)
            {
                return invalid(
                    format!("script[{i}].troubleshootInfo"),
                    "only a Failed or TimeOut step has one",
                );
            }
        }
        Ok(())
    }
}

/// An outcome rule: which actions it takes, the script it carries them
/// through, and how many it has taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeRule {
    pub id: String,
    #[serde(rename = "match")]
    pub matches: OutcomeMatch,
    pub script: Vec<OutcomeStep>,
    pub hits: u64,
}

/// Which calls a fault rule takes: every field given must hold (none: any call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultMatch {
    /// An operation id of the MDE API's OpenAPI document (`ListMachines`,
    /// `Isolate`, ...), or `Token` for the token service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The app's client id, or the user's principal name (letters in any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
}

/// What a call a fault takes is answered with, instead of its real answer:
/// an MDE-shaped error (an Entra-shaped one from the token service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultResponse {
    /// 400 to 599.
    pub status: u16,
    /// Seconds, sent as `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    /// The body's `error.code` (default: MDE's code for the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    /// The body's `error.message` (default: what MDE says with that status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Most latency a fault may add.
pub const MAX_FAULT_LATENCY_SECONDS: u64 = 300;

/// What `POST /tenants/{t}/faults` takes: which calls (`match`), how often
/// (`probability`, `everyNth`; `count` spends the rule after that many), and
/// what happens to them (`response` instead of the real answer, and/or
/// `latency` before it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewFaultRule {
    #[serde(default, rename = "match")]
    pub matches: FaultMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_nth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<FaultResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<IsoDuration>,
}

impl NewFaultRule {
    /// Checks what the rule's fields say on their own (the operation name
    /// is checked against the operations by the domain).
    pub fn validate(&self) -> Result<(), MdeError> {
        let invalid = |field: &str, why: &str| {
            Err(MdeError::invalid_input(format!(
                "Invalid input {field}: {why}"
            )))
        };
        if let Some(p) = self.probability {
            if !(p > 0.0 && p <= 1.0) {
                return invalid("probability", "a number above 0 and at most 1");
            }
        }
        if self.count == Some(0) {
            return invalid(
                "count",
                "at least 1 (the rule is spent after that many calls)",
            );
        }
        if self.every_nth == Some(0) {
            return invalid("everyNth", "at least 1");
        }
        if self.response.is_none() && self.latency.is_none() {
            return invalid(
                "response",
                "a rule needs a response (answered instead) or a latency (added before the real answer)",
            );
        }
        if let Some(response) = &self.response {
            if !(400..=599).contains(&response.status) {
                return invalid("response.status", "an error status, 400 to 599");
            }
        }
        if self
            .latency
            .is_some_and(|l| l.0.as_secs() > MAX_FAULT_LATENCY_SECONDS)
        {
            return invalid(
                "latency",
                &format!("at most {MAX_FAULT_LATENCY_SECONDS} seconds"),
            );
        }
        Ok(())
    }
}

/// A fault rule as `GET .../faults` lists it: its definition, how many
/// calls it took (`hits`), and whether its `count` is used up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    pub id: String,
    #[serde(flatten)]
    pub rule: NewFaultRule,
    pub hits: u64,
    pub spent: bool,
}

/// `PUT|GET /tenants/{t}/recorder`: whether the tenant's MDE API calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecorderSetting {
    pub enabled: bool,
}

/// One recorded call of the MDE API, as `GET .../recorder/entries` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEntry {
    /// When the call came (the server's time, not the tenant's clock).
    pub time: crate::Timestamp,
    /// The app's client id, or the user's principal name.
    pub caller: String,
    /// The operation id (`ListMachines`, `Isolate`, ...).
    pub operation: String,
    pub method: String,
    pub path: String,
    /// The query string as sent, without `?`.
    pub query: String,
    pub status: u16,
    pub latency_ms: u64,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

/// `{"value": [entry...]}`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordedEntries {
    pub value: Vec<RecordedEntry>,
}

/// How one caller used the API, from the record (`GET .../recorder/report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallerReport {
    pub caller: String,
    pub calls: u64,
    /// Calls of an operation made before a `Retry-After` given for it had passed.
    pub retry_after_ignored: u64,
    /// Pages asked for with a `$skip` the server never gave in an `@odata.nextLink`.
    pub paging_urls_built: u64,
    /// Reads of an action less than a second after the caller's last read of it.
    pub fast_polls: u64,
    pub permissions_used: Vec<String>,
    pub permissions_granted: Vec<String>,
    pub permissions_never_used: Vec<String>,
}

/// `{"value": [report...]}`, one per caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientReport {
    pub value: Vec<CallerReport>,
}

/// Whether a tenant's clock moves with real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    Running,
    Frozen,
}

/// `GET /tenants/{t}/clock`: the tenant's time and how far it is from the
/// server's (`offset`, negative as `-PT5S` once a frozen clock runs again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockReading {
    pub mode: ClockMode,
    pub now: crate::Timestamp,
    #[schema(example = "PT72H")]
    pub offset: String,
}

/// `PUT /tenants/{t}/clock`: a mode (`frozen` at `now` or at the current
/// reading; `running` from the current reading) and/or an advance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClockChange {
    #[serde(default)]
    pub mode: Option<ClockMode>,
    /// With `mode: frozen`: the reading to stop at (not before the current one).
    #[serde(default)]
    pub now: Option<crate::Timestamp>,
    #[serde(default)]
    pub advance: Option<IsoDuration>,
}

impl ClockChange {
    pub fn validate(&self) -> Result<(), MdeError> {
        if self.mode.is_none() && self.advance.is_none() {
            return Err(MdeError::invalid_input(
                "Invalid input: give mode (running or frozen) or advance (an ISO-8601 duration)",
            ));
        }
        if self.now.is_some() && self.mode != Some(ClockMode::Frozen) {
            return Err(MdeError::invalid_input(
                "Invalid input now: only with mode frozen (a running clock goes on from its reading)",
            ));
        }
        Ok(())
    }
}

/// A signed span of 100-ns ticks as ISO-8601 writes durations, `-` before a negative one.
pub fn signed_duration(ticks: i64) -> String {
    let span = std::time::Duration::from_nanos(ticks.unsigned_abs().saturating_mul(100));
    let sign = if ticks < 0 { "-" } else { "" };
    format!("{sign}{}", IsoDuration(span))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_and_write_as_iso_8601() {
        for (text, millis, written) in [
            ("PT3S", 3_000, "PT3S"),
            ("PT0.5S", 500, "PT0.500S"),
            ("PT72H", 259_200_000, "P3D"),
            ("P1D", 86_400_000, "P1D"),
            ("P1DT2H30M", 95_400_000, "P1DT2H30M"),
            ("PT0S", 0, "PT0S"),
        ] {
            let duration = IsoDuration::parse(text).unwrap();
            assert_eq!(duration.millis(), millis, "{text}");
            assert_eq!(duration.to_string(), written, "{text}");
            assert_eq!(IsoDuration::parse(written).unwrap(), duration, "{written}");
        }
        for bad in ["3s", "", "P", "P1M", "P1Y", "PTS", "-PT1S"] {
            assert!(IsoDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_script_is_checked_step_by_step_and_the_field_is_named() {
        let rule = |script: serde_json::Value| -> NewOutcomeRule {
            serde_json::from_value(json!({ "script": script })).unwrap()
        };
        let good = rule(json!([
            {"status": "Pending", "polls": 2},
            {"status": "InProgress", "duration": "PT3S"},
            {"status": "Failed", "errorHResult": -2147024891, "troubleshootInfo": "denied"}
        ]));
        assert!(good.validate().is_ok());
        assert!(rule(json!([{"status": "Pending"}])).validate().is_ok());
        for (script, field) in [
            (json!([]), "script:"),
            (
                json!([{"status": "Succeeded", "polls": 1}, {"status": "Failed"}]),
                "script[0].status",
            ),
            (
                json!([{"status": "Pending"}, {"status": "Succeeded"}]),
                "script[0]:",
            ),
            (
                json!([{"status": "Pending", "polls": 0}, {"status": "Succeeded"}]),
                "script[0].polls",
            ),
            (
                json!([{"status": "Succeeded", "errorHResult": 5}]),
                "script[0].errorHResult",
            ),
            (
                json!([{"status": "Succeeded", "troubleshootInfo": "x"}]),
                "script[0].troubleshootInfo",
            ),
        ] {
            let error = rule(script.clone()).validate().unwrap_err();
            assert!(error.message.contains(field), "{script}: {}", error.message);
        }
        let unknown: Result<NewOutcomeRule, _> =
            serde_json::from_value(json!({"script": [{"status": "Pending", "pols": 2}]}));
        assert!(unknown.unwrap_err().to_string().contains("pols"));
    }
}
