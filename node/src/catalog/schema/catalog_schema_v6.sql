-- Catalog schema version 6: bounded refusal records and revoked copies (issue #12).
--
-- Refusals (`decision = 'rejected'`) are kept per signing key and per exchange up to a cap and
-- for 30 days (`catalog::federation::bound_refusals`); these indexes find a key's or an
-- exchange's oldest refusals without reading the rest of the record.
CREATE INDEX recognitions_refused_signer ON recognitions (signer, seq) WHERE decision = 'rejected';
CREATE INDEX recognitions_refused_exchange ON recognitions (exchange, seq) WHERE decision = 'rejected';
-- A revocation finds the copies its key signed (`catalog::federation::revoke_copies`).
CREATE INDEX recognitions_recognised_signer ON recognitions (signer, exchange) WHERE decision = 'recognised';
-- Listings may now also be in state `revoked` (a recognised copy whose signing key was
-- revoked); the state column is free text, so nothing else changes.
