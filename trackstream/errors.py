"""Named failures of the stores, classified once: retriable (wait and retry) or fatal (reject the data)."""

from __future__ import annotations


class StoreError(Exception):
    """A store refused or failed an operation."""

    retriable: bool = False


class StoreUnavailable(StoreError):
    """Outage, timeout or overload: retry the same write later; nothing is to be dropped."""

    retriable = True


class StoreRejected(StoreError):
    """The store will never accept this data as it is (bad type, schema mismatch)."""

    retriable = False
