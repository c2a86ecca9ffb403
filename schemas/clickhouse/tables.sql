-- trackstream ClickHouse schema. Runs unchanged on ClickHouse 18.16 and on chDB 26.x.
-- Times are Int64 milliseconds since the epoch, as MLflow represents them.
-- Mutable rows are ReplacingMergeTree versioned by `_version` = the Kafka offset of the event that
-- wrote them (all events of one entity share a partition, so offsets order them); readers use FINAL.
-- Replays write identical rows, which the engine and the readers collapse.

-- One row per metric point. The sort key is MLflow's natural key, so a replayed point collapses.
-- NaN is stored as value 0 with is_nan = 1 and +-inf as +-1.7976931348623157e308, as MLflow's SQL store does.
CREATE TABLE IF NOT EXISTS metrics (
    run_id String,
    key String,
    step Int64,
    timestamp Int64,
    value Float64,
    is_nan UInt8,
    model_id String DEFAULT '',
    dataset_name String DEFAULT '',
    dataset_digest String DEFAULT ''
) ENGINE = ReplacingMergeTree()
ORDER BY (run_id, key, step, timestamp, value, is_nan);

-- Candidates for the latest value of each (run, key): the highest point of every written batch.
-- The latest metric is argMax over (step, timestamp, value), so duplicates are harmless.
CREATE TABLE IF NOT EXISTS latest_metrics (
    run_id String,
    key String,
    step Int64,
    timestamp Int64,
    value Float64,
    is_nan UInt8
) ENGINE = ReplacingMergeTree()
ORDER BY (run_id, key, step, timestamp, value, is_nan);

CREATE TABLE IF NOT EXISTS experiments (
    experiment_id String,
    name String,
    artifact_location String,
    lifecycle_stage String,
    creation_time Int64,
    last_update_time Int64,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY experiment_id;

CREATE TABLE IF NOT EXISTS experiment_tags (
    experiment_id String,
    key String,
    value String,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (experiment_id, key);

CREATE TABLE IF NOT EXISTS runs (
    run_id String,
    experiment_id String,
    run_name String,
    user_id String,
    status String,
    start_time Int64,
    end_time Nullable(Int64),
    artifact_uri String,
    lifecycle_stage String,
    deleted_time Nullable(Int64),
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY run_id;

CREATE TABLE IF NOT EXISTS params (
    run_id String,
    key String,
    value String,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (run_id, key);

CREATE TABLE IF NOT EXISTS run_tags (
    run_id String,
    key String,
    value String,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (run_id, key);

-- Artifact index: one row per stored object (path is the key under the artifact root).
CREATE TABLE IF NOT EXISTS artifacts (
    path String,
    size Int64,
    sha256 String,
    time Int64,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY path;
