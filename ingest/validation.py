"""MLflow's validation rules and limits (as ``mlflow/utils/validation.py`` of MLflow 3.17 applies them)."""

from __future__ import annotations

import math
import os
import posixpath
import re
from typing import Any

from ingest.errors import invalid

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_RESULTS_SEARCH_RUNS = 50000
MAX_RESULTS_SEARCH_EXPERIMENTS = 50000
DOUBLE_MAX = 1.7976931348623157e308
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # MLflow's BIGINT columns (timestamps, steps)

_VALID_NAME = re.compile(r"^[/\w.\- :]*$")


def _bad_path(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def key_name(kind: str, name: Any) -> str:
    """Validate a metric/param/tag key (``kind`` names it in the message)."""
    if name is None or not isinstance(name, str):
        raise invalid(f"Missing value for required parameter 'key'. Invalid {kind} name: '{shown(name)}'.")
    if not _VALID_NAME.match(name):
        raise invalid(
            f"Invalid {kind} name: '{name}'. Names may only contain alphanumerics, underscores (_), "
            "dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."
        )
    if _bad_path(name):
        raise invalid(f"Invalid {kind} name: '{name}'. Names cannot resolve to the current directory or above.")
    if len(name) > MAX_ENTITY_KEY_LENGTH:
        raise invalid(f"'key' exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters")
    return name


def shown(value: Any, limit: int = 200) -> str:
    """``str(value)`` for an error message: cut short, and safe for values nested too deep to print."""
    try:
        text = str(value)
    except (RecursionError, ValueError):  # ValueError: an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def metric_value(key: str, value: Any, timestamp: Any, step: Any) -> tuple[float, int, int]:
    """Validated ``(value, timestamp, step)``; ±inf clamped to ±DOUBLE_MAX as MLflow's SQL store stores them."""
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(
            f"Got invalid value {shown(value)} for metric '{shown(key)}' (timestamp={shown(timestamp)}). "
            "Please specify value as a valid double (64-bit floating point)"
        )
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any double
        value = math.inf if value > 0 else -math.inf
    if math.isinf(value):
        value = DOUBLE_MAX if value > 0 else -DOUBLE_MAX
    ts = _int(timestamp)
    if ts is None or not 0 <= ts <= INT64_MAX:
        raise invalid(
            f"Got invalid timestamp {shown(timestamp)} for metric '{shown(key)}' (value={value}). "
            "Timestamp must be a nonnegative long (64-bit integer) "
        )
    st = _int(step if step is not None else 0)
    if st is None or not INT64_MIN <= st <= INT64_MAX:
        raise invalid(
            f"Got invalid step {shown(step)} for metric '{shown(key)}' (value={value}). "
            "Step must be a valid long (64-bit integer)."
        )
    return value, ts, st


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if len(value) > 21:  # longer than any int64; int() of a huge string is slow or refused
            return None
        try:
            return int(value)
        except ValueError:
            return None
    if isinstance(value, float) and value.is_integer() and -(2.0**63) < value < 2.0**63:  # see requests._integer
        return int(value)
    return None


def truncate_long_values() -> bool:
    """MLflow's ``MLFLOW_TRUNCATE_LONG_VALUES`` (default true): over-long param and run tag values are
    cut to the limit (with a warning in MLflow's server log) instead of being rejected."""
    return os.environ.get("MLFLOW_TRUNCATE_LONG_VALUES", "true").strip().lower() in ("true", "1")


def _limited(name: str, value: Any, limit: int, truncate: bool) -> str:
    text = "" if value is None else str(value)
    if len(text) > limit:
        if truncate and truncate_long_values():
            return text[:limit]
        raise invalid(f"'{name}' exceeds the maximum length of {limit} characters")
    return text


def param_value(key: str, value: Any) -> str:
    return _limited("Param value", value, MAX_PARAM_VAL_LENGTH, truncate=True)


def tag_value(value: Any, limit: int = MAX_TAG_VAL_LENGTH) -> str:
    """A run tag value (``limit`` MAX_TAG_VAL_LENGTH: truncated like MLflow) or an experiment tag value
    (``limit`` MAX_EXPERIMENT_TAG_VAL_LENGTH: MLflow rejects it)."""
    return _limited("value", value, limit, truncate=limit == MAX_TAG_VAL_LENGTH)


def batch_limits(metrics: int, params: int, tags: int) -> None:
    if metrics > MAX_METRICS_PER_BATCH:
        raise invalid(
            f"A batch logging request can contain at most {MAX_METRICS_PER_BATCH} metrics. Got {metrics} metrics. "
            "Please split up metrics across multiple requests and try again."
        )
    if params > MAX_PARAMS_TAGS_PER_BATCH:
        raise invalid(
            f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} params. Got {params} params. "
            "Please split up params across multiple requests and try again."
        )
    if tags > MAX_PARAMS_TAGS_PER_BATCH:
        raise invalid(
            f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} tags. Got {tags} tags. "
            "Please split up tags across multiple requests and try again."
        )
    total = metrics + params + tags
    if total > MAX_ENTITIES_PER_BATCH:
        raise invalid(
            f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} total metrics, params, and tags. "
            f"Got {total} total. Please split up entities across multiple requests and try again."
        )


def experiment_name(name: Any) -> str:
    if name is None or name == "":
        raise invalid("Invalid experiment name: ''. Experiment name cannot be empty.")
    if not isinstance(name, str):
        raise invalid(f"Invalid experiment name: {shown(name)}. Expects a string.")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise invalid(f"Experiment name exceeds the maximum length of {MAX_EXPERIMENT_NAME_LENGTH} characters")
    return name


def required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise invalid(
            f"Missing value for required parameter '{name}'. See the API docs for more information about "
            "request parameters."
        )
    return value


def max_results(value: Any, default: int, limit: int) -> int:
    if value is None:
        return default
    n = _int(value)
    if n is None or n < 1 or n > limit:
        raise invalid(f"Invalid value {shown(value)} for parameter 'max_results' supplied. It must be at most {limit}.")
    return n


def bounded_int(p: dict[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = p.get(name)
    if value is None and default is not None:
        return default
    n = _int(value)
    if n is None or not low <= n <= high:
        raise invalid(
            f"Invalid value {shown(value)!r} for parameter '{name}' supplied: expected an integer in {low}..{high}."
        )
    return n


def array_field(p: dict[str, Any], name: str) -> list[Any]:
    """A JSON array field of a request body (absent → empty)."""
    value = p.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"Invalid value {shown(value)} for parameter '{name}' supplied: expected an array.")
    return value
