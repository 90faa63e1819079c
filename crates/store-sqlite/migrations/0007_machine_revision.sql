-- A machine's revision changes with every change to its row or to its tags,
-- so that a copy of the machine held in memory (the store's machine cache)
-- can be checked against the row: same revision, same machine. Random rather
-- than counted: a machine deleted and written again must not get back a
-- revision that an old copy of it carries.
ALTER TABLE machines ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

-- Palisade's own statements set a new revision as they write; these catch
-- every other write to a machine (tags, a hand edit in the sqlite3 shell).
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

-- What a read asks first (is the copy in memory current?), from the index
-- alone: the key, what visibility checks, and the revision.
CREATE INDEX machines_revision
    ON machines (tenant_id, id, last_seen, rbac_group_id, revision);
