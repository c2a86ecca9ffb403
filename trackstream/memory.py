"""Give back the pages of a mapped library that only its start-up touched (Linux ≥ 5.4, MADV_PAGEOUT).

chDB's library (``_chdb.abi3.so``, ~555 MB) runs thousands of static initialisers when it loads and when
its first connection starts (function, format and table-engine registries): they touch ~190 MB of its
read-only and executable pages once, and those pages then count in the process's RSS although a
running gateway never needs most of them again. They are *clean file pages*: the kernel can drop them
at any moment and read them back from the file on the next access, so paging them out frees no heap
and loses nothing. This module asks the kernel to do it now (``madvise(MADV_PAGEOUT)`` over the
library's read-only mappings in ``/proc/self/maps``) instead of waiting for memory pressure.

What it costs: the pages a later query needs fault back in from the page cache or the disk (a few
tenths of a second spread over the first queries of each kind; measured in docs/DESIGN.md). What it
does not do: lower the anonymous memory (heaps, stacks), which the kernel cannot drop without swap.
Writable mappings are left alone (their written pages are anonymous memory). If the kernel refuses
(older than 5.4: EINVAL; a sandbox without madvise), nothing changes and nothing breaks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # linux/mman.h, since Linux 5.4


@dataclass(frozen=True)
class Released:
    """One page-out: the library's mappings advised, and the process's RSS around it (bytes)."""

    mappings: int
    advised_bytes: int
    rss_before: int
    rss_after: int
    error: str | None = None


def rss_parts() -> tuple[int, int, int]:
    """(VmRSS, RssAnon, RssFile) of this process, bytes (``/proc/self/status``; zeros elsewhere)."""
    found = dict.fromkeys(("VmRSS", "RssAnon", "RssFile"), 0)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in found:
                    found[name] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return found["VmRSS"], found["RssAnon"], found["RssFile"]


def _read_only_ranges(path: str) -> list[tuple[int, int]]:
    """(start, length) of the mappings of ``path`` that are not writable, from /proc/self/maps."""
    real = os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or "w" in fields[1] or fields[5].strip() != real:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end - start))
    return ranges


def page_out_library(path: str) -> Released | None:
    """Page out the read-only and executable mappings of the library at ``path`` (loaded in this process).

    None where there is nothing to do (no /proc, the library not mapped); a :class:`Released` with
    ``error`` set when the kernel refused (logged once at INFO, nothing else changes)."""
    try:
        ranges = _read_only_ranges(path)
    except OSError:
        return None
    if not ranges:
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    before = rss_parts()[0]
    advised, error = 0, None
    for start, length in ranges:
        if madvise(start, length, MADV_PAGEOUT) != 0:
            code = ctypes.get_errno()
            error = f"madvise(MADV_PAGEOUT) failed: {errno.errorcode.get(code, code)} (needs Linux 5.4 or later)"
            break
        advised += length
    released = Released(len(ranges), advised, before, rss_parts()[0], error)
    if error:
        log.info("%s: the library's start-up pages stay resident (%s)", os.path.basename(path), error)
    else:
        log.info(
            "%s: paged out its start-up pages, RSS %d -> %d MB",
            os.path.basename(path),
            released.rss_before >> 20,
            released.rss_after >> 20,
        )
    return released
