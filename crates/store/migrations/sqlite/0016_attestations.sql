-- Signed attestations of deployments (in-toto statements in DSSE envelopes, stored as
-- OCI referrers of the deployed image): a deployment's are recorded together, before
-- they are written into the registry (`published_at`) and handed to its target
-- (`carried_at`), so the follow-up that writes them, run again after a crash, writes
-- the same bytes once. One per deployment and predicate type.
CREATE TABLE attestations (
    deployment_id    INTEGER NOT NULL,
    predicate_type   TEXT    NOT NULL,
    application      TEXT    NOT NULL,
    environment      TEXT    NOT NULL,
    digest           TEXT    NOT NULL,
    key_id           TEXT    NOT NULL,
    bundle           TEXT    NOT NULL,
    manifest         TEXT    NOT NULL,
    manifest_digest  TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    published_at     INTEGER,
    carried_at       INTEGER,
    PRIMARY KEY (deployment_id, predicate_type)
);
CREATE INDEX attestations_by_digest ON attestations (application, digest);

-- Signed checkpoints of the audit log: the head (sequence and hash) at a moment,
-- signed with the server's key. A rewrite of the chain by someone who can write the
-- database but not read the key file no longer matches them.
CREATE TABLE audit_checkpoints (
    sequence   INTEGER PRIMARY KEY,
    hash       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    key_id     TEXT    NOT NULL,
    signature  TEXT    NOT NULL
);
