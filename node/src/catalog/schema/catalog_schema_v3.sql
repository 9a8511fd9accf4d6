-- Catalog schema version 3: indexes for the hub's flows (per-minute counts over recent time).
CREATE INDEX recognitions_at ON recognitions (at);
CREATE INDEX outbox_published_at ON outbox (published_at);
CREATE INDEX outbox_at ON outbox (at);
