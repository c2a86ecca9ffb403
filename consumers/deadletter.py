"""Dead letters: messages that cannot be decoded or applied, kept with the reason, never dropped."""

from __future__ import annotations

import logging

from trackstream.log import EventLog, Message

log = logging.getLogger(__name__)


class TooManyDeadLetters(Exception):
    """The dead-letter ratio passed its limit: stop rather than drain the log into the dead-letter topic."""


class DeadLetters:
    """Sends rejected messages to the dead-letter topic, headers naming where they came from and why.

    Counts them against everything consumed; past ``max_ratio`` (after ``min_messages``) it raises
    :class:`TooManyDeadLetters` so a systematic fault stops the consumer.
    """

    def __init__(self, events: EventLog, topic: str, max_ratio: float, min_messages: int) -> None:
        self._log = events
        self._topic = topic
        self._max_ratio = max_ratio
        self._min = min_messages
        self.seen = 0
        self.dead = 0

    def send(self, message: Message, reason: str) -> None:
        log.error(
            "dead-lettering %s[%d]@%d: %s", message.partition.topic, message.partition.index, message.offset, reason
        )
        headers = (
            *message.headers,
            ("dlq.topic", message.partition.topic.encode()),
            ("dlq.partition", str(message.partition.index).encode()),
            ("dlq.offset", str(message.offset).encode()),
            ("dlq.reason", reason.encode()[:4000]),
        )
        self._log.produce(self._topic, message.key or b"", message.value, headers)
        self.dead += 1

    def record(self, consumed: int) -> None:
        self.seen += consumed
        if self.seen >= self._min and self.dead > self._max_ratio * self.seen:
            raise TooManyDeadLetters(f"{self.dead} of {self.seen} messages dead-lettered")
