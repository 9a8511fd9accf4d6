-- Catalog schema version 23: a listing in fewer bytes (issue #17, at most 1 KB per listing).
--
-- 1. `listings.body` holds the canonical bytes packed (`catalog::tables::packed`: zstd with a
--    dictionary of the listing format's own field and value names), about 350 bytes for a
--    listing of 590. Rows written before this version keep their plain canonical bytes, which
--    are still read as such (a packed body starts with a byte no canonical listing starts
--    with); one is packed when a new version of it is written (a change of state alone
--    leaves the body as it is).
-- 2. Columns the body already holds and no query reads are dropped: the current version's
--    content id (the hash of the canonical bytes, computed when read), the delivery modes and
--    the two times. So are the indexes on state and on origin, which no query uses since
--    search left the catalog (schema v22), and the listing id each history entry repeated
--    (its `listing_seq` names the listing since schema v4).
--
-- The file does not shrink by itself: the freed pages are reused as the catalog grows (or
-- `VACUUM` returns them while the node is stopped).
DROP INDEX listings_state;
DROP INDEX listings_origin;
ALTER TABLE listings DROP COLUMN content_id;
ALTER TABLE listings DROP COLUMN delivery_modes;
ALTER TABLE listings DROP COLUMN created_at;
ALTER TABLE listings DROP COLUMN updated_at;
ALTER TABLE listing_history DROP COLUMN listing_id;
