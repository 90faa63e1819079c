-- Files devices upload (investigation packages), in the database so that
-- every node serves them. As SQLite's 0014.

-- One file: complete once `completed_at` is set; until then its chunks
-- are still arriving. Times in ticks.
CREATE TABLE files (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    id            TEXT NOT NULL,
    action_id     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    size          BIGINT NOT NULL DEFAULT 0,
    sha256        TEXT,
    created_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX files_by_action ON files (tenant_id, action_id, kind);
CREATE INDEX files_by_creation ON files (created_at);

-- A file's bytes in order, a chunk a row: neither an upload nor a download
-- holds a whole file.
CREATE TABLE file_chunks (
    tenant_id  TEXT NOT NULL,
    file_id    TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    data       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, file_id, seq),
    FOREIGN KEY (tenant_id, file_id) REFERENCES files (tenant_id, id) ON DELETE CASCADE
);

-- Download links: a random token (stored as its SHA-256) that reads one
-- file until it expires.
CREATE TABLE file_links (
    token_hash  TEXT NOT NULL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, file_id) REFERENCES files (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX file_links_by_expiry ON file_links (expires_at);
