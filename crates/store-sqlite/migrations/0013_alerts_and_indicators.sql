-- Alerts and indicators (MDE's alerts.md, ti-indicator.md). As PostgreSQL's V10.

-- Per-tenant counters that writes reserve from inside their transaction
-- (`alert_update`: the last alert lastUpdateTime given, in ticks, so that
-- every change gets a later, unique one; `indicator_id`: the last indicator
-- id). A reservation holds the row until its transaction commits, so that
-- changes commit in the order of the values they took.
CREATE TABLE tenant_counters (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    counter    TEXT NOT NULL,
    value      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, counter)
);

-- Times in ticks; mitre_techniques, related_user, comments, evidence: JSON.
-- computer_dns_name and rbac_group_name: the machine's when the alert was raised.
CREATE TABLE alerts (
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    id                   TEXT NOT NULL,
    incident_id          INTEGER,
    investigation_id     INTEGER,
    assigned_to          TEXT,
    severity             TEXT NOT NULL,
    status               TEXT NOT NULL,
    classification       TEXT,
    determination        TEXT,
    investigation_state  TEXT,
    detection_source     TEXT NOT NULL,
    detector_id          TEXT,
    category             TEXT NOT NULL,
    threat_family_name   TEXT,
    title                TEXT NOT NULL,
    description          TEXT,
    alert_creation_time  INTEGER NOT NULL,
    first_event_time     INTEGER,
    last_event_time      INTEGER,
    last_update_time     INTEGER NOT NULL,
    resolved_time        INTEGER,
    machine_id           TEXT NOT NULL,
    computer_dns_name    TEXT,
    rbac_group_name      TEXT,
    aad_tenant_id        TEXT NOT NULL,
    threat_name          TEXT,
    mitre_techniques     TEXT NOT NULL,
    related_user         TEXT,
    comments             TEXT NOT NULL,
    evidence             TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Incremental polling reads this index in order; unique, as the counter makes it.
CREATE UNIQUE INDEX alerts_by_update ON alerts (tenant_id, last_update_time);
CREATE INDEX alerts_newest_first ON alerts (tenant_id, alert_creation_time DESC, id);
CREATE INDEX alerts_by_machine ON alerts (tenant_id, machine_id, status);

-- `value_key`: the value as matched (hashes and names in lower case, an
-- address in its canonical form): one indicator per type and value.
-- Times in ticks; rbac_group_names, rbac_group_ids, mitre_techniques: JSON.
CREATE TABLE indicators (
    tenant_id                  TEXT NOT NULL REFERENCES tenants (id),
    id                         INTEGER NOT NULL,
    indicator_value            TEXT NOT NULL,
    indicator_type             TEXT NOT NULL,
    value_key                  TEXT NOT NULL,
    action                     TEXT NOT NULL,
    application                TEXT,
    source                     TEXT NOT NULL,
    source_type                TEXT NOT NULL,
    created_by                 TEXT NOT NULL,
    created_by_display_name    TEXT NOT NULL,
    created_by_source          TEXT NOT NULL,
    severity                   TEXT NOT NULL,
    title                      TEXT NOT NULL,
    description                TEXT NOT NULL,
    recommended_actions        TEXT,
    creation_time              INTEGER NOT NULL,
    expiration_time            INTEGER,
    last_update_time           INTEGER NOT NULL,
    last_updated_by            TEXT,
    rbac_group_names           TEXT NOT NULL,
    rbac_group_ids             TEXT NOT NULL,
    generate_alert             INTEGER NOT NULL,
    mitre_techniques           TEXT NOT NULL,
    educate_url                TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX indicators_by_value ON indicators (tenant_id, indicator_type, value_key);
CREATE INDEX indicators_by_update ON indicators (tenant_id, last_update_time);
