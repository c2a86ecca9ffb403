"""MLflow's filter and order_by grammar, parsed for each searchable entity (no store involved)."""

from __future__ import annotations

import pytest

from trackstream.reads import search
from trackstream.reads.search import (
    ATTR,
    DATASET,
    EXPERIMENTS,
    LOGGED_MODELS,
    METRIC,
    PARAM,
    RUNS,
    TAG,
    Clause,
    OrderKey,
    SearchError,
    parse_filter,
    parse_order_by,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.loss < 0.5", [Clause(METRIC, "loss", "<", 0.5)]),
        ("metric.loss >= -1e3", [Clause(METRIC, "loss", ">=", -1000.0)]),
        ("params.lr = '0.1'", [Clause(PARAM, "lr", "=", "0.1")]),
        ('param.lr != "0.1"', [Clause(PARAM, "lr", "!=", "0.1")]),
        ("params.lr <> '0.1'", [Clause(PARAM, "lr", "!=", "0.1")]),
        ("tags.kind LIKE 'x%'", [Clause(TAG, "kind", "LIKE", "x%")]),
        ("tags.kind ilike 'X%'", [Clause(TAG, "kind", "ILIKE", "X%")]),
        ("tags.`mlflow.runName` = 'a'", [Clause(TAG, "mlflow.runName", "=", "a")]),
        ('tags."mlflow.runName" = "a"', [Clause(TAG, "mlflow.runName", "=", "a")]),
        ("tags.k = 'it''s'", [Clause(TAG, "k", "=", "it's")]),
        ("params.lr IS NULL", [Clause(PARAM, "lr", "IS NULL", None)]),
        ("tags.k is not null", [Clause(TAG, "k", "IS NOT NULL", None)]),
        ("run_name = 'a'", [Clause(ATTR, "run_name", "=", "a")]),
        ("attributes.start_time >= 1002", [Clause(ATTR, "start_time", ">=", 1002)]),
        ("attribute.created < 1001", [Clause(ATTR, "created", "<", 1001)]),
        ("`status` = 'FINISHED'", [Clause(ATTR, "status", "=", "FINISHED")]),
        ("attributes.run_id IN ('a', 'b')", [Clause(ATTR, "run_id", "IN", ("a", "b"))]),
        ("run.run_id NOT IN ('a')", [Clause(ATTR, "run_id", "NOT IN", ("a",))]),
        ("datasets.name = 'train'", [Clause(DATASET, "name", "=", "train")]),
        ("dataset.digest IN ('abc', 'def')", [Clause(DATASET, "digest", "IN", ("abc", "def"))]),
        ("dataset.context LIKE 'tr%'", [Clause(DATASET, "context", "LIKE", "tr%")]),
        (
            "metrics.loss > 0.2 AND params.lr = '0.1' and tags.t != 'x'",
            [Clause(METRIC, "loss", ">", 0.2), Clause(PARAM, "lr", "=", "0.1"), Clause(TAG, "t", "!=", "x")],
        ),
        ("", []),
        ("   ", []),
    ],
)
def test_run_filters(text: str, expected: list[Clause]) -> None:
    assert parse_filter(RUNS, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "metrics.loss < 'x'",  # a metric takes a number
        "params.lr = 0.1",  # a param takes a quoted string
        "metrics.loss < 1 OR metrics.loss > 2",  # only AND
        "foo.bar = '1'",
        "attributes.nope = 'x'",
        "metrics.loss IS NULL",
        "metrics.loss LIKE '1'",
        "params.lr IN ('0.1')",
        "attributes.status IN ('FINISHED')",
        "attributes.start_time = 'x'",
        "attributes.start_time = 1e400",  # out of the 64-bit range
        "attributes.start_time > 99999999999999999999",
        "params.lr =",
        "params.lr > '0.1'",
        "params.lr = 'unterminated",
        "params.lr = '1' AND",
        "dataset.size = 'x'",
        "run_id IN 'a'",
        "run_id IN ('a' 'b')",
        "run_id IN ('a', 1)",
        "params.lr = '1' ; DROP TABLE runs",
        "tags.'k' = 'v'",
    ],
)
def test_invalid_run_filters(text: str) -> None:
    with pytest.raises(SearchError):
        parse_filter(RUNS, text)


def test_experiment_filters() -> None:
    assert parse_filter(EXPERIMENTS, "name LIKE 'a%' AND tags.team = 'b' AND creation_time > 5") == [
        Clause(ATTR, "name", "LIKE", "a%"),
        Clause(TAG, "team", "=", "b"),
        Clause(ATTR, "creation_time", ">", 5),
    ]
    assert parse_filter(EXPERIMENTS, "tags.team IS NULL") == [Clause(TAG, "team", "IS NULL", None)]
    for bad in ("metrics.x > 1", "params.p = 'a'", "status = 'x'", "name IN ('a')", "datasets.name = 'a'"):
        with pytest.raises(SearchError):
            parse_filter(EXPERIMENTS, bad)


def test_logged_model_filters() -> None:
    assert parse_filter(LOGGED_MODELS, "name IN ('a', 'b') AND metrics.acc > 0.5 AND params.lr NOT IN ('1')") == [
        Clause(ATTR, "name", "IN", ("a", "b")),
        Clause(METRIC, "acc", ">", 0.5),
        Clause(PARAM, "lr", "NOT IN", ("1",)),
    ]
    assert parse_filter(LOGGED_MODELS, "creation_time > 5") == [Clause(ATTR, "creation_time", ">", 5)]
    assert parse_filter(LOGGED_MODELS, "artifact_location LIKE 's3://%'")[0].key == "artifact_location"
    for bad in (
        "datasets.name = 'a'",
        "params.p IS NULL",
        "nope = 'x'",
        "metrics.acc = 'x'",
        "name = 'a' OR name = 'b'",
    ):
        with pytest.raises(SearchError):
            parse_filter(LOGGED_MODELS, bad)


def test_order_by() -> None:
    assert parse_order_by(RUNS, ["metrics.loss", "params.lr DESC", "tags.`a b` ASC", "run_name desc"]) == [
        OrderKey(METRIC, "loss", True),
        OrderKey(PARAM, "lr", False),
        OrderKey(TAG, "a b", True),
        OrderKey(ATTR, "run_name", False),
    ]
    assert parse_order_by(EXPERIMENTS, ["experiment_id DESC"]) == [OrderKey(ATTR, "experiment_id", False)]
    for what, bad in [
        (RUNS, ["metrics.loss UP"]),
        (RUNS, ["attributes.nope"]),
        (RUNS, ["datasets.name"]),
        (RUNS, ["metrics.a", "metrics.a DESC"]),
        (EXPERIMENTS, ["metrics.x ASC"]),
        (EXPERIMENTS, ["tags.t"]),
    ]:
        with pytest.raises(SearchError):
            parse_order_by(what, bad)


def test_default_order_is_appended_unless_named() -> None:
    assert search.with_defaults(RUNS, []) == list(RUNS.default_order)
    assert search.with_defaults(RUNS, [OrderKey(ATTR, "created", True)]) == [
        OrderKey(ATTR, "created", True),  # "created" is start_time: no second start_time key
        OrderKey(ATTR, "run_id", True),
    ]
    assert search.with_defaults(EXPERIMENTS, [OrderKey(ATTR, "experiment_id", False)])[-1] == OrderKey(
        ATTR, "creation_time", False
    )


def test_logged_model_order_by() -> None:
    keys = search.parse_logged_model_order_by(
        [
            {"field_name": "name", "ascending": False},
            {"field_name": "metrics.acc", "dataset_name": "d", "dataset_digest": "x"},
            {"field_name": "creation_time"},
        ]
    )
    assert keys == [
        OrderKey(ATTR, "name", False),
        OrderKey(METRIC, "acc", True, "d", "x"),
        OrderKey(ATTR, "creation_time", True),
    ]
    for bad in ({"field_name": "nope"}, {"field_name": "params.lr"}):
        with pytest.raises(SearchError):
            search.parse_logged_model_order_by([bad])


def test_compiled_filters_bind_every_value() -> None:
    clauses = parse_filter(RUNS, "params.lr = 'x'' OR 1=1 --' AND metrics.m > 1 AND run_name LIKE '%a%'")
    compiled = search.compile_filter(RUNS, clauses)
    sql = " ".join(c.sql for c in compiled.conds)
    assert "OR 1=1" not in sql and "'" not in sql
    assert sorted(v for v in compiled.params.values() if isinstance(v, str)) == ["%a%", "lr", "m", "x' OR 1=1 --"]
    # which table columns each condition reads (for the FINAL rule)
    assert [c.columns for c in compiled.conds] == [("run_id",), ("run_id",), ("run_name",)]


def test_dataset_context_is_the_one_python_predicate() -> None:
    compiled = search.compile_filter(RUNS, parse_filter(RUNS, "dataset.context = 'train' AND dataset.name = 'd'"))
    deferred = [v for v in compiled.params.values() if isinstance(v, search.Deferred)]
    assert deferred == [search.Deferred(Clause(DATASET, "context", "=", "train"))]


@pytest.mark.parametrize(
    ("pattern", "value", "ignore_case", "expected"),
    [
        ("a%", "abc", False, True),
        ("%c", "abc", False, True),
        ("a_c", "abc", False, True),
        ("A%", "abc", False, False),
        ("A%", "abc", True, True),
        ("%b%", "abc", False, True),
        ("%x%", "abc", False, False),
        ("abc", "abcd", False, False),
        ("%a%a%a%b", "a" * 10_000, False, False),
    ],
)
def test_like(pattern: str, value: str, ignore_case: bool, expected: bool) -> None:
    assert search.like(pattern, value, ignore_case) is expected
