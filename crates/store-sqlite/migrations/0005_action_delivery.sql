-- Until when the check-in that last delivered an action holds it (see store::claim_device_actions).
ALTER TABLE machine_actions ADD COLUMN delivered_until INTEGER;
