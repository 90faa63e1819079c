-- The emulator control plane's clocks, faults and recorder (control-plane.md). As PostgreSQL's V9.

-- A tenant's clock once the control plane set it (no row: the server's time).
-- `frozen_at`: the reading it stopped at; otherwise it runs `offset_ticks`
-- (100 ns) from the server's clock.
CREATE TABLE tenant_clocks (
    tenant_id     TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id),
    frozen_at     INTEGER,
    offset_ticks  INTEGER NOT NULL
);

-- Fault rules: which calls of the MDE API or the token service get an
-- injected error or latency, in order (the first that takes a call wins).
-- `definition`: JSON, the rule as posted (NewFaultRule); `seen`: the calls
-- it matched; `hits`: those it took.
CREATE TABLE fault_rules (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL,
    position    INTEGER NOT NULL,
    definition  TEXT NOT NULL,
    seen        INTEGER NOT NULL,
    hits        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX fault_rules_in_order ON fault_rules (tenant_id, position, id);

-- The document a tenant was made from (--seed, POST /_palisade/v1/tenants,
-- the demo): what a reset puts the tenant back to. JSON: TenantDocument.
CREATE TABLE tenant_seeds (
    tenant_id  TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id),
    document   TEXT NOT NULL
);

-- The tenants whose MDE API calls are recorded (a row: on).
CREATE TABLE recorders (
    tenant_id  TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id)
);

-- Recorded calls of the MDE API, ordered by `time` (ticks of the server's
-- clock), then `id`. `granted`, `used`: JSON lists of permission names.
CREATE TABLE recorded_calls (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    id             TEXT NOT NULL,
    time           INTEGER NOT NULL,
    caller         TEXT NOT NULL,
    operation      TEXT NOT NULL,
    method         TEXT NOT NULL,
    path           TEXT NOT NULL,
    query          TEXT NOT NULL,
    request_body   TEXT,
    status         INTEGER NOT NULL,
    response_body  TEXT,
    latency_ms     INTEGER NOT NULL,
    retry_after    INTEGER,
    granted        TEXT NOT NULL,
    used           TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX recorded_calls_in_order ON recorded_calls (tenant_id, time, id);
