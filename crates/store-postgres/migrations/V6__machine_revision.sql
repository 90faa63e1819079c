-- A machine's revision changes with every change to its row, its tags or
-- its device group's name, so that a copy of the machine held in memory (the
-- store's machine cache) can be checked against the row: same revision, same
-- machine. As SQLite's (its migration 0007), with its triggers' names.
-- Metadata only: existing rows read the default until their next change,
-- which gives them one of their own (0 is "none yet", never given).
ALTER TABLE machines ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

-- Random rather than counted: a machine deleted and written again must not
-- get back a revision an old copy of it carries, nor can a count be kept
-- without a row every writer of the machine locks. random() rather than
-- gen_random_uuid(): 52 random bits (one stale copy in 4.5e15 would match
-- by chance) for a fiftieth of its cost (2 us a row); each session's generator
-- is seeded from the system's strong randomness when it starts, and
-- Palisade never calls setseed(). One function so that every trigger gives
-- the same kind of revision; a plain SQL expression, inlined where it is used.
CREATE FUNCTION new_machine_revision() RETURNS BIGINT
    LANGUAGE sql VOLATILE
    AS $$ SELECT (random() * 9.2e18)::bigint $$;

-- Palisade's statements do not set the revision: the row's own triggers give
-- it one as the row is written. BEFORE row triggers set NEW.revision in the
-- tuple being written, so no second tuple is made; the revision is in no
-- index, so an update that changes no indexed column stays HOT.
CREATE FUNCTION machines_new_revision() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.revision := new_machine_revision();
    RETURN NEW;
END
$$;

-- A new row, unless its writer chose its revision.
CREATE TRIGGER machines_revision_on_insert BEFORE INSERT ON machines
    FOR EACH ROW WHEN (NEW.revision = 0)
    EXECUTE FUNCTION machines_new_revision();

-- Every change to the row (an upsert's DO UPDATE included) that did not set
-- a new revision itself; 0 set by hand does not stay either.
CREATE TRIGGER machines_revision_on_update BEFORE UPDATE ON machines
    FOR EACH ROW WHEN (NEW.revision = OLD.revision OR NEW.revision = 0)
    EXECUTE FUNCTION machines_new_revision();

-- A machine's tags are rows of their own: a statement adding or removing
-- tags gives each machine it touched a new revision, in one UPDATE per
-- tenant (Palisade's statements are of one tenant) over the statement's
-- transition table, not in one per tag row (a bulk write adds thousands).
-- The machines are taken by key (tenant_id = ... AND id = ANY (...)), which
-- the primary key answers for one machine or many. Not a join with the
-- transition table: the function's plans are kept for the session, and a
-- join planned for a bulk write could scan every machine for one tag later.
-- Palisade has locked these machines already (they are written in the same
-- transaction); the machines' own trigger keeps the revision set here.
CREATE FUNCTION machine_tags_new_revisions() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    tenant TEXT;
    machine_ids TEXT[];
BEGIN
    FOR tenant, machine_ids IN
        SELECT tenant_id, array_agg(DISTINCT machine_id) FROM changed_tags GROUP BY tenant_id
    LOOP
        UPDATE machines SET revision = new_machine_revision()
        WHERE tenant_id = tenant AND id = ANY (machine_ids);
    END LOOP;
    RETURN NULL;
END
$$;

-- Tags added (a transition table works for one event only: a trigger each).
CREATE TRIGGER machine_tags_revision_on_insert AFTER INSERT ON machine_tags
    REFERENCING NEW TABLE AS changed_tags
    FOR EACH STATEMENT EXECUTE FUNCTION machine_tags_new_revisions();

-- Tags removed (also as their machine is deleted: it then finds no machine).
CREATE TRIGGER machine_tags_revision_on_delete AFTER DELETE ON machine_tags
    REFERENCING OLD TABLE AS changed_tags
    FOR EACH STATEMENT EXECUTE FUNCTION machine_tags_new_revisions();

-- rbacGroupName is the group's: naming, renaming or removing a group changes
-- its machines. Row triggers, as a group is written one at a time; a group's
-- machines are found among its tenant's by the primary key's tenant_id (no
-- index of their own: group changes are rare, and every machine update
-- would pay for it). Palisade's put_device_group locks the tenant's machines,
-- in key order, before it writes the group, so that these updates wait for
-- no machine another write holds (writes take machines first, in key order).
CREATE FUNCTION device_groups_new_revisions() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE machines SET revision = new_machine_revision()
        WHERE tenant_id = OLD.tenant_id AND rbac_group_id = OLD.id;
    ELSE
        UPDATE machines SET revision = new_machine_revision()
        WHERE tenant_id = NEW.tenant_id AND rbac_group_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

-- A group named: machines that named its id before it existed now show its name.
CREATE TRIGGER device_groups_revision_on_insert AFTER INSERT ON device_groups
    FOR EACH ROW EXECUTE FUNCTION device_groups_new_revisions();

-- Renamed: put_device_group's upsert sets the name every time, so only a
-- name that differs counts (a change of rank or rules moves machines, which
-- changes their rows).
CREATE TRIGGER device_groups_revision_on_rename AFTER UPDATE OF name ON device_groups
    FOR EACH ROW WHEN (NEW.name IS DISTINCT FROM OLD.name)
    EXECUTE FUNCTION device_groups_new_revisions();

-- Removed: its machines show no group name.
CREATE TRIGGER device_groups_revision_on_delete AFTER DELETE ON device_groups
    FOR EACH ROW EXECUTE FUNCTION device_groups_new_revisions();

-- No index on the revision, unlike SQLite's machines_revision: a read here
-- checks the revision in the heap row it reads anyway, and an indexed
-- revision would make every machine update (tags, reports) a non-HOT one.
