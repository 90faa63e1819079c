-- Device groups pick their machines by rules, highest rank first.
ALTER TABLE device_groups ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_groups ADD COLUMN rules TEXT NOT NULL DEFAULT '{}';  -- JSON GroupRules
