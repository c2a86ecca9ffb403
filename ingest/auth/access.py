"""What an endpoint declares about who may call it (``Endpoint.access``), and the permission levels.

One declaration per endpoint, enforced in one place (``ingest.auth.guard.Guard.authorize``) for the
REST adapter and for ``Endpoint.invoke`` (GraphQL). An endpoint that declares nothing is refused to
everyone but admins while auth is on (fail closed); ``tests/auth/test_declarations.py`` checks that
every endpoint declares its access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

# MLflow's permission names, weakest first (mlflow.server.auth.permissions): a level allows what every
# weaker one allows. READ: read; EDIT: write runs, metrics, tags, artifacts; MANAGE: delete, restore and
# manage the resource's permissions.
NO_PERMISSIONS, READ, EDIT, MANAGE = "NO_PERMISSIONS", "READ", "EDIT", "MANAGE"
LEVELS: dict[str, int] = {NO_PERMISSIONS: 0, READ: 1, EDIT: 2, MANAGE: 3}

# Resource kinds an endpoint may touch. Permissions are kept on experiments and registered models only;
# a run, a logged model or an artifact path takes its experiment's.
PUBLIC = "public"  # anyone, without credentials (nothing declares it today; /health is served outside)
USER = "user"  # any authenticated user (creating experiments, searches that filter their results)
ADMIN = "admin"  # admins only
SELF = "self"  # an admin, or the user the request names in ``username`` (default: the caller)
EXPERIMENT = "experiment"  # the experiment id in the request
EXPERIMENT_NAME = "experiment_name"  # the experiment of that name
RUN = "run"  # the run's experiment
LOGGED_MODEL = "logged_model"  # the logged model's experiment
ARTIFACT = "artifact"  # the experiment an artifact path starts with (mlflow-artifacts:/<experiment_id>/...)
REGISTERED_MODEL = "registered_model"  # the registered model of that name (model versions: their model's)
TRACE = "trace"  # the trace's experiment (read from the trace store's trace info)
KINDS = (PUBLIC, USER, ADMIN, SELF, EXPERIMENT, EXPERIMENT_NAME, RUN, LOGGED_MODEL, ARTIFACT, REGISTERED_MODEL, TRACE)
# Kinds whose permission lives on an experiment once the resource is resolved.
ON_EXPERIMENT = (EXPERIMENT, EXPERIMENT_NAME, RUN, LOGGED_MODEL, ARTIFACT, TRACE)
# A field named ``header:<name>`` is read from the request's HTTP header ``<name>`` (the OTLP span endpoint
# names its experiment in ``x-mlflow-experiment-id``); a dotted field digs into the request's JSON, and a
# ``[]`` step takes every item of a list (``locations[].mlflow_experiment.experiment_id``).
HEADER = "header:"

# Lists a search answers, filtered to what the caller may read: response field -> how to find the
# resource of each item (dotted path) and its kind.
FILTERS: dict[str, tuple[str, str]] = {
    "experiments": ("experiment_id", EXPERIMENT),
    "runs": ("info.experiment_id", EXPERIMENT),
    "models": ("info.experiment_id", EXPERIMENT),
    "registered_models": ("name", REGISTERED_MODEL),
    "model_versions": ("name", REGISTERED_MODEL),
}


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call an endpoint.

    ``kind``: one of :data:`KINDS`. ``level``: the permission needed on the resource. ``fields``: where
    its id is (request fields, then path parameters; the first one given; a list value names several
    resources, each checked; :data:`HEADER` and dotted fields as described there), ``default`` when none
    is given. ``filter``: the response list filtered to
    readable items (:data:`FILTERS`). ``grant``: the created resource the caller gets MANAGE on, as
    (resource type, path of its id in the response), as the stock server grants its creator.
    ``revokes``: a delete of the resource drops every permission on it; ``renames``: the request field
    holding the resource's new id, to which its permissions move (a registered model's delete and
    rename, as the stock server does), once the handler succeeded. ``also``: further checks the caller must
    pass too (linking traces to a run: EDIT on the run, READ on each trace), still one declaration.
    """

    kind: str
    level: str = READ
    fields: tuple[str, ...] = ()
    default: str | None = None
    filter: str | None = None
    grant: tuple[str, str] | None = None
    revokes: bool = False
    renames: str | None = None
    also: tuple[Access, ...] = ()

    user: ClassVar[Access]
    admin: ClassVar[Access]
    self_: ClassVar[Access]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown access kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown permission {self.level!r}")
        if self.filter is not None and self.filter not in FILTERS:
            raise ValueError(f"unknown search filter {self.filter!r}")

    @staticmethod
    def experiment(level: str, *fields: str, default: str | None = None) -> Access:
        return Access(EXPERIMENT, level, fields or ("experiment_id",), default)

    @staticmethod
    def run(level: str, *fields: str) -> Access:
        return Access(RUN, level, fields or ("run_id", "run_uuid"))

    @staticmethod
    def logged_model(level: str) -> Access:
        return Access(LOGGED_MODEL, level, ("model_id",))

    @staticmethod
    def artifact(level: str) -> Access:
        return Access(ARTIFACT, level, ("path",))

    @staticmethod
    def registered_model(level: str, *fields: str, revokes: bool = False, renames: str | None = None) -> Access:
        """A registered model by name (a model version: its model's ``name``)."""
        return Access(REGISTERED_MODEL, level, fields or ("name",), revokes=revokes, renames=renames)

    @staticmethod
    def trace(level: str, *fields: str) -> Access:
        """A trace by id (several: a list field), checked on its experiment."""
        return Access(TRACE, level, fields or ("trace_id",))

    @staticmethod
    def search(filter_: str) -> Access:
        return Access(USER, READ, filter=filter_)

    @staticmethod
    def creates(resource_type: str, response_path: str) -> Access:
        return Access(USER, READ, grant=(resource_type, response_path))


Access.user = Access(USER)
Access.admin = Access(ADMIN)
Access.self_ = Access(SELF, fields=("username",))
