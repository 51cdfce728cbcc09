-- The web UI: people sign in with a password (an argon2id PHC string; NULL: none
-- set, so that user cannot sign in with a password) or an API token, into a session
-- kept here so that any replica serves it and ending it ends it everywhere.
ALTER TABLE users ADD COLUMN password_hash TEXT;

CREATE TABLE web_sessions (
    -- The session's public id (audit entries and listings name it, never its secret).
    id            TEXT    PRIMARY KEY,
    user_name     TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    -- SHA-256 of the secret in the cookie.
    secret_hash   TEXT    NOT NULL UNIQUE,
    -- The token every form of this session carries (bound to the session).
    csrf_token    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    -- The absolute expiry; the idle expiry is counted from last_seen_at.
    expires_at    INTEGER NOT NULL,
    -- Signed in with this API token: revoking the token ends the session.
    token_id      TEXT    REFERENCES api_tokens(id) ON DELETE CASCADE
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_name);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
