-- The device plane: tokens devices enroll with, and the enrolled devices.

CREATE TABLE onboarding_tokens (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    description  TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,  -- SHA-256 of a 256-bit secret
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    PRIMARY KEY (tenant_id, id)
);

-- One row per enrollment; an offboarded device keeps its row (and its machine).
CREATE TABLE devices (
    tenant_id            TEXT NOT NULL,
    machine_id           TEXT NOT NULL,
    credential_id        TEXT NOT NULL,
    credential_hash      TEXT NOT NULL,  -- SHA-256 of a 256-bit secret
    hardware_id          TEXT NOT NULL,
    onboarding_token_id  TEXT NOT NULL,
    capabilities         TEXT NOT NULL,  -- JSON array
    enrolled_at          INTEGER NOT NULL,
    offboarded_at        INTEGER,
    isolation            TEXT NOT NULL,  -- None, Full, Selective: as in force on the device
    isolation_at         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, machine_id),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE UNIQUE INDEX devices_by_credential ON devices (tenant_id, credential_id);
-- Hardware enrolls once until it is offboarded.
CREATE UNIQUE INDEX devices_enrolled_hardware ON devices (tenant_id, hardware_id)
    WHERE offboarded_at IS NULL;
