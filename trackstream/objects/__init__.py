"""The object store for artifact bytes: S3-compatible storage, or a local directory in embedded mode."""

from trackstream.objects.base import MAX_PARTS, InvalidParts, ObjectNotFound, ObjectStore, UploadNotFound

__all__ = ["MAX_PARTS", "InvalidParts", "ObjectNotFound", "ObjectStore", "UploadNotFound"]
