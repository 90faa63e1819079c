//! What the recorder makes of the calls it kept (`control-plane.md`:
//! Recorder): a report of how each client behaved, and a HAR 1.2 log.

use crate::control::RecordedCall;
use palisade_contract::control::CallerReport;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Per caller, from `calls` oldest first: calls made while a `Retry-After`
/// given for their operation ran, pages asked for by a `$skip` no
/// `@odata.nextLink` gave, action reads under a second after the last read
/// of the same action, and the permissions granted and used.
pub fn report(calls: &[RecordedCall]) -> Vec<CallerReport> {
    let mut by_caller: BTreeMap<&str, Vec<&RecordedCall>> = BTreeMap::new();
    for call in calls {
        by_caller.entry(&call.caller).or_default().push(call);
    }
    by_caller
        .into_iter()
        .map(|(caller, calls)| caller_report(caller, &calls))
        .collect()
}

fn caller_report(caller: &str, calls: &[&RecordedCall]) -> CallerReport {
    let mut wait_until: HashMap<&str, i64> = HashMap::new();
    let mut given_skips: HashSet<(String, String)> = HashSet::new();
    let mut last_read: HashMap<&str, i64> = HashMap::new();
    let (mut retry_after_ignored, mut paging_urls_built, mut fast_polls) = (0, 0, 0);
    let mut granted = BTreeSet::new();
    let mut used = BTreeSet::new();
    for call in calls {
        let at = call.time.ticks();
        if wait_until
            .get(call.operation.as_str())
            .is_some_and(|until| at < *until)
        {
            retry_after_ignored += 1;
        }
        if let Some(seconds) = call.retry_after {
            wait_until.insert(&call.operation, at + seconds * 10_000_000);
        }
        if let Some(skip) = query_value(&call.query, "$skip") {
            if !given_skips.contains(&(call.path.to_ascii_lowercase(), skip)) {
                paging_urls_built += 1;
            }
        }
        if let Some((path, skip)) = next_link_skip(call.response_body.as_deref()) {
            given_skips.insert((path.to_ascii_lowercase(), skip));
        }
        if call.operation == "GetAction" {
            if let Some(previous) = last_read.insert(&call.path, at) {
                if at - previous < 10_000_000 {
                    fast_polls += 1;
                }
            }
        }
        granted.extend(call.granted.iter().cloned());
        used.extend(call.used.iter().cloned());
    }
    CallerReport {
        caller: caller.to_string(),
        calls: calls.len() as u64,
        retry_after_ignored,
        paging_urls_built,
        fast_polls,
        permissions_never_used: granted.difference(&used).cloned().collect(),
        permissions_used: used.into_iter().collect(),
        permissions_granted: granted.into_iter().collect(),
    }
}

/// The value of `name` in a query string, decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.into_owned())
}

/// The path and `$skip` of the `@odata.nextLink` in a response body.
fn next_link_skip(body: Option<&str>) -> Option<(String, String)> {
    let body: Value = serde_json::from_str(body?).ok()?;
    let link = url::Url::parse(body.get("@odata.nextLink")?.as_str()?).ok()?;
    let skip = query_value(link.query().unwrap_or(""), "$skip")?;
    Some((link.path().to_string(), skip))
}

/// The calls as a HAR 1.2 log (`origin`: the URL they came to, e.g.
/// `https://localhost:8443`). Request headers are not kept (a bearer token
/// is a secret); the response's `Retry-After` is.
pub fn har(calls: &[RecordedCall], origin: &str) -> Value {
    let entries: Vec<Value> = calls
        .iter()
        .map(|call| {
            let url = match call.query.as_str() {
                "" => format!("{origin}{}", call.path),
                query => format!("{origin}{}?{query}", call.path),
            };
            let query: Vec<Value> = url::form_urlencoded::parse(call.query.as_bytes())
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            let mut request = json!({
                "method": call.method,
                "url": url,
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": [],
                "queryString": query,
                "headersSize": -1,
                "bodySize": call.request_body.as_ref().map_or(0, |b| b.len()),
            });
            if let Some(body) = &call.request_body {
                request["postData"] = json!({"mimeType": "application/json", "text": body});
            }
            let mut headers = vec![json!({"name": "Content-Type", "value": "application/json"})];
            if let Some(seconds) = call.retry_after {
                headers.push(json!({"name": "Retry-After", "value": seconds.to_string()}));
            }
            let body = call.response_body.clone().unwrap_or_default();
            json!({
                "startedDateTime": call.time.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "time": call.latency_ms,
                "request": request,
                "response": {
                    "status": call.status,
                    "statusText": http_reason(call.status),
                    "httpVersion": "HTTP/1.1",
                    "cookies": [],
                    "headers": headers,
                    "content": {"size": body.len(), "mimeType": "application/json", "text": body},
                    "redirectURL": "",
                    "headersSize": -1,
                    "bodySize": body.len(),
                },
                "cache": {},
                "timings": {"send": 0, "wait": call.latency_ms, "receive": 0},
                "comment": format!("{} by {}", call.operation, call.caller),
            })
        })
        .collect();
    json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "Palisade", "version": env!("CARGO_PKG_VERSION")},
            "entries": entries,
        }
    })
}

fn http_reason(status: i64) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::Timestamp;

    fn call(at_ms: i64, operation: &str, path: &str, query: &str) -> RecordedCall {
        RecordedCall {
            tenant_id: "t".into(),
            id: at_ms.to_string(),
            time: Timestamp::from_ticks(at_ms * 10_000),
            caller: "app".into(),
            operation: operation.into(),
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            request_body: None,
            status: 200,
            response_body: None,
            latency_ms: 1,
            retry_after: None,
            granted: vec!["Machine.Read.All".into(), "Machine.Isolate".into()],
            used: vec!["Machine.Read.All".into()],
        }
    }

    #[test]
    fn the_report_counts_what_a_careless_client_does() {
        let mut throttled = call(0, "ListMachines", "/api/machines", "");
        throttled.status = 429;
        throttled.retry_after = Some(2);
        let mut paged = call(3000, "ListMachines", "/api/machines", "");
        paged.response_body =
            Some(r#"{"value":[],"@odata.nextLink":"https://h/api/machines?$skip=10000"}"#.into());
        let calls = vec![
            throttled,
            call(1000, "ListMachines", "/api/machines", ""),
            paged,
            call(3100, "ListMachines", "/api/machines", "$skip=10000"),
            call(3200, "ListMachines", "/api/machines", "%24skip=20000"),
            call(4000, "GetAction", "/api/machineactions/a", ""),
            call(4500, "GetAction", "/api/machineactions/a", ""),
            call(6000, "GetAction", "/api/machineactions/a", ""),
        ];
        let [report] = &report(&calls)[..] else {
            panic!("one caller")
        };
        assert_eq!(report.calls, 8);
        assert_eq!(report.retry_after_ignored, 1);
        assert_eq!(report.paging_urls_built, 1);
        assert_eq!(report.fast_polls, 1);
        assert_eq!(report.permissions_never_used, ["Machine.Isolate"]);
        let log = har(&calls, "https://localhost");
        assert_eq!(log["log"]["version"], "1.2");
        assert_eq!(
            log["log"]["entries"][3]["request"]["queryString"][0]["name"],
            "$skip"
        );
        assert_eq!(
            log["log"]["entries"][0]["response"]["headers"][1]["value"],
            "2"
        );
    }
}
