-- The promotion control plane: who may approve what (roles), where artifacts came
-- from (builds), evidence about them (checks), requests to move a digest into an
-- environment (promotions) with the approvals bound to them, the deployments that
-- carry them out, and each environment's state (what runs, whether it is held).

-- A CI identity (a bot) can push, notify and report checks, and never approves.
ALTER TABLE users ADD COLUMN ci BOOLEAN NOT NULL DEFAULT FALSE;

-- Roles per application, or global where `application` is ''.
CREATE TABLE user_roles (
    user_name    TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    role         TEXT    NOT NULL,
    application  TEXT    NOT NULL,
    granted_at   INTEGER NOT NULL,
    PRIMARY KEY (user_name, application, role)
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
    finished_at      INTEGER
);
CREATE INDEX deployments_by_environment ON deployments (application, environment, id);
CREATE INDEX deployments_by_digest ON deployments (application, digest, environment, state);
CREATE INDEX deployments_by_time ON deployments (finished_at);
