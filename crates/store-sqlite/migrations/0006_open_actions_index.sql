-- A machine's open actions (is one already pending? what does its device
-- get?) are read on every action posted and every check-in. Without this
-- index SQLite answered them by walking the tenant's whole action history in
-- creation order (machine_actions_newest_first serves the ORDER BY), which
-- grows with every action ever taken. This one holds only open actions, in
-- the order they are read: the query's WHERE repeats its condition word for
-- word, as SQLite needs to use a partial index.
CREATE INDEX machine_actions_open
    ON machine_actions (tenant_id, machine_id, creation_time, id)
    WHERE status IN ('Pending', 'InProgress');
