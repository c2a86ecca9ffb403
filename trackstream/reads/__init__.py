"""The read model: SQL over the tables that answers MLflow reads (entities as MLflow JSON dicts)."""

from trackstream.reads.store import TrackingReader

__all__ = ["TrackingReader"]
