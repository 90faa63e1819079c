-- A machine's open actions (is one already pending? what does its device
-- get, and which may this check-in claim with FOR UPDATE SKIP LOCKED?) are
-- read on every action posted and every check-in: this index holds only
-- open actions, in the order they are read, as SQLite's (its migration 0006)
-- does. The queries repeat its condition word for word.
CREATE INDEX machine_actions_open
    ON machine_actions (tenant_id, machine_id, creation_time, id)
    WHERE status IN ('Pending', 'InProgress');
