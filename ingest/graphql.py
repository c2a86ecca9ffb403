"""``POST /graphql``: the queries the MLflow web app sends (GetRun, MlflowGetExperimentQuery, SearchRuns,
GetMetricHistoryBulkInterval, ...), answered by graphql-core over the gateway's own handlers.

The schema has the shape of the stock server's (graphene types generated from MLflow's protos, so field
names are camelCase and 64-bit integers travel as ``LongString``); ``tests/ui/test_graphql.py`` checks
it against the stock schema. Resolvers pass the input, with its keys turned to snake_case, to the
handler of the REST endpoint of the same name and return its MLflow JSON, so no read logic
lives here. As in the stock server, an error raised by a handler becomes a GraphQL error (a message
string in ``errors``) beside ``null`` data, with HTTP 200.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute,
    parse,
    validate,
)

from ingest.errors import MlflowError
from ingest.handlers import ENDPOINTS, Context
from ingest.requests import checked
from trackstream.errors import StoreError

log = logging.getLogger(__name__)

SDL = """
directive @component(name: String!) on QUERY | MUTATION

"Long converted to string to prevent truncation to max integer in JavaScript"
scalar LongString

type Query {
  mlflowGetExperiment(input: MlflowGetExperimentInput): MlflowGetExperimentResponse
  mlflowGetMetricHistoryBulkInterval(
    input: MlflowGetMetricHistoryBulkIntervalInput
  ): MlflowGetMetricHistoryBulkIntervalResponse
  mlflowGetRun(input: MlflowGetRunInput): MlflowGetRunResponse
  mlflowListArtifacts(input: MlflowListArtifactsInput): MlflowListArtifactsResponse
  mlflowSearchModelVersions(input: MlflowSearchModelVersionsInput): MlflowSearchModelVersionsResponse
  test(inputString: String): Test
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
}

type Mutation {
  mlflowSearchDatasets(input: MlflowSearchDatasetsInput): MlflowSearchDatasetsResponse
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
  testMutation(inputString: String): TestMutation
}

type Test { output: String }
type TestMutation { output: String }

type ErrorDetail { field: String message: String }
type ApiError { code: String message: String helpUrl: String traceId: String errorDetails: [ErrorDetail] }

type MlflowExperimentTag { key: String value: String }
type MlflowExperiment {
  experimentId: String
  name: String
  artifactLocation: String
  lifecycleStage: String
  lastUpdateTime: LongString
  creationTime: LongString
  tags: [MlflowExperimentTag!]
  effectiveTraceArchivalRetention: String
  workspace: String
}
type MlflowGetExperimentResponse { experiment: MlflowExperiment apiError: ApiError }
input MlflowGetExperimentInput { experimentId: String }

type MlflowMetricWithRunId { key: String value: Float timestamp: LongString step: LongString runId: String }
type MlflowGetMetricHistoryBulkIntervalResponse { metrics: [MlflowMetricWithRunId!] apiError: ApiError }
input MlflowGetMetricHistoryBulkIntervalInput {
  runIds: [String]
  metricKey: String
  startStep: Int
  endStep: Int
  maxResults: Int
}

enum MlflowRunStatus { RUNNING SCHEDULED FINISHED FAILED KILLED }
enum MlflowViewType { ACTIVE_ONLY DELETED_ONLY ALL }

type MlflowRunInfo {
  runId: String
  runUuid: String
  runName: String
  experimentId: String
  userId: String
  status: MlflowRunStatus
  startTime: LongString
  endTime: LongString
  artifactUri: String
  lifecycleStage: String
}
type MlflowMetricExtension {
  key: String
  value: Float
  timestamp: LongString
  step: LongString
  datasetName: String
  datasetDigest: String
  modelId: String
  runId: String
}
type MlflowParam { key: String value: String }
type MlflowRunTag { key: String value: String }
type MlflowRunData { metrics: [MlflowMetricExtension!] params: [MlflowParam!] tags: [MlflowRunTag!] }
type MlflowInputTag { key: String value: String }
type MlflowDataset { name: String digest: String sourceType: String source: String schema: String profile: String }
type MlflowDatasetInput { tags: [MlflowInputTag!] dataset: MlflowDataset }
type MlflowModelInput { modelId: String }
type MlflowRunInputs { datasetInputs: [MlflowDatasetInput!] modelInputs: [MlflowModelInput!] }
type MlflowModelOutput { modelId: String step: LongString }
type MlflowRunOutputs { modelOutputs: [MlflowModelOutput!] }
type MlflowRunExtension {
  info: MlflowRunInfo
  data: MlflowRunData
  inputs: MlflowRunInputs
  outputs: MlflowRunOutputs
  experiment: MlflowExperiment
  modelVersions: [MlflowModelVersion!]
}
type MlflowGetRunResponse { run: MlflowRunExtension apiError: ApiError }
input MlflowGetRunInput { runId: String runUuid: String }

type MlflowSearchRunsResponse { runs: [MlflowRunExtension!] nextPageToken: String apiError: ApiError }
input MlflowSearchRunsInput {
  experimentIds: [String]
  filter: String
  runViewType: MlflowViewType = null
  maxResults: Int
  orderBy: [String]
  pageToken: String
}

enum MlflowModelVersionStatus { PENDING_REGISTRATION FAILED_REGISTRATION READY }
enum MlflowDeploymentJobConnectionState {
  DEPLOYMENT_JOB_CONNECTION_STATE_UNSPECIFIED NOT_SET_UP CONNECTED NOT_FOUND REQUIRED_PARAMETERS_CHANGED
}
enum MlflowModelVersionDeploymentJobStateDeploymentJobRunState {
  DEPLOYMENT_JOB_RUN_STATE_UNSPECIFIED NO_VALID_DEPLOYMENT_JOB_FOUND RUNNING SUCCEEDED FAILED PENDING APPROVAL
}
type MlflowModelVersionTag { key: String value: String }
type MlflowModelParam { name: String value: String }
type MlflowModelMetric {
  key: String
  value: Float
  timestamp: LongString
  step: LongString
  datasetName: String
  datasetDigest: String
  modelId: String
  runId: String
}
type MlflowModelVersionDeploymentJobState {
  jobId: String
  runId: String
  jobState: MlflowDeploymentJobConnectionState
  runState: MlflowModelVersionDeploymentJobStateDeploymentJobRunState
  currentTaskName: String
}
type MlflowModelVersion {
  name: String
  version: String
  creationTimestamp: LongString
  lastUpdatedTimestamp: LongString
  userId: String
  currentStage: String
  description: String
  source: String
  runId: String
  status: MlflowModelVersionStatus
  statusMessage: String
  tags: [MlflowModelVersionTag!]
  runLink: String
  aliases: [String]
  modelId: String
  modelParams: [MlflowModelParam!]
  modelMetrics: [MlflowModelMetric!]
  deploymentJobState: MlflowModelVersionDeploymentJobState
}
type MlflowSearchModelVersionsResponse { modelVersions: [MlflowModelVersion!] nextPageToken: String apiError: ApiError }
input MlflowSearchModelVersionsInput { filter: String maxResults: LongString orderBy: [String] pageToken: String }

type MlflowFileInfo { path: String isDir: Boolean fileSize: LongString }
type MlflowListArtifactsResponse { rootUri: String files: [MlflowFileInfo!] nextPageToken: String apiError: ApiError }
input MlflowListArtifactsInput { runId: String runUuid: String path: String pageToken: String }

type MlflowDatasetSummary { experimentId: String name: String digest: String context: String }
type MlflowSearchDatasetsResponse { datasetSummaries: [MlflowDatasetSummary!] apiError: ApiError }
input MlflowSearchDatasetsInput { experimentIds: [String] }
"""

# The stock server's limits on a query (mlflow/server/graphql/graphql_no_batching.py and its environment
# variables' defaults): nesting depth, selections in all, root fields, aliases on one level.
MAX_DEPTH = 10
MAX_SELECTIONS = 1000
MAX_ROOT_FIELDS = 10
MAX_ALIASES = 10
MAX_TOKENS = 20_000  # parser bound: the UI's largest query (SearchRuns) has about 200 tokens
PREFETCHED = "__prefetched"  # a run's key holding its nested reads under way (no field has this name)
DOCUMENT_CACHE = 64  # query texts whose parse and validation are kept (the UI sends a dozen or so)

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {snake(k): _snake_keys(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def _field(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Default resolver: the MLflow JSON's snake_case key of the camelCase field."""
    if isinstance(source, Mapping):
        return source.get(snake(info.field_name))
    return None


def _number(source: Any, info: GraphQLResolveInfo) -> float | None:
    """Metric values: NaN and ±inf (strings in MLflow JSON) have no GraphQL Float; the stock server
    answers null for NaN."""
    value = source.get("value") if isinstance(source, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _long(value: Any) -> str:
    return str(value)


def _parse_long(value: Any) -> int:
    return int(value)


class GraphQL:
    """The schema with resolvers bound to the gateway's handlers."""

    def __init__(self, ctx: Context) -> None:
        self.schema: GraphQLSchema = build_schema(SDL)
        # The web app sends the same few query texts over and over; parsing and validating the run page's
        # GetRun took 15-19 ms of its ~40 ms (graphql-core, pure Python), so each text's outcome is kept.
        # The outcome depends only on the text and this schema; a syntax error is not kept (it raises).
        self._checked = functools.lru_cache(maxsize=DOCUMENT_CACHE)(self._parse_and_check)
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="graphql-nested")
        long_string = self.schema.type_map["LongString"]
        long_string.serialize = _long  # type: ignore[attr-defined]
        long_string.parse_value = _parse_long  # type: ignore[attr-defined]
        for enum_name in ("MlflowRunStatus", "MlflowViewType", "MlflowModelVersionStatus"):
            for name, value in self.schema.type_map[enum_name].values.items():  # type: ignore[attr-defined]
                value.value = name  # MLflow JSON carries enum names
        by_path = {e.path: e for e in reversed(ENDPOINTS)}  # the first record of a path wins

        def rest(path: str) -> Handler:
            """The REST endpoint of ``path`` as a resolver would call it: its request model, its barrier."""
            spec = by_path[path]

            def call(fields: dict[str, Any]) -> Any:
                return spec.invoke(ctx, checked(spec.request, fields) if spec.request is not None else fields)

            return call

        def on_input(handler: Handler) -> Callable[..., Any]:
            def resolve(_source: Any, _info: GraphQLResolveInfo, input: Mapping[str, Any] | None = None) -> Any:
                return handler(_snake_keys(input or {}))

            return resolve

        get_experiment = rest("/experiments/get")
        search_versions = rest("/model-versions/search")

        def experiment_of(run: Mapping[str, Any]) -> Any:
            return get_experiment({"experiment_id": run["info"]["experiment_id"]})["experiment"]

        def versions_of(run: Mapping[str, Any]) -> Any:
            run_id = str(run["info"]["run_id"]).replace("'", "")
            return search_versions({"filter": f"run_id = '{run_id}'"}).get("model_versions", [])

        nested = {"experiment": experiment_of, "modelVersions": versions_of}
        get_run = rest("/runs/get")

        def resolve_get_run(_source: Any, info: GraphQLResolveInfo, input: Mapping[str, Any] | None = None) -> Any:
            """runs/get, then the run's experiment and model versions, if selected, read at once (the fields
            would resolve them one after the other): GetRun is on the run page's critical path."""
            answer = get_run(_snake_keys(input or {}))
            run = answer.get("run")
            if not isinstance(run, Mapping):
                return answer
            wanted = _selected(info, "run")
            futures = {
                name: self._pool.submit(contextvars.copy_context().run, fetch, run)
                for name, fetch in nested.items()
                if name in wanted
            }
            return {**answer, "run": {**run, PREFETCHED: futures}}

        def nested_field(name: str) -> Callable[..., Any]:
            def resolve(run: Mapping[str, Any], _info: GraphQLResolveInfo) -> Any:
                future = run.get(PREFETCHED, {}).get(name)
                return future.result() if future is not None else nested[name](run)

            return resolve

        query = self.schema.query_type
        mutation = self.schema.mutation_type
        assert query is not None and mutation is not None
        query.fields["mlflowGetExperiment"].resolve = on_input(get_experiment)
        query.fields["mlflowGetRun"].resolve = resolve_get_run
        query.fields["mlflowSearchRuns"].resolve = on_input(rest("/runs/search"))
        query.fields["mlflowGetMetricHistoryBulkInterval"].resolve = on_input(
            rest("/metrics/get-history-bulk-interval")
        )
        query.fields["mlflowListArtifacts"].resolve = on_input(rest("/artifacts/list"))
        query.fields["mlflowSearchModelVersions"].resolve = on_input(search_versions)
        query.fields["test"].resolve = lambda _s, _i, inputString=None: {"output": inputString}
        mutation.fields["mlflowSearchRuns"].resolve = on_input(rest("/runs/search"))
        mutation.fields["mlflowSearchDatasets"].resolve = on_input(rest("/experiments/search-datasets"))
        mutation.fields["testMutation"].resolve = lambda _s, _i, inputString=None: {"output": inputString}
        run_type = self.schema.type_map["MlflowRunExtension"]
        for name in nested:
            run_type.fields[name].resolve = nested_field(name)  # type: ignore[attr-defined]
        for metric_type in ("MlflowMetricExtension", "MlflowMetricWithRunId", "MlflowModelMetric"):
            self.schema.type_map[metric_type].fields["value"].resolve = _number  # type: ignore[attr-defined]

    def _parse_and_check(self, query: str) -> tuple[DocumentNode, ExecutionResult | None]:
        """The document of ``query`` and, if it may not run, the answer saying why (limits, validation)."""
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as exc:
            raise MlflowError(f"Invalid GraphQL query: {exc.message}", "BAD_REQUEST") from None
        refused = _check_limits(document)
        if refused is None:
            errors = validate(self.schema, document)
            if errors:
                refused = ExecutionResult(data=None, errors=errors)
        return document, refused

    def answer(self, query: Any, variables: Any, operation_name: Any) -> dict[str, Any]:
        """The stock server's response body: ``{"data": ..., "errors": [message, ...] | null}``.

        A request that is not a GraphQL document answers 400 BAD_REQUEST (the stock server answers 500)."""
        if not isinstance(query, str) or not query:
            raise MlflowError("GraphQL request must have a 'query' string", "BAD_REQUEST")
        if variables is not None and not isinstance(variables, dict):
            raise MlflowError("GraphQL 'variables' must be an object", "BAD_REQUEST")
        if operation_name is not None and not isinstance(operation_name, str):
            raise MlflowError("GraphQL 'operationName' must be a string", "BAD_REQUEST")
        document, result = self._checked(query)
        if result is None:
            outcome = execute(
                self.schema, document, variable_values=variables, operation_name=operation_name, field_resolver=_field
            )
            assert isinstance(outcome, ExecutionResult)  # every resolver is synchronous
            result = outcome
        return {"data": result.data, "errors": [_message(e) for e in result.errors] if result.errors else None}


def _message(error: GraphQLError) -> str:
    """A handler's MLflow error keeps its message; an unexpected exception is logged, not shown."""
    original = error.original_error
    if original is None:
        return error.message
    if isinstance(original, MlflowError):
        return original.message
    if isinstance(original, StoreError):
        log.warning("store error on /graphql: %s", original)
        return f"Store error: {original}"
    log.error("unexpected error on /graphql", exc_info=original)
    return "Internal error; see the gateway log."


def _check_limits(document: DocumentNode) -> ExecutionResult | None:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root_fields = selections = max_aliases = 0
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        stack: list[tuple[SelectionSetNode, int]] = [(definition.selection_set, 1)]
        while stack:
            selection_set, depth = stack.pop()
            if depth > MAX_DEPTH:
                return _refused(f"Query exceeds maximum depth of {MAX_DEPTH}")
            fields, aliases = _fields_of(selection_set, fragments)
            max_aliases = max(max_aliases, aliases)
            for field in fields:
                selections += 1
                root_fields += depth == 1
                if selections > MAX_SELECTIONS:
                    return _refused(f"Query exceeds maximum total selections of {MAX_SELECTIONS}")
                if field.selection_set is not None:
                    stack.append((field.selection_set, depth + 1))
    for count, limit, what in ((root_fields, MAX_ROOT_FIELDS, "root fields"), (max_aliases, MAX_ALIASES, "aliases")):
        if count > limit:
            return _refused(f"GraphQL queries should have at most {limit} {what}, got {count} {what}.")
    return None


def _fields_of(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> tuple[list[FieldNode], int]:
    """The fields of one level, fragments (inline and spread, each spread once) merged in."""
    fields: list[FieldNode] = []
    aliases = 0
    seen: set[str] = set()
    pending = list(selection_set.selections)
    while pending:
        node = pending.pop()
        if isinstance(node, FieldNode):
            fields.append(node)
            aliases += node.alias is not None
        elif isinstance(node, InlineFragmentNode):
            pending += node.selection_set.selections
        elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
            seen.add(node.name.value)
            fragment = fragments.get(node.name.value)
            if fragment is not None:
                pending += fragment.selection_set.selections
    return fields, aliases


def _selected(info: GraphQLResolveInfo, child: str) -> set[str]:
    """Names of the fields selected under ``child`` of the field being resolved (fragments merged in)."""
    names: set[str] = set()
    for node in info.field_nodes:
        if node.selection_set is None:
            continue
        for field in _fields_of(node.selection_set, info.fragments)[0]:
            if field.name.value == child and field.selection_set is not None:
                names.update(f.name.value for f in _fields_of(field.selection_set, info.fragments)[0])
    return names


def _refused(message: str) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(message)])


def request_parts(method: str, query_params: Mapping[str, str], body: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(query, variables, operationName) of a POST body or of a GET query string."""
    if method == "GET":
        raw = query_params.get("variables")
        try:
            variables = json.loads(raw) if raw else None
        except ValueError:
            raise MlflowError("GraphQL 'variables' must be JSON", "BAD_REQUEST") from None
        return query_params.get("query"), variables, query_params.get("operationName")
    return body.get("query"), body.get("variables"), body.get("operationName")
