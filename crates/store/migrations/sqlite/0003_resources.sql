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
