-- What devices report is on their machines: installed software and the
-- users who logged on. Each report replaces the machine's rows. Times in
-- ticks. As SQLite's 0016.

CREATE TABLE machine_software (
    tenant_id    TEXT NOT NULL,
    machine_id   TEXT NOT NULL,
    software_id  TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    vendor       TEXT NOT NULL,
    version      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, machine_id, software_id),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id) ON DELETE CASCADE
);
-- How many machines have a software (`exposedMachines`).
CREATE INDEX machine_software_by_software ON machine_software (tenant_id, software_id);

CREATE TABLE machine_logon_users (
    tenant_id       TEXT NOT NULL,
    machine_id      TEXT NOT NULL,
    account_domain  TEXT COLLATE "C" NOT NULL,
    account_name    TEXT COLLATE "C" NOT NULL,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    logon_types     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, machine_id, account_domain, account_name),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id) ON DELETE CASCADE
);
