-- The model registry (written by the registry sink; docs/DESIGN.md "Decided events").
-- Every registry event is in one partition of its topic, so `_version` = the event's offset orders
-- every change. A registered model is keyed by `model_id`, an id given at create and never reused:
-- a rename changes `name` (and the `name` of its versions), a delete sets `deleted`, and a model
-- created again under that name is another model_id whose versions start at 1 again.

CREATE TABLE IF NOT EXISTS registered_models (
    model_id String,
    name String,
    creation_timestamp Int64,
    last_updated_timestamp Int64,
    description Nullable(String),
    deployment_job_id Nullable(String),
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY model_id;

-- One row per version ever created (a deleted one stays, deleted = 1 and its fields redacted, so its
-- number is never given again, as the stock SQL store keeps it as stage Deleted_Internal).
CREATE TABLE IF NOT EXISTS model_versions (
    model_id String,
    version Int64,
    name String,
    creation_timestamp Int64,
    last_updated_timestamp Int64,
    user_id Nullable(String),
    current_stage String,
    description Nullable(String),
    source String,
    storage_location Nullable(String),
    run_id Nullable(String),
    run_link Nullable(String),
    logged_model_id Nullable(String),
    status String,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (model_id, version);

CREATE TABLE IF NOT EXISTS registered_model_tags (
    model_id String,
    key String,
    value String,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (model_id, key);

CREATE TABLE IF NOT EXISTS model_version_tags (
    model_id String,
    version Int64,
    key String,
    value String,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (model_id, version, key);

-- An alias points to one version of its model; deleting the version deletes its aliases.
CREATE TABLE IF NOT EXISTS registered_model_aliases (
    model_id String,
    alias String,
    version Int64,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (model_id, alias);
