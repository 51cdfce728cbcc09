-- A digest of an application can be quarantined: promotions of it and rollbacks onto it
-- are refused, admission denies it, and (by default) pulls of it are refused, until the
-- quarantine is lifted (which deletes the row; both are audited).
CREATE TABLE quarantines (
    application TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (application, digest)
);
CREATE INDEX quarantines_by_digest ON quarantines (digest);
