//! OData JSON responses: `@odata.context`, collections with `value`, paging
//! links, `$count` and `$select`, with the headers MDE sends.

use super::error::ApiError;
use super::extract::RequestBase;
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_contract::odata::ODataQuery;
use palisade_contract::{ErrorCode, MdeError};
use palisade_domain::query::PAGE_SIZE;
use palisade_domain::store::Page;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

const ODATA_CONTENT_TYPE: &str =
    "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

/// An entity set of the API: its name in `@odata.context`.
pub trait EntitySet: Serialize {
    const SET: &'static str;
}

impl EntitySet for palisade_contract::Machine {
    const SET: &'static str = "Machines";
}

impl EntitySet for palisade_contract::SerializedMachine {
    const SET: &'static str = "Machines";
}

impl EntitySet for palisade_contract::MachineAction {
    const SET: &'static str = "MachineActions";
}

impl EntitySet for palisade_contract::live_response::LibraryFile {
    const SET: &'static str = "LibraryFiles";
}

impl EntitySet for palisade_contract::inventory::Software {
    const SET: &'static str = "Software";
}

impl EntitySet for palisade_contract::inventory::LogonUser {
    const SET: &'static str = "Users";
}

impl EntitySet for palisade_contract::Alert {
    const SET: &'static str = "Alerts";
}

impl EntitySet for palisade_contract::Indicator {
    const SET: &'static str = "Indicators";
}

/// The answer of an indicator import, as MDE names it (clients compare it).
impl EntitySet for palisade_contract::indicator::ImportResult {
    const SET: &'static str = "Collection(microsoft.windowsDefenderATP.api.ImportIndicatorResult)";
}

impl EntitySet for palisade_domain::identity::AuditEntry {
    const SET: &'static str = "AuditLog";
}

fn odata_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(ODATA_CONTENT_TYPE));
    headers.insert("OData-Version", HeaderValue::from_static("4.0"));
    response
}

/// One entity: `{"@odata.context": ".../$metadata#Machines/$entity", ...}`.
pub struct Entity<T> {
    status: StatusCode,
    context: String,
    entity: T,
}

impl<T: EntitySet> Entity<T> {
    pub fn ok(base: &RequestBase, entity: T) -> Self {
        Self::with_status(StatusCode::OK, base, entity)
    }

    pub fn created(base: &RequestBase, entity: T) -> Self {
        Self::with_status(StatusCode::CREATED, base, entity)
    }

    fn with_status(status: StatusCode, base: &RequestBase, entity: T) -> Self {
        Entity {
            status,
            context: format!("{}/api/$metadata#{}/$entity", base.origin, T::SET),
            entity,
        }
    }
}

impl<T: Serialize> IntoResponse for Entity<T> {
    fn into_response(self) -> Response {
        // The context first, then the entity's own properties in their order:
        // splice the entity's JSON object after a leading context member.
        let entity = match serde_json::to_vec(&self.entity) {
            Ok(bytes) => bytes,
            Err(e) => return ApiError(MdeError::internal(e.to_string())).into_response(),
        };
        let mut body = Vec::with_capacity(entity.len() + self.context.len() + 24);
        body.extend_from_slice(b"{\"@odata.context\":");
        body.extend_from_slice(&serde_json::to_vec(&self.context).unwrap_or_default());
        if entity.len() > 2 {
            body.push(b',');
        }
        body.extend_from_slice(&entity[1..]);
        odata_response(self.status, body)
    }
}

/// A collection: `{"@odata.context", ["@odata.count",] "value", ["@odata.nextLink"]}`.
#[derive(Serialize)]
pub struct Collection<T> {
    #[serde(rename = "@odata.context")]
    context: String,
    #[serde(rename = "@odata.count", skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

/// The property names of an entity, from its schema (so `$select` knows them).
fn property_names<T: utoipa::ToSchema>() -> Vec<String> {
    match T::schema() {
        RefOr::T(Schema::Object(object)) => object.properties.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The properties a `$select` asked for, by their wire names; checked before
/// the query runs, so that a wrong name costs no scan.
pub struct Selection(Option<Vec<String>>);

impl Selection {
    pub fn resolve<T: EntitySet + utoipa::ToSchema>(
        query: &ODataQuery,
    ) -> Result<Selection, MdeError> {
        let Some(names) = &query.select else {
            return Ok(Selection(None));
        };
        let known = property_names::<T>();
        let chosen = names
            .iter()
            .map(|name| {
                known
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(name))
                    .cloned()
                    .ok_or_else(|| {
                        MdeError::new(
                            ErrorCode::ODataError,
                            format!(
                                "Could not find a property named '{name}' on type {}.",
                                T::SET
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Selection(Some(chosen)))
    }

    /// Keeps only the selected properties of each item.
    fn project<T: Serialize>(chosen: &[String], items: Vec<T>) -> Result<Vec<Value>, MdeError> {
        items
            .into_iter()
            .map(|item| {
                let Value::Object(mut all) =
                    serde_json::to_value(item).map_err(|e| MdeError::internal(e.to_string()))?
                else {
                    return Err(MdeError::internal("an entity is not a JSON object"));
                };
                let picked: Map<String, Value> =
                    chosen.iter().filter_map(|k| all.remove_entry(k)).collect();
                Ok(Value::Object(picked))
            })
            .collect()
    }
}

/// Where the next page begins.
pub enum Resume {
    /// At an offset: `$skip`, as MDE's own next links.
    Skip,
    /// After the last item read: a `$skiptoken` the entity made.
    Token(String),
}

/// `base`'s URL with `resume` (`$skip=` or `$skiptoken=`) in place of the
/// paging options it had (the others kept as sent).
fn next_link(base: &RequestBase, resume: &str) -> String {
    let paging = ["$skip", "%24skip", "$skiptoken", "%24skiptoken"];
    let mut options: Vec<&str> = base
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !paging
                .iter()
                .any(|option| name.eq_ignore_ascii_case(option))
        })
        .collect();
    options.push(resume);
    format!("{}{}?{}", base.origin, base.path, options.join("&"))
}

pub fn collection<T: EntitySet>(
    base: &RequestBase,
    query: &ODataQuery,
    selection: Selection,
    page: Page<T>,
) -> Result<Response, ApiError> {
    collection_resuming(base, query, selection, page, Resume::Skip)
}

/// A collection whose next link resumes as `resume` says.
pub fn collection_resuming<T: EntitySet>(
    base: &RequestBase,
    query: &ODataQuery,
    selection: Selection,
    page: Page<T>,
    resume: Resume,
) -> Result<Response, ApiError> {
    let context = format!("{}/api/$metadata#{}", base.origin, T::SET);
    // As MDE: a nextLink only when the client did not choose the page size.
    let next = (query.top.is_none() && page.more).then(|| match &resume {
        Resume::Skip => {
            let skip = query.skip.unwrap_or(0) + page.items.len() as u64;
            next_link(base, &format!("$skip={skip}"))
        }
        // Read on from the token, not from the offset the client began at.
        Resume::Token(token) => next_link(base, &format!("$skiptoken={token}")),
    });
    let body = match &selection.0 {
        Some(chosen) => serde_json::to_vec(&Collection {
            context,
            count: page.count,
            value: Selection::project(chosen, page.items)?,
            next_link: next,
        }),
        None => serde_json::to_vec(&Collection {
            context,
            count: page.count,
            value: page.items,
            next_link: next,
        }),
    }
    .map_err(|e| MdeError::internal(e.to_string()))?;
    let mut response = odata_response(StatusCode::OK, body);
    if let (Some(size), None) = (query.max_page_size, query.top) {
        let applied = format!("odata.maxpagesize={}", size.min(PAGE_SIZE));
        if let Ok(value) = HeaderValue::from_str(&applied) {
            response.headers_mut().insert("Preference-Applied", value);
        }
    }
    Ok(response)
}

/// A plain list (e.g. `findbytag`, bulk tagging) as an unpaged collection.
pub fn list<T: EntitySet>(base: &RequestBase, items: Vec<T>) -> Result<Response, ApiError> {
    collection(
        base,
        &ODataQuery::default(),
        Selection(None),
        Page {
            items,
            count: None,
            more: false,
        },
    )
}
