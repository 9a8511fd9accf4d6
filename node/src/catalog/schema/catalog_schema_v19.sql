-- Catalog schema version 19: complaints (投诉举报) and the regulator's handling of them. A
-- complaint names its target (a listing or a party of the zone), is filed by any token, and
-- moves received -> investigating -> resolved | dismissed, each step with its note in its
-- history. A listing under complaint can be suspended (listings.state 'suspended', set by the
-- rules; the complaint keeps which listing it suspended until the suspension is lifted). SQL:
-- `catalog::tables::complaints`.
CREATE TABLE complaints (
    id                INTEGER PRIMARY KEY,
    target_kind       TEXT    NOT NULL,      -- listing | party
    target_id         TEXT    NOT NULL,
    category          TEXT,
    text              TEXT    NOT NULL,
    state             TEXT    NOT NULL,      -- received | investigating | resolved | dismissed
    filed_at          INTEGER NOT NULL,
    filed_by          TEXT    NOT NULL,      -- actor id of the complainant's token
    filed_role        TEXT    NOT NULL,
    raft_index        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    suspended_listing TEXT                   -- the listing suspended under it, while it is
);
CREATE INDEX complaints_state ON complaints (state, id);
CREATE INDEX complaints_filed_by ON complaints (filed_by, id);
CREATE INDEX complaints_target ON complaints (target_kind, target_id, id);
CREATE INDEX complaints_filed_at ON complaints (filed_at);

CREATE TABLE complaint_history (
    complaint_id INTEGER NOT NULL,
    seq          INTEGER NOT NULL,           -- 1, 2, ... per complaint
    raft_index   INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    action       TEXT    NOT NULL,           -- file | investigate | resolve | dismiss |
                                             -- suspend_listing | lift_suspension
    from_state   TEXT,
    to_state     TEXT    NOT NULL,
    note         TEXT,
    PRIMARY KEY (complaint_id, seq)
);
CREATE INDEX complaint_history_at ON complaint_history (at);

-- The supervision figures (`catalog::supervision`) count by time: what changed in a period,
-- and what stood at its end. An authorisation's suspensions, reinstatements and revocations
-- are kept one row each (the authorisation row keeps only the latest), those made before this
-- version taken from the audit chain, where every one is recorded.
CREATE TABLE authorization_changes (
    authorization_id INTEGER NOT NULL,
    seq              INTEGER NOT NULL,       -- 1, 2, ... per authorisation
    at               INTEGER NOT NULL,
    to_state         TEXT    NOT NULL,       -- active | suspended | revoked
    PRIMARY KEY (authorization_id, seq)
);
INSERT INTO authorization_changes (authorization_id, seq, at, to_state)
    SELECT CAST(substr(object_id, 15) AS INTEGER),
           row_number() OVER (PARTITION BY object_id ORDER BY seq),
           at,
           CASE action WHEN 'suspend_authorization' THEN 'suspended'
                       WHEN 'revoke_authorization' THEN 'revoked'
                       ELSE 'active' END
      FROM audit
     WHERE action IN ('suspend_authorization', 'reinstate_authorization', 'revoke_authorization')
       AND result = 'ok' AND object_id LIKE 'authorization:%';
CREATE INDEX authorization_changes_at ON authorization_changes (at);
CREATE INDEX listing_history_at ON listing_history (at);
CREATE INDEX applications_submitted_at ON applications (submitted_at);
CREATE INDEX applications_decided_at ON applications (decided_at);
CREATE INDEX authorizations_granted_at ON authorizations (granted_at);
CREATE INDEX authorizations_expires_at ON authorizations (expires_at);
