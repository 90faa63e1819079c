-- A machine's revision changes with every change to its row, its tags or
-- its device group's name, so that a copy of the machine held in memory (the store's machine cache)
-- can be checked against the row: same revision, same machine. Random rather
-- than counted: a machine deleted and written again must not get back a
-- revision that an old copy of it carries.
ALTER TABLE machines ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

-- Palisade's own statements set a new revision as they write a machine;
-- these catch every other change to what a machine shows (its tags, the name
-- of its group, a hand edit in the sqlite3 shell).
CREATE TRIGGER machines_revision_on_insert AFTER INSERT ON machines
    WHEN NEW.revision = 0
BEGIN
    UPDATE machines SET revision = random() WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER machines_revision_on_update AFTER UPDATE ON machines
    WHEN NEW.revision = OLD.revision
BEGIN
    UPDATE machines SET revision = random() WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER machine_tags_revision_on_insert AFTER INSERT ON machine_tags
BEGIN
    UPDATE machines SET revision = random()
    WHERE tenant_id = NEW.tenant_id AND id = NEW.machine_id;
END;

CREATE TRIGGER machine_tags_revision_on_delete AFTER DELETE ON machine_tags
BEGIN
    UPDATE machines SET revision = random()
    WHERE tenant_id = OLD.tenant_id AND id = OLD.machine_id;
END;

-- rbacGroupName is the group's: naming, renaming or removing a group
-- changes its machines.
CREATE TRIGGER device_groups_revision_on_insert AFTER INSERT ON device_groups
BEGIN
    UPDATE machines SET revision = random()
    WHERE tenant_id = NEW.tenant_id AND rbac_group_id = NEW.id;
END;

CREATE TRIGGER device_groups_revision_on_rename AFTER UPDATE OF name ON device_groups
    WHEN NEW.name IS NOT OLD.name
BEGIN
    UPDATE machines SET revision = random()
    WHERE tenant_id = NEW.tenant_id AND rbac_group_id = NEW.id;
END;

CREATE TRIGGER device_groups_revision_on_delete AFTER DELETE ON device_groups
BEGIN
    UPDATE machines SET revision = random()
    WHERE tenant_id = OLD.tenant_id AND rbac_group_id = OLD.id;
END;

-- What a read asks first (is the copy in memory current?), from the index
-- alone: the key, what visibility checks, and the revision.
CREATE INDEX machines_revision
    ON machines (tenant_id, id, last_seen, rbac_group_id, revision);
