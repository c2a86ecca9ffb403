"""Sink workers: events from the log → stores.

Each consumer is one pipeline of small steps (``pipeline``): poll → decode → batch → write → commit,
the commit last, so an offset is committed only after the sink write it covers returned.
Sinks (``metrics``, ``metadata``, ``artifacts``) only write; what to retry and what to dead-letter is
decided by the pipeline from the error's class.
"""
