-- Catalog schema version 4: new listings are added to the search index by the state machine,
-- once per batch, not by a trigger per row.
--
-- FTS5 writes its pending terms out as a new index segment whenever a statement opens a
-- savepoint, and an INSERT that fires a trigger opens one. With the trigger, every listing of
-- a batch became its own tiny segment that the index then had to merge again. Now the state
-- machine inserts the batch's listings and then indexes them with one INSERT ... SELECT
-- (`catalog::apply::index_listings`): one segment per batch. Updates and deletions still go
-- through their triggers (they are rare and one row at a time).
DROP TRIGGER listings_fts_insert;
