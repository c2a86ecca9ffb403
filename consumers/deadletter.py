"""Dead letters: messages that cannot be decoded or applied, kept with the reason, never dropped.

The pipeline hands them over with the batch they came in and commits that batch only after the
dead-letter topic acknowledged them all, so a dead letter is never lost between the two. Each produce
is bounded: a log that does not acknowledge within ``timeout`` seconds is a store outage
(:class:`StoreUnavailable`) and the batch is retried with its dead letters (which may then arrive
twice; the dead-letter topic is at-least-once like everything else).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from trackstream.errors import StoreUnavailable
from trackstream.log import EventLog, LogUnavailable, Message

log = logging.getLogger(__name__)


class TooManyDeadLetters(Exception):
    """The dead-letter ratio passed its limit: stop rather than drain the log into the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: str


class DeadLetters:
    """Sends rejected messages to the dead-letter topic, headers naming where they came from and why.

    Counts them against everything consumed; past ``max_ratio`` (after ``min_messages``) it raises
    :class:`TooManyDeadLetters` so a systematic fault stops the consumer.
    """

    def __init__(self, events: EventLog, topic: str, max_ratio: float, min_messages: int, timeout: float = 5.0) -> None:
        self._log = events
        self._topic = topic
        self._max_ratio = max_ratio
        self._min = min_messages
        self._timeout = timeout
        # One thread, so a produce that outlives its timeout delays the next rather than piling up.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="deadletter")
        self.seen = 0
        self.dead = 0

    def send_all(self, letters: Sequence[DeadLetter]) -> None:
        """Produce ``letters``, each acknowledged within the timeout, or raise :class:`StoreUnavailable`."""
        for letter in letters:
            self.send(letter.message, letter.reason)

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
        future = self._executor.submit(self._log.produce, self._topic, message.key or b"", message.value, headers)
        try:
            future.result(timeout=self._timeout)
        except (LogUnavailable, concurrent.futures.TimeoutError) as exc:
            raise StoreUnavailable(f"the dead-letter topic did not acknowledge in {self._timeout}s: {exc!r}") from exc
        self.dead += 1

    def record(self, consumed: int, pending: int = 0) -> None:
        """Count ``consumed`` messages; ``pending`` dead letters are held by the batch, not yet sent."""
        self.seen += consumed
        dead = self.dead + pending
        if self.seen >= self._min and dead > self._max_ratio * self.seen:
            raise TooManyDeadLetters(f"{dead} of {self.seen} messages dead-lettered")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
