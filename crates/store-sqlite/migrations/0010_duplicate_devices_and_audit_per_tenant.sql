-- Hardware enrolling again without the enrolled device's credential becomes a
-- new machine (a potential duplicate) beside the enrolled one: several
-- enrolled devices may share a hardware id, which enrollment still looks up.
DROP INDEX devices_enrolled_hardware;
CREATE INDEX devices_enrolled_hardware ON devices (tenant_id, hardware_id)
    WHERE offboarded_at IS NULL;

-- Audit entry ids count per tenant, from 1 without gaps: one sequence across
-- tenants let each tenant count the others' activity in the gaps. Existing
-- entries are numbered anew, in their order.
CREATE TABLE audit_log_per_tenant (
    tenant_id   TEXT NOT NULL,
    id          INTEGER NOT NULL,  -- the tenant's own sequence
    time        INTEGER NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    target      TEXT,
    result      INTEGER NOT NULL,
    request_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
INSERT INTO audit_log_per_tenant
    SELECT tenant_id, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY id), time, actor_type,
           actor_id, actor_name, operation, target, result, request_id
    FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_per_tenant RENAME TO audit_log;

-- The machines an audit entry is about, by id (or, where none could be
-- identified, the key the request named, which matches no machine): a user
-- limited to device groups reads only entries about machines they can see.
CREATE TABLE audit_machines (
    tenant_id   TEXT NOT NULL,
    entry_id    INTEGER NOT NULL,
    machine_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, entry_id, machine_id)
);
-- The entries written before: machine operations name their machine...
INSERT OR IGNORE INTO audit_machines
    SELECT tenant_id, id, lower(target) FROM audit_log
    WHERE target IS NOT NULL AND operation IN ('UpdateMachine', 'TagMachine', 'SetDeviceValue',
        'Isolate', 'Unisolate', 'Offboard', 'RestrictCodeExecution', 'UnrestrictCodeExecution',
        'RunAntivirusScan', 'CollectInvestigationPackage', 'StopAndQuarantineFile');
-- ...bulk tags a comma-separated list of them...
INSERT OR IGNORE INTO audit_machines
    WITH RECURSIVE parts (tenant_id, entry_id, item, rest) AS (
        SELECT tenant_id, id, '', target || ',' FROM audit_log
        WHERE operation = 'TagMachines' AND target IS NOT NULL
        UNION ALL
        SELECT tenant_id, entry_id, substr(rest, 1, instr(rest, ',') - 1),
               substr(rest, instr(rest, ',') + 1)
        FROM parts WHERE rest <> ''
    )
    SELECT tenant_id, entry_id, lower(item) FROM parts WHERE item <> '';
-- ...and a cancel its action, whose machine it is about.
INSERT OR IGNORE INTO audit_machines
    SELECT e.tenant_id, e.id, COALESCE(a.machine_id, e.target)
    FROM audit_log e
    LEFT JOIN machine_actions a ON a.tenant_id = e.tenant_id AND a.id = lower(e.target)
    WHERE e.operation = 'CancelAction' AND e.target IS NOT NULL;
