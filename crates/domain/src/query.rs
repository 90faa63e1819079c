//! Turns a parsed OData query into one a store can run: property names resolved
//! (case-insensitively) to the entity's queryable properties, literals checked
//! against the property's type, paging bounded.

use palisade_contract::machine::{PropertyKind, QueryableProperty};
use palisade_contract::odata::{CompareOp, Filter, Literal, ODataQuery, OrderBy};
use palisade_contract::{ErrorCode, MdeError, Timestamp};

/// Rows in one page when the client gives no `$top` (MDE's maximum page size).
pub const PAGE_SIZE: u32 = 10_000;
/// The property name that stands for the element inside `collection/any(...)`.
pub const LAMBDA_ELEMENT: &str = "$element";
/// Most properties one `$orderby` may name.
pub const MAX_ORDER_BY: usize = 8;

/// A list query in canonical form: every property name is the catalogue's own
/// spelling and every literal has the property's type (`DateTime` for times,
/// `Int` for integers, `String` otherwise).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub order_by: Vec<OrderBy>,
    pub skip: u64,
    /// Rows to return; the store reports `more` when further rows exist.
    pub limit: u32,
    pub count: bool,
}

fn odata_error(message: impl Into<String>) -> MdeError {
    MdeError::new(ErrorCode::ODataError, message)
}

fn lookup(catalogue: &[QueryableProperty], name: &str) -> Result<QueryableProperty, MdeError> {
    catalogue
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = catalogue.iter().map(|p| p.name).collect();
            odata_error(format!(
                "Could not find a property named '{name}' to filter or order on. Supported properties: {}.",
                names.join(", ")
            ))
        })
}

fn scalar(catalogue: &[QueryableProperty], name: &str) -> Result<QueryableProperty, MdeError> {
    let property = lookup(catalogue, name)?;
    if property.kind == PropertyKind::StringCollection {
        return Err(odata_error(format!(
            "Property '{}' is a collection; use {}/any(t: t eq 'value').",
            property.name, property.name
        )));
    }
    Ok(property)
}

/// Converts a literal to the property's type, or says why it cannot be.
fn coerce(property: &QueryableProperty, literal: &Literal) -> Result<Literal, MdeError> {
    let mismatch = || {
        odata_error(format!(
            "The value {literal:?} does not fit property '{}' of type {:?}.",
            property.name, property.kind
        ))
    };
    match (property.kind, literal) {
        (_, Literal::Null) => Ok(Literal::Null),
        (PropertyKind::String, Literal::String(s)) => Ok(Literal::String(s.clone())),
        (PropertyKind::String, Literal::Guid(g)) => Ok(Literal::String(g.to_string())),
        (PropertyKind::Integer, Literal::Int(i)) => Ok(Literal::Int(*i)),
        (PropertyKind::Integer, Literal::String(s)) => {
            s.parse().map(Literal::Int).map_err(|_| mismatch())
        }
        (PropertyKind::Boolean, Literal::Bool(b)) => Ok(Literal::Bool(*b)),
        (PropertyKind::DateTime, Literal::DateTime(at)) => Ok(Literal::DateTime(*at)),
        (PropertyKind::DateTime, Literal::String(s)) => Timestamp::parse(s)
            .map(|t| Literal::DateTime(t.to_datetime()))
            .ok_or_else(mismatch),
        _ => Err(mismatch()),
    }
}

fn resolve_filter(
    catalogue: &[QueryableProperty],
    filter: &Filter,
    lambda_variable: Option<&str>,
) -> Result<Filter, MdeError> {
    let property_of = |name: &str| -> Result<QueryableProperty, MdeError> {
        match lambda_variable {
            // Inside any(...) the parser admits only the range variable: the element, a string.
            Some(_) => Ok(QueryableProperty {
                name: LAMBDA_ELEMENT,
                kind: PropertyKind::String,
            }),
            None => scalar(catalogue, name),
        }
    };
    Ok(match filter {
        Filter::And(a, b) => Filter::And(
            Box::new(resolve_filter(catalogue, a, lambda_variable)?),
            Box::new(resolve_filter(catalogue, b, lambda_variable)?),
        ),
        Filter::Or(a, b) => Filter::Or(
            Box::new(resolve_filter(catalogue, a, lambda_variable)?),
            Box::new(resolve_filter(catalogue, b, lambda_variable)?),
        ),
        Filter::Not(a) => Filter::Not(Box::new(resolve_filter(catalogue, a, lambda_variable)?)),
        Filter::Compare {
            property,
            op,
            value,
        } => {
            let p = property_of(property)?;
            let value = coerce(&p, value)?;
            if value == Literal::Null && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                return Err(odata_error(format!(
                    "null can only be compared with eq or ne (property '{}').",
                    p.name
                )));
            }
            Filter::Compare {
                property: p.name.to_string(),
                op: *op,
                value,
            }
        }
        Filter::StartsWith { property, prefix } => {
            let p = property_of(property)?;
            if p.kind != PropertyKind::String {
                return Err(odata_error(format!(
                    "startswith() needs a string property; '{}' is {:?}.",
                    p.name, p.kind
                )));
            }
            Filter::StartsWith {
                property: p.name.to_string(),
                prefix: prefix.clone(),
            }
        }
        Filter::In { property, values } => {
            let p = property_of(property)?;
            let values = values
                .iter()
                .map(|v| coerce(&p, v))
                .collect::<Result<Vec<_>, _>>()?;
            Filter::In {
                property: p.name.to_string(),
                values,
            }
        }
        Filter::Any {
            collection,
            variable,
            predicate,
        } => {
            let p = lookup(catalogue, collection)?;
            if p.kind != PropertyKind::StringCollection {
                return Err(odata_error(format!(
                    "any() needs a collection property; '{}' is not one.",
                    p.name
                )));
            }
            Filter::Any {
                collection: p.name.to_string(),
                variable: LAMBDA_ELEMENT.to_string(),
                predicate: Box::new(resolve_filter(catalogue, predicate, Some(variable))?),
            }
        }
    })
}

impl ListQuery {
    /// Resolves `query` against an entity's queryable properties. An entity
    /// with navigation properties or next links of its own takes `$expand`
    /// and `$skiptoken` out of the query first; here they are refused.
    pub fn resolve(
        query: &ODataQuery,
        catalogue: &[QueryableProperty],
    ) -> Result<ListQuery, MdeError> {
        if !query.expand.is_empty() {
            return Err(odata_error("Query option '$expand' is not supported."));
        }
        if query.skip_token.is_some() {
            return Err(odata_error(
                "Query option '$skiptoken' is not supported here: page with $skip.",
            ));
        }
        let filter = query
            .filter
            .as_ref()
            .map(|f| resolve_filter(catalogue, f, None))
            .transpose()?;
        if query.order_by.len() > MAX_ORDER_BY {
            return Err(odata_error(format!(
                "$orderby names {} properties; at most {MAX_ORDER_BY} are allowed.",
                query.order_by.len()
            )));
        }
        let order_by = query
            .order_by
            .iter()
            .map(|o| {
                scalar(catalogue, &o.property).map(|p| OrderBy {
                    property: p.name.to_string(),
                    descending: o.descending,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ListQuery {
            filter,
            order_by,
            skip: query.skip.unwrap_or(0),
            limit: query
                .top
                .unwrap_or(query.max_page_size.unwrap_or(PAGE_SIZE).min(PAGE_SIZE)),
            count: query.count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::machine::MACHINE_QUERYABLE;

    fn resolve(filter: &str) -> Result<ListQuery, MdeError> {
        let query = ODataQuery::parse(&format!("$filter={filter}")).unwrap();
        ListQuery::resolve(&query, MACHINE_QUERYABLE)
    }

    #[test]
    fn property_names_resolve_case_insensitively() {
        let q = resolve("RiskScore eq 'High'").unwrap();
        assert_eq!(
            q.filter,
            Some(Filter::Compare {
                property: "riskScore".into(),
                op: CompareOp::Eq,
                value: Literal::String("High".into())
            })
        );
    }

    #[test]
    fn unknown_property_and_wrong_types_are_odata_errors() {
        let e = resolve("firstSeen gt 2018-08-01Z").unwrap_err();
        assert_eq!(e.code, ErrorCode::ODataError);
        assert!(e.message.contains("firstSeen"), "{}", e.message);
        let e = resolve("lastSeen gt 'yesterday'").unwrap_err();
        assert_eq!(e.code, ErrorCode::ODataError);
        let e = resolve("machineTags eq 'x'").unwrap_err();
        assert!(e.message.contains("any("), "{}", e.message);
    }

    #[test]
    fn lambda_resolves_to_the_element() {
        let q = resolve("machineTags/any(tag: tag eq 'x')").unwrap();
        let Some(Filter::Any { predicate, .. }) = q.filter else {
            panic!("not an any()")
        };
        assert_eq!(
            *predicate,
            Filter::Compare {
                property: LAMBDA_ELEMENT.into(),
                op: CompareOp::Eq,
                value: Literal::String("x".into())
            }
        );
    }
}
