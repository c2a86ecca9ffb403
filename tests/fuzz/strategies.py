"""Hypothesis strategies that build requests from a route's request model (its JSON schema).

Each field gets either a value of the type its schema declares (with values at and past int64's bounds,
search-grammar fragments for filters) or any hostile JSON value: another type, huge numbers, long or odd
strings, values nested hundreds deep. Known ids (an experiment, a run, a logged model made before the
fuzzing) are mixed in so requests reach the handlers' deeper paths, not only the "not found" answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

BOUNDARY_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30]
ODD_STRINGS = [
    "", " ", "NaN", "Infinity", "-Infinity", "1e400", "-1", "9223372036854775808", "0x10", "1.5", "true", "null",
    "%", "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%", "_", "'", '"', "`", "\\", "\x00", "\u2028", "é", "💥",
    "../..", "/etc/passwd", "a/../../b", "a" * 3000, "ACTIVE_ONLY", "DELETED_ONLY", "ALL", "RUNNING", "FINISHED",
    "LOGGED_MODEL_READY", "m-0", "0" * 32,
]  # fmt: skip
FILTER_TOKENS = [
    "metrics.m", "metric.`a b`", "params.p", "tags.t", 'tags."k"', "attributes.start_time", "attribute.end_time",
    "run_name", "run_id", "status", "user_id", "name", "creation_time", "last_update_time", "datasets.name",
    "creation_timestamp_ms", "model_type", "source_run_id", "bogus.x", "=", "!=", "<>", "<", "<=", ">", ">=",
    "LIKE", "ILIKE", "IN", "NOT", "IS", "NULL", "AND", "OR", "'x'", "'%a%a%a%a%a%a%a%b'", "'%'", "'_'", '"y"',
    "1", "-1", "1.5", "1e400", "-1e400", "1e30", "9223372036854775808", "(", ")", ",", "('a', 'b')", "ASC", "DESC",
]  # fmt: skip
# Deep nesting is spliced into the encoded JSON (json.dumps would recurse too deep to build it).
DEEP = "\ufdd0deep\ufdd0"
DEEP_JSON = "[" * 900 + "1" + "]" * 900


@dataclass
class Known:
    """Ids that exist in the gateway under test."""

    experiment_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(BOUNDARY_INTS),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324]),
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=40),
    )


def hostile() -> st.SearchStrategy[Any]:
    """Any JSON value, weighted towards the ones that break parsers and stores."""
    nested = st.recursive(
        scalars(),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=12,
    )
    return st.one_of(nested, st.just(DEEP))


def filter_text() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(FILTER_TOKENS), max_size=9).map(" ".join)


def _ids(known: Known, name: str) -> list[str]:
    if name in ("experiment_id", "experiment_ids"):
        return known.experiment_ids
    if name in ("run_id", "run_uuid", "run_ids", "source_run_id"):
        return known.run_ids
    if name == "model_id":
        return known.model_ids
    return []


def metric_points(known: Known) -> st.SearchStrategy[Any]:
    point = st.fixed_dictionaries(
        {},
        optional={
            "key": st.one_of(st.sampled_from(["m", "loss", "a/b", "../x"]), hostile()),
            "value": st.one_of(
                st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ODD_STRINGS), hostile()
            ),
            "timestamp": st.one_of(st.sampled_from(BOUNDARY_INTS), hostile()),
            "step": st.one_of(st.sampled_from(BOUNDARY_INTS), hostile()),
            "model_id": st.one_of(st.sampled_from(known.model_ids or ["m-0"]), hostile()),
        },
    )
    return st.lists(st.one_of(point, hostile()), max_size=5)


def from_schema(schema: dict[str, Any], defs: dict[str, Any], known: Known, name: str = "") -> st.SearchStrategy[Any]:
    """A value of the type ``schema`` declares (``name`` is the field's, for ids, filters and metrics)."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs, known, name)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs, known, name) for s in schema["anyOf"]])
    kind = schema.get("type")
    ids = _ids(known, name)
    if kind == "string":
        options = [st.text(max_size=60), st.sampled_from(ODD_STRINGS)]
        if ids:
            options.append(st.sampled_from(ids))
        if name in ("filter", "order_by", "field_name"):
            options.append(filter_text())
        return st.one_of(options)
    if kind == "integer":
        return st.one_of(st.sampled_from(BOUNDARY_INTS), st.integers(min_value=-(2**70), max_value=2**70))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        if name == "metrics" and not schema.get("items"):
            return metric_points(known)
        return st.lists(st.one_of(from_schema(schema.get("items") or {}, defs, known, name), hostile()), max_size=4)
    if kind == "object" or "properties" in schema:
        return fields(schema, defs, known)
    return hostile()


def fields(schema: dict[str, Any], defs: dict[str, Any], known: Known) -> st.SearchStrategy[dict[str, Any]]:
    """An object with any subset of the schema's properties, each well-typed or hostile, plus an unknown one."""
    optional = {
        prop: st.one_of(from_schema(sub, defs, known, prop), from_schema(sub, defs, known, prop), hostile())
        for prop, sub in schema.get("properties", {}).items()
    }
    optional["unknown_field"] = hostile()
    return st.fixed_dictionaries({}, optional=optional)


def encode(body: Any) -> bytes:
    """JSON (integers of any size, as a client may send them), with the deep-nesting marker spliced in."""
    text = json.dumps(body, ensure_ascii=False)
    return text.replace(json.dumps(DEEP, ensure_ascii=False), DEEP_JSON).encode("utf-8", "surrogatepass")


def query_items(body: dict[str, Any]) -> list[tuple[str, str]]:
    """A query string's items: arrays repeat their key, everything else is its JSON text or the string."""
    out: list[tuple[str, str]] = []
    for key, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            text = item if isinstance(item, str) else json.dumps(item)
            out.append((key, text.replace(DEEP, DEEP_JSON)[:2000]))
    return out
