-- A machine is named by its id, its Entra device id (aadDeviceId) or its
-- computer name wherever the API takes one: the Entra device id is looked
-- up case-insensitively, as the name is.
CREATE INDEX machines_by_aad_device_id ON machines (tenant_id, lower(aad_device_id));

-- The internal addresses each machine was seen with, and when, for findbyip
-- (rules::ip_history): a span from first_seen to last_seen, or, while the
-- machine still has the address (last_seen NULL), to the machine's lastSeen.
-- Ended spans are kept 30 days.
CREATE TABLE machine_ip_history (
    tenant_id   TEXT NOT NULL,
    machine_id  TEXT NOT NULL,
    ip          TEXT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT,
    PRIMARY KEY (tenant_id, machine_id, ip, first_seen),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id) ON DELETE CASCADE
);
-- Covering: findbyip reads the spans of one address from the index alone.
CREATE INDEX machine_ip_history_by_ip ON machine_ip_history (tenant_id, ip, first_seen, last_seen);
CREATE INDEX machine_ip_history_ended ON machine_ip_history (last_seen);
-- What is known of the machines stored before: their last address, since first seen.
INSERT INTO machine_ip_history (tenant_id, machine_id, ip, first_seen)
    SELECT tenant_id, id, last_ip_address, first_seen FROM machines
    WHERE last_ip_address IS NOT NULL;
