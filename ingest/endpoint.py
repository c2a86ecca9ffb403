"""The declaration of an endpoint: what it answers, what it reads, how it runs.

Every route of the gateway is one :class:`Endpoint` in a handler module's ``ENDPOINTS`` list;
``ingest.app`` turns each into Starlette routes with one adapter. A new endpoint is a request model in
``ingest/requests.py`` and a handler with its record in the module of its resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from ingest.auth.access import Access

API = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACTS_API = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
# The log key of every ExperimentState event: all experiment changes share one partition, so the
# metadata sink decides name uniqueness and lifecycle transitions in one order (docs/DESIGN.md).
EXPERIMENTS_KEY = "experiments"


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for the partitions of ``topic`` (an attribute of ``Topics``: metadata, metrics, artifacts).

    ``fields`` name where the keys come from (the request's fields, then its path parameters): the
    first one given is used (a list gives several keys); none given means no wait (the handler then
    refuses the request for the missing field) unless ``default`` names a key. No ``fields``: every
    partition. ``constants`` are keys waited for besides.
    """

    topic: str
    fields: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()
    default: str | None = None

    def keys(self, fields: dict[str, Any]) -> list[str] | None:
        """The keys to wait for; None: every partition; []: nothing to wait for."""
        if not self.fields:
            return None
        value = next((fields[f] for f in self.fields if fields.get(f)), self.default)
        if value is None:
            return []
        given = [str(x) for x in value] if isinstance(value, list) else [str(value)]
        return [*self.constants, *given]


@dataclass(frozen=True, slots=True)
class Reads:
    """What a handler's reads depend on: the adapter passes the read-your-writes barrier
    (``ingest.consistency.Barrier``) for these partitions before the handler runs. A handler that must
    wait mid-way (after its own write, or for a key it computes) calls the barrier itself."""

    waits: tuple[Wait, ...] = ()

    none: ClassVar[Reads]
    all_metadata: ClassVar[Reads]

    def __add__(self, other: Reads) -> Reads:
        return Reads(self.waits + other.waits)

    @staticmethod
    def run(field: str = "run_id") -> Reads:
        """One run's metadata partition (``run_uuid`` stands in for ``run_id``, as MLflow accepts)."""
        return Reads((Wait("metadata", (field, "run_uuid") if field == "run_id" else (field,)),))

    @staticmethod
    def experiment(field: str = "experiment_id", default: str | None = None) -> Reads:
        """One experiment: the experiments partition (its row) and its own (its tags)."""
        return Reads((Wait("metadata", (field,), (EXPERIMENTS_KEY,), default),))

    @staticmethod
    def keyed(topic: str, *fields: str) -> Reads:
        return Reads((Wait(topic, fields),))

    @staticmethod
    def all(*topics: str) -> Reads:
        return Reads(tuple(Wait(t) for t in topics))

    def plan(self, fields: dict[str, Any]) -> Iterable[tuple[str, list[str] | None]]:
        """(topic attribute, keys or None for every partition) for each wait that applies."""
        for wait in self.waits:
            keys = wait.keys(fields)
            if keys is None or keys:
                yield wait.topic, keys


Reads.none = Reads()
Reads.all_metadata = Reads.all("metadata")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of the API.

    ``path`` is served under each of ``prefixes``. The handler is called as
    ``handler(ctx, fields, **path_params)`` with the request's fields once ``request`` accepted them (a
    dict: the fields as sent, with the model's values over the ones it declares); with ``typed`` as
    ``handler(ctx, model_instance)`` (the hot paths: no dict merge); with ``raw`` as
    ``handler(ctx, request, fields)`` (streamed bodies, or a handler that needs the URL; the body is
    read only if ``request`` names a model). ``blocking`` handlers run in the thread pool (after the
    barrier of ``reads``); the others are awaited on the event loop (a coroutine, or a plain function
    that never blocks) and declare no reads.

    ``access`` declares who may call it while auth is on (``ingest.auth.access``): the resource it
    touches, the permission it needs there, where the resource id is. None (undeclared): admins only.
    """

    path: str
    methods: tuple[str, ...]
    handler: Callable[..., Any]
    request: type[BaseModel] | None
    reads: Reads = Reads.none
    blocking: bool = True
    typed: bool = False
    raw: bool = False
    prefixes: tuple[str, ...] = API
    access: Access | None = None

    def __post_init__(self) -> None:
        if not self.blocking and self.reads.waits:
            raise ValueError(f"{self.path}: a barrier blocks, so an endpoint on the event loop can declare no reads")
        if self.typed and (self.raw or self.request is None):
            raise ValueError(f"{self.path}: a typed handler takes its request model's instance")

    def invoke(self, ctx: Any, fields: dict[str, Any], **path_params: Any) -> Any:
        """The handler as the HTTP adapter runs it, without HTTP: pass the declared barrier, then call it.
        GraphQL resolvers answer through this, so they read exactly what the REST route would, and pass the
        same permission check (``ctx.guard``, while auth is on) and search filter."""
        values = {**fields, **path_params}  # the handler takes the path's, so the check and barrier must
        for topic, keys in self.reads.plan(values):
            ctx.wait(topic, keys)
        guard = getattr(ctx, "guard", None)
        if guard is None:
            return self.handler(ctx, fields, **path_params)
        guard.authorize(ctx, self.access, values)
        return guard.after(self.access, self.handler(ctx, fields, **path_params), values)
