"""Kafka implementation of the event log (kafka-python)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
)
from kafka.producer.transaction_manager import TransactionState
from kafka.structs import OffsetAndMetadata

from trackstream.log.base import (
    EventLog,
    Headers,
    LogConsumer,
    LogTail,
    LogUnavailable,
    Message,
    Partition,
    Record,
    RevokeCallback,
)

log = logging.getLogger(__name__)


def _native_crc32c() -> None:
    """kafka-python checks every record batch's CRC-32C, on produce and on fetch, in pure Python
    (~1.3 ms per 16 KiB batch: a tenth of a log-batch request's CPU) unless the LGPL ``crc32c``
    module is importable. google-crc32c (Apache-2.0) computes the same checksum in C."""
    import google_crc32c
    from kafka.record import default_records

    if google_crc32c.implementation == "c":
        default_records.calc_crc32c = lambda view: google_crc32c.value(bytes(view))


_native_crc32c()

# Producer settings are policy of the log of record, so they are spelled out here, not defaulted.
T = TypeVar("T")
C = TypeVar("C", KafkaAdminClient, KafkaConsumer)

# kafka-python backs off reconnects up to 30 s, so after a 20 s broker restart its clients waited up to
# half a minute more before trying again; the Java client's default is 1 s. Shared by every client here.
RECONNECT = {"reconnect_backoff_max_ms": 1_000}

PRODUCER_CONFIG = {
    "acks": "all",  # acknowledged = replicated to every in-sync replica
    "enable_idempotence": True,  # broker drops retried duplicates
    "compression_type": "lz4",
    # no wait for company: a lone event (runs/create, set-tag, a param) otherwise waited the whole linger,
    # 3.5 instead of 0.7 ms a produce here, and the sender still batches what queues while it is busy
    "linger_ms": 0,
    "batch_size": 1 << 20,
    "max_request_size": 8 << 20,
    "max_in_flight_requests_per_connection": 5,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 15_000,
    "max_block_ms": 5_000,  # metadata unavailable -> fail fast (503), do not hang the request
    **RECONNECT,
}
CLOSE_TIMEOUT = 5.0  # seconds a closing producer may spend delivering what it holds
MAX_REPLICATION = 3  # copies of each topic ensure_topics asks for, at most one per broker


def _stuck(producer: KafkaProducer) -> str | None:
    """Why ``producer`` can never acknowledge a write again, or None while it still can.

    kafka-python 3.0.12 has a state its idempotent producer never leaves. When a batch that was already
    sent expires (a broker killed under load), the sender calls ``TransactionManager.reset_producer_id``,
    which sets the producer id to -1 but leaves the state at READY. The sender asks for a new id only
    from UNINITIALIZED (``init_producer_id`` is a no-op otherwise) and sends nothing while the id is
    invalid, so every later write expires after ``delivery_timeout_ms`` and ``flush``/``close`` wait
    forever. A fatal error (e.g. a timed-out InitProducerId request) and a dead IO thread are final too.
    The attributes read here are kafka-python internals; ``tests/log`` pins the ones this relies on.
    """
    sender = getattr(producer, "_sender", None)
    if sender is None or not sender.is_alive():
        return "its IO thread has ended"
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        return None
    if manager.has_fatal_error() or manager.has_abortable_error():
        return f"it failed for good ({manager.last_error!r})"
    if not manager.has_producer_id() and manager._current_state == TransactionState.READY:
        return "it lost its producer id and will not ask for another (kafka-python 3.0 reset_producer_id)"
    return None


def _close_producer(producer: KafkaProducer, timeout: float) -> None:
    """Close within ``timeout`` + 2 s whatever state the producer is in. kafka-python's own ``close``
    first flushes, waiting up to ``timeout`` for each batch in turn, and raises ``KafkaTimeoutError``
    before it force-closes when that fails (a stuck producer made SIGTERM to the gateway fail). Here
    the IO thread gets ``timeout`` to send what it holds; then it is force-closed, which fails every
    write still pending (their callers get :class:`LogUnavailable`)."""
    sender = getattr(producer, "_sender", None)
    if sender is not None and sender.is_alive():
        if _stuck(producer) is None and timeout > 0:
            sender.initiate_close()
            sender.join(timeout)
        if sender.is_alive():
            sender.force_close()
            sender.join(2.0)
    with contextlib.suppress(Exception):
        producer.close(timeout=0)


class _Renewed(Generic[C]):
    """A kafka-python client (admin, or a consumer without a group) made on first use, asked by one thread
    at a time (the admin client refuses concurrent requests to one node; a consumer is not thread-safe),
    each request a millisecond on a healthy broker. After a broker restart kafka-python's admin client was
    seen left with no node to ask ("No node_id provided") while producer and consumers had reconnected, so
    a failed request drops the client and is tried once more on a fresh one before the caller gets
    :class:`LogUnavailable`."""

    def __init__(self, make: Callable[[], C]) -> None:
        self._make = make
        self._client: C | None = None
        self._lock = threading.Lock()

    def get(self) -> C:
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    def request(self, what: str, call: Callable[[C], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._client is None:
                        self._client = self._make()
                    return call(self._client)
                except KafkaError as exc:
                    self._drop()
                    if attempt == 2:
                        raise LogUnavailable(f"Kafka did not answer for {what}: {exc}") from exc
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


class KafkaLog(EventLog):
    """The event log on Kafka. Producing goes through one idempotent producer per process, replaced by
    a fresh one whenever :func:`_stuck` finds it unable to ever acknowledge again (failure state 22 in
    docs/DESIGN.md): the writes the old one held fail at once, the next ones go to the new one."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str = "trackstream",
        produce_timeout: float = 15.0,
        consumer_timeouts_ms: dict[str, int] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._consumer_timeouts = consumer_timeouts_ms or {}  # session_timeout_ms, max_poll_interval_ms
        self._client_id = client_id
        self._produce_timeout = produce_timeout
        self._producer: KafkaProducer | None = None
        # Topics the current producer holds metadata for: its ``send`` does not block the event loop.
        self._ready_topics: set[str] = set()
        self._replacements = 0
        self._closed = False
        self._admin = _Renewed(
            lambda: KafkaAdminClient(
                bootstrap_servers=bootstrap, client_id=f"{client_id}-admin", request_timeout_ms=10_000, **RECONNECT
            )
        )
        # the end offsets every read barrier asks for: a consumer without a group answers from the metadata
        # it holds in one round trip (~0.8 ms here), the admin client looks the leaders up first (~1.3 ms)
        self._offsets = _Renewed(
            lambda: KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=None,
                client_id=f"{client_id}-offsets",
                enable_auto_commit=False,
                request_timeout_ms=10_000,
                **RECONNECT,
            )
        )
        self._partitions: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def producer_replacements(self) -> int:
        """How many producers were replaced because they were stuck (for tests and health)."""
        return self._replacements

    def _get_producer(self) -> KafkaProducer:
        producer = self._producer
        if producer is not None and _stuck(producer) is None:
            return producer
        with self._lock:
            if self._closed:
                raise LogUnavailable("the event log is closed")
            producer = self._producer
            if producer is None:
                producer = self._producer = self._new_producer()
            elif (why := _stuck(producer)) is not None:
                log.warning("replacing the Kafka producer: %s; the writes it held fail", why)
                self._producer, self._ready_topics = self._new_producer(), set()
                self._replacements += 1
                # force-closing fails the old producer's pending futures; not on the caller's time
                threading.Thread(target=_close_producer, args=(producer, 0.0), daemon=True).start()
                producer = self._producer
        return producer

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self._bootstrap, client_id=self._client_id, **PRODUCER_CONFIG)

    def ensure_topics(
        self, topics: Sequence[str], partitions: int, configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """Create missing topics, replicated to min(3, brokers) brokers: three copies on a cluster (with
        the broker's ``min.insync.replicas``, acks=all then survives one broker down), one on a single
        broker. Existing topics are left as they are."""
        admin = self._admin.get()
        brokers = len(admin.describe_cluster().get("brokers") or ()) or 1
        replication = min(MAX_REPLICATION, brokers)
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                {
                    t: {"num_partitions": partitions, "replication_factor": replication}
                    | ({"configs": dict(configs[t])} if configs and t in configs else {})
                    for t in topics
                },
                raise_errors=False,
            )
        admin.wait_for_topics(list(topics), timeout_ms=30_000)
        for topic in topics:
            self.partitions(topic)

    def missing_topics(self, topics: Sequence[str]) -> list[str]:
        existing = set(self._admin.request("the topic list", lambda admin: admin.list_topics()))
        return [t for t in topics if t not in existing]

    def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            found = self._get_producer().partitions_for(topic)
            if not found:
                raise LogUnavailable(f"topic {topic!r} does not exist")
            count = self._partitions[topic] = len(found)
        return count

    def produce(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        partition = self.partition_for(topic, key)
        try:
            producer = self._get_producer()
            future = producer.send(topic, value=value, key=key, headers=list(headers), partition=partition)
            if producer is self._producer:
                self._ready_topics.add(topic)
            meta = future.get(timeout=self._produce_timeout)
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka did not acknowledge the write: {exc}") from exc
        return meta.partition, meta.offset

    def produce_all(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Every record sent before any acknowledgement is awaited: one round trip for them all. The
        producer is idempotent, so records to one partition keep their order even when a request of
        them is retried."""
        try:
            producer = self._get_producer()
            futures = [
                producer.send(topic, value=v, key=k, headers=list(h), partition=self.partition_for(topic, k))
                for topic, k, v, h in records
            ]
            if producer is self._producer:
                self._ready_topics.update(topic for topic, _, _, _ in records)
            deadline = time.monotonic() + self._produce_timeout
            metas = [future.get(timeout=max(0.0, deadline - time.monotonic())) for future in futures]
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka did not acknowledge the write: {exc}") from exc
        return [(meta.partition, meta.offset) for meta in metas]

    async def produce_async(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        """Send from the event loop and await the acknowledgement there: kafka-python's IO thread settles
        the future through ``call_soon_threadsafe``. ``send`` itself only appends to the producer's
        buffer; it blocks (up to ``max_block_ms``) only when the buffer is full, which then holds back
        the loop as backpressure. The first write of a producer, which connects and fetches metadata,
        and a write that finds the producer stuck (it is replaced then), take a thread."""
        producer = self._producer
        if producer is None or topic not in self._ready_topics or _stuck(producer) is not None:
            return await super().produce_async(topic, key, value, headers)
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[tuple[int, int]] = loop.create_future()

        def settle(result: Any) -> None:
            if acked.done():
                return
            if isinstance(result, BaseException):
                acked.set_exception(result)
            else:
                acked.set_result((result.partition, result.offset))

        try:
            future = producer.send(
                topic, value=value, key=key, headers=list(headers), partition=self.partition_for(topic, key)
            )
            future.add_both(lambda result: loop.call_soon_threadsafe(settle, result))
            return await asyncio.wait_for(acked, self._produce_timeout)
        except Exception as exc:  # a Kafka error, the timeout, anything: the write was not acknowledged
            raise LogUnavailable(f"Kafka did not acknowledge the write: {exc!r}") from exc

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        wanted = [TopicPartition(topic, p) for p in partitions]
        found = self._offsets.request("end offsets", lambda consumer: consumer.end_offsets(wanted))
        return {tp.partition: offset for tp, offset in found.items()}

    def start_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        earliest = {TopicPartition(topic, p): OffsetSpec.EARLIEST for p in partitions}
        found = self._admin.request("start offsets", lambda admin: admin.list_partition_offsets(earliest))
        return {tp.partition: info.offset for tp, info in found.items()}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        found = self._admin.request("committed offsets", lambda admin: admin.list_group_offsets({group: None}))
        # kafka-python 3.x: {group: {TopicPartition: OffsetAndMetadata}}; -1 means "never committed"
        offsets = found.get(group) or {}
        return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset >= 0}

    def consumer(self, group: str, topic: str, on_revoke: RevokeCallback | None = None) -> LogConsumer:
        return _KafkaConsumer(self._bootstrap, group, topic, on_revoke, **self._consumer_timeouts)

    def tail(self, topic: str, from_start: bool = False) -> LogTail:
        return _KafkaTail(self._bootstrap, topic, f"{self._client_id}-tail", from_start)

    def close(self) -> None:
        """Bounded: the producer gets ``CLOSE_TIMEOUT`` seconds to deliver what it holds, then fails it."""
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            _close_producer(producer, CLOSE_TIMEOUT)
        self._admin.close()
        self._offsets.close()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python 3.x runs rebalance listeners on its IO loop, which also sends the heartbeats: a
    sink write done there (seen: 21 s) gets the member expelled from its group. So the listener only
    notes the revoked partitions; ``poll`` hands them to ``on_revoke`` on the consumer's own thread,
    where the pipeline writes what it holds. Its commit for partitions that moved is refused (see
    ``commit``) and the new owner re-reads them, which the idempotent sinks absorb.
    """

    def __init__(self) -> None:
        self.revoked: list[Partition] = []

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.revoked.extend(Partition(tp.topic, tp.partition) for tp in revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))


# The group moved on: the commit's partitions may belong to another member now. Not an error for an
# at-least-once pipeline: the new owner re-reads from the last commit and the sinks are idempotent.
_STALE_COMMIT = (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError)


UNASSIGNED_REJOIN_SECONDS = 5.0
POLL_ERROR_PAUSE = 0.5
COMMIT_TIMEOUT_MS = 5_000  # a commit that hangs (coordinator moving) is retried by the pipeline


class _KafkaConsumer(LogConsumer):
    """A group member. While its store is down the pipeline pauses its partitions and keeps calling
    ``poll``, which heartbeats and resets ``max_poll_interval_ms``: the member stays in its group
    however long the outage lasts (no rebalance, no re-read by another member)."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        on_revoke: RevokeCallback | None,
        session_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=group,
            enable_auto_commit=False,  # offsets are committed by the pipeline, after the sink write
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=min(2_000, session_timeout_ms // 3),
            max_poll_interval_ms=max_poll_interval_ms,
            **RECONNECT,
        )
        # Join the group only once this client's metadata has the topic's partitions: a member that
        # joins without them is assigned nothing, and kafka-python does not reliably rejoin later.
        deadline = time.monotonic() + 30
        while not self._consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                self._consumer.close()
                raise LogUnavailable(f"topic {topic!r} has no partitions in Kafka's metadata")
            time.sleep(0.1)
        self._topic = topic
        self._on_revoke = on_revoke
        self._listener = _Listener()
        self._unassigned_since: float | None = None
        self._rejoin_after = UNASSIGNED_REJOIN_SECONDS
        self._consumer.subscribe([topic], listener=self._listener)

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        """Messages, possibly none. A broker that went away surfaces here as a connection error from
        kafka-python's group coordinator; that is an empty poll (after a short pause), not the end of
        the consumer: kafka-python reconnects, and the watchdog rejoins the group if it must."""
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except KafkaError as exc:
            log.warning("%s: poll failed, the broker may be restarting; retrying: %r", self._topic, exc)
            time.sleep(POLL_ERROR_PAUSE)
            batches = {}
        if self._listener.revoked and self._on_revoke is not None:
            revoked, self._listener.revoked = self._listener.revoked, []
            self._on_revoke(revoked)
        self._watch_assignment()
        out: list[Message] = []
        for tp, records in batches.items():
            partition = Partition(tp.topic, tp.partition)
            for r in records:
                out.append(Message(partition, r.offset, r.key, r.value, tuple(r.headers or ())))
        return out

    def commit(self, offsets: dict[Partition, int]) -> None:
        kafka_offsets = {TopicPartition(p.topic, p.index): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        try:
            self._consumer.commit(kafka_offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except _STALE_COMMIT as exc:
            log.warning("commit of %s refused after a rebalance (%s); the next owner re-reads it", offsets, exc)
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka did not accept the commit: {exc}") from exc

    def assigned(self) -> bool:
        return bool(self._consumer.assignment())

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause(self, partitions: Sequence[Partition]) -> None:
        """kafka-python drops records already fetched for a paused partition without moving its position,
        so they are fetched again after ``resume``. Partitions no longer assigned are skipped."""
        held = self._consumer.assignment()
        tps = [tp for tp in (TopicPartition(p.topic, p.index) for p in partitions) if tp in held]
        if tps:
            self._consumer.pause(*tps)

    def resume(self, partitions: Sequence[Partition]) -> None:
        held = self._consumer.assignment()
        tps = [tp for tp in (TopicPartition(p.topic, p.index) for p in partitions) if tp in held]
        if tps:
            self._consumer.resume(*tps)

    def paused(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.paused()}

    def _serving(self) -> bool:
        coordinator = getattr(self._consumer, "_coordinator", None)  # kafka-python internals, checked
        stable = coordinator.stable() if coordinator is not None and hasattr(coordinator, "stable") else True
        return bool(self._consumer.assignment()) and bool(stable)

    def _watch_assignment(self) -> None:
        """Rejoin when a rebalance left this member without a stable assignment for too long.

        Seen with kafka-python 3.0 on a fresh broker: after the group coordinator is re-discovered, a
        second-generation join never completes its sync, and the member then idles forever while the
        group's partitions go unconsumed. Subscribing again starts a clean join. A member that holds
        nothing legitimately (more members than partitions) would cause a rebalance each time, so the
        wait doubles after every rejoin (5 s up to 5 min) and resets once partitions arrive.
        """
        if self._serving():
            self._unassigned_since = None
            self._rejoin_after = UNASSIGNED_REJOIN_SECONDS
            return
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif now - self._unassigned_since > self._rejoin_after:
            log.warning(
                "%s not serving a stable assignment for %.0fs; rejoining the group",
                self._topic,
                now - self._unassigned_since,
            )
            self._consumer.unsubscribe()
            self._consumer.subscribe([self._topic], listener=self._listener)
            self._unassigned_since = None
            self._rejoin_after = min(self._rejoin_after * 2, 300.0)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


TAIL_START_TIMEOUT = 30.0


class _KafkaTail(LogTail):
    """A consumer without a group (``group_id=None``): partitions assigned by hand, positioned at their
    end, nothing committed. kafka-python reconnects by itself after a broker restart; a poll that fails
    meanwhile is an empty poll after a short pause."""

    def __init__(self, bootstrap: str, topic: str, client_id: str, from_start: bool = False) -> None:
        self._topic = topic
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # only after falling behind retention: resume at the oldest kept
            **RECONNECT,
        )
        try:
            deadline = time.monotonic() + TAIL_START_TIMEOUT
            while not (found := self._consumer.partitions_for_topic(topic)):
                if time.monotonic() > deadline:
                    raise LogUnavailable(f"topic {topic!r} has no partitions in Kafka's metadata")
                time.sleep(0.1)
            parts = [TopicPartition(topic, p) for p in sorted(found)]
            self._consumer.assign(parts)
            if from_start:
                self._consumer.seek_to_beginning(*parts)
            else:
                self._consumer.seek_to_end(*parts)
            for tp in parts:  # seek_to_end is lazy: resolve the ends now, so later records are all seen
                self._consumer.position(tp)
        except KafkaError as exc:
            self._consumer.close()
            raise LogUnavailable(f"Kafka did not answer while opening a tail of {topic!r}: {exc}") from exc
        except BaseException:
            self._consumer.close()
            raise

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except KafkaError as exc:
            log.warning("tail of %s: poll failed, the broker may be restarting; retrying: %r", self._topic, exc)
            time.sleep(POLL_ERROR_PAUSE)
            return []
        out: list[Message] = []
        for tp, records in batches.items():
            partition = Partition(tp.topic, tp.partition)
            for r in records:
                out.append(Message(partition, r.offset, r.key, r.value, tuple(r.headers or ())))
        return out

    def close(self) -> None:
        self._consumer.close(autocommit=False)
