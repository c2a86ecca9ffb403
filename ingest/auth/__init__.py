"""Authentication and permissions (off by default; ``TRACKSTREAM_AUTH_ENABLED``).

- ``access``: what an endpoint declares (``Endpoint.access``): the resource kind it touches, the
  permission it needs there, where the resource id is in the request;
- ``view``: users, tokens and permissions, kept in memory from the ``auth`` topic by every gateway;
- ``guard``: who is calling (HTTP basic auth, bearer tokens) and whether they may (one check for the
  REST adapter and ``Endpoint.invoke``, so GraphQL too);
- ``handlers``: the REST routes of MLflow's basic-auth app (users, experiment and registered-model
  permissions) and the token routes.

This package imports nothing of ``ingest.endpoint`` at import time, so ``ingest.endpoint`` can import
``ingest.auth.access``.
"""
