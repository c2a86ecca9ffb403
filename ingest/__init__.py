"""The gateway: the MLflow REST API over HTTP → validated events on the log; reads from the stores.

- ``app``: the Starlette application and its routes (``/api/2.0/mlflow/…`` and ``/ajax-api/…``).
- ``errors``: MLflow-shaped errors (``error_code``, ``message``, HTTP status).
- ``validation``: MLflow's validation rules and limits.
- ``writer``: events → the log (one message per request, keyed by run).
- ``consistency``: the read-your-writes barrier.
- ``tracking``, ``artifacts``: the endpoint handlers.
"""
