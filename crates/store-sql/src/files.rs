//! The statements of files devices upload (`palisade_domain::files`): their
//! rows, their chunks in order, and the links that download them.

use crate::fields::file_fields;
use crate::{Dialect, Sql, Value};
use palisade_contract::Timestamp;
use palisade_domain::files::{FileKind, StoredFile};

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

fn ticks(at: Timestamp) -> Value {
    Value::Integer(at.ticks())
}

/// A new file's row.
pub fn insert_file(dialect: Dialect, file: &StoredFile) -> Sql {
    let columns = file_fields::COLUMNS;
    let places: Vec<String> = (1..=columns.len()).map(|n| format!("?{n}")).collect();
    let statement = format!(
        "INSERT INTO files ({}) VALUES ({})",
        columns.join(", "),
        places.join(", ")
    );
    Sql::fixed(
        dialect,
        &dialect.numbered(&statement),
        file_fields::values(file),
    )
}

pub fn insert_chunk(
    dialect: Dialect,
    tenant_id: &str,
    file_id: &str,
    seq: i64,
    data: Vec<u8>,
) -> Sql {
    let statement =
        "INSERT INTO file_chunks (tenant_id, file_id, seq, data) VALUES (?1, ?2, ?3, ?4)";
    let params = vec![
        text(tenant_id),
        text(file_id),
        Value::Integer(seq),
        Value::Bytes(data),
    ];
    Sql::fixed(dialect, &dialect.numbered(statement), params)
}

/// Completes `file` and forgets the other files of its action and kind
/// (an earlier upload, complete or not).
pub fn complete_file(dialect: Dialect, file: &StoredFile) -> Vec<Sql> {
    let complete = "UPDATE files SET size = ?3, sha256 = ?4, completed_at = ?5 \
                    WHERE tenant_id = ?1 AND id = ?2";
    let params = vec![
        text(&file.tenant_id),
        text(&file.id),
        Value::Integer(file.size),
        file.sha256.as_deref().map_or(Value::Null, text),
        file.completed_at.map_or(Value::Null, ticks),
    ];
    let others =
        "DELETE FROM files WHERE tenant_id = ?1 AND action_id = ?2 AND kind = ?3 AND id <> ?4";
    let kind: &'static str = file.kind.into();
    let other_params = vec![
        text(&file.tenant_id),
        text(&file.action_id),
        text(kind),
        text(&file.id),
    ];
    vec![
        Sql::fixed(dialect, &dialect.numbered(complete), params),
        Sql::fixed(dialect, &dialect.numbered(others), other_params),
    ]
}

pub fn delete_file(dialect: Dialect, tenant_id: &str, file_id: &str) -> Sql {
    let statement = "DELETE FROM files WHERE tenant_id = ?1 AND id = ?2";
    Sql::fixed(
        dialect,
        &dialect.numbered(statement),
        vec![text(tenant_id), text(file_id)],
    )
}

/// The action's newest complete file of `kind`.
pub fn action_file(dialect: Dialect, tenant_id: &str, action_id: &str, kind: FileKind) -> Sql {
    let statement = format!(
        "SELECT {} FROM files WHERE tenant_id = ?1 AND action_id = ?2 AND kind = ?3 \
         AND completed_at IS NOT NULL ORDER BY completed_at DESC LIMIT 1",
        file_fields::select(dialect)
    );
    let kind: &'static str = kind.into();
    let params = vec![text(tenant_id), text(action_id), text(kind)];
    Sql::fixed(dialect, &dialect.numbered(&statement), params)
}

pub fn chunk(dialect: Dialect, tenant_id: &str, file_id: &str, seq: i64) -> Sql {
    let statement =
        "SELECT data FROM file_chunks WHERE tenant_id = ?1 AND file_id = ?2 AND seq = ?3";
    let params = vec![text(tenant_id), text(file_id), Value::Integer(seq)];
    Sql::fixed(dialect, &dialect.numbered(statement), params)
}

pub fn insert_link(
    dialect: Dialect,
    token_hash: &str,
    tenant_id: &str,
    file_id: &str,
    expires_at: Timestamp,
) -> Sql {
    let statement = "INSERT INTO file_links (token_hash, tenant_id, file_id, expires_at) \
                VALUES (?1, ?2, ?3, ?4)";
    let params = vec![
        text(token_hash),
        text(tenant_id),
        text(file_id),
        ticks(expires_at),
    ];
    Sql::fixed(dialect, &dialect.numbered(statement), params)
}

/// The complete file a link reads, then the link's expiry.
pub fn linked_file(dialect: Dialect, token_hash: &str) -> Sql {
    let statement = format!(
        "SELECT {}, l.expires_at FROM file_links l \
         JOIN files ON files.tenant_id = l.tenant_id AND files.id = l.file_id \
         WHERE l.token_hash = ?1 AND files.completed_at IS NOT NULL",
        file_fields::select(dialect)
    );
    Sql::fixed(
        dialect,
        &dialect.numbered(&statement),
        vec![text(token_hash)],
    )
}

/// Deleting old files takes their chunks and links (ON DELETE CASCADE);
/// then expired links go.
pub fn forget_files(dialect: Dialect, before: Timestamp, now: Timestamp) -> Vec<Sql> {
    vec![
        Sql::fixed(
            dialect,
            &dialect.numbered("DELETE FROM files WHERE created_at < ?1"),
            vec![ticks(before)],
        ),
        Sql::fixed(
            dialect,
            &dialect.numbered("DELETE FROM file_links WHERE expires_at <= ?1"),
            vec![ticks(now)],
        ),
    ]
}
