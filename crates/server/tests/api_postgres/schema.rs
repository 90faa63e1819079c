//! The two stores' schemas agree: each store migrates a fresh database as it
//! does in production, each catalog is read into one neutral description
//! (tables, columns by kind and nullability, keys, indexes, triggers), and
//! the two descriptions are compared. Only the differences a dialect needs,
//! listed below with why, are allowed; any other is drift, fixed by a
//! migration on the side that is wrong.
//!
//! Here rather than in `api` because it needs PostgreSQL as much as SQLite,
//! and this binary skips (or under CI=true fails) without it.

use crate::backend::{connect, database_url};
use palisade_contract::action::MACHINE_ACTION_QUERYABLE;
use palisade_contract::alert::ALERT_QUERYABLE;
use palisade_contract::indicator::INDICATOR_QUERYABLE;
use palisade_contract::machine::{PropertyKind, QueryableProperty, MACHINE_QUERYABLE};
use palisade_domain::query::LAMBDA_ELEMENT;
use palisade_store_postgres::PoolSettings;
use palisade_store_sql::{Entity, ACTIONS, ALERTS, INDICATORS, MACHINES};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// What the stores need that the other does not: each a fact as [`Fact`]
/// prints it (a table stands for all of its own facts). The test fails on
/// any other difference, and on an entry here that no longer differs.
const ONLY_ON_SQLITE: &[&str] = &[
    // A read checks its copies' revisions (migrations 0007, V6): SQLite from
    // this covering index alone; PostgreSQL in the heap row it reads anyway,
    // where an index on the revision would end HOT updates of machines.
    "index machines_revision on machines (tenant_id, id, last_seen, rbac_group_id, revision)",
    // A rowid table's PRIMARY KEY other than INTEGER admits NULL unless
    // declared NOT NULL (SQLite's legacy quirk). Declaring it now means
    // rebuilding tenants, which every table refers to; no write leaves it out.
    "column tenants.id: text null",
];
const ONLY_ON_POSTGRES: &[&str] = &[
    // tenants.id, as PostgreSQL makes every key column: see ONLY_ON_SQLITE.
    "column tenants.id: text not null",
    // Rate-limit call logs: in the memory of the one SQLite node; shared by
    // the PostgreSQL nodes, a row per key that each admission locks.
    "table rate_limit_calls",
    // Audit entry ids per tenant: the one SQLite writer takes the next id in
    // turn; PostgreSQL nodes take it from the tenant's row here, locked.
    "table audit_sequences",
    // For lastSeen ranges ($filter, $orderby), which PostgreSQL's planner
    // weighs with statistics. SQLite dropped it on purpose (edaa532): its
    // reads go in id order through machines_revision, last_seen included.
    "index machines_by_last_seen on machines (tenant_id, last_seen)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_migrate_to_the_same_schema() {
    let (sqlite, postgres) = migrated_schemas().await;
    for (store, schema) in [("SQLite", &sqlite), ("PostgreSQL", &postgres)] {
        assert!(
            schema.column("machines", "id").is_some(),
            "{store}'s catalog was read without the machines table"
        );
    }
    let differences = differences(&sqlite, &postgres);
    let mut report = Vec::new();
    for (store, only_there, allowed) in [
        ("SQLite", &differences.only_on_sqlite, ONLY_ON_SQLITE),
        (
            "PostgreSQL",
            &differences.only_on_postgres,
            ONLY_ON_POSTGRES,
        ),
    ] {
        for fact in only_there.iter().filter(|f| !allowed.contains(&f.as_str())) {
            report.push(format!("  only on {store}: {fact}"));
        }
        for fact in allowed.iter().filter(|a| !only_there.contains(**a)) {
            report.push(format!(
                "  allowed only on {store}, but that is no longer a difference \
                 (remove it from the list): {fact}"
            ));
        }
    }
    assert!(
        report.is_empty(),
        "the schemas of the two stores differ after every migration:\n{}",
        report.join("\n")
    );
}

/// Every property `$filter` and `$orderby` accept is a column of both
/// schemas, of the property's kind: a property the map lacks would compare
/// as NULL (`Sql::column`) and match nothing, without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queryable_property_is_a_column_of_both_schemas() {
    let (sqlite, postgres) = migrated_schemas().await;
    let entities: [(&str, &[QueryableProperty], &Entity); 4] = [
        ("machines", MACHINE_QUERYABLE, &MACHINES),
        ("machine actions", MACHINE_ACTION_QUERYABLE, &ACTIONS),
        ("alerts", ALERT_QUERYABLE, &ALERTS),
        ("indicators", INDICATOR_QUERYABLE, &INDICATORS),
    ];
    let mut problems = Vec::new();
    for (entity_name, catalogue, entity) in entities {
        for property in catalogue {
            let (key, expected) = match property.kind {
                // Filtered inside any(...): the element is a tag row's column.
                PropertyKind::StringCollection => {
                    if entity.tags.is_none() {
                        problems.push(format!(
                            "{entity_name}.{}: a collection, but the entity has no tag rows",
                            property.name
                        ));
                    }
                    (LAMBDA_ELEMENT, Kind::Text)
                }
                PropertyKind::String => (property.name, Kind::Text),
                // Times are stored as ticks; flags as SQLite's integers.
                PropertyKind::Integer | PropertyKind::DateTime | PropertyKind::Boolean => {
                    (property.name, Kind::Integer)
                }
            };
            let Some(column) = (entity.column)(key) else {
                problems.push(format!(
                    "{entity_name}.{}: no column in the store's map",
                    property.name
                ));
                continue;
            };
            let Some((table, column)) = column
                .split_once('.')
                .and_then(|(alias, column)| Some((table_of(alias)?, column)))
            else {
                problems.push(format!(
                    "{entity_name}.{}: maps to {column}, not a column of a known table alias",
                    property.name
                ));
                continue;
            };
            for (store, schema) in [("SQLite", &sqlite), ("PostgreSQL", &postgres)] {
                match schema.column(table, column) {
                    None => problems.push(format!(
                        "{entity_name}.{}: maps to {table}.{column}, which {store} has not",
                        property.name
                    )),
                    // PostgreSQL's flags are booleans (see `differences`).
                    Some(Kind::Boolean)
                        if store == "PostgreSQL" && property.kind == PropertyKind::Boolean => {}
                    Some(kind) if *kind != expected => problems.push(format!(
                        "{entity_name}.{}: maps to {table}.{column}, {kind} on {store}, \
                         not {expected}",
                        property.name
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The table behind each alias the stores' queries give it (`machines m`,
/// `machine_actions a`, `machine_tags t`).
fn table_of(alias: &str) -> Option<&'static str> {
    match alias {
        "m" => Some("machines"),
        "a" => Some("machine_actions"),
        "t" => Some("machine_tags"),
        "l" => Some("alerts"),
        "i" => Some("indicators"),
        _ => None,
    }
}

/// Each store's schema, as the store migrates a fresh database.
async fn migrated_schemas() -> (Schema, Schema) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_file = dir.path().join("palisade.db");
    drop(palisade_store_sqlite::open(&sqlite_file).unwrap());
    let postgres_url = database_url(dir.path()).await;
    drop(
        palisade_store_postgres::connect(&postgres_url, PoolSettings::default())
            .await
            .unwrap(),
    );
    (
        sqlite_schema(&sqlite_file),
        postgres_schema(&postgres_url).await,
    )
}

/// A column's type, as either dialect's types map onto it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Integer,
    Real,
    Text,
    Blob,
    Boolean,
    /// A type neither store is expected to use, by its own name.
    Other(String),
}

impl Kind {
    /// By SQLite's rules for a declared type's affinity (the order matters).
    fn of_sqlite(declared: &str) -> Kind {
        let declared = declared.to_ascii_uppercase();
        let has = |part: &str| declared.contains(part);
        if has("INT") {
            Kind::Integer
        } else if has("CHAR") || has("CLOB") || has("TEXT") {
            Kind::Text
        } else if has("BLOB") || declared.is_empty() {
            Kind::Blob
        } else if has("REAL") || has("FLOA") || has("DOUB") {
            Kind::Real
        } else {
            Kind::Other(declared)
        }
    }

    fn of_postgres(type_name: &str) -> Kind {
        match type_name {
            "int2" | "int4" | "int8" => Kind::Integer,
            "float4" | "float8" | "numeric" => Kind::Real,
            "text" | "varchar" | "bpchar" => Kind::Text,
            "bytea" => Kind::Blob,
            "bool" => Kind::Boolean,
            other => Kind::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Integer => f.write_str("integer"),
            Kind::Real => f.write_str("real"),
            Kind::Text => f.write_str("text"),
            Kind::Blob => f.write_str("blob"),
            Kind::Boolean => f.write_str("boolean"),
            Kind::Other(name) => f.write_str(name),
        }
    }
}

/// One key of an index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct IndexKey {
    expression: KeyExpression,
    descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyExpression {
    Column(String),
    /// SQLite's `column COLLATE NOCASE`, PostgreSQL's `lower(column)`.
    CaseInsensitive(String),
    Other(String),
}

impl fmt::Display for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expression {
            KeyExpression::Column(column) => f.write_str(column)?,
            KeyExpression::CaseInsensitive(column) => write!(f, "lower({column})")?,
            KeyExpression::Other(expression) => f.write_str(expression)?,
        }
        if self.descending {
            f.write_str(" DESC")?;
        }
        Ok(())
    }
}

/// One fact of a schema, in either dialect.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Fact {
    Table(String),
    Column {
        table: String,
        column: String,
        kind: Kind,
        nullable: bool,
    },
    PrimaryKey {
        table: String,
        columns: Vec<String>,
    },
    Unique {
        table: String,
        columns: Vec<String>,
    },
    ForeignKey {
        table: String,
        columns: Vec<String>,
        references: String,
        referenced: Vec<String>,
        /// `no action`, `cascade`, ...
        on_delete: String,
    },
    Index {
        name: String,
        table: String,
        keys: Vec<IndexKey>,
        unique: bool,
        partial: bool,
    },
    Trigger {
        name: String,
        table: String,
    },
}

impl Fact {
    fn table(&self) -> &str {
        match self {
            Fact::Table(table)
            | Fact::Column { table, .. }
            | Fact::PrimaryKey { table, .. }
            | Fact::Unique { table, .. }
            | Fact::ForeignKey { table, .. }
            | Fact::Index { table, .. }
            | Fact::Trigger { table, .. } => table,
        }
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |columns: &[String]| columns.join(", ");
        match self {
            Fact::Table(table) => write!(f, "table {table}"),
            Fact::Column {
                table,
                column,
                kind,
                nullable,
            } => {
                let null = if *nullable { "null" } else { "not null" };
                write!(f, "column {table}.{column}: {kind} {null}")
            }
            Fact::PrimaryKey { table, columns } => {
                write!(f, "primary key of {table} ({})", list(columns))
            }
            Fact::Unique { table, columns } => write!(f, "unique {table} ({})", list(columns)),
            Fact::ForeignKey {
                table,
                columns,
                references,
                referenced,
                on_delete,
            } => write!(
                f,
                "foreign key {table} ({}) references {references} ({}) on delete {on_delete}",
                list(columns),
                list(referenced)
            ),
            Fact::Index {
                name,
                table,
                keys,
                unique,
                partial,
            } => {
                let keys: Vec<String> = keys.iter().map(IndexKey::to_string).collect();
                let unique = if *unique { "unique " } else { "" };
                let partial = if *partial { " where ..." } else { "" };
                write!(
                    f,
                    "{unique}index {name} on {table} ({}){partial}",
                    keys.join(", ")
                )
            }
            Fact::Trigger { name, table } => write!(f, "trigger {name} on {table}"),
        }
    }
}

#[derive(Debug, Default)]
struct Schema {
    facts: BTreeSet<Fact>,
}

impl Schema {
    fn column(&self, table: &str, column: &str) -> Option<&Kind> {
        self.facts.iter().find_map(|fact| match fact {
            Fact::Column {
                table: t,
                column: c,
                kind,
                ..
            } if t == table && c == column => Some(kind),
            _ => None,
        })
    }

    fn tables(&self) -> BTreeSet<&str> {
        self.facts
            .iter()
            .filter_map(|fact| match fact {
                Fact::Table(table) => Some(table.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Facts each schema has and the other has not, as printed; a table only
/// one has stands for all of its facts.
struct Differences {
    only_on_sqlite: BTreeSet<String>,
    only_on_postgres: BTreeSet<String>,
}

fn differences(sqlite: &Schema, postgres: &Schema) -> Differences {
    // SQLite has no boolean type: a flag is an INTEGER there (0 or 1), a
    // boolean on PostgreSQL; each store's rows module converts.
    let postgres = Schema {
        facts: postgres
            .facts
            .iter()
            .cloned()
            .map(|mut fact| {
                if let Fact::Column { kind, .. } = &mut fact {
                    if *kind == Kind::Boolean {
                        *kind = Kind::Integer;
                    }
                }
                fact
            })
            .collect(),
    };
    let only = |one: &Schema, other: &Schema| -> BTreeSet<String> {
        let other_tables = other.tables();
        one.facts
            .difference(&other.facts)
            .filter(|fact| matches!(fact, Fact::Table(_)) || other_tables.contains(fact.table()))
            .map(Fact::to_string)
            .collect()
    };
    Differences {
        only_on_sqlite: only(sqlite, &postgres),
        only_on_postgres: only(&postgres, sqlite),
    }
}

/// SQLite's catalog: `sqlite_schema` and the table-valued forms of `pragma
/// table_xinfo`, `index_list`, `index_xinfo` and `foreign_key_list`.
fn sqlite_schema(path: &Path) -> Schema {
    let conn = rusqlite::Connection::open(path).unwrap();
    let strings = |sql: &str, parameters: &[&str]| -> Vec<Vec<Option<String>>> {
        let mut statement = conn.prepare(sql).unwrap();
        let width = statement.column_count();
        statement
            .query_map(rusqlite::params_from_iter(parameters), |row| {
                (0..width)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                            value => Some(value.as_str()?.to_string()),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let mut facts = BTreeSet::new();
    let tables: Vec<String> = strings(
        "SELECT name FROM sqlite_schema WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        &[],
    )
    .iter()
    .map(|row| text(&row[0]))
    .collect();
    for table in &tables {
        facts.insert(Fact::Table(table.clone()));
        let mut primary_key = BTreeMap::new();
        for row in strings(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_xinfo(?1) WHERE hidden = 0",
            &[table],
        ) {
            let column = text(&row[0]);
            facts.insert(Fact::Column {
                table: table.clone(),
                column: column.clone(),
                kind: Kind::of_sqlite(&text(&row[1])),
                nullable: text(&row[2]) == "0",
            });
            let position: u32 = text(&row[3]).parse().unwrap();
            if position > 0 {
                primary_key.insert(position, column);
            }
        }
        if !primary_key.is_empty() {
            facts.insert(Fact::PrimaryKey {
                table: table.clone(),
                columns: primary_key.into_values().collect(),
            });
        }
        for row in strings(
            "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1)",
            &[table],
        ) {
            let name = text(&row[0]);
            let keys: Vec<IndexKey> = strings(
                "SELECT name, \"desc\", coll FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno",
                &[&name],
            )
            .iter()
            .map(|key| IndexKey {
                expression: match (&key[0], text(&key[2]).as_str()) {
                    (Some(column), "BINARY") => KeyExpression::Column(column.clone()),
                    (Some(column), "NOCASE") => KeyExpression::CaseInsensitive(column.clone()),
                    (Some(column), collation) => {
                        KeyExpression::Other(format!("{column} COLLATE {collation}"))
                    }
                    (None, _) => KeyExpression::Other("an expression".into()),
                },
                descending: text(&key[1]) == "1",
            })
            .collect();
            match text(&row[2]).as_str() {
                // From the columns' pk positions above.
                "pk" => {}
                "u" => {
                    facts.insert(Fact::Unique {
                        table: table.clone(),
                        columns: keys.iter().map(IndexKey::to_string).collect(),
                    });
                }
                _ => {
                    facts.insert(Fact::Index {
                        name,
                        table: table.clone(),
                        keys,
                        unique: text(&row[1]) == "1",
                        partial: text(&row[3]) == "1",
                    });
                }
            }
        }
        let mut foreign_keys: BTreeMap<String, Fact> = BTreeMap::new();
        for row in strings(
            "SELECT id, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1) \
             ORDER BY id, seq",
            &[table],
        ) {
            let fact = foreign_keys
                .entry(text(&row[0]))
                .or_insert_with(|| Fact::ForeignKey {
                    table: table.clone(),
                    columns: Vec::new(),
                    references: text(&row[1]),
                    referenced: Vec::new(),
                    on_delete: text(&row[4]).to_ascii_lowercase(),
                });
            if let Fact::ForeignKey {
                columns,
                referenced,
                ..
            } = fact
            {
                columns.push(text(&row[2]));
                // Palisade names the parent's columns (SQLite leaves `to`
                // NULL where the parent's primary key is implied).
                referenced.push(
                    row[3]
                        .clone()
                        .expect("a foreign key names its parent's columns"),
                );
            }
        }
        facts.extend(foreign_keys.into_values());
    }
    for row in strings(
        "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'trigger'",
        &[],
    ) {
        facts.insert(Fact::Trigger {
            name: text(&row[0]),
            table: text(&row[1]),
        });
    }
    Schema { facts }
}

/// PostgreSQL's catalog (`pg_catalog`), for the tables of schema `public`
/// but refinery's own.
async fn postgres_schema(url: &str) -> Schema {
    let client = connect(url).await.unwrap();
    const TABLES: &str = "c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
                          AND c.relname <> 'refinery_schema_history'";
    let rows = |sql: String| {
        let client = &client;
        async move { client.query(&sql, &[]).await.unwrap() }
    };
    let mut facts = BTreeSet::new();
    for row in rows(format!(
        "SELECT c.relname::text FROM pg_class c WHERE {TABLES}"
    ))
    .await
    {
        facts.insert(Fact::Table(row.get(0)));
    }
    for row in rows(format!(
        "SELECT c.relname::text, a.attname::text, t.typname::text, a.attnotnull \
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
         JOIN pg_type t ON t.oid = a.atttypid \
         WHERE {TABLES} AND a.attnum > 0 AND NOT a.attisdropped"
    ))
    .await
    {
        facts.insert(Fact::Column {
            table: row.get(0),
            column: row.get(1),
            kind: Kind::of_postgres(row.get(2)),
            nullable: !row.get::<_, bool>(3),
        });
    }
    // A constraint's columns (and a foreign key's parent's), in key order.
    let columns = |key: &str, table: &str| {
        format!(
            "array(SELECT a.attname::text FROM unnest(k.{key}) WITH ORDINALITY AS u(n, i) \
             JOIN pg_attribute a ON a.attrelid = k.{table} AND a.attnum = u.n ORDER BY u.i)"
        )
    };
    for row in rows(format!(
        "SELECT c.relname::text, k.contype::text, {}, p.relname::text, {}, k.confdeltype::text \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         LEFT JOIN pg_class p ON p.oid = k.confrelid \
         WHERE {TABLES} AND k.contype IN ('p', 'u', 'f')",
        columns("conkey", "conrelid"),
        columns("confkey", "confrelid"),
    ))
    .await
    {
        let (table, columns) = (row.get(0), row.get(2));
        facts.insert(match row.get::<_, &str>(1) {
            "p" => Fact::PrimaryKey { table, columns },
            "u" => Fact::Unique { table, columns },
            _ => Fact::ForeignKey {
                table,
                columns,
                references: row.get(3),
                referenced: row.get(4),
                on_delete: match row.get::<_, &str>(5) {
                    "a" => "no action",
                    "r" => "restrict",
                    "c" => "cascade",
                    "n" => "set null",
                    "d" => "set default",
                    other => panic!("confdeltype {other}"),
                }
                .to_string(),
            },
        });
    }
    // Indexes of their own: not those behind a primary key or unique constraint.
    for row in rows(format!(
        "SELECT i.relname::text, c.relname::text, x.indisunique, x.indpred IS NOT NULL, \
         array(SELECT pg_get_indexdef(x.indexrelid, k, true) \
               FROM generate_series(1, x.indnkeyatts) k ORDER BY k), \
         array(SELECT (x.indoption[k - 1] & 1) = 1 \
               FROM generate_series(1, x.indnkeyatts) k ORDER BY k) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class c ON c.oid = x.indrelid \
         WHERE {TABLES} AND NOT EXISTS (SELECT 1 FROM pg_constraint k \
               WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x'))"
    ))
    .await
    {
        let expressions: Vec<String> = row.get(4);
        let descending: Vec<bool> = row.get(5);
        let keys = expressions
            .iter()
            .zip(descending)
            .map(|(expression, descending)| IndexKey {
                expression: postgres_key(expression),
                descending,
            })
            .collect();
        facts.insert(Fact::Index {
            name: row.get(0),
            table: row.get(1),
            keys,
            unique: row.get(2),
            partial: row.get(3),
        });
    }
    for row in rows(format!(
        "SELECT t.tgname::text, c.relname::text FROM pg_trigger t \
         JOIN pg_class c ON c.oid = t.tgrelid WHERE {TABLES} AND NOT t.tgisinternal"
    ))
    .await
    {
        facts.insert(Fact::Trigger {
            name: row.get(0),
            table: row.get(1),
        });
    }
    Schema { facts }
}

/// An index key as `pg_get_indexdef` prints it: a column (quoted if a
/// keyword), `lower(column)`, or another expression.
fn postgres_key(expression: &str) -> KeyExpression {
    let identifier = |s: &str| {
        let s = s.trim_matches('"');
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            .then(|| s.to_string())
    };
    if let Some(column) = identifier(expression) {
        return KeyExpression::Column(column);
    }
    expression
        .strip_prefix("lower(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(identifier)
        .map_or_else(
            || KeyExpression::Other(expression.to_string()),
            KeyExpression::CaseInsensitive,
        )
}
