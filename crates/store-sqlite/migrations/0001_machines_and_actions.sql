-- Every row carries its tenant; every key starts with it.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    retention_days  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE device_groups (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    id         INTEGER NOT NULL,
    name       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Times are INTEGER ticks of 100 ns since the Unix epoch (MDE's resolution).
CREATE TABLE machines (
    tenant_id                 TEXT NOT NULL REFERENCES tenants (id),
    id                        TEXT NOT NULL,
    merged_into_machine_id    TEXT,
    is_potential_duplication  INTEGER NOT NULL,
    is_excluded               INTEGER NOT NULL,
    exclusion_reason          TEXT,
    computer_dns_name         TEXT NOT NULL,
    first_seen                INTEGER NOT NULL,
    last_seen                 INTEGER NOT NULL,
    os_platform               TEXT NOT NULL,
    os_version                TEXT,
    os_processor              TEXT,
    version                   TEXT,
    last_ip_address           TEXT,
    last_external_ip_address  TEXT,
    agent_version             TEXT,
    os_build                  INTEGER,
    health_status             TEXT NOT NULL,
    device_value              TEXT,
    rbac_group_id             INTEGER NOT NULL,
    risk_score                TEXT,
    exposure_level            TEXT,
    is_aad_joined             INTEGER NOT NULL,
    aad_device_id             TEXT,
    defender_av_status        TEXT,
    onboarding_status         TEXT NOT NULL,
    os_architecture           TEXT,
    managed_by                TEXT,
    managed_by_status         TEXT,
    ip_addresses              TEXT NOT NULL,  -- JSON array of IpAddress
    vm_metadata               TEXT,           -- JSON object or NULL
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX machines_by_name ON machines (tenant_id, computer_dns_name COLLATE NOCASE);

-- Kept as rows (not JSON on the machine) so that machineTags/any(...) uses an index.
-- Keyed by position so that a machine's tags read back in order without a sort.
CREATE TABLE machine_tags (
    tenant_id   TEXT NOT NULL,
    machine_id  TEXT NOT NULL,
    position    INTEGER NOT NULL,  -- order of addition, as the machine shows them
    tag         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, machine_id, position),
    UNIQUE (tenant_id, machine_id, tag),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id) ON DELETE CASCADE
) WITHOUT ROWID;
-- Covering, so that any(t: t eq 'x') reads only this index to find its machines.
CREATE INDEX machine_tags_by_tag ON machine_tags (tenant_id, tag, machine_id);

CREATE TABLE machine_actions (
    tenant_id               TEXT NOT NULL,
    id                      TEXT NOT NULL,
    type                    TEXT NOT NULL,
    title                   TEXT,
    requestor               TEXT NOT NULL,
    requestor_comment       TEXT,
    status                  TEXT NOT NULL,
    machine_id              TEXT NOT NULL,
    computer_dns_name       TEXT,
    creation_time           INTEGER NOT NULL,
    last_update_time        INTEGER NOT NULL,
    cancellation_requestor  TEXT,
    cancellation_comment    TEXT,
    cancellation_time       INTEGER,
    error_hresult           INTEGER NOT NULL,
    scope                   TEXT,
    external_id             TEXT,
    request_source          TEXT NOT NULL,
    related_file_info       TEXT,  -- JSON object or NULL
    commands                TEXT NOT NULL,  -- JSON array
    troubleshoot_info       TEXT,  -- JSON or NULL
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX machine_actions_newest_first ON machine_actions (tenant_id, creation_time DESC, id);
CREATE INDEX machine_actions_by_machine ON machine_actions (tenant_id, machine_id, status);
-- For the sweep that times out actions no device picked up.
CREATE INDEX machine_actions_pending ON machine_actions (creation_time) WHERE status = 'Pending';
