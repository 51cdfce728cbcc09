-- Access: roles scoped to one environment, tokens that carry their own grants (those
-- exchanged for a CI job's OIDC token), the server's signing secrets (registry bearer
-- tokens), and the OIDC token ids already exchanged (each at most once).

-- A grant per (user, application, environment, role); '' means every application or
-- every environment. SQLite cannot change a primary key in place, so the table is
-- rebuilt.
CREATE TABLE user_roles_scoped (
    user_name    TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    role         TEXT    NOT NULL,
    application  TEXT    NOT NULL,
    environment  TEXT    NOT NULL DEFAULT '',
    granted_at   INTEGER NOT NULL,
    PRIMARY KEY (user_name, application, environment, role)
);
INSERT INTO user_roles_scoped (user_name, role, application, environment, granted_at)
    SELECT user_name, role, application, '', granted_at FROM user_roles;
DROP TABLE user_roles;
ALTER TABLE user_roles_scoped RENAME TO user_roles;

-- A JSON array of grants (`developer@web/dev`); NULL: the user's own roles.
ALTER TABLE api_tokens ADD COLUMN scope TEXT;

CREATE TABLE server_secrets (
    name        TEXT    PRIMARY KEY,
    secret      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE oidc_exchanges (
    issuer        TEXT    NOT NULL,
    jti           TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    exchanged_at  INTEGER NOT NULL,
    token_id      TEXT    NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX oidc_exchanges_by_expiry ON oidc_exchanges (expires_at);
