"""trackstream: runtime plumbing shared by the gateway (ingest/) and the sink workers (consumers/).

- ``settings``: configuration from ``TRACKSTREAM_*`` environment variables.
- ``log``: the event log (Kafka, or an in-process log in embedded mode).
- ``tables``: the table store (ClickHouse server, or chDB in embedded mode).
- ``objects``: the object store (S3, or a local directory in embedded mode).
- ``reads``: the read model — SQL over the tables that answers MLflow reads.
- ``runtime``: assembles the pieces for one mode; ``cli``: the ``trackstream`` command.
"""
