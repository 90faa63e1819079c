-- A machine is named by its id, its Entra device id (aadDeviceId) or its
-- computer name wherever the API takes one: the Entra device id is looked
-- up case-insensitively, as the name is.
CREATE INDEX machines_by_aad_device_id ON machines (tenant_id, aad_device_id COLLATE NOCASE);
