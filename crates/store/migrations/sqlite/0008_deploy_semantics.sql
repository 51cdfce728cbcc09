-- The tag a build was pushed under (named by `build notify --tag`, or the newest tag
-- pointing at the digest when it was notified): what a gitops `tag` key and a
-- registry copy's destination tag receive.
ALTER TABLE builds ADD COLUMN tag TEXT;

-- The tag each deployment carried (the build's, else the newest tag pointing at the
-- digest when it started), as handed to its target.
ALTER TABLE deployments ADD COLUMN tag TEXT;

-- Rollbacks answer a retry with the same Idempotency-Key with the deployment the
-- first request started.
ALTER TABLE deployments ADD COLUMN idempotency_key TEXT;
ALTER TABLE deployments ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX deployments_idempotency ON deployments (requested_by, idempotency_key);

-- A rollback's deployment names the digest it rolled back from: a later rollback
-- without an explicit target never returns to it (until a promotion deploys it again).
ALTER TABLE deployments ADD COLUMN rolled_back_from TEXT;

-- User names are unique without regard to ASCII case: `Staff2` and `staff2` would be
-- one person to every comparison of identities.
CREATE UNIQUE INDEX users_name_folded ON users (LOWER(name));
