-- An action a device took on (InProgress) and never reported ends TimeOut
-- once it has gone without an update for the action timeout. The sweep that
-- finds them runs every minute; this index holds only InProgress actions, by
-- when they last changed, so that it reads just the stale ones.
CREATE INDEX machine_actions_in_progress ON machine_actions (last_update_time)
    WHERE status = 'InProgress';
