//! The store written once for both databases ([`store::SqlStore`], over a
//! [`database::Database`] each), and its SQL: a resolved OData query, a
//! caller's visibility, the fixed statements and the field tables
//! ([`fields`]), which differ between the databases only in how a parameter
//! is written and in a few spellings ([`Dialect`]). Each database binds
//! [`Value`]s with its driver.

use palisade_contract::odata::{CompareOp, Filter, Literal, OrderBy};
use palisade_contract::Timestamp;
use palisade_domain::caller::{DeviceGroupAccess, Visibility};
use palisade_domain::query::LAMBDA_ELEMENT;
use palisade_domain::rules::ip_history::IpHistorySync;
use palisade_domain::store::MachineKey;
use palisade_domain::TenantScope;

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Real(f64),
    /// SQLite binds it as 0 or 1.
    Boolean(bool),
    /// A BLOB (SQLite), a BYTEA (PostgreSQL).
    Bytes(Vec<u8>),
    Null,
}

/// The SQL a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// `?` parameters, typeless.
    #[default]
    Sqlite,
    /// `$n` parameters, cast to their type so that the server need not infer it.
    Postgres,
}

impl Dialect {
    /// The `n`th positional parameter, as written in a fixed statement.
    fn parameter(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// `text`, whose parameters are written `?n` (and which has no other
    /// `?`), with this dialect's.
    pub fn numbered(self, text: &str) -> String {
        debug_assert!(
            text.match_indices('?')
                .all(|(at, _)| text[at + 1..].starts_with(|c: char| c.is_ascii_digit())),
            "a ? that is not a parameter in {text}"
        );
        match self {
            Dialect::Sqlite => text.to_string(),
            Dialect::Postgres => text.replace('?', "$"),
        }
    }
}

/// `build`'s statement in `dialect`, built once per dialect.
macro_rules! once_per_dialect {
    ($dialect:expr, $build:expr) => {{
        static SQLITE: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| $build(Dialect::Sqlite));
        static POSTGRES: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| $build(Dialect::Postgres));
        match $dialect {
            Dialect::Sqlite => SQLITE.as_str(),
            Dialect::Postgres => POSTGRES.as_str(),
        }
    }};
}

pub mod alerts;
pub mod control;
pub mod database;
pub mod fields;
pub mod files;
pub mod inventory;
pub mod machine_cache;
pub mod store;

/// Which entity a query is about: its table alias, columns and default order.
pub struct Entity {
    /// Maps a canonical property name (see `ListQuery`) to its column.
    pub column: fn(&str) -> Option<&'static str>,
    pub default_order: &'static str,
    /// Properties unique in a tenant: an order on one is total, and needs
    /// no `default_order` after it (which would keep an index from giving
    /// the order).
    pub unique: &'static [&'static str],
    /// The entity's tag rows, if it has tags.
    pub tags: Option<TagRowsTable>,
}

/// How a list whose filter requires one tag (`machineTags/any(t: t eq 'x')`
/// among its `and`ed conditions) is read: from that tag's index entries in
/// order, each joined to its row by key. A tag is on a machine once (a unique
/// key), so the join yields each machine once. That one plan suits every tag,
/// rare or common (in the default order a page stops reading once full;
/// another `$orderby` reads the tag's rows and sorts them, as a plan made for
/// the call would), so PostgreSQL is told to make it once ([`Sql::one_plan`]):
/// planning it for each call's tag cost several times running it.
pub struct TagRowsTable {
    /// The tag rows, `machine_tags t`.
    pub table: &'static str,
    /// The entity's table as a list's `from` begins with it: `machines m`.
    pub entity_table: &'static str,
    /// Ties each tag row to its entity's row.
    pub on: &'static str,
    /// The entity's default order, spelt in the tag index's columns so that
    /// no sort is needed.
    pub default_order: &'static str,
}

impl TagRowsTable {
    /// `FROM`'s tables (`from`, which begins with the entity's table) led by
    /// the tag rows, and `WHERE`, ready for the next condition.
    fn lead(&self, sql: &mut Sql, from: &str) {
        let (table, on) = (self.table, self.on);
        match sql.dialect {
            // CROSS makes SQLite read the tag index first; it plans each call.
            Dialect::Sqlite => sql.push(&format!("{table} CROSS JOIN {from} WHERE {on} AND ")),
            // A subquery with an OFFSET is planned on its own, as a lookup
            // per tag row: the generic plan cannot join the whole tenant in
            // one merge instead (what PostgreSQL prefers when it cannot tell
            // that a tag's rows are few).
            Dialect::Postgres => {
                // Every `from` of the entity's lists begins with its table.
                let rest = from
                    .strip_prefix(self.entity_table)
                    .unwrap_or_else(|| panic!("{from} does not begin with {}", self.entity_table));
                let (entity, alias) = self.entity_table.split_once(' ').unwrap_or_default();
                sql.push(&format!(
                    "{table} CROSS JOIN LATERAL (SELECT * FROM {entity} {alias} WHERE {on} \
                     OFFSET 0) {alias}{} WHERE ",
                    rest
                ))
            }
        };
    }
}

pub const MACHINES: Entity = Entity {
    column: |property| match property {
        // Inside machineTags/any(...): the tag row of the subquery.
        LAMBDA_ELEMENT => Some("t.tag"),
        property => fields::machine_fields::column(property),
    },
    default_order: "m.id",
    unique: &["id"],
    tags: Some(TagRowsTable {
        table: "machine_tags t",
        entity_table: "machines m",
        on: "t.tenant_id = m.tenant_id AND t.machine_id = m.id",
        default_order: "t.machine_id",
    }),
};

pub const ALERTS: Entity = Entity {
    column: fields::alert_fields::column,
    // Newest first, as "the 10 latest alerts" of MDE's samples.
    default_order: "l.alert_creation_time DESC, l.id",
    unique: &["id", "lastUpdateTime"],
    tags: None,
};

pub const INDICATORS: Entity = Entity {
    column: fields::indicator_fields::column,
    default_order: "i.id",
    unique: &["id"],
    tags: None,
};

pub const ACTIONS: Entity = Entity {
    column: fields::action_fields::column,
    // Newest first (decisions: machine actions).
    default_order: "a.creation_time DESC, a.id",
    unique: &["id"],
    tags: None,
};

/// Ends every stale open action of `scope` with `TimeOut`: stale means
/// open since before `stale_before` (Pending: created; InProgress: last
/// updated). Each condition is one partial index's (`machine_actions_pending`,
/// `machine_actions_in_progress`), so the sweep reads only stale actions.
/// An action an outcome rule carries keeps the time its script gives it.
pub fn time_out_stale_actions(
    dialect: Dialect,
    scope: &TenantScope,
    stale_before: Timestamp,
    now: Timestamp,
) -> Sql {
    let mut sql = Sql::new(dialect);
    let stale = || Value::Integer(stale_before.ticks());
    sql.push("UPDATE machine_actions SET status = 'TimeOut', last_update_time = ")
        .bind(Value::Integer(now.ticks()))
        .push(" WHERE ((status = 'Pending' AND creation_time < ")
        .bind(stale())
        .push(") OR (status = 'InProgress' AND last_update_time < ")
        .bind(stale())
        .push(
            ")) AND NOT EXISTS (SELECT 1 FROM action_scripts s \
             WHERE s.tenant_id = machine_actions.tenant_id \
               AND s.action_id = machine_actions.id)",
        );
    sql.tenants_of(scope, "machine_actions.tenant_id");
    sql
}

/// The statements that bring a machine's address history in line with
/// `sync` (`rules::ip_history`): end the open spans of the addresses it no
/// longer shows, open one for each address it shows that has none (or open
/// again one that began at the same time).
pub fn sync_ip_history(
    dialect: Dialect,
    tenant_id: &str,
    machine_id: &str,
    sync: &IpHistorySync,
) -> Vec<Sql> {
    let text = |s: &str| Value::Text(s.to_string());
    let mut left = Sql::new(dialect);
    left.push("UPDATE machine_ip_history SET last_seen = ")
        .bind(Value::Integer(sync.left_at.ticks()))
        .push(" WHERE tenant_id = ")
        .bind(text(tenant_id))
        .push(" AND machine_id = ")
        .bind(text(machine_id))
        .push(" AND last_seen IS NULL");
    if !sync.addresses.is_empty() {
        left.push(" AND ip NOT IN (");
        for (i, address) in sync.addresses.iter().enumerate() {
            if i > 0 {
                left.push(", ");
            }
            left.bind(text(address));
        }
        left.push(")");
    }
    let mut statements = vec![left];
    for address in &sync.addresses {
        let mut joined = Sql::new(dialect);
        joined
            .push("INSERT INTO machine_ip_history (tenant_id, machine_id, ip, first_seen) SELECT ")
            .bind(text(tenant_id))
            .push(", ")
            .bind(text(machine_id))
            .push(", ")
            .bind(text(address))
            .push(", ")
            .bind(Value::Integer(sync.joined_at.ticks()))
            .push(" WHERE NOT EXISTS (SELECT 1 FROM machine_ip_history o WHERE o.tenant_id = ")
            .bind(text(tenant_id))
            .push(" AND o.machine_id = ")
            .bind(text(machine_id))
            .push(" AND o.ip = ")
            .bind(text(address))
            .push(" AND o.last_seen IS NULL) \
                   ON CONFLICT (tenant_id, machine_id, ip, first_seen) DO UPDATE SET last_seen = NULL");
        statements.push(joined);
    }
    statements
}

/// The ids of the tenant's machines seen with an address at some time in a
/// span: parameters tenant, address, from, to. An open span ends at its
/// machine's `lastSeen`. Read through the address index, whatever the fleet's size.
pub fn machines_seen_with_ip(dialect: Dialect) -> &'static str {
    once_per_dialect!(dialect, |d: Dialect| {
        let p = |n| d.parameter(n);
        format!(
            "SELECT DISTINCT h.machine_id FROM machine_ip_history h \
             JOIN machines m ON m.tenant_id = h.tenant_id AND m.id = h.machine_id \
             WHERE h.tenant_id = {} AND h.ip = {} AND h.first_seen <= {} \
             AND coalesce(h.last_seen, m.last_seen) >= {} ORDER BY h.machine_id",
            p(1),
            p(2),
            p(4),
            p(3)
        )
    })
}

/// Forgets the spans that ended before parameter 1 (in all tenants).
pub fn forget_ip_history(dialect: Dialect) -> &'static str {
    once_per_dialect!(dialect, |d: Dialect| {
        format!(
            "DELETE FROM machine_ip_history WHERE last_seen < {}",
            d.parameter(1)
        )
    })
}

/// A page of the audit log as `visibility` shows it, newest first: `rows`
/// entries after `skip`. A caller limited to device groups sees an entry
/// only if every machine it is about (`audit_machines`) is a machine of its
/// groups; an entry about no machine (administration) is shown to all. A
/// machine that does not exist, or is in no group of the caller's, hides the
/// entry alike: the log does not tell whether an unseen machine exists.
/// Retention does not hide entries, as it does not hide actions.
pub fn audit_entries(dialect: Dialect, visibility: &Visibility, skip: u64, rows: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(&format!(
        "SELECT {} FROM audit_log e WHERE e.tenant_id = ",
        fields::audit_fields::select(dialect)
    ))
    .bind(Value::Text(visibility.tenant_id.clone()));
    if let DeviceGroupAccess::Only(_) = visibility.device_groups {
        sql.push(
            " AND NOT EXISTS (SELECT 1 FROM audit_machines am \
             WHERE am.tenant_id = e.tenant_id AND am.entry_id = e.id \
             AND NOT EXISTS (SELECT 1 FROM machines v \
             WHERE v.tenant_id = am.tenant_id AND v.id = am.machine_id",
        );
        sql.device_groups("v.rbac_group_id", &visibility.device_groups);
        sql.push("))");
    }
    sql.push(" ORDER BY e.id DESC").page(skip, rows);
    sql
}

/// Collects SQL text and its positional parameters side by side.
#[derive(Debug, Default)]
pub struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<Value>,
    /// Written so that one plan serves every value of its parameters:
    /// PostgreSQL may plan it once for all calls, not for each.
    pub one_plan: bool,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            ..Sql::default()
        }
    }

    /// A statement of fixed text whose parameters are already spelt for
    /// `dialect` (as the statement builders here and [`Dialect::numbered`]
    /// write them), and its parameters.
    pub fn fixed(dialect: Dialect, text: &str, params: Vec<Value>) -> Sql {
        Sql {
            dialect,
            text: text.to_string(),
            params,
            one_plan: false,
        }
    }

    /// `SELECT columns FROM from WHERE a = ? AND b = ?...` for `equal`'s
    /// columns and values, then `rest` (an `ORDER BY`).
    pub fn select_where(
        dialect: Dialect,
        columns: &str,
        from: &str,
        equal: &[(&str, Value)],
        rest: &str,
    ) -> Sql {
        let mut sql = Sql::new(dialect);
        sql.push("SELECT ").push(columns).push(" FROM ").push(from);
        sql.push(" WHERE ").equal(equal).push(rest);
        sql
    }

    /// `a = ? AND b = ?...`
    pub fn equal(&mut self, equal: &[(&str, Value)]) -> &mut Self {
        for (i, (column, value)) in equal.iter().enumerate() {
            if i > 0 {
                self.push(" AND ");
            }
            self.push(column).push(" = ").bind(value.clone());
        }
        self
    }

    /// `column = ?`, compared as its unique index compares it: ASCII letters
    /// in any case (SQLite: `COLLATE NOCASE`; PostgreSQL: `lower()`).
    pub fn equal_ignoring_case(&mut self, column: &str, value: Value) -> &mut Self {
        match self.dialect {
            Dialect::Sqlite => self
                .push(column)
                .push(" = ")
                .bind(value)
                .push(" COLLATE NOCASE"),
            Dialect::Postgres => {
                self.push("lower(").push(column).push(") = lower(");
                self.bind(value).push(")")
            }
        }
    }

    /// Locks the rows of `alias` that the query reads until the transaction
    /// ends, where the dialect locks rows (SQLite's single writer holds the
    /// whole database instead).
    pub fn lock(&mut self, alias: &str) -> &mut Self {
        if self.dialect == Dialect::Postgres {
            self.push(" FOR UPDATE OF ").push(alias);
        }
        self
    }

    /// ` AND column ...`: the rows of `scope`'s tenants.
    pub fn tenants_of(&mut self, scope: &TenantScope, column: &str) -> &mut Self {
        match scope {
            TenantScope::Tenant(tenant_id) => {
                self.push(" AND ").push(column).push(" = ");
                self.bind(Value::Text(tenant_id.clone()))
            }
            TenantScope::OnServerTime { except } if except.is_empty() => self,
            TenantScope::OnServerTime { except } => {
                self.push(" AND ").push(column).push(" NOT IN (");
                for (i, tenant_id) in except.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind(Value::Text(tenant_id.clone()));
                }
                self.push(")")
            }
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub fn bind(&mut self, value: Value) -> &mut Self {
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                let cast = match value {
                    Value::Text(_) | Value::Null => "text",
                    Value::Integer(_) => "int8",
                    Value::Real(_) => "float8",
                    Value::Boolean(_) => "bool",
                    Value::Bytes(_) => "bytea",
                };
                let n = self.params.len() + 1;
                self.text.push_str(&format!("${n}::{cast}"));
            }
        }
        self.params.push(value);
        self
    }

    fn sqlite_or_postgres(&mut self, sqlite: &str, postgres: &str) -> &mut Self {
        match self.dialect {
            Dialect::Sqlite => self.push(sqlite),
            Dialect::Postgres => self.push(postgres),
        }
    }

    /// `m.tenant_id = ? AND m.last_seen >= ? [AND m.rbac_group_id IN (...)]`
    pub fn machine_visibility(&mut self, visibility: &Visibility) -> &mut Self {
        self.push("m.tenant_id = ")
            .bind(Value::Text(visibility.tenant_id.clone()))
            .push(" AND m.last_seen >= ")
            .bind(Value::Integer(visibility.seen_since.ticks()));
        self.device_groups("m.rbac_group_id", &visibility.device_groups)
    }

    /// Actions are visible where their machine's device group is.
    pub fn action_visibility(&mut self, visibility: &Visibility) -> &mut Self {
        self.push("a.tenant_id = ")
            .bind(Value::Text(visibility.tenant_id.clone()));
        if let DeviceGroupAccess::Only(_) = visibility.device_groups {
            self.push(" AND a.machine_id IN (SELECT v.id FROM machines v WHERE v.tenant_id = ")
                .bind(Value::Text(visibility.tenant_id.clone()));
            self.device_groups("v.rbac_group_id", &visibility.device_groups);
            self.push(")");
        }
        self
    }

    fn device_groups(&mut self, column: &str, access: &DeviceGroupAccess) -> &mut Self {
        if let DeviceGroupAccess::Only(groups) = access {
            if groups.is_empty() {
                return self.sqlite_or_postgres(" AND 0", " AND false");
            }
            self.push(" AND ").push(column).push(" IN (");
            for (i, group) in groups.iter().enumerate() {
                if i > 0 {
                    self.push(", ");
                }
                self.bind(Value::Integer(*group));
            }
            self.push(")");
        }
        self
    }

    /// Appends ` AND (filter)`; `tenant_id` scopes the tag subqueries.
    /// `joined_tag`, one of `filter`'s nodes, is read from the joined tag
    /// row instead of a subquery.
    pub fn filter(
        &mut self,
        entity: &Entity,
        filter: &Filter,
        tenant_id: &str,
        joined_tag: Option<&Filter>,
    ) -> &mut Self {
        self.push(" AND (");
        Condition {
            entity,
            tenant_id,
            joined_tag,
        }
        .write(self, filter);
        self.push(")")
    }

    fn column(entity: &Entity, property: &str) -> &'static str {
        // ListQuery::resolve only lets catalogue properties through.
        (entity.column)(property).unwrap_or("NULL")
    }

    /// `AND` the machine `key` names (after [`Sql::machine_visibility`]).
    pub fn machine_key(&mut self, key: MachineKey<'_>) -> &mut Self {
        match key {
            MachineKey::Id(id) => self.push(" AND m.id = ").bind(Value::Text(id.to_string())),
            // Lower case already: the GUID as `MachineRef` wrote it.
            MachineKey::AadDeviceId(aad_device_id) => self
                .sqlite_or_postgres(
                    " AND m.aad_device_id COLLATE NOCASE = ",
                    " AND lower(m.aad_device_id) = ",
                )
                .bind(Value::Text(aad_device_id.to_string()))
                .push(" ORDER BY m.last_seen DESC LIMIT 1"),
            MachineKey::Name(name) => self
                .sqlite_or_postgres(
                    " AND m.computer_dns_name COLLATE NOCASE = ",
                    " AND lower(m.computer_dns_name) = lower(",
                )
                .bind(Value::Text(name.to_string()))
                .sqlite_or_postgres("", ")")
                .push(" ORDER BY m.last_seen DESC LIMIT 1"),
        }
    }

    /// `order`, then `default_order` (which makes it total).
    pub fn order_by(
        &mut self,
        entity: &Entity,
        order: &[OrderBy],
        default_order: &str,
    ) -> &mut Self {
        self.push(" ORDER BY ");
        for o in order {
            self.push(Self::column(entity, &o.property))
                .push(if o.descending { " DESC" } else { " ASC" });
            if entity.unique.contains(&o.property.as_str()) {
                return self;
            }
            self.push(", ");
        }
        self.push(default_order)
    }

    pub fn page(&mut self, skip: u64, rows: i64) -> &mut Self {
        self.push(" LIMIT ")
            .bind(Value::Integer(rows))
            .push(" OFFSET ")
            .bind(Value::Integer(i64::try_from(skip).unwrap_or(i64::MAX)))
    }
}

/// Writes a filter's conditions.
struct Condition<'a> {
    entity: &'a Entity,
    /// Scopes the tag subqueries.
    tenant_id: &'a str,
    /// The `any` read from the joined tag row, if the query joins one.
    joined_tag: Option<&'a Filter>,
}

impl Condition<'_> {
    fn is_joined(&self, filter: &Filter) -> bool {
        self.joined_tag
            .is_some_and(|joined| std::ptr::eq(joined, filter))
    }

    fn write(&self, sql: &mut Sql, filter: &Filter) {
        let entity = self.entity;
        match filter {
            Filter::And(a, b) | Filter::Or(a, b) => {
                let joiner = if matches!(filter, Filter::And(..)) {
                    " AND "
                } else {
                    " OR "
                };
                sql.push("(");
                self.write(sql, a);
                sql.push(joiner);
                self.write(sql, b);
                sql.push(")");
            }
            Filter::Not(a) => {
                // In OData a comparison with null is false, not unknown: so is its
                // SQL NULL here, before NOT turns it into true.
                sql.push("NOT coalesce((");
                self.write(sql, a);
                sql.sqlite_or_postgres("), 0)", "), false)");
            }
            Filter::Compare {
                property,
                op,
                value,
            } => {
                let column = Sql::column(entity, property);
                sql.push(column);
                match (op, value) {
                    (CompareOp::Eq, Literal::Null) => {
                        sql.push(" IS NULL");
                    }
                    (CompareOp::Ne, Literal::Null) => {
                        sql.push(" IS NOT NULL");
                    }
                    _ => {
                        // `IS NOT` so that a null column counts as "not equal", as in OData.
                        let sql_op = match (op, sql.dialect) {
                            (CompareOp::Eq, _) => " = ",
                            (CompareOp::Ne, Dialect::Sqlite) => " IS NOT ",
                            (CompareOp::Ne, Dialect::Postgres) => " IS DISTINCT FROM ",
                            (CompareOp::Gt, _) => " > ",
                            (CompareOp::Ge, _) => " >= ",
                            (CompareOp::Lt, _) => " < ",
                            (CompareOp::Le, _) => " <= ",
                        };
                        sql.push(sql_op).bind(literal(value));
                    }
                }
            }
            Filter::StartsWith { property, prefix } => {
                // substr, not LIKE: LIKE ignores ASCII case; startswith must not.
                let column = Sql::column(entity, property);
                sql.push("substr(").push(column).push(", 1, ");
                sql.bind(Value::Integer(prefix.chars().count() as i64))
                    .sqlite_or_postgres("", "::int4")
                    .push(") = ")
                    .bind(Value::Text(prefix.clone()));
            }
            Filter::In { property, values } => {
                sql.push(Sql::column(entity, property)).push(" IN (");
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(literal(value));
                }
                sql.push(")");
            }
            Filter::Any { predicate, .. } if self.is_joined(filter) => {
                sql.push("t.tenant_id = ")
                    .bind(Value::Text(self.tenant_id.to_string()))
                    .push(" AND (");
                self.write(sql, predicate);
                sql.push(")");
            }
            Filter::Any { predicate, .. } => {
                // An uncorrelated subquery: SQLite reads it once through the tag index.
                sql.push("m.id IN (SELECT t.machine_id FROM machine_tags t WHERE t.tenant_id = ")
                    .bind(Value::Text(self.tenant_id.to_string()))
                    .push(" AND (");
                self.write(sql, predicate);
                sql.push("))");
            }
        }
    }
}

/// The `any(t: t eq 'x')` among `filter`'s `and`ed conditions, if one is:
/// every row the filter keeps has that tag.
fn required_tag(filter: &Filter) -> Option<&Filter> {
    match filter {
        Filter::And(a, b) => required_tag(a).or_else(|| required_tag(b)),
        Filter::Any { predicate, .. } => match &**predicate {
            Filter::Compare {
                property,
                op: CompareOp::Eq,
                value: Literal::String(_),
            } if property == LAMBDA_ELEMENT => Some(filter),
            _ => None,
        },
        _ => None,
    }
}

fn literal(value: &Literal) -> Value {
    match value {
        Literal::String(s) => Value::Text(s.clone()),
        Literal::Int(i) => Value::Integer(*i),
        Literal::Float(f) => Value::Real(*f),
        Literal::Bool(b) => Value::Boolean(*b),
        Literal::Null => Value::Null,
        Literal::DateTime(at) => Value::Integer(Timestamp::from_datetime(*at).ticks()),
        Literal::Guid(g) => Value::Text(g.to_string()),
    }
}

/// `columns` of `from` (which has the machines as `m`) of the machine `key`
/// names, if `visibility` shows it; `lock`ed if asked.
pub fn machine_lookup(
    dialect: Dialect,
    visibility: &Visibility,
    key: MachineKey<'_>,
    (columns, from): (&str, &str),
    lock: bool,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(columns)
        .push(" FROM ")
        .push(from)
        .push(" WHERE ");
    sql.machine_visibility(visibility).machine_key(key);
    if lock {
        sql.lock("m");
    }
    sql
}

/// The action `id`, if `visibility` shows it; `lock`ed if asked.
pub fn action_lookup(dialect: Dialect, visibility: &Visibility, id: &str, lock: bool) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(fields::action_fields::select(dialect))
        .push(" FROM machine_actions a WHERE ");
    sql.action_visibility(visibility);
    sql.push(" AND a.id = ").bind(Value::Text(id.to_string()));
    if lock {
        sql.lock("a");
    }
    sql
}

/// The condition of a machine's open actions (parameters: tenant, machine),
/// spelled as the `machine_actions_open` partial index's is, which SQLite
/// needs to use that index (its migration 0006).
pub const OPEN_ACTIONS: &str =
    "a.tenant_id = ?1 AND a.machine_id = ?2 AND a.status IN ('Pending', 'InProgress')";

/// [`OPEN_ACTIONS`] that no delivery holds at parameter 3.
pub const DELIVERABLE_ACTIONS: &str = "a.tenant_id = ?1 AND a.machine_id = ?2 \
    AND a.status IN ('Pending', 'InProgress') \
    AND (a.delivered_until IS NULL OR a.delivered_until <= ?3)";

fn actions_where(dialect: Dialect, condition: &str) -> String {
    dialect.numbered(&format!(
        "SELECT {} FROM machine_actions a WHERE {condition} ORDER BY a.creation_time, a.id",
        fields::action_fields::select(dialect)
    ))
}

/// A machine's open actions, oldest first.
pub fn open_actions(dialect: Dialect) -> &'static str {
    once_per_dialect!(dialect, |d| actions_where(d, OPEN_ACTIONS))
}

/// A machine's open actions that no delivery holds, oldest first.
pub fn deliverable_actions(dialect: Dialect) -> &'static str {
    once_per_dialect!(dialect, |d| actions_where(d, DELIVERABLE_ACTIONS))
}

/// A row if the machine has an action [`deliverable_actions`] would deliver.
pub fn any_deliverable_action(dialect: Dialect) -> &'static str {
    once_per_dialect!(dialect, |d: Dialect| d.numbered(&format!(
        "SELECT 1 FROM machine_actions a WHERE {DELIVERABLE_ACTIONS} LIMIT 1"
    )))
}

/// A list query's SQL: one page (and one row more, to tell whether more
/// exist), and with `$count=true` the count of all that match.
pub struct ListSql {
    pub page: Sql,
    pub count: Option<Sql>,
}

impl ListSql {
    /// `columns` of `from` where `visible` (the caller's visibility) and the
    /// query's filter hold, in the query's order.
    pub fn new(
        dialect: Dialect,
        entity: &Entity,
        (columns, from): (&str, &str),
        visible: impl Fn(&mut Sql),
        tenant_id: &str,
        query: &palisade_domain::query::ListQuery,
    ) -> ListSql {
        let tags = entity.tags.as_ref();
        let joined_tag = tags.and(query.filter.as_ref().and_then(required_tag));
        let select = |what: &str| {
            let mut sql = Sql::new(dialect);
            sql.push("SELECT ").push(what).push(" FROM ");
            if let (Some(tags), Some(_)) = (tags, joined_tag) {
                tags.lead(&mut sql, from);
                sql.one_plan = true;
            } else {
                sql.push(from).push(" WHERE ");
            }
            visible(&mut sql);
            if let Some(filter) = &query.filter {
                sql.filter(entity, filter, tenant_id, joined_tag);
            }
            sql
        };
        let default_order = match (tags, joined_tag) {
            (Some(tags), Some(_)) => tags.default_order,
            _ => entity.default_order,
        };
        let mut page = select(columns);
        page.order_by(entity, &query.order_by, default_order)
            .page(query.skip, i64::from(query.limit) + 1);
        ListSql {
            page,
            count: query.count.then(|| select("COUNT(*)")),
        }
    }
}

/// How a machine's tag rows go from `old` to `new`.
#[derive(Debug, PartialEq, Eq)]
pub enum TagRows<'a> {
    Unchanged,
    /// Delete these and append those after the last position: removals and
    /// additions at the end keep the stored positions.
    InPlace {
        removed: Vec<&'a String>,
        appended: Vec<&'a String>,
    },
    /// Delete every row and write these in order (a PATCH that reorders).
    Rewrite(Vec<&'a String>),
}

impl<'a> TagRows<'a> {
    pub fn between(old: &'a [String], new: &'a [String]) -> TagRows<'a> {
        if old == new {
            return TagRows::Unchanged;
        }
        let appended: Vec<&String> = new.iter().filter(|t| !old.contains(t)).collect();
        let kept = old.iter().filter(|t| new.contains(t));
        if kept.chain(appended.iter().copied()).eq(new.iter()) {
            TagRows::InPlace {
                removed: old.iter().filter(|t| !new.contains(t)).collect(),
                appended,
            }
        } else {
            TagRows::Rewrite(new.iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TagRows;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn additions_at_the_end_and_removals_keep_positions_and_reordering_rewrites() {
        let (old, same) = (tags(&["a", "b", "c"]), tags(&["a", "b", "c"]));
        assert_eq!(TagRows::between(&old, &same), TagRows::Unchanged);
        let new = tags(&["a", "c", "d"]);
        assert_eq!(
            TagRows::between(&old, &new),
            TagRows::InPlace {
                removed: vec![&old[1]],
                appended: vec![&new[2]],
            }
        );
        let reordered = tags(&["c", "a"]);
        assert_eq!(
            TagRows::between(&old, &reordered),
            TagRows::Rewrite(reordered.iter().collect())
        );
    }
}
