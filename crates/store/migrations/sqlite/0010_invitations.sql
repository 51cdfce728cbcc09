-- Invitation links: an admin invites a person, who opens the one-time link and
-- chooses their own password. Only the SHA-256 of the link's secret is kept; a new
-- invitation for the same person voids the earlier unused one.
CREATE TABLE invitations (
    -- The invitation's public id (audit entries name it, never its secret).
    id            TEXT    PRIMARY KEY,
    user_name     TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    secret_hash   TEXT    NOT NULL UNIQUE,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    -- When the password was chosen through it; NULL: not used yet.
    used_at       INTEGER
);
CREATE INDEX invitations_by_user ON invitations (user_name);

-- An artifact's page finds every application that built, promoted or deployed a
-- digest.
CREATE INDEX builds_by_artifact ON builds (digest);
CREATE INDEX promotions_by_artifact ON promotions (digest);
CREATE INDEX deployments_by_artifact ON deployments (digest);
