-- The emulator control plane (control-plane.md). As PostgreSQL's V8.

-- The operator credential of the control API: one for the installation,
-- sealed with the key-encryption key (so that each start can print it) and
-- hashed (what a request is checked against).
CREATE TABLE operator_credential (
    id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    token_sealed  TEXT NOT NULL,
    token_hash    TEXT NOT NULL,  -- SHA-256 of a 256-bit secret
    created_at    INTEGER NOT NULL
);

-- Outcome rules: how actions of machines without an enrolled device go on,
-- in order (the first that matches takes the action).
CREATE TABLE outcome_rules (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    id         TEXT NOT NULL,
    position   INTEGER NOT NULL,
    matches    TEXT NOT NULL,  -- JSON: OutcomeMatch
    script     TEXT NOT NULL,  -- JSON: [OutcomeStep]
    hits       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX outcome_rules_in_order ON outcome_rules (tenant_id, position, id);

-- An action an outcome rule took: the script it follows, the step it is at,
-- since when, and how often it has been read there. `due_at`: when the
-- step's duration ends (none: it waits for polls, or is the last).
CREATE TABLE action_scripts (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    action_id     TEXT NOT NULL,
    machine_id    TEXT NOT NULL,
    script        TEXT NOT NULL,  -- JSON: [OutcomeStep]
    step          INTEGER NOT NULL,
    step_started  INTEGER NOT NULL,
    step_polls    INTEGER NOT NULL,
    due_at        INTEGER,
    PRIMARY KEY (tenant_id, action_id)
);
CREATE INDEX action_scripts_due ON action_scripts (due_at) WHERE due_at IS NOT NULL;
