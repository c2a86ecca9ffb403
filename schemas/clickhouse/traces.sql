-- MLflow 3 traces (the trace sink, consumers/traces.py). Same rules as tables.sql: ClickHouse 18.16 and
-- chDB 26.x, times in ms (span times in ns, as OpenTelemetry has them), mutable rows versioned by the
-- log offset of the event that wrote them; readers use FINAL.

-- One row per trace. Written from the root span when it arrives (so an OpenTelemetry exporter alone
-- makes a trace) and again, authoritatively, from the client's StartTraceV3 (its _version is raised
-- by 2^48 so it wins over any span-derived row). Sorted by experiment first: every trace search names
-- its experiments. metadata_* are MLflow's trace_metadata (mlflow.sourceRun, mlflow.modelId, token usage...).
CREATE TABLE IF NOT EXISTS traces (
    trace_id String,
    experiment_id String,
    request_time Int64,
    execution_duration Nullable(Int64),
    state String,
    client_request_id Nullable(String),
    request_preview Nullable(String),
    response_preview Nullable(String),
    metadata_keys Array(String),
    metadata_values Array(String),
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (experiment_id, trace_id);

CREATE TABLE IF NOT EXISTS trace_tags (
    trace_id String,
    experiment_id String,
    key String,
    value String,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (trace_id, key);

-- One row per span; a span never changes once exported, so a replay writes an identical row that
-- collapses on the natural key. attr_* are the span's attributes with JSON-encoded values (MLflow's
-- form: mlflow.spanType, mlflow.spanInputs, mlflow.chat.tokenUsage, gen_ai.*...): query them with
-- attr_values[indexOf(attr_keys, 'name')]. payload is the serialized OTLP Span (get_trace answers it
-- as sent); above the inline bound it is in the object store under payload_ref (claim check).
CREATE TABLE IF NOT EXISTS spans (
    experiment_id String,
    trace_id String,
    span_id String,
    parent_span_id String,
    name String,
    span_type String,
    kind Int32,
    start_time_ns Int64,
    end_time_ns Int64,
    status_code String,
    status_message String,
    attr_keys Array(String),
    attr_values Array(String),
    payload String,
    payload_ref String,
    payload_size Int64
) ENGINE = ReplacingMergeTree()
ORDER BY (experiment_id, trace_id, span_id);

-- Deleted traces (by id or by max timestamp): readers leave out every trace listed here.
CREATE TABLE IF NOT EXISTS trace_deletions (
    experiment_id String,
    trace_id String,
    time Int64
) ENGINE = ReplacingMergeTree()
ORDER BY (experiment_id, trace_id);

-- Assessments (log_feedback, log_expectation): the whole row per change; body is the MLflow JSON.
CREATE TABLE IF NOT EXISTS trace_assessments (
    assessment_id String,
    trace_id String,
    experiment_id String,
    name String,
    kind String,
    value String,
    body String,
    created Int64,
    updated Int64,
    deleted UInt8,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY (trace_id, assessment_id);

-- Traces linked to runs (link_traces_to_run, the x-mlflow-run-id header of an OTLP export).
CREATE TABLE IF NOT EXISTS trace_runs (
    run_id String,
    trace_id String
) ENGINE = ReplacingMergeTree()
ORDER BY (run_id, trace_id);
