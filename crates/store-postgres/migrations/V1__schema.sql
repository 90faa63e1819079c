-- The PostgreSQL schema: the same tables as the SQLite store's, in
-- PostgreSQL's types. Every row carries its tenant; every key starts with it.
-- Times are BIGINT ticks of 100 ns since the Unix epoch (MDE's resolution).
-- Text that is compared or ordered by the API uses the "C" collation, so that
-- order is by code point on every server, whatever its locale, as on SQLite.

CREATE TABLE tenants (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL,
    retention_days  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE device_groups (
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id         BIGINT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    rank       BIGINT NOT NULL,
    rules      TEXT NOT NULL,  -- JSON GroupRules
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE machines (
    tenant_id                 TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id                        TEXT COLLATE "C" NOT NULL,
    merged_into_machine_id    TEXT COLLATE "C",
    is_potential_duplication  BOOLEAN NOT NULL,
    is_excluded               BOOLEAN NOT NULL,
    exclusion_reason          TEXT COLLATE "C",
    computer_dns_name         TEXT COLLATE "C" NOT NULL,
    first_seen                BIGINT NOT NULL,
    last_seen                 BIGINT NOT NULL,
    os_platform               TEXT COLLATE "C" NOT NULL,
    os_version                TEXT COLLATE "C",
    os_processor              TEXT COLLATE "C",
    version                   TEXT COLLATE "C",
    last_ip_address           TEXT COLLATE "C",
    last_external_ip_address  TEXT COLLATE "C",
    agent_version             TEXT COLLATE "C",
    os_build                  BIGINT,
    health_status             TEXT COLLATE "C" NOT NULL,
    device_value              TEXT COLLATE "C",
    rbac_group_id             BIGINT NOT NULL,
    risk_score                TEXT COLLATE "C",
    exposure_level            TEXT COLLATE "C",
    is_aad_joined             BOOLEAN NOT NULL,
    aad_device_id             TEXT COLLATE "C",
    defender_av_status        TEXT COLLATE "C",
    onboarding_status         TEXT COLLATE "C" NOT NULL,
    os_architecture           TEXT COLLATE "C",
    managed_by                TEXT COLLATE "C",
    managed_by_status         TEXT COLLATE "C",
    ip_addresses              TEXT NOT NULL,  -- JSON array of IpAddress
    vm_metadata               TEXT,           -- JSON object or NULL
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX machines_by_name ON machines (tenant_id, lower(computer_dns_name));
CREATE INDEX machines_by_last_seen ON machines (tenant_id, last_seen);

-- Rows (not an array on the machine) so that machineTags/any(...) uses an index;
-- keyed by position so that a machine's tags read back in the order added.
CREATE TABLE machine_tags (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    machine_id  TEXT COLLATE "C" NOT NULL,
    position    BIGINT NOT NULL,
    tag         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, machine_id, position),
    UNIQUE (tenant_id, machine_id, tag),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX machine_tags_by_tag ON machine_tags (tenant_id, tag, machine_id);

CREATE TABLE machine_actions (
    tenant_id               TEXT COLLATE "C" NOT NULL,
    id                      TEXT COLLATE "C" NOT NULL,
    type                    TEXT COLLATE "C" NOT NULL,
    title                   TEXT COLLATE "C",
    requestor               TEXT COLLATE "C" NOT NULL,
    requestor_comment       TEXT COLLATE "C",
    status                  TEXT COLLATE "C" NOT NULL,
    machine_id              TEXT COLLATE "C" NOT NULL,
    computer_dns_name       TEXT COLLATE "C",
    creation_time           BIGINT NOT NULL,
    last_update_time        BIGINT NOT NULL,
    cancellation_requestor  TEXT COLLATE "C",
    cancellation_comment    TEXT COLLATE "C",
    cancellation_time       BIGINT,
    error_hresult           BIGINT NOT NULL,
    scope                   TEXT COLLATE "C",
    external_id             TEXT COLLATE "C",
    request_source          TEXT COLLATE "C" NOT NULL,
    related_file_info       TEXT,  -- JSON object or NULL
    commands                TEXT NOT NULL,  -- JSON array
    troubleshoot_info       TEXT,  -- JSON or NULL
    -- Until when the check-in that last delivered it holds it (see store::claim_device_actions).
    delivered_until         BIGINT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX machine_actions_newest_first ON machine_actions (tenant_id, creation_time DESC, id);
CREATE INDEX machine_actions_by_machine ON machine_actions (tenant_id, machine_id, status);
CREATE INDEX machine_actions_pending ON machine_actions (creation_time) WHERE status = 'Pending';

CREATE TABLE apps (
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    client_id     TEXT COLLATE "C" NOT NULL,
    display_name  TEXT COLLATE "C" NOT NULL,
    permissions   TEXT NOT NULL,  -- JSON array of permission values
    secret_hash   TEXT NOT NULL,  -- argon2 PHC string; the secret itself is never stored
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, client_id)
);

CREATE TABLE users (
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id             TEXT COLLATE "C" NOT NULL,
    username       TEXT COLLATE "C" NOT NULL,
    roles          TEXT NOT NULL,  -- JSON array of MDE role names
    device_groups  TEXT NOT NULL,  -- "all" or a JSON array of device group ids
    password_hash  TEXT NOT NULL,  -- argon2 PHC string
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX users_by_name ON users (tenant_id, lower(username));

CREATE TABLE signing_keys (
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    kid              TEXT COLLATE "C" NOT NULL,
    private_key_pem  TEXT NOT NULL,
    modulus          TEXT NOT NULL,
    exponent         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    retired_at       BIGINT,
    PRIMARY KEY (tenant_id, kid)
);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL,
    time        BIGINT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    target      TEXT,
    result      BIGINT NOT NULL,
    request_id  TEXT NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);

CREATE TABLE onboarding_tokens (
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id           TEXT COLLATE "C" NOT NULL,
    description  TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,  -- SHA-256 of a 256-bit secret
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    PRIMARY KEY (tenant_id, id)
);

-- One row per enrollment; an offboarded device keeps its row (and its machine).
CREATE TABLE devices (
    tenant_id            TEXT COLLATE "C" NOT NULL,
    machine_id           TEXT COLLATE "C" NOT NULL,
    credential_id        TEXT COLLATE "C" NOT NULL,
    credential_hash      TEXT NOT NULL,
    hardware_id          TEXT COLLATE "C" NOT NULL,
    onboarding_token_id  TEXT COLLATE "C" NOT NULL,
    capabilities         TEXT NOT NULL,  -- JSON array
    enrolled_at          BIGINT NOT NULL,
    offboarded_at        BIGINT,
    isolation            TEXT NOT NULL,  -- None, Full, Selective: as in force on the device
    isolation_at         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, machine_id),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE UNIQUE INDEX devices_by_credential ON devices (tenant_id, credential_id);
CREATE UNIQUE INDEX devices_enrolled_hardware ON devices (tenant_id, hardware_id)
    WHERE offboarded_at IS NULL;

-- Rate limits shared by every node: per key, the times of the calls admitted
-- in the last hour (the same log the embedded store keeps in memory).
CREATE TABLE rate_limit_calls (
    tenant_id     TEXT COLLATE "C" NOT NULL,
    principal_id  TEXT COLLATE "C" NOT NULL,
    operation     TEXT COLLATE "C" NOT NULL,
    calls         BIGINT[] NOT NULL,
    last_call     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, principal_id, operation)
);
CREATE INDEX rate_limit_calls_idle ON rate_limit_calls (last_call);
