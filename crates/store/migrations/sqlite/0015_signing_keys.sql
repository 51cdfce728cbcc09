-- The public half of every key Gantry has signed with (the private key lives in a
-- file outside the database): the current one has no `retired_at`; a rotation retires
-- it and records the next. Attestations name their key id, and old ones keep
-- verifying with the public key listed here.
CREATE TABLE signing_keys (
    key_id      TEXT    PRIMARY KEY,
    algorithm   TEXT    NOT NULL,
    public_key  TEXT    NOT NULL,
    created_at  INTEGER  NOT NULL,
    retired_at  INTEGER
);
