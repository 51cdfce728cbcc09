-- Durable deploy jobs: every deployment is carried out by a job that a replica claims
-- with a lease, keeps alive with heartbeats, retries after transient failures (not
-- before run_after) and finishes in the same transaction as the deployment. A lease
-- that runs out (its replica crashed) lets another replica, or the same one after a
-- restart, pick the job up again. The same lease guards the follow-up of a finished
-- job.
CREATE TABLE deploy_jobs (
    deployment_id  BIGINT PRIMARY KEY REFERENCES deployments (id),
    attempts       BIGINT NOT NULL DEFAULT 0,
    run_after      BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until    BIGINT,
    last_error     TEXT,
    finished_at    BIGINT,
    -- What the outcome leads to (an auto-rollback, an auto-promotion) is still to be
    -- started, by the finishing replica or, from this time on, by any replica.
    followup_due   BIGINT
);
CREATE INDEX deploy_jobs_due ON deploy_jobs (finished_at, run_after);

-- Deployments that were running when this version was installed become jobs.
INSERT INTO deploy_jobs (deployment_id, run_after)
    SELECT id, 0 FROM deployments WHERE state = 'deploying';

-- What each deployment did, line by line: steps, retries, a program's output.
CREATE TABLE deployment_log (
    deployment_id  BIGINT NOT NULL REFERENCES deployments (id),
    seq            BIGINT NOT NULL,
    at             BIGINT NOT NULL,
    line           TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);

-- What a webhook target's receiver reported through its one-time callback: at most
-- one report per deployment.
CREATE TABLE deployment_callbacks (
    deployment_id  BIGINT PRIMARY KEY REFERENCES deployments (id),
    state          TEXT NOT NULL CHECK (state IN ('succeeded', 'failed')),
    message        TEXT,
    reported_at    BIGINT NOT NULL
);

-- Work one replica does at a time (the reconcile loop): whoever holds the row's
-- unexpired lease.
CREATE TABLE singleton_leases (
    name         TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    lease_until  BIGINT NOT NULL
);
