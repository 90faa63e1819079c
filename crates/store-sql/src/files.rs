//! The statements of files devices upload and the library holds
//! (`palisade_domain::files`): their rows, their chunks in order, the links
//! that download them, and the library's entries.

use crate::fields::{file_fields, library_fields};
use crate::{Dialect, Sql, Value};
use palisade_contract::Timestamp;
use palisade_domain::files::{FileKind, StoredFile};
use palisade_domain::live_response::LibraryEntry;

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

/// Completes `file`.
fn complete(dialect: Dialect, file: &StoredFile) -> Sql {
    let complete = "UPDATE files SET size = ?3, sha256 = ?4, completed_at = ?5 \
                    WHERE tenant_id = ?1 AND id = ?2";
    let params = vec![
        text(&file.tenant_id),
        text(&file.id),
        Value::Integer(file.size),
        file.sha256.as_deref().map_or(Value::Null, text),
        file.completed_at.map_or(Value::Null, ticks),
    ];
    Sql::fixed(dialect, &dialect.numbered(complete), params)
}

/// Completes `file` and forgets the other files of its action, kind and
/// part (an earlier upload, complete or not).
pub fn complete_file(dialect: Dialect, file: &StoredFile) -> Vec<Sql> {
    let others = "DELETE FROM files WHERE tenant_id = ?1 AND action_id = ?2 AND kind = ?3 \
                  AND part = ?4 AND id <> ?5";
    let kind: &'static str = file.kind.into();
    let other_params = vec![
        text(&file.tenant_id),
        text(&file.action_id),
        text(kind),
        Value::Integer(file.part),
        text(&file.id),
    ];
    vec![
        complete(dialect, file),
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

/// The action's newest complete file of `kind` and part.
pub fn action_file(
    dialect: Dialect,
    tenant_id: &str,
    action_id: &str,
    (kind, part): (FileKind, i64),
) -> Sql {
    let statement = format!(
        "SELECT {} FROM files WHERE tenant_id = ?1 AND action_id = ?2 AND kind = ?3 \
         AND part = ?4 AND completed_at IS NOT NULL ORDER BY completed_at DESC LIMIT 1",
        file_fields::select(dialect)
    );
    let kind: &'static str = kind.into();
    let params = vec![
        text(tenant_id),
        text(action_id),
        text(kind),
        Value::Integer(part),
    ];
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
/// then expired links go. The library's files stay while it holds them.
pub fn forget_files(dialect: Dialect, before: Timestamp, now: Timestamp) -> Vec<Sql> {
    let library: &'static str = FileKind::LibraryFile.into();
    let old = "DELETE FROM files WHERE created_at < ?1 AND NOT (kind = ?2 AND EXISTS \
               (SELECT 1 FROM library_files b WHERE b.tenant_id = files.tenant_id \
               AND b.file_id = files.id))";
    vec![
        Sql::fixed(
            dialect,
            &dialect.numbered(old),
            vec![ticks(before), text(library)],
        ),
        Sql::fixed(
            dialect,
            &dialect.numbered("DELETE FROM file_links WHERE expires_at <= ?1"),
            vec![ticks(now)],
        ),
    ]
}

/// The tenant's library entries by name (`file_name` given: that one).
pub fn library_files(dialect: Dialect, tenant_id: &str, file_name: Option<&str>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(library_fields::select(dialect))
        .push(" FROM library_files WHERE tenant_id = ")
        .bind(text(tenant_id));
    if let Some(name) = file_name {
        sql.push(" AND file_name = ").bind(text(name));
    }
    sql.push(" ORDER BY file_name");
    sql
}

/// Makes `entry` the library's (in place of one of its name if `replace`,
/// else only if the name is free), completes its file only if the entry
/// is now its (the statement's count says whether it was put), and forgets
/// the other files of its name.
pub fn put_library_file(
    dialect: Dialect,
    entry: &LibraryEntry,
    file: &StoredFile,
    replace: bool,
) -> Vec<Sql> {
    let columns = library_fields::COLUMNS;
    let places: Vec<String> = (1..=columns.len()).map(|n| format!("?{n}")).collect();
    let on_conflict = match replace {
        true => {
            let set: Vec<String> = columns
                .iter()
                .filter(|c| !matches!(**c, "tenant_id" | "file_name"))
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            format!("DO UPDATE SET {}", set.join(", "))
        }
        false => "DO NOTHING".to_string(),
    };
    let upsert = format!(
        "INSERT INTO library_files ({}) VALUES ({}) ON CONFLICT (tenant_id, file_name) {on_conflict}",
        columns.join(", "),
        places.join(", ")
    );
    let mut completed = complete(dialect, file);
    completed.push(
        " AND EXISTS (SELECT 1 FROM library_files b WHERE b.tenant_id = files.tenant_id \
         AND b.file_id = files.id)",
    );
    let kind: &'static str = FileKind::LibraryFile.into();
    // Complete ones only: another upload of the name may be under way.
    let others = "DELETE FROM files WHERE tenant_id = ?1 AND action_id = ?2 AND kind = ?3 \
                  AND completed_at IS NOT NULL AND id <> (SELECT file_id FROM library_files b \
                  WHERE b.tenant_id = ?1 AND b.file_name = ?2)";
    vec![
        Sql::fixed(
            dialect,
            &dialect.numbered(&upsert),
            library_fields::values(entry),
        ),
        completed,
        Sql::fixed(
            dialect,
            &dialect.numbered(others),
            vec![text(&entry.tenant_id), text(&entry.file_name), text(kind)],
        ),
    ]
}

/// Deletes `entry` (if it still has its file), then that file; an upload
/// of the name under way is left to finish.
pub fn delete_library_file(dialect: Dialect, entry: &LibraryEntry) -> Vec<Sql> {
    let key = || {
        vec![
            text(&entry.tenant_id),
            text(&entry.file_name),
            text(&entry.file_id),
        ]
    };
    let entry_gone =
        "DELETE FROM library_files WHERE tenant_id = ?1 AND file_name = ?2 AND file_id = ?3";
    let file_gone = "DELETE FROM files WHERE tenant_id = ?1 AND action_id = ?2 AND id = ?3 \
                     AND NOT EXISTS (SELECT 1 FROM library_files b \
                     WHERE b.tenant_id = ?1 AND b.file_id = ?3)";
    vec![
        Sql::fixed(dialect, &dialect.numbered(entry_gone), key()),
        Sql::fixed(dialect, &dialect.numbered(file_gone), key()),
    ]
}
