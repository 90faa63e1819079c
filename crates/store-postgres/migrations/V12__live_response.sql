-- Live response: which command of a session a device's upload is the
-- result of, and each tenant's library. As SQLite's 0015.

-- A file's part of what it belongs to: the command index of a
-- live-response result, 0 otherwise. `action_id` names what a file belongs
-- to: its action, or for a library file its name.
ALTER TABLE files ADD COLUMN part BIGINT NOT NULL DEFAULT 0;
DROP INDEX files_by_action;
CREATE INDEX files_by_action ON files (tenant_id, action_id, kind, part);

-- The live-response library: scripts and files sessions put on devices,
-- by name; the bytes are the file `file_id`. Times in ticks.
CREATE TABLE library_files (
    tenant_id               TEXT NOT NULL REFERENCES tenants (id),
    file_name               TEXT COLLATE "C" NOT NULL,
    file_id                 TEXT NOT NULL,
    sha256                  TEXT NOT NULL,
    description             TEXT,
    parameters_description  TEXT,
    has_parameters          BOOLEAN NOT NULL,
    created_by              TEXT NOT NULL,
    creation_time           BIGINT NOT NULL,
    last_updated_time       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, file_name),
    FOREIGN KEY (tenant_id, file_id) REFERENCES files (tenant_id, id)
);
-- A file's entry, for deleting files (their key is referenced from here).
CREATE INDEX library_files_by_file ON library_files (tenant_id, file_id);
