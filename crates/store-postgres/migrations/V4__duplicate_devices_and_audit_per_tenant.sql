-- Hardware enrolling again without the enrolled device's credential becomes a
-- new machine (a potential duplicate) beside the enrolled one: several
-- enrolled devices may share a hardware id, which enrollment still looks up.
DROP INDEX devices_enrolled_hardware;
CREATE INDEX devices_enrolled_hardware ON devices (tenant_id, hardware_id)
    WHERE offboarded_at IS NULL;
