"""One request model per endpoint: the type and range of every field, as MLflow's protobuf messages declare them.

The route adapter (``ingest.app``) validates a request's fields against its model before the handler runs,
so a handler only ever sees strings where the proto has strings, int64 values inside MLflow's BIGINT
bounds, arrays of objects where it has repeated messages. The handlers keep taking a dict and keep
MLflow's own rules (required fields, name syntax, length limits, which they word as MLflow does).

Fields follow protobuf's JSON mapping as the stock server parses it: int64 as a number or a decimal
string (an integral float too), enums by name or number, unknown fields ignored. Values of the wrong
type answer 400 INVALID_PARAMETER_VALUE with the stock server's wording (``error_message``).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError

from ingest.errors import invalid

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_DECIMAL = re.compile(r"[-+]?[0-9]{1,20}")


class WrongType(ValueError):
    """A value of another JSON type than the proto field's (pydantic turns ValueErrors into its errors)."""


class OutOfRange(ValueError):
    """A number of the right type outside the proto field's range (MLflow's BIGINT columns)."""


def _integer(value: Any, low: int, high: int, bits: int) -> int:
    if isinstance(value, bool):
        raise WrongType("a boolean is not an integer")
    out_of_range = OutOfRange(f"Value is out of range for a {bits}-bit integer ({low}..{high}).")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        # orjson hands integers beyond 64 bits over as floats: -2**63 - 1 arrives as -9.223372036854775808e18,
        # so a float at or past ±2**63 is out of range even where it rounds onto the bound
        if not -(2.0**63) < value < 2.0**63:
            raise out_of_range
        number = int(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise WrongType("not an integer")
    if not low <= number <= high:
        raise out_of_range
    return number


def _int64(value: Any) -> int:
    return _integer(value, INT64_MIN, INT64_MAX, 64)


def _int32(value: Any) -> int:
    return _integer(value, INT32_MIN, INT32_MAX, 32)


def _bool(value: Any) -> bool:
    """A JSON boolean, or ``true``/``false`` in a query string (the stock server's GET parsing)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise WrongType("not a boolean")


def _enum(names: tuple[str, ...], first: int = 1) -> BeforeValidator:
    """A proto enum given by name, or by number (``first`` is the number of ``names[0]``), as a name."""

    def check(value: Any) -> str:
        if isinstance(value, str) and value in names:
            return value
        if not isinstance(value, bool) and isinstance(value, (int, str)):
            try:
                number = int(value)
            except ValueError:
                number = -1
            if 0 <= number - first < len(names):
                return names[number - first]
        raise WrongType(f"expected one of {list(names)}")

    return BeforeValidator(check)


Int64 = Annotated[int, BeforeValidator(_int64)]
Int32 = Annotated[int, BeforeValidator(_int32)]
Bool = Annotated[bool, BeforeValidator(_bool)]
Str = StrictStr
ViewType = Annotated[str, _enum(("ACTIVE_ONLY", "DELETED_ONLY", "ALL"))]
RunStatus = Annotated[str, _enum(("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"))]
LoggedModelStatus = Annotated[
    str,
    _enum(
        ("LOGGED_MODEL_STATUS_UNSPECIFIED", "LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"),
        first=0,
    ),
]


class Body(BaseModel):
    """Unknown fields are ignored, as protobuf's JSON parser in the stock server ignores them."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Tag(Body):
    key: Str | None = None
    value: Str | None = None


# -- experiments --
class CreateExperiment(Body):
    name: Str | None = None
    artifact_location: Str | None = None
    tags: list[Tag] | None = None


class ExperimentId(Body):
    experiment_id: Str | None = None


class GetExperimentByName(Body):
    experiment_name: Str | None = None


class SearchExperiments(Body):
    max_results: Int64 | None = None
    page_token: Str | None = None
    filter: Str | None = None
    order_by: list[Str] | None = None
    view_type: ViewType | None = None


class UpdateExperiment(Body):
    experiment_id: Str | None = None
    new_name: Str | None = None


class SetExperimentTag(Body):
    experiment_id: Str | None = None
    key: Str | None = None
    value: Str | None = None


class DeleteExperimentTag(Body):
    experiment_id: Str | None = None
    key: Str | None = None


# -- runs --
class RunRef(Body):
    run_id: Str | None = None
    run_uuid: Str | None = None


class CreateRun(Body):
    experiment_id: Str | None = None
    user_id: Str | None = None
    run_name: Str | None = None
    start_time: Int64 | None = None
    tags: list[Tag] | None = None


class UpdateRun(RunRef):
    status: RunStatus | None = None
    end_time: Int64 | None = None
    run_name: Str | None = None


class SearchRuns(Body):
    experiment_ids: list[Str] | None = None
    filter: Str | None = None
    run_view_type: ViewType | None = None
    max_results: Int32 | None = None
    order_by: list[Str] | None = None
    page_token: Str | None = None


class LogParam(RunRef):
    key: Str | None = None
    value: Str | None = None


class SetTag(RunRef):
    key: Str | None = None
    value: Str | None = None


class DeleteTag(Body):
    run_id: Str | None = None
    key: Str | None = None


class Dataset(Body):
    name: Str | None = None
    digest: Str | None = None
    source_type: Str | None = None
    source: Str | None = None
    schema_: Str | None = Field(default=None, alias="schema")  # the name would shadow BaseModel.schema
    profile: Str | None = None


class DatasetInput(Body):
    tags: list[Tag] | None = None
    dataset: Dataset | None = None


class ModelId(Body):
    model_id: Str | None = None


class ModelOutput(Body):
    model_id: Str | None = None
    step: Int64 | None = None


class LogInputs(Body):
    run_id: Str | None = None
    datasets: list[DatasetInput] | None = None
    models: list[ModelId] | None = None


class LogOutputs(Body):
    run_id: Str | None = None
    models: list[ModelOutput] | None = None


class GetMetricHistory(RunRef):
    metric_key: Str | None = None
    page_token: Str | None = None
    max_results: Int32 | None = None


class GetMetricHistoryBulkInterval(Body):
    run_ids: list[Str] | None = None
    metric_key: Str | None = None
    start_step: Int32 | None = None
    end_step: Int32 | None = None
    max_results: Int32 | None = None


class SearchDatasets(Body):
    experiment_ids: list[Str] | None = None


# -- logged models --
class CreateLoggedModel(Body):
    experiment_id: Str | None = None
    name: Str | None = None
    model_type: Str | None = None
    source_run_id: Str | None = None
    params: list[Tag] | None = None
    tags: list[Tag] | None = None


class DatasetFilter(Body):
    dataset_name: Str | None = None
    dataset_digest: Str | None = None


class OrderBy(Body):
    field_name: Str | None = None
    ascending: Bool | None = None
    dataset_name: Str | None = None
    dataset_digest: Str | None = None


class SearchLoggedModels(Body):
    experiment_ids: list[Str] | None = None
    filter: Str | None = None
    datasets: list[DatasetFilter] | None = None
    max_results: Int32 | None = None
    order_by: list[OrderBy] | None = None
    page_token: Str | None = None


class GetLoggedModel(Body):
    allow_deleted: Bool | None = None


class FinalizeLoggedModel(Body):
    status: LoggedModelStatus | None = None


class LoggedModelTags(Body):
    tags: list[Tag] | None = None


class LoggedModelParams(Body):
    params: list[Tag] | None = None


class ListLoggedModelArtifacts(Body):
    artifact_directory_path: Str | None = None


class GetLoggedModelFile(Body):
    artifact_file_path: Str | None = None


class NoFields(Body):
    """Endpoints without request fields (a DELETE by path): anything sent is ignored."""


# -- artifacts --
class ArtifactPath(Body):
    path: Str | None = None


class ListRunArtifacts(RunRef):
    path: Str | None = None
    page_token: Str | None = None


class CreateMultipartUpload(Body):
    path: Str | None = None
    num_parts: Int64 | None = None


class Part(Body):
    part_number: Int64 | None = None
    etag: Str | None = None
    url: Str | None = None


class CompleteMultipartUpload(Body):
    path: Str | None = None
    upload_id: Str | None = None
    parts: list[Part] | None = None


class AbortMultipartUpload(Body):
    path: Str | None = None
    upload_id: Str | None = None


class GetArtifact(RunRef):
    path: Str | None = None


# -- model registry --
class RegisteredModelName(Body):
    name: Str | None = None


class CreateRegisteredModel(RegisteredModelName):
    tags: list[Tag] | None = None
    description: Str | None = None
    deployment_job_id: Str | None = None


class RenameRegisteredModel(RegisteredModelName):
    new_name: Str | None = None


class UpdateRegisteredModel(RegisteredModelName):
    description: Str | None = None
    deployment_job_id: Str | None = None


class SearchRegistry(Body):
    filter: Str | None = None
    max_results: Int64 | None = None
    order_by: list[Str] | None = None
    page_token: Str | None = None


class GetLatestVersions(RegisteredModelName):
    stages: list[Str] | None = None


class SetRegisteredModelTag(RegisteredModelName):
    key: Str | None = None
    value: Str | None = None


class DeleteRegisteredModelTag(RegisteredModelName):
    key: Str | None = None


class ModelAlias(RegisteredModelName):
    alias: Str | None = None


class SetModelAlias(ModelAlias):
    version: Str | None = None


class CreateModelVersion(RegisteredModelName):
    source: Str | None = None
    run_id: Str | None = None
    tags: list[Tag] | None = None
    run_link: Str | None = None
    description: Str | None = None
    model_id: Str | None = None


class ModelVersionRef(RegisteredModelName):
    version: Str | None = None


class UpdateModelVersion(ModelVersionRef):
    description: Str | None = None


class TransitionModelVersionStage(ModelVersionRef):
    stage: Str | None = None
    archive_existing_versions: Bool | None = None


class SetModelVersionTag(ModelVersionRef):
    key: Str | None = None
    value: Str | None = None


class DeleteModelVersionTag(ModelVersionRef):
    key: Str | None = None


class GetModelVersionArtifact(ModelVersionRef):
    path: Str | None = None


@cache
def list_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields that are arrays: a query string repeats them (``?run_ids=a&run_ids=b``)."""
    out = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        options = get_args(annotation) if get_origin(annotation) is not list else (annotation,)
        if any(get_origin(a) is list for a in options):
            out.add(name)
    return frozenset(out)


def _render(value: Any) -> str:
    """The value as the stock server quotes it (compact JSON, keys sorted), cut short if long."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (RecursionError, TypeError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:200] + "..."


_SEE_DOCS = " See the API docs for more information about request parameters."


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def error_message(exc: ValidationError) -> str:
    """MLflow's message for the first invalid field (``_validate_param_against_schema`` in its handlers)."""
    first = exc.errors(include_url=False)[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    value = first.get("input")
    cause = (first.get("ctx") or {}).get("error")
    reason = str(cause) if isinstance(cause, OutOfRange) else f"Hint: Value was of type '{type(value).__name__}'."
    return f"Invalid value {_render(value)} for parameter '{_where(loc)}' supplied: {reason}{_SEE_DOCS}"


def checked(model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` once ``model`` accepted them: the fields as sent, with the model's values (int64 strings as
    ints, enum numbers as names) over the ones it declares; unknown fields stay, as the handlers ignore
    them. Raises INVALID_PARAMETER_VALUE with the stock server's wording otherwise."""
    try:
        parsed = model.model_validate(fields)
    except ValidationError as exc:
        raise invalid(error_message(exc)) from None
    return {**fields, **parsed.model_dump(exclude_unset=True, by_alias=True)}
