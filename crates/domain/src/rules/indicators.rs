//! Indicators: what MDE accepts in a submission (required properties,
//! value formats, Audit with generateAlert), the key one indicator per type
//! and value is found by, what a submission makes of the stored one, and
//! which indicators are in force.

use palisade_contract::indicator::{
    IndicatorAction, IndicatorSeverity, IndicatorSubmission, IndicatorType,
};
use palisade_contract::{ErrorCode, Indicator, MdeError, Timestamp};
use std::net::IpAddr;

/// Most indicators in force in a tenant ("There is a limit of 15,000
/// indicators per tenant").
pub const MAX_ACTIVE_INDICATORS: u64 = 15_000;
/// Most indicators one import or batch delete may carry.
pub const MAX_BATCH_INDICATORS: usize = 500;

/// A submission that MDE would take: its required properties present and
/// its value in its type's format, with the key it is matched by.
#[derive(Debug, Clone)]
pub struct Submission {
    pub value: String,
    pub key: String,
    pub indicator_type: IndicatorType,
    pub action: IndicatorAction,
    pub title: String,
    pub description: String,
    pub body: IndicatorSubmission,
}

fn required<T: Clone>(value: &Option<T>, name: &str) -> Result<T, MdeError> {
    value.clone().ok_or_else(|| MdeError::missing(name))
}

/// Checks `body` and finds its key, or says (as MDE's error codes do) what is wrong.
pub fn validate(body: IndicatorSubmission, now: Timestamp) -> Result<Submission, MdeError> {
    let value = required(&body.indicator_value, "indicatorValue")?;
    let indicator_type = required(&body.indicator_type, "indicatorType")?;
    let action = required(&body.action, "action")?;
    let title = required(&body.title, "title")?;
    let description = required(&body.description, "description")?;
    if action == IndicatorAction::Audit && body.generate_alert != Some(true) {
        return Err(MdeError::new(
            ErrorCode::InvalidInput,
            "generateAlert must be true for an indicator whose action is Audit.",
        ));
    }
    if let Some(expiration) = body.expiration_time {
        if expiration <= now {
            return Err(MdeError::new(
                ErrorCode::InvalidInput,
                format!("expirationTime {expiration} is not in the future."),
            ));
        }
    }
    let key = value_key(indicator_type, &value)?;
    Ok(Submission {
        value,
        key,
        indicator_type,
        action,
        title,
        description,
        body,
    })
}

/// The value as it is matched: hashes and names in lower case, an address
/// in its canonical form, or the error of a value that is not of its type.
pub fn value_key(indicator_type: IndicatorType, value: &str) -> Result<String, MdeError> {
    let hash = |length: usize| {
        if value.len() == length && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(value.to_ascii_lowercase())
        } else {
            Err(MdeError::new(
                ErrorCode::InvalidHashValue,
                format!("Hash value {value} is invalid"),
            ))
        }
    };
    match indicator_type {
        IndicatorType::FileSha1 | IndicatorType::CertificateThumbprint => hash(40),
        IndicatorType::FileSha256 => hash(64),
        IndicatorType::FileMd5 => hash(32),
        IndicatorType::IpAddress => ip_key(value),
        IndicatorType::DomainName => domain_key(value),
        IndicatorType::Url => url_key(value),
    }
}

fn ip_key(value: &str) -> Result<String, MdeError> {
    let invalid = |why: &str| {
        MdeError::new(
            ErrorCode::InvalidIpAddress,
            format!("IP address {value} is invalid: {why}"),
        )
    };
    if value.contains('/') || value.contains('-') {
        return Err(invalid(
            "only single addresses are supported (no CIDR blocks or ranges)",
        ));
    }
    let address: IpAddr = value
        .parse()
        .map_err(|_| invalid("not an IPv4 or IPv6 address"))?;
    // MDE takes IPv6 addresses written out in full (all eight groups).
    if address.is_ipv6() && (value.contains("::") || value.split(':').count() != 8) {
        return Err(invalid("an IPv6 address must give all eight groups"));
    }
    Ok(match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    })
}

fn domain_key(value: &str) -> Result<String, MdeError> {
    let name = value
        .strip_suffix('.')
        .unwrap_or(value)
        .to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let valid = name.len() <= 253
        && name.contains('.')
        && name.split('.').all(label_ok)
        && name.parse::<IpAddr>().is_err();
    if !valid {
        return Err(MdeError::new(
            ErrorCode::InvalidDomainName,
            format!("Domain name {value} is invalid"),
        ));
    }
    Ok(name)
}

fn url_key(value: &str) -> Result<String, MdeError> {
    let invalid = || MdeError::new(ErrorCode::InvalidUrl, format!("Url {value} is invalid"));
    // MDE takes `example.com/path` as well as `https://example.com/path`.
    let absolute = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let url = url::Url::parse(&absolute).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    Ok(value.to_ascii_lowercase())
}

/// Who submits: what the indicator's `createdBy`, `source` and
/// `sourceType` say.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// The app's client id or the user's UPN.
    pub id: String,
    /// The app's name or the user's UPN.
    pub name: String,
    pub is_app: bool,
}

/// The indicator `submission` makes: `stored` updated (its id, creation
/// and application kept), or a new one with `new_id`; `group_ids`: the ids
/// of the device groups it names.
pub fn indicator(
    submission: &Submission,
    stored: Option<&Indicator>,
    new_id: impl FnOnce() -> String,
    group_ids: Vec<String>,
    submitter: &Submitter,
    now: Timestamp,
) -> Indicator {
    let body = &submission.body;
    let generate_alert = body.generate_alert.unwrap_or(matches!(
        submission.action,
        IndicatorAction::Alert | IndicatorAction::AlertAndBlock
    ));
    let fields = |id: String, created: Timestamp, application: Option<String>| Indicator {
        id,
        indicator_value: submission.value.clone(),
        indicator_type: submission.indicator_type,
        action: submission.action,
        application,
        source: submitter.name.clone(),
        source_type: if submitter.is_app { "AadApp" } else { "User" }.into(),
        created_by: submitter.id.clone(),
        created_by_display_name: submitter.name.clone(),
        created_by_source: "PublicApi".into(),
        severity: body.severity.unwrap_or(IndicatorSeverity::Informational),
        title: submission.title.clone(),
        description: submission.description.clone(),
        recommended_actions: body.recommended_actions.clone(),
        creation_time_date_time_utc: created,
        expiration_time: body.expiration_time,
        last_update_time: now,
        last_updated_by: None,
        rbac_group_names: body.rbac_group_names.clone().unwrap_or_default(),
        rbac_group_ids: group_ids,
        generate_alert,
        mitre_techniques: body.mitre_techniques.clone().unwrap_or_default(),
        educate_url: body.educate_url.clone(),
    };
    match stored {
        Some(stored) => Indicator {
            source: stored.source.clone(),
            source_type: stored.source_type.clone(),
            created_by: stored.created_by.clone(),
            created_by_display_name: stored.created_by_display_name.clone(),
            last_updated_by: Some(submitter.name.clone()),
            ..fields(
                stored.id.clone(),
                stored.creation_time_date_time_utc,
                stored.application.clone(),
            )
        },
        None => fields(new_id(), now, body.application.clone()),
    }
}

/// Whether the indicator is in force at `now` (not expired).
pub fn is_active(indicator: &Indicator, now: Timestamp) -> bool {
    indicator.expiration_time.is_none_or(|at| at > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: IndicatorType, v: &str) -> Result<String, ErrorCode> {
        value_key(t, v).map_err(|e| e.code)
    }

    #[test]
    fn values_are_checked_and_keyed_as_mde_matches_them() {
        use IndicatorType::*;
        let sha1 = "220E7D15B011D7FAC48F2BD61114DB1022197F7F";
        assert_eq!(key(FileSha1, sha1).unwrap(), sha1.to_ascii_lowercase());
        assert_eq!(key(FileSha256, sha1), Err(ErrorCode::InvalidHashValue));
        assert_eq!(key(FileMd5, "zz"), Err(ErrorCode::InvalidHashValue));
        assert_eq!(key(IpAddress, "12.13.14.15").unwrap(), "12.13.14.15");
        assert_eq!(
            key(IpAddress, "10.0.0.0/8"),
            Err(ErrorCode::InvalidIpAddress)
        );
        assert_eq!(
            key(IpAddress, "2001:db8::1"),
            Err(ErrorCode::InvalidIpAddress)
        );
        assert_eq!(
            key(IpAddress, "2001:4860:4860:0:0:0:0:8888").unwrap(),
            "2001:4860:4860::8888"
        );
        assert_eq!(key(DomainName, "Example.COM").unwrap(), "example.com");
        assert_eq!(key(DomainName, "no_dot"), Err(ErrorCode::InvalidDomainName));
        assert_eq!(
            key(DomainName, "1.2.3.4"),
            Err(ErrorCode::InvalidDomainName)
        );
        assert_eq!(
            key(Url, "https://example.com/block").unwrap(),
            "https://example.com/block"
        );
        assert_eq!(key(Url, "ftp://example.com"), Err(ErrorCode::InvalidUrl));
    }

    #[test]
    fn audit_needs_generate_alert_and_the_past_cannot_expire() {
        let now = Timestamp::from_ticks(1_000);
        let body = IndicatorSubmission {
            indicator_value: Some("8.8.8.8".into()),
            indicator_type: Some(IndicatorType::IpAddress),
            action: Some(IndicatorAction::Audit),
            title: Some("t".into()),
            description: Some("d".into()),
            ..IndicatorSubmission::default()
        };
        assert_eq!(
            validate(body.clone(), now).unwrap_err().code,
            ErrorCode::InvalidInput
        );
        let audited = IndicatorSubmission {
            generate_alert: Some(true),
            ..body.clone()
        };
        assert!(validate(audited.clone(), now).is_ok());
        let expired = IndicatorSubmission {
            expiration_time: Some(Timestamp::from_ticks(10)),
            ..audited
        };
        assert!(validate(expired, now).is_err());
        let untitled = IndicatorSubmission {
            title: None,
            ..body
        };
        let error = validate(untitled, now).unwrap_err();
        assert_eq!(error.code, ErrorCode::MissingRequiredParameter);
        assert!(error.message.contains("title"), "{}", error.message);
    }
}
