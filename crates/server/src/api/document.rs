//! The OpenAPI document `/openapi.json` serves. The handlers' annotations say
//! what each operation takes and answers when it succeeds; what every
//! operation shares is added here, once, so that an endpoint added later gets
//! it without repeating it:
//! - its operation id: the access table's name of it, PascalCase (`ListMachines`);
//! - the bearer scheme, which every operation needs;
//! - the errors that the gate, the extractors, the transport and the envelope
//!   answer in front of any handler, each with MDE's error body: 400, 401
//!   (with `WWW-Authenticate`), 403 (naming the permissions the access table
//!   asks), 404 (paths that name something), 413 and 415 (operations with a
//!   body), 414, 429 (with `Retry-After`), 431, 500 and 503;
//! - the limits of the OData query options (`$top` 1 to 10,000, ...);
//! - OData's shapes: a `body = [T]` answer is served as the collection
//!   `{@odata.context, @odata.count?, value, @odata.nextLink?}` of
//!   `http::odata::collection`, an entity with its `@odata.context` first.
//!
//! Built with utoipa's own types, on the document utoipa generated from the
//! annotations: nothing here is written by hand per endpoint.

use crate::http::auth::operation_table;
use crate::http::MAX_BODY_BYTES;
use axum::http::Method;
use palisade_contract::odata::MAX_TOP;
use palisade_contract::ErrorBody;
use palisade_domain::Operation;
use std::collections::BTreeMap;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation as Documented, Parameter, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{
    AllOfBuilder, ArrayItems, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The name of the security scheme every operation requires.
const BEARER: &str = "bearer";

/// Served but not published: methods MDE's docs named once and Palisade
/// tolerates. An operation is published once, under the method MDE documents
/// today, as an operation id must be unique.
const TOLERATED_ALIASES: &[(&str, Method)] = &[("/api/machines/{id}/tags", Method::PATCH)];

const ERROR_MEDIA_TYPE: &str = "application/json";

/// The document to publish: `generated` (utoipa's, from the annotations)
/// completed as the module comment says, each operation named as the gate's
/// table names it.
pub fn published(generated: &OpenApi) -> OpenApi {
    let table = operation_table(generated);
    let mut document = generated.clone();
    let mut schemas = BTreeMap::new();
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, slot) in methods(item) {
            if TOLERATED_ALIASES.contains(&(path.as_str(), method.clone())) {
                *slot = None;
            }
            let Some(documented) = slot else { continue };
            let &(_, operation) = table[path]
                .iter()
                .find(|(m, _)| *m == method)
                .expect("the table has every documented operation");
            complete(path, operation, documented, &mut schemas);
        }
    }
    let components = document.components.get_or_insert_with(Default::default);
    components.schemas.extend(schemas);
    let mut error_schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    ErrorBody::schemas(&mut error_schemas);
    components.schemas.extend(error_schemas);
    for (name, header) in headers() {
        components.headers.insert(name.into(), RefOr::T(header));
    }
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token for the audience https://api.securitycenter.microsoft.com, \
                     from Palisade's token service (POST /{tenant}/oauth2/v2.0/token, client \
                     credentials or password grant, as Entra ID's) or from a configured external \
                     issuer. The application permissions (`roles`) or delegated scopes (`scp`) it \
                     carries decide what it may call: each operation's 403 names them.",
                ))
                .build(),
        ),
    );
    document
}

fn methods(item: &mut PathItem) -> [(Method, &mut Option<Documented>); 5] {
    [
        (Method::GET, &mut item.get),
        (Method::POST, &mut item.post),
        (Method::PUT, &mut item.put),
        (Method::PATCH, &mut item.patch),
        (Method::DELETE, &mut item.delete),
    ]
}

fn complete(
    path: &str,
    operation: Operation,
    documented: &mut Documented,
    schemas: &mut BTreeMap<String, RefOr<Schema>>,
) {
    documented.operation_id = Some(operation.name().into());
    documented.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    for parameter in documented.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter {
            odata_option_limits(parameter);
        }
    }
    let responses = &mut documented.responses.responses;
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') {
            continue;
        }
        for content in response.content.values_mut() {
            if let RefOr::T(Content {
                schema: Some(schema),
                ..
            }) = content
            {
                *schema = served_shape(schema.clone(), schemas);
            }
        }
        if !response.content.is_empty() {
            response
                .headers
                .insert(ODATA_VERSION.into(), header_ref(ODATA_VERSION));
        }
        if response.description.is_empty() {
            response.description = "Done.".into();
        }
    }
    let takes_body = documented.request_body.is_some();
    for (status, description) in errors(operation, path, takes_body) {
        let response = responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::default()));
        let RefOr::T(response) = response else {
            continue;
        };
        // An annotation's own description says more than the standard one.
        if response.description.is_empty() {
            response.description = description;
        }
        response.content.clear();
        response.content.insert(
            ERROR_MEDIA_TYPE.into(),
            RefOr::T(Content::new(Some(Ref::from_schema_name(ErrorBody::name())))),
        );
        let named = match status {
            401 => Some(WWW_AUTHENTICATE),
            429 => Some(RETRY_AFTER),
            _ => None,
        };
        if let Some(name) = named {
            response.headers.insert(name.into(), header_ref(name));
        }
    }
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .insert(REQUEST_ID.into(), header_ref(REQUEST_ID));
        }
    }
}

/// The OData system query options are read by one parser
/// (`ODataQuery::parse`): their limits are described here, once, for every
/// operation that takes them.
fn odata_option_limits(parameter: &mut Parameter) {
    if parameter.parameter_in != ParameterIn::Query {
        return;
    }
    let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema else {
        return;
    };
    match parameter.name.as_str() {
        "$top" => {
            schema.minimum = Some(1.into());
            schema.maximum = Some(MAX_TOP.into());
        }
        "$skip" => schema.minimum = Some(0.into()),
        "$filter" | "$orderby" | "$select" => schema.min_length = Some(1),
        _ => {}
    }
}

const REQUEST_ID: &str = "request-id";
const ODATA_VERSION: &str = "OData-Version";
const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
const RETRY_AFTER: &str = "Retry-After";

/// The response headers the document names, described once in its components.
fn headers() -> [(&'static str, Header); 4] {
    let text = |description: &str| HeaderBuilder::new().description(Some(description)).build();
    [
        (
            REQUEST_ID,
            text("This request's id: the error body's `target`, and in the server's log line."),
        ),
        (ODATA_VERSION, text("`4.0`")),
        (
            WWW_AUTHENTICATE,
            text("`Bearer`; with `error=\"invalid_token\"` and why, when a token was sent (RFC 6750 §3)."),
        ),
        (
            RETRY_AFTER,
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                ))
                .description(Some("Seconds until the call would be admitted."))
                .build(),
        ),
    ]
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// Every error `operation` on `path` can answer, with why.
fn errors(operation: Operation, path: &str, takes_body: bool) -> Vec<(u16, String)> {
    let mut errors = vec![
        (400, "The request is malformed, or a parameter, an OData option or the body is invalid: the error's `code` and `message` say which.".to_string()),
        (401, "No bearer token, or one that is not good here (expired, not yet valid, wrong audience or issuer, unknown tenant or signing key).".to_string()),
        (403, forbidden(operation)),
        (414, "The request URI is too long.".to_string()),
        (429, "Over the caller's rate limit for this operation in this tenant (per app or user, a minute and an hour).".to_string()),
        (431, "The request's header fields are too large.".to_string()),
        (500, "The server failed; retry, and quote the `target` if it persists.".to_string()),
        (503, "The store is unavailable; retry shortly.".to_string()),
    ];
    if path.contains('{') {
        errors.push((
            404,
            "Not found, or not for this caller (outside the retention period or the caller's device groups)."
                .into(),
        ));
    }
    if takes_body {
        errors.push((
            413,
            format!("The body is larger than {MAX_BODY_BYTES} bytes."),
        ));
        errors.push((415, "The body is not sent as `application/json`.".into()));
    }
    errors
}

/// The 403 of `operation`, naming what the access table asks for it.
fn forbidden(operation: Operation) -> String {
    let requirement = operation.requirement();
    let any = |names: Vec<&str>| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    format!(
        "The caller may not call {}: an application needs the permission {}; a user needs the \
         delegated scope {} and the role {} (or Global administrator).",
        operation.name(),
        any(requirement.app.iter().map(|p| p.as_str()).collect()),
        any(requirement.delegated.iter().map(|p| p.as_str()).collect()),
        any(requirement.roles.iter().map(|r| r.as_str()).collect()),
    )
}

/// What a success answer is on the wire, given what its annotation says:
/// `[T]` becomes the OData collection of `T` (a component `TCollection`), an
/// entity `T` gets its `@odata.context` first.
fn served_shape(
    annotated: RefOr<Schema>,
    schemas: &mut BTreeMap<String, RefOr<Schema>>,
) -> RefOr<Schema> {
    match annotated {
        RefOr::T(Schema::Array(array)) => {
            let ArrayItems::RefOrSchema(items) = &array.items else {
                return RefOr::T(Schema::Array(array));
            };
            let RefOr::Ref(item) = items.as_ref() else {
                return RefOr::T(Schema::Array(array));
            };
            let item_name = item.ref_location.rsplit('/').next().unwrap_or_default();
            let name = format!("{item_name}Collection");
            let collection = ObjectBuilder::new()
                .description(Some(format!(
                    "An OData collection of {item_name}: `@odata.count` with `$count=true`, \
                     `@odata.nextLink` when more pages follow (only without `$top`)."
                )))
                .property("@odata.context", context())
                .required("@odata.context")
                .property(
                    "@odata.count",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .property("value", array)
                .required("value")
                .property(
                    "@odata.nextLink",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::Custom("uri".into())))
                        .description(Some("The next page: this request with `$skip` moved on.")),
                );
            schemas.insert(name.clone(), RefOr::T(Schema::Object(collection.build())));
            RefOr::Ref(Ref::from_schema_name(name))
        }
        RefOr::Ref(entity) => {
            let with_context = ObjectBuilder::new()
                .property("@odata.context", context())
                .required("@odata.context");
            RefOr::T(Schema::AllOf(
                AllOfBuilder::new()
                    .item(with_context)
                    .item(RefOr::Ref(entity))
                    .build(),
            ))
        }
        other => other,
    }
}

fn context() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uri".into())))
        .description(Some(
            "`{origin}/api/$metadata#{EntitySet}`, `/$entity` after it for one entity.",
        ))
}
