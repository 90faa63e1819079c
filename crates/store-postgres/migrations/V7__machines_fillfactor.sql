-- Room in each page of machines for a new version of its rows: a change to
-- a machine that touches no indexed column (tags and isolation give it a new
-- revision only) then writes the new version beside the old, a heap-only
-- update, instead of a new entry in each of the table's indexes. Pages
-- written from here on keep a fifth free.
ALTER TABLE machines SET (fillfactor = 80);
