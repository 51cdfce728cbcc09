-- Access: roles scoped to one environment, tokens that carry their own grants (those
-- exchanged for a CI job's OIDC token), the server's signing secrets (registry bearer
-- tokens), and the OIDC token ids already exchanged (each at most once).

-- A grant per (user, application, environment, role); '' means every application or
-- every environment.
ALTER TABLE user_roles ADD COLUMN environment TEXT NOT NULL DEFAULT '';
ALTER TABLE user_roles DROP CONSTRAINT user_roles_pkey;
ALTER TABLE user_roles ADD PRIMARY KEY (user_name, application, environment, role);

-- A JSON array of grants (`developer@web/dev`); NULL: the user's own roles.
ALTER TABLE api_tokens ADD COLUMN scope TEXT;

CREATE TABLE server_secrets (
    name        TEXT    PRIMARY KEY,
    secret      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE oidc_exchanges (
    issuer        TEXT    NOT NULL,
    jti           TEXT    NOT NULL,
    expires_at    BIGINT  NOT NULL,
    exchanged_at  BIGINT  NOT NULL,
    token_id      TEXT    NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX oidc_exchanges_by_expiry ON oidc_exchanges (expires_at);
