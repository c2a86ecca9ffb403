"""The object store for artifact bytes: S3-compatible storage, or a local directory in embedded mode."""

from trackstream.objects.base import ObjectNotFound, ObjectStore

__all__ = ["ObjectNotFound", "ObjectStore"]
