"""ClickHouse error codes, classified once for both table stores (server and chDB share the codes).

Retriable: the server is busy, short of memory or parts, or a connection dropped — the same insert
passes later. Rejected: type and schema errors — the data cannot be converted to the column's type, or
names a column the table does not have — it never will be stored as it is. Every other code (a syntax
error in trackstream's own SQL, a permission, ...) is unclassified and stops the worker: retrying
would stall the partition, dead-lettering would drop acknowledged data.
"""

from __future__ import annotations

import re

from trackstream.errors import StoreError, StoreFailed, StoreRejected, StoreUnavailable

RETRIABLE_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        241,  # MEMORY_LIMIT_EXCEEDED
        252,  # TOO_MANY_PARTS
        242,  # TABLE_IS_READ_ONLY (replica lost its keeper session)
        164,  # READONLY
        279,  # ALL_CONNECTION_TRIES_FAILED
        203,  # NO_FREE_CONNECTION
        236,  # ABORTED
        394,  # QUERY_WAS_CANCELLED
        243,  # NOT_ENOUGH_SPACE
        60,  # UNKNOWN_TABLE (a table being re-created during a migration)
        999,  # KEEPER_EXCEPTION
        425,  # SYSTEM_ERROR (the OS refused a resource for a moment)
        439,  # CANNOT_SCHEDULE_TASK
    }
)
REJECTED_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        44,  # ILLEGAL_COLUMN
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        36,  # BAD_ARGUMENTS
        # schema: the statement names columns the table does not have, or the wrong number of them
        7,  # INCORRECT_NUMBER_OF_COLUMNS
        8,  # THERE_IS_NO_COLUMN
        9,  # SIZES_OF_COLUMNS_DOESNT_MATCH
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        47,  # UNKNOWN_IDENTIFIER
    }
)

_CODE = re.compile(r"Code:\s*(\d+)")


def classify_code(code: int | None, message: str, where: str) -> StoreError:
    text = f"{where} (code {code}): {message.split('Stack trace:')[0].strip()[:500]}"
    if code in RETRIABLE_CODES:
        return StoreUnavailable(text)
    if code in REJECTED_CODES:
        return StoreRejected(text)
    return StoreFailed(text)


def code_in(message: str) -> int | None:
    """The ``Code: NNN`` ClickHouse writes at the start of its exception texts (chDB passes them on)."""
    found = _CODE.search(message)
    return int(found.group(1)) if found else None
