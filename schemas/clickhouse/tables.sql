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

-- The charts' sample source (get-history-bulk-interval): for each (run, key) and 64-step bucket
-- (step >> 6), the first point (step, timestamp, value, is_nan order) of every inserted block that has
-- points in the bucket, and how many it had. The reader takes the least row per bucket (or per group of
-- 4^L buckets, coarser resolutions being computed when read), which is the bucket's first point whatever
-- the blocks were, so replays and re-batching only add identical or larger rows. `points` is not in the
-- key (a replayed block collapses with its original): it only estimates a run's size. Filled by the view
-- below on every INSERT into `metrics` (no work in the sinks); `TableStore.migrate` fills it from
-- `metrics` when it creates it. A 1000-point block of consecutive steps adds ~16 rows.
CREATE TABLE IF NOT EXISTS metric_buckets (
    run_id String,
    key String,
    bucket Int64,
    first_step Int64,
    first_timestamp Int64,
    first_value Float64,
    first_is_nan UInt8,
    points UInt64
) ENGINE = ReplacingMergeTree()
ORDER BY (run_id, key, bucket, first_step, first_timestamp, first_value, first_is_nan);

-- (ClickHouse 18.16: a view's columns must be exactly the target's, and an alias may not shadow a
-- source column, hence the repeated min(tuple), which is computed once.)
CREATE MATERIALIZED VIEW IF NOT EXISTS metric_buckets_mv TO metric_buckets AS
SELECT run_id, key, bitShiftRight(step, 6) AS bucket,
    tupleElement(min((step, timestamp, value, is_nan)), 1) AS first_step,
    tupleElement(min((step, timestamp, value, is_nan)), 2) AS first_timestamp,
    tupleElement(min((step, timestamp, value, is_nan)), 3) AS first_value,
    tupleElement(min((step, timestamp, value, is_nan)), 4) AS first_is_nan,
    count() AS points
FROM metrics
GROUP BY run_id, key, bucket;

-- The history pages' index (metrics/get-history with max_results; TrackingReader.metric_history_after):
-- per (run, key) and 1024-step bucket (step >> 10, floor for negative steps), the least and the greatest
-- timestamp of its points and how many were inserted. min and max are exact under replays, re-batching,
-- arrival order and merges; `points` counts inserted rows, so replays over-count it: only an estimate.
-- A page reads these spans to find the few buckets that can hold its points (the history is in time
-- order, the table in step order). Filled by the view below on every INSERT into `metrics`, in the same
-- INSERT (visible when it returns, i.e. before the sink commits); `TableStore.migrate` fills it from
-- `metrics` when it creates it. Merges reduce it to one row per bucket (~1,000 rows per 1M dense steps).
CREATE TABLE IF NOT EXISTS metric_spans (
    run_id String,
    key String,
    bucket Int64,
    min_timestamp AggregateFunction(min, Int64),
    max_timestamp AggregateFunction(max, Int64),
    points AggregateFunction(count)
) ENGINE = AggregatingMergeTree()
ORDER BY (run_id, key, bucket);

-- (ClickHouse 18.16: a view's columns must be exactly the target's, and an alias may not shadow a source
-- column.)
CREATE MATERIALIZED VIEW IF NOT EXISTS metric_spans_mv TO metric_spans AS
SELECT run_id, key, bitShiftRight(step, 10) AS bucket,
    minState(timestamp) AS min_timestamp, maxState(timestamp) AS max_timestamp, countState() AS points
FROM metrics
GROUP BY run_id, key, bucket;

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

-- The latest point of each (key, run), reduced: what runs/search filters and orders by. `latest` is
-- the max of a 25-byte rank string whose byte order is MLflow's order (step, timestamp, value, then
-- is_nan): step and timestamp as big-endian UInt64 with the sign bit flipped, the value's IEEE bits made
-- order-preserving (negative: all bits flipped; positive: sign bit set), is_nan one byte. A max is exact
-- under any batching, replay or arrival order, and merges reduce the rows to one per (key, run), so a
-- `key = ?` read is one key range of one row per run (the reader decodes the bytes; trackstream.reads.search).
-- ClickHouse 18.16 has no plain-value insert into an aggregate column, hence the view on the sink's
-- `latest_metrics` insert (a few rows per written batch); `TableStore.migrate` fills it when it creates it.
CREATE TABLE IF NOT EXISTS metric_latest (
    key String,
    run_id String,
    latest AggregateFunction(max, String)
) ENGINE = AggregatingMergeTree()
ORDER BY (key, run_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_latest_mv TO metric_latest AS
SELECT key, run_id, maxState(concat(
    reverse(toFixedString(reinterpretAsString(bitXor(toUInt64(step), toUInt64(9223372036854775808))), 8)),
    reverse(toFixedString(reinterpretAsString(bitXor(toUInt64(timestamp), toUInt64(9223372036854775808))), 8)),
    reverse(toFixedString(reinterpretAsString(if(reinterpretAsUInt64(reinterpretAsString(value)) >= toUInt64(9223372036854775808),
        bitNot(reinterpretAsUInt64(reinterpretAsString(value))),
        bitOr(reinterpretAsUInt64(reinterpretAsString(value)), toUInt64(9223372036854775808)))), 8)),
    toFixedString(reinterpretAsString(is_nan), 1))) AS latest
FROM latest_metrics
GROUP BY key, run_id;

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

-- Logged models (MLflow 3): one row per model, the whole row rewritten by every LoggedModelState
-- event (keyed by model_id on the log). status is the LoggedModelStatus name.
CREATE TABLE IF NOT EXISTS logged_models (
    model_id String,
    experiment_id String,
    name String,
    artifact_uri String,
    creation_timestamp_ms Int64,
    last_updated_timestamp_ms Int64,
    status String,
    status_message Nullable(String),
    lifecycle_stage String,
    model_type Nullable(String),
    source_run_id Nullable(String),
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY model_id;

CREATE TABLE IF NOT EXISTS logged_model_params (
    model_id String,
    key String,
    value String,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (model_id, key);

CREATE TABLE IF NOT EXISTS logged_model_tags (
    model_id String,
    key String,
    value String,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (model_id, key);

-- Metric points logged with a model_id (written by the metrics sink next to `metrics`), keyed like
-- MLflow's logged_model_metrics table; one point linked to two models is two rows.
CREATE TABLE IF NOT EXISTS logged_model_metrics (
    model_id String,
    key String,
    step Int64,
    timestamp Int64,
    run_id String,
    value Float64,
    is_nan UInt8,
    dataset_name String DEFAULT '',
    dataset_digest String DEFAULT ''
) ENGINE = ReplacingMergeTree()
ORDER BY (model_id, key, step, timestamp, run_id, value, is_nan);

-- Run inputs and outputs (runs/log-inputs, runs/outputs). Dataset input tags are a JSON array string
-- ([{"key": "mlflow.data.context", "value": "training"}]), in the order they were logged.
CREATE TABLE IF NOT EXISTS run_dataset_inputs (
    run_id String,
    experiment_id String,
    name String,
    digest String,
    source_type String,
    source String,
    schema Nullable(String),
    profile Nullable(String),
    tags String,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (run_id, name, digest);

CREATE TABLE IF NOT EXISTS run_model_inputs (
    run_id String,
    model_id String,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (run_id, model_id);

CREATE TABLE IF NOT EXISTS run_model_outputs (
    run_id String,
    model_id String,
    step Int64,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (run_id, model_id, step);

-- What the metadata sink decided for each event that carries a rule (experiment names, param
-- immutability, experiment lifecycle; docs/DESIGN.md "Decided events"), by the event's log position.
-- The gateway that produced the event waits until the sink committed past it and reads its row here.
-- Written before the state rows of the same batch; a replayed batch reads these back instead of
-- deciding again. result: a small payload of an accepted decision (e.g. an allocated version number).
CREATE TABLE IF NOT EXISTS decisions (
    topic String,
    log_partition UInt32,
    log_offset UInt64,
    ok UInt8,
    error_code String,
    message String,
    result String
) ENGINE = ReplacingMergeTree()
ORDER BY (topic, log_partition, log_offset);
