-- Declared resources (`gantry apply`): one row per kind and name holding the
-- canonical rendering that was applied and a revision that counts its changes, so an
-- apply can refuse to overwrite a change it did not see. Applications also keep the
-- columns the engine looks them up by.

CREATE TABLE resources (
    kind        TEXT    COLLATE "C" NOT NULL,
    name        TEXT    COLLATE "C" NOT NULL,
    canonical   TEXT    NOT NULL,
    revision    BIGINT  NOT NULL,
    -- Applications only: the OCI repository, the pipeline and the application type.
    -- Collated like `repositories.name` and `resources.name`, whose values they hold,
    -- so comparisons with those columns and orderings agree.
    repository  TEXT    COLLATE "C",
    pipeline    TEXT    COLLATE "C",
    app_type    TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE INDEX resources_by_repository ON resources (repository) WHERE repository IS NOT NULL;
CREATE INDEX resources_by_pipeline ON resources (pipeline) WHERE pipeline IS NOT NULL;
