"""The event log: Kafka in production, segment files under the data directory in embedded mode (same interface)."""

from trackstream.log.base import (
    EventLog,
    LogConsumer,
    LogTail,
    LogUnavailable,
    Message,
    Partition,
    partition_for_key,
)

__all__ = ["EventLog", "LogConsumer", "LogTail", "LogUnavailable", "Message", "Partition", "partition_for_key"]
