//! The gate every API request passes: who is calling (bearer token), may they
//! (the operation's permission, scope and role), are they within their rate
//! limit, and, for changes, an audit entry of what happened.
//!
//! Which operation a request is comes from the OpenAPI document: each
//! operation id names an [`Operation`], whose requirement is the one table of
//! permissions (`palisade_domain::access`).

use super::envelope::RequestId;
use super::error::{too_many_requests, ApiError};
use super::extract::origin;
use crate::app::AppState;
use crate::control::recorder::Recording;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_contract::{ErrorCode, MdeError, Permission};
use palisade_domain::identity::User;
use palisade_domain::identity::{AuditEntry, RequestAudit};
use palisade_domain::rate_limit::{RateKey, RateScope};
use palisade_domain::{Caller, DeviceGroupAccess, Operation, Principal, Role, Tenant};
use palisade_identity::{bearer_token, TokenError, Verified};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use utoipa::openapi::OpenApi;

/// Route template → (method, operation), read off the OpenAPI document.
pub type OperationTable = Arc<HashMap<String, Vec<(Method, Operation)>>>;

/// Builds the table; a route whose operation id names no [`Operation`] is a bug caught at start.
pub fn operation_table(openapi: &OpenApi) -> OperationTable {
    let mut table: HashMap<String, Vec<(Method, Operation)>> = HashMap::new();
    for (path, item) in &openapi.paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PATCH, &item.patch),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let id = operation.operation_id.as_deref().unwrap_or_default();
            let known = Operation::from_name(id).unwrap_or_else(|| {
                panic!("operation id {id} of {method} {path} names no Operation")
            });
            table.entry(path.clone()).or_default().push((method, known));
        }
    }
    Arc::new(table)
}

/// What a fault rule of the control plane that takes this call does: an
/// answer instead of the real one, or (after its latency, or none) nothing.
async fn injected_fault(app: &AppState, caller: &Caller, operation: Operation) -> Option<Response> {
    let callers = [caller.principal.caller_name()];
    let fault = app
        .palisade
        .fault_for(&caller.tenant.id, operation.name(), &callers)
        .await;
    match fault {
        Ok(Some(rule)) => {
            crate::control::faults::inflict(&rule, crate::control::faults::mde_answer).await
        }
        Ok(None) => None,
        Err(error) => Some(ApiError(error).into_response()),
    }
}

/// The caller of a request the web console makes for its signed-in user,
/// in process: the gate takes it instead of a bearer token and does the rest
/// (permissions, rate limits, faults, audit) as for any call. Only code of
/// this process can put it on a request.
#[derive(Debug, Clone)]
pub struct ConsoleCaller(pub Caller);

/// A user calling through an app that granted them `permissions` (its
/// delegated ones): their MDE roles and device groups decide the rest.
pub fn user_caller(tenant: Tenant, user: User, permissions: Vec<Permission>) -> Caller {
    let device_groups = user.effective_device_groups();
    Caller {
        tenant,
        principal: Principal::User {
            id: user.id,
            upn: user.username,
            roles: user.roles,
        },
        permissions,
        device_groups,
        audit: None,
    }
}

/// What the audit entry names as the target when the path does not say it (bulk tags).
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

pub async fn gate(
    State((app, table)): State<(AppState, OperationTable)>,
    matched: MatchedPath,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    // HEAD is answered by the GET handler, and needs what GET needs.
    let method = match request.method() {
        &Method::HEAD => Method::GET,
        other => other.clone(),
    };
    let operation = table
        .get(matched.as_str())
        .and_then(|methods| methods.iter().find(|(m, _)| *m == method));
    // The route exists but not for this method: the router answers 405.
    let Some(&(_, operation)) = operation else {
        return next.run(request).await;
    };
    let caller = match request.extensions_mut().remove::<ConsoleCaller>() {
        Some(ConsoleCaller(caller)) => caller,
        None => {
            let origin = origin(&app, request.uri(), request.headers());
            match authenticate(&app, request.headers(), &origin).await {
                Ok(caller) => caller,
                Err(refusal) => return refusal,
            }
        }
    };
    let recording = app
        .palisade
        .is_recording(&caller.tenant.id)
        .then(|| Recording::of(&caller, operation));
    let mut response = admitted(&app, caller, operation, &params, request, next).await;
    if let Some(recording) = recording {
        response.extensions_mut().insert(recording);
    }
    response
}

/// The rest of the gate, for an authenticated caller.
async fn admitted(
    app: &AppState,
    mut caller: Caller,
    operation: Operation,
    params: &RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let path_target = params.iter().next().map(|(_, value)| value.to_string());
    if let Some(refusal) = injected_fault(app, &caller, operation).await {
        return refusal;
    }

    if let Err(error) = caller.authorize(operation) {
        let response = ApiError(error).into_response();
        if operation.is_mutation() {
            audit(
                app,
                &caller,
                operation,
                path_target,
                response.status().as_u16(),
                request_id,
            )
            .await;
        }
        return response;
    }
    if let Some(limiter) = &app.limiter {
        let key = RateKey {
            tenant_id: caller.tenant.id.clone(),
            principal_id: caller.principal.id().to_string(),
            scope: RateScope::Api(operation),
        };
        let admitted = match limiter.admit(&key).await {
            Ok(admitted) => admitted,
            Err(error) => return ApiError(MdeError::from(error)).into_response(),
        };
        if let Err(throttled) = admitted {
            let of_what = format!(
                "to {} for this {} in this tenant",
                operation.name(),
                caller.principal.kind()
            );
            return too_many_requests(throttled, "calls", &of_what);
        }
    }
    // The handler takes the caller; the audit entry of a change needs it
    // after, unless the change wrote it in its own transaction.
    if operation.is_mutation() {
        let template = audit_entry(app, &caller, operation, path_target.clone(), 0, &request_id);
        caller.audit = Some(Arc::new(RequestAudit::new(template)));
    }
    let auditor = operation.is_mutation().then(|| caller.clone());
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    let written = |caller: &Caller| caller.audit.as_ref().is_some_and(|a| a.is_written());
    if let Some(caller) = auditor.filter(|caller| !written(caller)) {
        let target = response
            .extensions()
            .get::<AuditTarget>()
            .map(|t| t.0.clone())
            .or(path_target);
        let status = response.status().as_u16();
        audit(app, &caller, operation, target, status, request_id).await;
    }
    response
}

fn unauthorized(error: &TokenError) -> Response {
    match error {
        TokenError::Store(store) => ApiError(store.clone().into()).into_response(),
        TokenError::Missing => challenge(error.to_string(), "Bearer".into()),
        other => unauthorized_because(other.to_string()),
    }
}

/// A 401 for a token that was presented but is not good (RFC 6750 §3).
fn unauthorized_because(message: String) -> Response {
    let header = format!(
        "Bearer error=\"invalid_token\", error_description=\"{}\"",
        message.replace(['"', '\\'], "'")
    );
    challenge(message, header)
}

fn challenge(message: String, header: String) -> Response {
    let mut response = ApiError(MdeError::new(ErrorCode::Unauthorized, message)).into_response();
    let value = HeaderValue::from_str(&header).unwrap_or(HeaderValue::from_static("Bearer"));
    response.headers_mut().insert(WWW_AUTHENTICATE, value);
    response
}

/// The caller behind the request's bearer token, or the 401 that refuses it.
async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    origin: &str,
) -> Result<Caller, Response> {
    let token = bearer_token(headers.get(AUTHORIZATION).map(|v| v.as_bytes()))
        .map_err(|e| unauthorized(&e))?;
    let verified = app
        .validator
        .verify(token, origin)
        .await
        .map_err(|e| unauthorized(&e))?;
    let tenant = app
        .palisade
        .tenant(&verified.tenant_id)
        .await
        .map_err(|e| ApiError(e).into_response())?
        .ok_or_else(|| {
            unauthorized_because(format!(
                "The token's tenant {} does not exist here.",
                verified.tenant_id
            ))
        })?;
    let Verified {
        claims, external, ..
    } = &*verified;
    let external = *external;
    let permissions = |values: Vec<&str>| -> Vec<Permission> {
        values
            .into_iter()
            .filter_map(|v| Permission::from_str(v).ok())
            .collect()
    };
    if !claims.is_delegated() {
        let client_id = claims.client_id().unwrap_or(&claims.sub).to_string();
        return Ok(Caller {
            tenant,
            principal: Principal::App {
                name: claims.app_displayname.clone().unwrap_or(client_id.clone()),
                client_id,
            },
            permissions: permissions(claims.roles.iter().flatten().map(String::as_str).collect()),
            device_groups: DeviceGroupAccess::All,
            audit: None,
        });
    }
    let scopes = permissions(
        claims
            .scp
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect(),
    );
    let store = app.palisade.store();
    let user = if external {
        match claims.username() {
            Some(name) => store.user_by_name(&tenant.id, name).await,
            None => Ok(None),
        }
    } else {
        store
            .user(&tenant.id, claims.oid.as_deref().unwrap_or(&claims.sub))
            .await
    }
    .map_err(|e| ApiError(e.into()).into_response())?;
    match user {
        Some(user) => Ok(user_caller(tenant, user, scopes)),
        // An external user Palisade has no record of acts with the MDE
        // roles its token names, on every device group.
        None if external => Ok(Caller {
            tenant,
            principal: Principal::User {
                id: claims.oid.clone().unwrap_or(claims.sub.clone()),
                upn: claims.username().unwrap_or(&claims.sub).to_string(),
                roles: claims
                    .roles
                    .iter()
                    .flatten()
                    .filter_map(|r| Role::from_str(r).ok())
                    .collect(),
            },
            permissions: scopes,
            device_groups: DeviceGroupAccess::All,
            audit: None,
        }),
        None => Err(unauthorized_because(
            "The token's user no longer exists in this tenant.".into(),
        )),
    }
}

fn audit_entry(
    app: &AppState,
    caller: &Caller,
    operation: Operation,
    target: Option<String>,
    result: u16,
    request_id: &str,
) -> AuditEntry {
    AuditEntry {
        id: 0,
        tenant_id: caller.tenant.id.clone(),
        time: app.palisade.now_in(&caller.tenant.id),
        actor_type: caller.principal.kind().into(),
        actor_id: caller.principal.id().into(),
        actor_name: caller.requestor().into(),
        operation: operation.name().into(),
        target,
        result,
        request_id: request_id.to_string(),
    }
}

async fn audit(
    app: &AppState,
    caller: &Caller,
    operation: Operation,
    target: Option<String>,
    result: u16,
    request_id: String,
) {
    let entry = audit_entry(app, caller, operation, target, result, &request_id);
    if let Err(error) = app.palisade.audit(caller, &entry, operation).await {
        tracing::error!(%error, ?entry, "could not write an audit entry");
    }
}
