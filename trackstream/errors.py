"""Named failures of the stores, classified once where the store's own error is caught.

Three classes, and the pipeline's answer to each (docs/DESIGN.md):

- :class:`StoreUnavailable` — outage, timeout, overload: pause the partitions, keep polling, retry the
  same batch; nothing is dropped and nothing committed meanwhile.
- :class:`StoreRejected` — the store will never take this data as it is: the event goes to the
  dead-letter topic with the reason.
- :class:`StoreFailed` — an error nobody classified (a bug, a broken disk, a new server error): the
  worker stops loudly (process exits non-zero; embedded: ``/health`` fails with the reason). Retrying
  could stall a partition forever, dead-lettering could throw acknowledged data away.
"""

from __future__ import annotations

import errno


class StoreError(Exception):
    """A store refused or failed an operation."""

    retriable: bool = False


class StoreUnavailable(StoreError):
    """Outage, timeout or overload: retry the same write later; nothing is to be dropped."""

    retriable = True


class StoreRejected(StoreError):
    """The store will never accept this data as it is (bad type, schema mismatch, impossible key)."""

    retriable = False


class StoreFailed(StoreError):
    """Unclassified: neither known to pass nor known to be the data's fault. Stops the worker."""

    retriable = False


class WorkerFailed(Exception):
    """A sink worker stopped on an error it must not absorb; ``reason`` names the sink and the cause."""

    def __init__(self, sink: str, cause: BaseException) -> None:
        self.sink = sink
        self.cause = cause
        super().__init__(f"the {sink} sink worker stopped: {type(cause).__name__}: {cause}")


# Local-directory errors by errno. Out of space and quota pass once an operator frees space, so the
# worker waits; a key the filesystem cannot hold is the data's fault; anything else (EIO, EACCES,
# EROFS, ...) needs a person and stops the worker.
RETRIABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EMFILE, errno.ENFILE})
REJECTED_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL})


def classify_os_error(exc: OSError, what: str) -> StoreError:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    message = f"{what}: {name}: {exc.strerror or exc}"
    if exc.errno in RETRIABLE_ERRNOS:
        return StoreUnavailable(message)
    if exc.errno in REJECTED_ERRNOS:
        return StoreRejected(message)
    return StoreFailed(message)
