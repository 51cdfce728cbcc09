-- Audit entries on PostgreSQL are written in two steps, so that no write holds the
-- chain's head row for its whole transaction: the change's own transaction inserts
-- its entry here (an identity column, no shared lock), and a short second
-- transaction (any replica's chainer, or any reader of the log) takes the head row,
-- moves the committed pending entries into `audit_log` (lowest `id` first within a
-- pass) with the next sequence numbers and their hashes, and advances the head. An
-- entry committed before another was appended has the lower id because the identity
-- hands ids out in increasing order with no per-session cache (the default CACHE 1).
CREATE TABLE audit_pending (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    subject  TEXT   NOT NULL,
    -- Canonical JSON, exactly as it will be hashed.
    payload  TEXT   NOT NULL
);
-- A queue: rows come and go all the time, so dead ones are vacuumed early.
ALTER TABLE audit_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
