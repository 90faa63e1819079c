//! Fault rules (`control-plane.md`): which calls a rule takes, and whether
//! it takes this one. First rule that takes a call wins; the call is then
//! answered by the rule's response, or delayed by its latency.

use crate::access::Operation;
use crate::control::StoredFaultRule;
use palisade_contract::control::{FaultResponse, NewFaultRule};
use palisade_contract::{ErrorCode, MdeError};

/// The token service's operation name in fault rules.
pub const TOKEN_OPERATION: &str = "Token";

/// Checks the rule, naming the field: its own fields, and that `operation`
/// names an operation of the MDE API or the token service (in any case;
/// kept as the operation's name, which calls are matched by).
pub fn checked(mut rule: NewFaultRule) -> Result<NewFaultRule, MdeError> {
    rule.validate()?;
    if let Some(operation) = &rule.matches.operation {
        let name = match Operation::from_name(operation) {
            Some(known) => known.name(),
            None if operation.eq_ignore_ascii_case(TOKEN_OPERATION) => TOKEN_OPERATION,
            None => {
                return Err(MdeError::invalid_input(format!(
                    "Invalid input match.operation: '{operation}' is not an operation id of the MDE API's OpenAPI document (e.g. ListMachines, GetAction, Isolate) nor {TOKEN_OPERATION}"
                )))
            }
        };
        rule.matches.operation = Some(name.to_string());
    }
    Ok(rule)
}

/// Whether the rule is for calls of `operation` by any of `callers` (an
/// app's client id; a user's principal name), and not yet used up.
pub fn matches(rule: &StoredFaultRule, operation: &str, callers: &[&str]) -> bool {
    let of = &rule.rule.matches;
    !is_spent(rule)
        && of.operation.as_deref().is_none_or(|o| o == operation)
        && of
            .caller
            .as_deref()
            .is_none_or(|c| callers.iter().any(|caller| caller.eq_ignore_ascii_case(c)))
}

/// Whether the rule has taken as many calls as its `count`.
pub fn is_spent(rule: &StoredFaultRule) -> bool {
    rule.rule
        .count
        .is_some_and(|count| rule.hits >= i64::from(count))
}

/// Counts one more matching call (the `seen`-th) and says whether the rule
/// takes it: every `everyNth` call, with `probability` (`draw` is uniform in
/// [0, 1)), while not spent.
pub fn take(rule: &mut StoredFaultRule, draw: f64) -> bool {
    if is_spent(rule) {
        return false;
    }
    rule.seen += 1;
    let nth = rule
        .rule
        .every_nth
        .is_none_or(|n| rule.seen % i64::from(n) == 0);
    let chance = rule.rule.probability.is_none_or(|p| draw < p);
    let taken = nth && chance;
    if taken {
        rule.hits += 1;
    }
    taken
}

/// The MDE API's answer a fault response gives: its status, with its code
/// and message or those MDE answers that status with.
pub fn answer(response: &FaultResponse) -> MdeError {
    let code = response.code.unwrap_or(match response.status {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::ResourceNotFound,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::ServiceUnavailable,
        500..=599 => ErrorCode::InternalServerError,
        _ => ErrorCode::BadRequest,
    });
    let message = response.message.clone().unwrap_or_else(|| match code {
        ErrorCode::TooManyRequests => match response.retry_after {
            Some(seconds) => format!("Rate limit is exceeded. Try again in {seconds} seconds."),
            None => "Rate limit is exceeded.".to_string(),
        },
        ErrorCode::ServiceUnavailable => "The service is temporarily unavailable.".to_string(),
        ErrorCode::ResourceNotFound => "The requested resource was not found.".to_string(),
        ErrorCode::InternalServerError => "An error has occurred.".to_string(),
        _ => "The request was refused.".to_string(),
    });
    MdeError {
        status: response.status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(body: serde_json::Value) -> StoredFaultRule {
        StoredFaultRule::new("t", serde_json::from_value(body).unwrap())
    }

    #[test]
    fn a_count_spends_the_rule_and_every_nth_takes_every_nth_call() {
        let mut first_three = rule(json!({"count": 3, "response": {"status": 429}}));
        let taken: Vec<bool> = (0..5).map(|_| take(&mut first_three, 0.5)).collect();
        assert_eq!(taken, [true, true, true, false, false]);
        assert!(is_spent(&first_three) && !matches(&first_three, "ListMachines", &[]));

        let mut third = rule(json!({"everyNth": 3, "count": 2, "latency": "PT0.1S"}));
        let taken: Vec<bool> = (0..9).map(|_| take(&mut third, 0.0)).collect();
        assert_eq!(
            taken,
            [false, false, true, false, false, true, false, false, false]
        );

        let mut coin = rule(json!({"probability": 0.25, "response": {"status": 503}}));
        assert!(take(&mut coin, 0.2) && !take(&mut coin, 0.3));
    }

    #[test]
    fn a_rule_matches_its_operation_and_caller_only() {
        let r = rule(
            json!({"match": {"operation": "Isolate", "caller": "Bot@Contoso.com"}, "response": {"status": 500}}),
        );
        assert!(matches(&r, "Isolate", &["app-id", "bot@contoso.com"]));
        assert!(!matches(&r, "Isolate", &["someone@contoso.com"]));
        assert!(!matches(&r, "ListMachines", &["bot@contoso.com"]));
        let bad: NewFaultRule = serde_json::from_value(
            json!({"match": {"operation": "Isolated"}, "response": {"status": 500}}),
        )
        .unwrap();
        let error = checked(bad).unwrap_err();
        let lower: NewFaultRule = serde_json::from_value(
            json!({"match": {"operation": "isolate"}, "response": {"status": 500}}),
        )
        .unwrap();
        let operation = checked(lower).unwrap().matches.operation;
        assert_eq!(operation.as_deref(), Some("Isolate"));
        assert!(
            error.message.contains("match.operation"),
            "{}",
            error.message
        );
    }
}
