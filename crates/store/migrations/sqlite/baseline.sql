-- The schema migrations 0001 to 0010 build, written as it stands after them. A new
-- SQLite database is created from this file in one transaction, with those ten
-- migrations recorded as applied: replaying them, twelve ALTER TABLEs that each
-- re-read the whole schema among them, was most of a first start. A database created
-- earlier reached the same schema through the migrations themselves, and a test holds
-- both paths to the same tables, columns, constraints, indexes and rows. Migrations
-- after 0010 run on a new database as on an old one; folding them in here means
-- raising `SQLITE_BASELINE_VERSION` with it (the test checks the result).

-- Registry metadata: repositories, content-addressed blobs, manifests stored
-- byte-for-byte, tags, upload sessions, users and API tokens.

CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE blobs (
    digest      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL REFERENCES blobs(digest),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL,
    media_type    TEXT    NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    size          INTEGER NOT NULL,
    content       BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repository_id, subject) WHERE subject IS NOT NULL;

CREATE TABLE manifest_references (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    child_digest    TEXT    NOT NULL,
    child_kind      TEXT    NOT NULL CHECK (child_kind IN ('blob', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_by_child ON manifest_references (repository_id, child_digest);

CREATE TABLE tags (
    repository_id INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests (repository_id, digest)
);
CREATE INDEX tags_by_digest ON tags (repository_id, digest);

CREATE TABLE uploads (
    id            TEXT    PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    size          INTEGER NOT NULL,
    hash_state    BLOB,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX uploads_by_age ON uploads (updated_at);

CREATE TABLE upload_parts (
    upload_id   TEXT    NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    start       INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    part_key    TEXT    NOT NULL,
    PRIMARY KEY (upload_id, start)
);

CREATE TABLE users (
    name        TEXT    PRIMARY KEY,
    admin       BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL,
    -- A CI identity (a bot) can push, notify and report checks, and never approves.
    ci          BOOLEAN NOT NULL DEFAULT FALSE,
    -- The web UI password: an argon2id PHC string; NULL: none set.
    password_hash TEXT
);
-- User names are unique without regard to ASCII case: `Staff2` and `staff2` would be
-- one person to every comparison of identities.
CREATE UNIQUE INDEX users_name_folded ON users (LOWER(name));

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    user_name    TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    description  TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    -- A JSON array of grants (`developer@web/dev`); NULL: the user's own roles.
    scope        TEXT
);

-- The hash-chained audit log. `audit_head` holds the sequence and hash of the latest
-- entry; appending updates it first, which serializes appenders.

CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    sequence  INTEGER NOT NULL,
    hash      TEXT    NOT NULL
);
INSERT INTO audit_head (id, sequence, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    sequence       INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    previous_hash  TEXT    NOT NULL,
    hash           TEXT    NOT NULL
);
CREATE INDEX audit_log_by_subject ON audit_log (subject, sequence);

-- Declared resources (`gantry apply`): one row per kind and name holding the
-- canonical rendering that was applied and a revision that counts its changes, so an
-- apply can refuse to overwrite a change it did not see. Applications also keep the
-- columns the engine looks them up by.

CREATE TABLE resources (
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    canonical   TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    -- Applications only: the OCI repository, the pipeline and the application type.
    repository  TEXT,
    pipeline    TEXT,
    app_type    TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE INDEX resources_by_repository ON resources (repository) WHERE repository IS NOT NULL;
CREATE INDEX resources_by_pipeline ON resources (pipeline) WHERE pipeline IS NOT NULL;

-- The promotion control plane: who may approve what (roles), where artifacts came
-- from (builds), evidence about them (checks), requests to move a digest into an
-- environment (promotions) with the approvals bound to them, the deployments that
-- carry them out, and each environment's state (what runs, whether it is held).

-- A grant per (user, application, environment, role); '' means every application or
-- every environment.
CREATE TABLE user_roles (
    user_name    TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    role         TEXT    NOT NULL,
    application  TEXT    NOT NULL,
    environment  TEXT    NOT NULL DEFAULT '',
    granted_at   INTEGER NOT NULL,
    PRIMARY KEY (user_name, application, environment, role)
);

-- Provenance of one artifact of an application; the latest notify wins.
CREATE TABLE builds (
    application   TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    commit_sha    TEXT,
    branch        TEXT,
    run_id        TEXT,
    run_url       TEXT,
    source        TEXT,
    triggered_by  TEXT,
    author        TEXT,
    committed_at  INTEGER,
    builder       TEXT    NOT NULL,
    notified_at   INTEGER NOT NULL,
    -- The tag the build was pushed under (named by `build notify --tag`, or the newest
    -- tag pointing at the digest when it was notified).
    tag           TEXT,
    PRIMARY KEY (application, digest)
);

-- Every check report ever made; the latest per (digest, name) counts.
CREATE TABLE checks (
    id           INTEGER PRIMARY KEY,
    application  TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    passed       BOOLEAN NOT NULL,
    url          TEXT,
    format       TEXT,
    findings     TEXT,
    reported_by  TEXT    NOT NULL,
    reported_at  INTEGER NOT NULL
);
CREATE INDEX checks_by_digest ON checks (application, digest, name, id);

-- One row per environment that has seen a promotion. Every decision about the
-- environment bumps `version` first, which serializes deciders.
CREATE TABLE environments (
    application        TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    version            INTEGER NOT NULL,
    current_deployment INTEGER,
    hold_reason        TEXT,
    hold_by            TEXT,
    hold_at            INTEGER,
    -- Drift: what the environment was last observed running, and since when that has
    -- differed from what Gantry deployed there.
    observed_digest    TEXT,
    observed_at        INTEGER,
    observed_by        TEXT,
    drift_since        INTEGER,
    PRIMARY KEY (application, name)
);

CREATE TABLE promotions (
    id               INTEGER PRIMARY KEY,
    application      TEXT    NOT NULL,
    environment      TEXT    NOT NULL,
    digest           TEXT    NOT NULL,
    config           TEXT,
    config_revision  TEXT,
    state            TEXT    NOT NULL,
    requested_by     TEXT    NOT NULL,
    auto             BOOLEAN NOT NULL,
    override_reason  TEXT,
    reason           TEXT,
    conditions       TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    idempotency_key  TEXT,
    request_hash     TEXT,
    deployment_id    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX promotions_by_idempotency_key ON promotions (requested_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX promotions_by_environment ON promotions (application, environment, state, id);
CREATE INDEX promotions_by_digest ON promotions (application, digest, state);

-- Approvals and rejections, each bound to the digest, environment and config
-- revision it was given for.
CREATE TABLE approvals (
    promotion_id     INTEGER NOT NULL REFERENCES promotions(id),
    approver         TEXT    NOT NULL,
    decision         TEXT    NOT NULL CHECK (decision IN ('approve', 'reject')),
    digest           TEXT    NOT NULL,
    environment      TEXT    NOT NULL,
    config_revision  TEXT,
    comment          TEXT,
    at               INTEGER NOT NULL,
    PRIMARY KEY (promotion_id, approver)
);

CREATE TABLE deployments (
    id               INTEGER PRIMARY KEY,
    application      TEXT    NOT NULL,
    environment      TEXT    NOT NULL,
    digest           TEXT    NOT NULL,
    config           TEXT,
    config_revision  TEXT,
    promotion_id     INTEGER,
    reason           TEXT    NOT NULL CHECK (reason IN ('promotion', 'rollback')),
    state            TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    message          TEXT,
    requested_by     TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    -- The tag handed to the target.
    tag              TEXT,
    -- A rollback's retry with the same Idempotency-Key gets the deployment the first
    -- request started.
    idempotency_key  TEXT,
    request_hash     TEXT,
    -- A rollback names the digest it rolled back from.
    rolled_back_from TEXT
);
CREATE UNIQUE INDEX deployments_idempotency ON deployments (requested_by, idempotency_key);
CREATE INDEX deployments_by_environment ON deployments (application, environment, id);
CREATE INDEX deployments_by_digest ON deployments (application, digest, environment, state);
CREATE INDEX deployments_by_time ON deployments (finished_at);

-- Access: the server's signing secrets (registry bearer tokens), and the OIDC token
-- ids already exchanged (each at most once).

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

-- Durable deploy jobs: every deployment is carried out by a job that a replica claims
-- with a lease, keeps alive with heartbeats, retries after transient failures (not
-- before run_after) and finishes in the same transaction as the deployment. A lease
-- that runs out (its replica crashed) lets another replica, or the same one after a
-- restart, pick the job up again. The same lease guards the follow-up of a finished
-- job.
CREATE TABLE deploy_jobs (
    deployment_id  INTEGER PRIMARY KEY REFERENCES deployments (id),
    attempts       INTEGER NOT NULL DEFAULT 0,
    run_after      INTEGER NOT NULL,
    lease_owner    TEXT,
    lease_until    INTEGER,
    last_error     TEXT,
    finished_at    INTEGER,
    -- What the outcome leads to (an auto-rollback, an auto-promotion) is still to be
    -- started, by the finishing replica or, from this time on, by any replica.
    followup_due   INTEGER
);
CREATE INDEX deploy_jobs_due ON deploy_jobs (finished_at, run_after);

-- What each deployment did, line by line: steps, retries, a program's output.
CREATE TABLE deployment_log (
    deployment_id  INTEGER NOT NULL REFERENCES deployments (id),
    seq            INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    line           TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);

-- What a webhook target's receiver reported through its one-time callback: at most
-- one report per deployment.
CREATE TABLE deployment_callbacks (
    deployment_id  INTEGER PRIMARY KEY REFERENCES deployments (id),
    state          TEXT NOT NULL CHECK (state IN ('succeeded', 'failed')),
    message        TEXT,
    reported_at    INTEGER NOT NULL
);

-- Work one replica does at a time (the reconcile loop): whoever holds the row's
-- unexpired lease.
CREATE TABLE singleton_leases (
    name         TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    lease_until  INTEGER NOT NULL
);

-- The web UI's sessions: a person signed in with a password or an API token. Any
-- replica serves a session; deleting the row ends it everywhere.
CREATE TABLE web_sessions (
    id            TEXT    PRIMARY KEY,
    user_name     TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    -- SHA-256 of the secret in the cookie.
    secret_hash   TEXT    NOT NULL UNIQUE,
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
