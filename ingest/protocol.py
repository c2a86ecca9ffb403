"""Request bodies of the hot write endpoints, checked by pydantic once orjson has parsed them.

Types are permissive on purpose (MLflow clients send int64 as numbers or strings, NaN/±inf as
strings): MLflow's own rules in ``validation`` then decide and word the errors.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

Scalar = str | int | float | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Body):
    key: str | None = None
    value: Scalar = None


class MetricIn(_Body):
    key: str | None = None
    value: Scalar = None
    timestamp: Scalar = None
    step: Scalar = None
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class LogMetric(MetricIn):
    run_id: str | None = None
    run_uuid: str | None = None


class LogBatch(_Body):
    """Metric points stay as parsed: building a model per point, or even checking each is a dict, cost
    more than the rest of the request; ``ingest.tracking.metric_columns`` checks them column by column."""

    run_id: str | None = None
    metrics: list[Any] = []
    params: list[KeyValue] = []
    tags: list[KeyValue] = []
