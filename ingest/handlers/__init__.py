"""Handlers of the MLflow REST API, one module per resource, each exporting its ``ENDPOINTS``.

A handler module imports the shared modules (``context``, ``common``, ``entities``,
``artifact_keys``) and never another handler module (an import-linter contract).
"""

from __future__ import annotations

from ingest.endpoint import Endpoint
from ingest.handlers import artifacts, datasets, experiments, logged_models, metrics, registry, runs
from ingest.handlers.context import Context
from ingest.handlers.experiments import ensure_default_experiment

# Table order is route order: a fixed path before a template that also matches it.
ENDPOINTS: list[Endpoint] = [
    *experiments.ENDPOINTS,
    *runs.ENDPOINTS,
    *metrics.ENDPOINTS,
    *datasets.ENDPOINTS,
    *logged_models.ENDPOINTS,
    *artifacts.ENDPOINTS,
    *registry.ENDPOINTS,
]

__all__ = ["ENDPOINTS", "Context", "Endpoint", "ensure_default_experiment"]
