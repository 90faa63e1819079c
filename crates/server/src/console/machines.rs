//! The console's machines: the table (filtered, sorted and paged by the
//! MDE API's OData, so that it stays fast over any fleet), bulk tags and
//! isolation, a machine's page with its tags, isolation, device and
//! actions (refreshed live), and the machine actions of the tenant.

use super::{console_page, field, problem, redirect, Console, Section, Signed, SignedForm};
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use palisade_contract::{HealthStatus, OsPlatform, RiskScore, Timestamp};
use palisade_domain::Operation;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use strum::VariantArray;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/machines", get(table))
        .route("/console/machines/bulk", post(bulk))
        .route("/console/machines/{id}", get(machine))
        .route("/console/machines/{id}/timeline", get(timeline))
        .route("/console/machines/{id}/tags", post(tag))
        .route("/console/machines/{id}/{action}", get(confirm).post(act))
        .route("/console/actions", get(actions))
        .route("/console/actions/live", get(actions_live))
}

/// How many machines a page of the table shows.
const PAGE_SIZE: u32 = 50;

/// The machine actions the console offers: path segment (the API's), label, operation.
const ACTIONS: &[(&str, &str, Operation)] = &[
    ("isolate", "Isolate", Operation::Isolate),
    ("unisolate", "Release from isolation", Operation::Unisolate),
    (
        "runAntiVirusScan",
        "Run antivirus scan",
        Operation::RunAntivirusScan,
    ),
    (
        "collectInvestigationPackage",
        "Collect investigation package",
        Operation::CollectInvestigationPackage,
    ),
    (
        "StopAndQuarantineFile",
        "Stop and quarantine file",
        Operation::StopAndQuarantineFile,
    ),
    (
        "restrictCodeExecution",
        "Restrict app execution",
        Operation::RestrictCodeExecution,
    ),
    (
        "unrestrictCodeExecution",
        "Remove app restriction",
        Operation::UnrestrictCodeExecution,
    ),
    ("offboard", "Offboard", Operation::Offboard),
];

/// An OData string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn encode(pairs: &[(&str, String)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    query.finish()
}

/// The table's filters, as its form sends them.
fn filter_of(query: &BTreeMap<String, String>, now: Timestamp) -> Vec<String> {
    let get = |name: &str| query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut clauses = Vec::new();
    if let Some(name) = get("name") {
        clauses.push(format!("startswith(computerDnsName,{})", literal(name)));
    }
    if let Some(os) = get("os").filter(|v| OsPlatform::VARIANTS.iter().any(|o| o.as_str() == *v)) {
        clauses.push(format!("osPlatform eq {}", literal(os)));
    }
    if let Some(health) =
        get("health").filter(|v| HealthStatus::VARIANTS.iter().any(|o| o.as_str() == *v))
    {
        clauses.push(format!("healthStatus eq {}", literal(health)));
    }
    if let Some(risk) = get("risk").filter(|v| RiskScore::VARIANTS.iter().any(|o| o.as_str() == *v))
    {
        clauses.push(format!("riskScore eq {}", literal(risk)));
    }
    if let Some(tag) = get("tag") {
        clauses.push(format!("machineTags/any(t: t eq {})", literal(tag)));
    }
    if let Some(group) = get("group").and_then(|g| g.parse::<i64>().ok()) {
        clauses.push(format!("rbacGroupId eq {group}"));
    }
    let days = |d: i64| now.minus_days(d as u32).to_string();
    match get("seen") {
        Some("1") => clauses.push(format!("lastSeen ge {}", days(1))),
        Some("7") => clauses.push(format!("lastSeen ge {}", days(7))),
        Some("30") => clauses.push(format!("lastSeen ge {}", days(30))),
        Some("stale") => clauses.push(format!("lastSeen lt {}", days(7))),
        _ => {}
    }
    clauses
}

const SORTS: &[(&str, &str)] = &[
    ("name", "computerDnsName"),
    ("os", "osPlatform"),
    ("health", "healthStatus"),
    ("risk", "riskScore"),
    ("lastSeen", "lastSeen"),
];

fn select(
    name: &str,
    label: &str,
    options: &[(String, String)],
    chosen: Option<&String>,
) -> Markup {
    html! {
        label { (label) " "
            select name=(name) {
                option value="" { "Any" }
                @for (value, text) in options {
                    option value=(value) selected[chosen == Some(value)] { (text) }
                }
            }
        }
    }
}

fn named(values: &[&'static str]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (v.to_string(), v.to_string()))
        .collect()
}

async fn table(
    State(console): State<Console>,
    Query(query): Query<BTreeMap<String, String>>,
    signed: Signed,
) -> Response {
    let now = console.app.palisade.now_in(&signed.caller.tenant.id);
    let clauses = filter_of(&query, now);
    let sort = query.get("sort").map(String::as_str).unwrap_or("name");
    let column = SORTS
        .iter()
        .find(|(s, _)| *s == sort)
        .map(|(_, c)| *c)
        .unwrap_or("computerDnsName");
    let descending = query.get("dir").is_some_and(|d| d == "desc");
    let page: u32 = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let mut pairs = vec![
        ("$top", PAGE_SIZE.to_string()),
        ("$skip", ((page - 1) * PAGE_SIZE).to_string()),
        ("$count", "true".into()),
        ("$orderby", format!("{column} {}", if descending { "desc" } else { "asc" })),
        ("$select", "id,computerDnsName,osPlatform,healthStatus,riskScore,machineTags,rbacGroupName,lastSeen".into()),
    ];
    if !clauses.is_empty() {
        pairs.push(("$filter", clauses.join(" and ")));
    }
    let answer = console
        .api(
            &signed,
            Method::GET,
            &format!("/api/machines?{}", encode(&pairs)),
            None,
        )
        .await;
    let groups = console
        .app
        .palisade
        .store()
        .device_groups(&signed.caller.tenant.id)
        .await
        .unwrap_or_default();
    let groups: Vec<(String, String)> = groups
        .iter()
        .map(|g| (g.id.to_string(), g.name.clone()))
        .collect();
    let kept: Vec<(&str, String)> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "sort" && k.as_str() != "dir")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let link = |changes: &[(&'static str, String)]| {
        let mut all = kept.clone();
        all.extend(changes.iter().cloned());
        format!("/console/machines?{}", encode(&all))
    };
    let (machines, total, error) = match &answer {
        Ok(body) => (
            body["value"].as_array().cloned().unwrap_or_default(),
            body["@odata.count"].as_u64().unwrap_or(0),
            None,
        ),
        Err((_, message)) => (Vec::new(), 0, Some(message.clone())),
    };
    let first = (page - 1) * PAGE_SIZE;
    let may_tag = signed.may(Operation::TagMachines);
    let may_isolate = signed.may(Operation::Isolate);
    let body = html! {
        form.filters method="get" action="/console/machines" role="search" aria-label="Filter machines" {
            label { "Name starts with " input type="search" name="name" value=[query.get("name")]; }
            (select("os", "OS", &named(&OsPlatform::VARIANTS.iter().map(|o| o.as_str()).collect::<Vec<_>>()), query.get("os")))
            (select("health", "Health", &named(&HealthStatus::VARIANTS.iter().map(|o| o.as_str()).collect::<Vec<_>>()), query.get("health")))
            (select("risk", "Risk", &named(&RiskScore::VARIANTS.iter().map(|o| o.as_str()).collect::<Vec<_>>()), query.get("risk")))
            label { "Tag " input type="text" name="tag" value=[query.get("tag")]; }
            (select("group", "Device group", &groups, query.get("group")))
            (select("seen", "Last seen", &[("1".into(), "Within a day".into()), ("7".into(), "Within 7 days".into()), ("30".into(), "Within 30 days".into()), ("stale".into(), "Not for 7 days".into())], query.get("seen")))
            button type="submit" { "Filter" }
            a href="/console/machines" { "Clear" }
        }
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        p #machine-count role="status" {
            @if total == 0 { "No machines match." } @else { "Machines " (first + 1) "–" (first as u64 + machines.len() as u64) " of " (total) }
        }
        form method="post" action="/console/machines/bulk" {
            input type="hidden" name="csrf_token" value=(signed.session.csrf_token);
            @if may_tag || may_isolate {
                fieldset.bulk {
                    legend { "With the selected machines" }
                    label { "Action "
                        select name="action" {
                            @if may_tag { option value="tag" { "Add tag" } option value="untag" { "Remove tag" } }
                            @if may_isolate { option value="isolate" { "Isolate" } option value="unisolate" { "Release from isolation" } }
                        }
                    }
                    label { "Tag " input type="text" name="value"; }
                    label { "Comment " input type="text" name="comment"; }
                    button type="submit" { "Apply to selected" }
                }
            }
            table #machines {
                caption.visually-hidden { "Machines" }
                thead { tr {
                    th scope="col" { input type="checkbox" #select-all aria-label="Select all machines on this page"; }
                    @for (key, label) in [("name", "Name"), ("os", "OS"), ("health", "Health"), ("risk", "Risk")] {
                        th scope="col" aria-sort=[(sort == key).then_some(if descending { "descending" } else { "ascending" })] {
                            a href=(link(&[("sort", key.into()), ("dir", if sort == key && !descending { "desc".into() } else { "asc".into() })])) { (label) }
                        }
                    }
                    th scope="col" { "Tags" }
                    th scope="col" { "Device group" }
                    th scope="col" aria-sort=[(sort == "lastSeen").then_some(if descending { "descending" } else { "ascending" })] {
                        a href=(link(&[("sort", "lastSeen".into()), ("dir", if sort == "lastSeen" && !descending { "desc".into() } else { "asc".into() })])) { "Last seen" }
                    }
                } }
                tbody {
                    @for m in &machines {
                        @let name = m["computerDnsName"].as_str().unwrap_or("");
                        @let id = m["id"].as_str().unwrap_or("");
                        tr {
                            td { input type="checkbox" name="machine" value=(id) aria-label={ "Select " (name) }; }
                            td { a href={ "/console/machines/" (id) } { (name) } }
                            td { (m["osPlatform"].as_str().unwrap_or("")) }
                            td { (m["healthStatus"].as_str().unwrap_or("")) }
                            td { (m["riskScore"].as_str().unwrap_or("")) }
                            td.tags { @for t in m["machineTags"].as_array().into_iter().flatten() { span.tag { (t.as_str().unwrap_or("")) } " " } }
                            td { (m["rbacGroupName"].as_str().unwrap_or("")) }
                            td { (m["lastSeen"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if page > 1 { a rel="prev" href=(link(&[("sort", sort.into()), ("dir", if descending { "desc".into() } else { "asc".into() }), ("page", (page - 1).to_string())])) { "Previous page" } }
            @if (first as u64 + machines.len() as u64) < total { a rel="next" href=(link(&[("sort", sort.into()), ("dir", if descending { "desc".into() } else { "asc".into() }), ("page", (page + 1).to_string())])) { "Next page" } }
        }
    };
    console_page(&signed, Section::Machines, "Machines", body)
}

/// Bulk tags (one API call) and isolation (one a machine), after a confirmation page.
async fn bulk(
    State(console): State<Console>,
    SignedForm { signed, fields }: SignedForm,
) -> Response {
    let ids: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n == "machine")
        .map(|(_, v)| v.clone())
        .collect();
    let action = field(&fields, "action").unwrap_or("");
    let value = field(&fields, "value").unwrap_or("").trim().to_string();
    let comment = field(&fields, "comment").unwrap_or("").trim().to_string();
    let label = match action {
        "tag" => format!("Add the tag \u{201c}{value}\u{201d}"),
        "untag" => format!("Remove the tag \u{201c}{value}\u{201d}"),
        "isolate" => "Isolate".into(),
        "unisolate" => "Release from isolation".into(),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Choose an action for the selected machines.",
            )
        }
    };
    if ids.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Select at least one machine.");
    }
    if field(&fields, "confirmed") != Some("yes") {
        let body = html! {
            p { (label) " on " (ids.len()) " machine(s)?" }
            form method="post" action="/console/machines/bulk" {
                input type="hidden" name="csrf_token" value=(signed.session.csrf_token);
                input type="hidden" name="action" value=(action);
                input type="hidden" name="value" value=(value);
                input type="hidden" name="confirmed" value="yes";
                @for id in &ids { input type="hidden" name="machine" value=(id); }
                label { "Comment " input type="text" name="comment" value=(comment) required[action.contains("isolate")]; }
                button type="submit" { "Confirm: " (label) }
                " " a href="/console/machines" { "Cancel" }
            }
        };
        return console_page(&signed, Section::Machines, "Confirm", body);
    }
    let mut results: Vec<(String, Result<String, String>)> = Vec::new();
    match action {
        "tag" | "untag" => {
            let body = json!({"Value": value, "Action": if action == "tag" { "Add" } else { "Remove" }, "MachineIds": ids});
            let answer = console
                .api(
                    &signed,
                    Method::POST,
                    "/api/machines/AddOrRemoveTagForMultipleMachines",
                    Some(body),
                )
                .await;
            let outcome = answer.map(|_| "Done".to_string()).map_err(|(_, m)| m);
            results.push((format!("{} machine(s)", ids.len()), outcome));
        }
        _ => {
            for id in &ids {
                let body = if action == "isolate" {
                    json!({"Comment": comment, "IsolationType": "Full"})
                } else {
                    json!({"Comment": comment})
                };
                let answer = console
                    .api(
                        &signed,
                        Method::POST,
                        &format!("/api/machines/{id}/{action}"),
                        Some(body),
                    )
                    .await;
                let outcome = answer
                    .map(|a| a["id"].as_str().unwrap_or("").to_string())
                    .map_err(|(_, m)| m);
                results.push((id.clone(), outcome));
            }
        }
    }
    let body = html! {
        table #results {
            thead { tr { th scope="col" { "Machine" } th scope="col" { "Outcome" } } }
            tbody { @for (what, outcome) in &results {
                tr {
                    td { @if action.contains("isolate") { a href={ "/console/machines/" (what) } { (what) } } @else { (what) } }
                    @match outcome {
                        Ok(done) => td { (label) ": " (done) },
                        Err(message) => td.error { (message) },
                    }
                }
            } }
        }
        p { a href="/console/machines" { "Back to the machines" } }
    };
    console_page(&signed, Section::Machines, "Done", body)
}

fn actions_table(actions: &[Value], with_machine: bool) -> Markup {
    html! {
        table.actions {
            thead { tr {
                th scope="col" { "Created" }
                th scope="col" { "Action" }
                @if with_machine { th scope="col" { "Machine" } }
                th scope="col" { "Status" }
                th scope="col" { "By" }
                th scope="col" { "Comment" }
            } }
            tbody {
                @for a in actions {
                    @let status = a["status"].as_str().unwrap_or("");
                    tr data-action=(a["id"].as_str().unwrap_or("")) {
                        td { (a["creationDateTimeUtc"].as_str().unwrap_or("")) }
                        td { (a["type"].as_str().unwrap_or("")) }
                        @if with_machine { td { a href={ "/console/machines/" (a["machineId"].as_str().unwrap_or("")) } { (a["computerDnsName"].as_str().unwrap_or("")) } } }
                        td.status { span class={ "status " (status.to_lowercase()) } { (status) } }
                        td { (a["requestor"].as_str().unwrap_or("")) }
                        td { (a["requestorComment"].as_str().unwrap_or("")) }
                    }
                }
            }
        }
        @if actions.is_empty() { p { "No actions yet." } }
    }
}

/// A property as a person reads it: text as is, nothing as a dash.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "\u{2014}".into(),
        other => other.to_string(),
    }
}

/// The newest actions (of one machine, or of the tenant with their machines) as a table.
async fn action_list(console: &Console, signed: &Signed, machine_id: Option<&str>) -> Markup {
    let mut query = vec![("$orderby", "creationDateTimeUtc desc".to_string())];
    match machine_id {
        Some(id) => {
            query.push(("$filter", format!("machineId eq {}", literal(id))));
            query.push(("$top", "25".into()));
        }
        None => query.push(("$top", "50".into())),
    }
    let uri = format!("/api/machineactions?{}", encode(&query));
    match console.api(signed, Method::GET, &uri, None).await {
        Ok(body) => {
            let actions = body["value"].as_array().map(Vec::as_slice);
            actions_table(actions.unwrap_or_default(), machine_id.is_none())
        }
        Err((_, message)) => html! { p.error role="alert" { (message) } },
    }
}

async fn machine(
    State(console): State<Console>,
    Path(id): Path<String>,
    signed: Signed,
) -> Response {
    let m = match console
        .api(&signed, Method::GET, &format!("/api/machines/{id}"), None)
        .await
    {
        Ok(m) => m,
        Err((status, message)) => return problem(status, &message),
    };
    let device = console
        .app
        .palisade
        .store()
        .device_of_machine(&signed.caller.tenant.id, &id)
        .await
        .ok()
        .flatten();
    let name = m["computerDnsName"].as_str().unwrap_or(&id).to_string();
    let properties = [
        "id",
        "computerDnsName",
        "osPlatform",
        "osVersion",
        "healthStatus",
        "riskScore",
        "exposureLevel",
        "deviceValue",
        "rbacGroupName",
        "lastIpAddress",
        "lastExternalIpAddress",
        "agentVersion",
        "onboardingStatus",
        "firstSeen",
        "lastSeen",
    ];
    let may_tag = signed.may(Operation::TagMachine);
    let timeline = action_list(&console, &signed, Some(&id)).await;
    let body = html! {
        section aria-labelledby="properties" {
            h2 #properties { "Properties" }
            dl.properties { @for p in properties { dt { (p) } dd { (shown(&m[p])) } } }
        }
        section aria-labelledby="device" {
            h2 #device { "Device" }
            @match &device {
                Some(d) => dl.properties {
                    dt { "Connection" } dd #connection { @if d.is_enrolled() { "Enrolled (palisade-agent), last seen " (m["lastSeen"].as_str().unwrap_or("")) } @else { "Offboarded" } }
                    dt { "Isolation in force" } dd #isolation { (format!("{:?}", d.isolation)) }
                    dt { "Enrolled" } dd { (d.enrolled_at.to_string()) }
                },
                None => p #connection { "No device is enrolled as this machine: the emulator answers for it." },
            }
        }
        section aria-labelledby="tags" {
            h2 #tags { "Tags" }
            ul.tags { @for t in m["machineTags"].as_array().into_iter().flatten() {
                @let t = t.as_str().unwrap_or("");
                li { span.tag { (t) }
                    @if may_tag {
                        form.inline method="post" action={ "/console/machines/" (id) "/tags" } {
                            input type="hidden" name="csrf_token" value=(signed.session.csrf_token);
                            input type="hidden" name="action" value="Remove";
                            input type="hidden" name="value" value=(t);
                            button type="submit" aria-label={ "Remove tag " (t) } { "Remove" }
                        }
                    }
                }
            } }
            @if may_tag {
                form method="post" action={ "/console/machines/" (id) "/tags" } {
                    input type="hidden" name="csrf_token" value=(signed.session.csrf_token);
                    input type="hidden" name="action" value="Add";
                    label { "New tag " input #new-tag type="text" name="value" required maxlength="200"; }
                    button type="submit" { "Add tag" }
                }
            }
        }
        section aria-labelledby="respond" {
            h2 #respond { "Response actions" }
            ul.buttons { @for (path, label, operation) in ACTIONS { @if signed.may(*operation) {
                li { a.button href={ "/console/machines/" (id) "/" (path) } { (label) } }
            } } }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { "Actions" }
            div #machine-actions data-refresh={ "/console/machines/" (id) "/timeline" } aria-live="polite" { (timeline) }
        }
    };
    console_page(&signed, Section::Machines, &name, body)
}

/// The machine's actions alone: what its page refreshes every few seconds.
async fn timeline(
    State(console): State<Console>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let signed = match console.signed(request.uri(), request.headers()).await {
        Ok(signed) => signed,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    fragment(action_list(&console, &signed, Some(&id)).await)
}

fn fragment(markup: Markup) -> Response {
    let mut response = markup.into_response();
    crate::http::page::harden(response.headers_mut(), false, "'none'");
    response
}

async fn tag(
    State(console): State<Console>,
    Path(id): Path<String>,
    SignedForm { signed, fields }: SignedForm,
) -> Response {
    let body = json!({"Value": field(&fields, "value").unwrap_or("").trim(), "Action": field(&fields, "action").unwrap_or("")});
    match console
        .api(
            &signed,
            Method::POST,
            &format!("/api/machines/{id}/tags"),
            Some(body),
        )
        .await
    {
        Ok(_) => redirect(&format!("/console/machines/{id}")),
        Err((status, message)) => problem(status, &message),
    }
}

fn action_of(path: &str) -> Option<&'static (&'static str, &'static str, Operation)> {
    ACTIONS.iter().find(|(p, _, _)| *p == path)
}

/// An action's confirmation: what it does, a comment, and its options.
async fn confirm(Path((id, path)): Path<(String, String)>, signed: Signed) -> Response {
    let Some((path, label, _)) = action_of(&path) else {
        return problem(StatusCode::NOT_FOUND, "There is no such page.");
    };
    let body = html! {
        form method="post" action={ "/console/machines/" (id) "/" (path) } {
            input type="hidden" name="csrf_token" value=(signed.session.csrf_token);
            p { (label) " machine " code { (id) } "?" }
            @if *path == "isolate" {
                label { "Isolation type " select name="IsolationType" { option value="Full" { "Full" } option value="Selective" { "Selective" } } }
            }
            @if *path == "runAntiVirusScan" {
                label { "Scan type " select name="ScanType" { option value="Quick" { "Quick" } option value="Full" { "Full" } } }
            }
            @if *path == "StopAndQuarantineFile" {
                label { "SHA-1 of the file " input type="text" name="Sha1" required pattern="[0-9a-fA-F]{40}"; }
            }
            label { "Comment " input #comment type="text" name="Comment" required autofocus; }
            button type="submit" { "Confirm: " (label) }
            " " a href={ "/console/machines/" (id) } { "Cancel" }
        }
    };
    console_page(&signed, Section::Machines, label, body)
}

async fn act(
    State(console): State<Console>,
    Path((id, path)): Path<(String, String)>,
    SignedForm { signed, fields }: SignedForm,
) -> Response {
    let Some((path, _, _)) = action_of(&path) else {
        return problem(StatusCode::NOT_FOUND, "There is no such action.");
    };
    let mut body = serde_json::Map::new();
    for name in ["Comment", "IsolationType", "ScanType", "Sha1"] {
        if let Some(value) = field(&fields, name) {
            body.insert(name.into(), Value::String(value.trim().into()));
        }
    }
    match console
        .api(
            &signed,
            Method::POST,
            &format!("/api/machines/{id}/{path}"),
            Some(Value::Object(body)),
        )
        .await
    {
        Ok(_) => redirect(&format!("/console/machines/{id}#timeline")),
        Err((status, message)) => problem(status, &message),
    }
}

async fn actions(State(console): State<Console>, signed: Signed) -> Response {
    let list = action_list(&console, &signed, None).await;
    let body = html! { div #all-actions data-refresh="/console/actions/live" aria-live="polite" { (list) } };
    console_page(&signed, Section::Actions, "Machine actions", body)
}

async fn actions_live(State(console): State<Console>, request: Request) -> Response {
    let signed = match console.signed(request.uri(), request.headers()).await {
        Ok(signed) => signed,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    fragment(action_list(&console, &signed, None).await)
}
