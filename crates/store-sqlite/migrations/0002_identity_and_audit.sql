-- App registrations, users and signing keys belong to a tenant; so does every audit entry.

CREATE TABLE apps (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    client_id     TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    permissions   TEXT NOT NULL,  -- JSON array of permission values
    secret_hash   TEXT NOT NULL,  -- argon2 PHC string; the secret itself is never stored
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, client_id)
);

CREATE TABLE users (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    id             TEXT NOT NULL,
    username       TEXT NOT NULL,
    roles          TEXT NOT NULL,  -- JSON array of MDE role names
    device_groups  TEXT NOT NULL,  -- "all" or a JSON array of device group ids
    password_hash  TEXT NOT NULL,  -- argon2 PHC string
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX users_by_name ON users (tenant_id, username COLLATE NOCASE);

CREATE TABLE signing_keys (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    kid              TEXT NOT NULL,
    private_key_pem  TEXT NOT NULL,
    modulus          TEXT NOT NULL,
    exponent         TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    retired_at       INTEGER,
    PRIMARY KEY (tenant_id, kid)
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    time        INTEGER NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    target      TEXT,
    result      INTEGER NOT NULL,
    request_id  TEXT NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
