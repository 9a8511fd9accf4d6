-- Catalog schema version 11: applications across exchanges (PROTOCOL.md 11, issue #14). An
-- application for a listing recognised from another exchange is forwarded to the listing's
-- origin zone; the origin records it like its own buyers' applications, and its decision comes
-- back. Both sides keep the canonical body of the request, so any member can sign it (applicant)
-- or its decision (origin) again with its own node key: the ids, hashes of the bodies, never
-- change. Rules: `catalog::across`; SQL: `catalog::tables::applications`.

-- At the applicant: the zone the application is forwarded to (NULL for an application to a
-- listing of this zone), and when the origin acknowledged it.
ALTER TABLE applications ADD COLUMN origin_zone TEXT;
ALTER TABLE applications ADD COLUMN forwarded_at INTEGER;
-- At the origin: the zone that forwarded it and its number there (NULL for this zone's own).
ALTER TABLE applications ADD COLUMN applicant_zone TEXT;
ALTER TABLE applications ADD COLUMN remote_id INTEGER;
-- Both sides, across exchanges only: the canonical ApplicationRequest and its id
-- (`sha256:<hex>` of the body).
ALTER TABLE applications ADD COLUMN request_id TEXT;
ALTER TABLE applications ADD COLUMN request_body BLOB;
-- Both sides, once decided: the canonical ApplicationDecision and its id; at the applicant
-- also the signed decision as received.
ALTER TABLE applications ADD COLUMN decision_id TEXT;
ALTER TABLE applications ADD COLUMN decision_body BLOB;
ALTER TABLE applications ADD COLUMN decision BLOB;
CREATE UNIQUE INDEX applications_remote ON applications (applicant_zone, remote_id)
    WHERE applicant_zone IS NOT NULL;

-- At the applicant, an approval from the origin is kept as an authorisation too (so the buyer
-- and later applicants see it); its usage is counted at the origin, under its id there.
ALTER TABLE authorizations ADD COLUMN origin_zone TEXT;
ALTER TABLE authorizations ADD COLUMN origin_authorization INTEGER;
