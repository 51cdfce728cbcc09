-- Online garbage collection. A blob no manifest references is marked deletable
-- (`deletable_since`) by a collection pass; anything that references it again (a
-- manifest push, a mount, an upload of the same digest, an existence check) clears
-- the mark in the statement that finds the blob. A blob marked for longer than the
-- grace window is condemned (`deleting_since`: its repository links go in the same
-- transaction), its object deleted, and then its row. A condemned row is never
-- revived: a writer that finds one waits for the row to go and writes anew.
ALTER TABLE blobs ADD COLUMN deletable_since BIGINT;
ALTER TABLE blobs ADD COLUMN deleting_since BIGINT;
CREATE INDEX blobs_deletable ON blobs (deletable_since) WHERE deletable_since IS NOT NULL;
CREATE INDEX blobs_deleting ON blobs (deleting_since) WHERE deleting_since IS NOT NULL;
-- The repositories a blob is linked into (condemning unlinks it from all of them, and
-- deleting its row checks that none is left).
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);
-- Whether any manifest, in any repository, references a blob.
CREATE INDEX manifest_references_by_blob ON manifest_references (child_digest) WHERE child_kind = 'blob';
-- One row per collection pass (those that changed nothing and failed nothing are kept
-- only while recent), for /metrics and `gantry gc --history`.
CREATE TABLE gc_passes (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    replica            TEXT    NOT NULL,
    started_at         BIGINT NOT NULL,
    finished_at        BIGINT NOT NULL,
    manifests_deleted  BIGINT NOT NULL,
    blobs_marked       BIGINT NOT NULL,
    blobs_deleted      BIGINT NOT NULL,
    bytes_reclaimed    BIGINT NOT NULL,
    orphans_deleted    BIGINT NOT NULL,
    uploads_purged     BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    last_error         TEXT
);
