"""Kafka implementation of the event log (kafka-python)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from trackstream.log.base import EventLog, Headers, LogConsumer, LogUnavailable, Message, Partition, RevokeCallback

log = logging.getLogger(__name__)

# Producer settings are policy of the log of record, so they are spelled out here, not defaulted.
PRODUCER_CONFIG = {
    "acks": "all",  # acknowledged = replicated to every in-sync replica
    "enable_idempotence": True,  # broker drops retried duplicates
    "compression_type": "lz4",
    "linger_ms": 2,  # let concurrent requests share a produce request
    "batch_size": 1 << 20,
    "max_request_size": 8 << 20,
    "max_in_flight_requests_per_connection": 5,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 15_000,
    "max_block_ms": 5_000,  # metadata unavailable -> fail fast (503), do not hang the request
}


class KafkaLog(EventLog):
    def __init__(self, bootstrap: str, client_id: str = "trackstream", produce_timeout: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._produce_timeout = produce_timeout
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._partitions: dict[str, int] = {}
        self._lock = threading.Lock()

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self._bootstrap, client_id=self._client_id, **PRODUCER_CONFIG
                    )
        return self._producer

    def _get_admin(self) -> KafkaAdminClient:
        if self._admin is None:
            with self._lock:
                if self._admin is None:
                    self._admin = KafkaAdminClient(
                        bootstrap_servers=self._bootstrap, client_id=f"{self._client_id}-admin", request_timeout_ms=10_000
                    )
        return self._admin

    def ensure_topics(self, topics: Sequence[str], partitions: int) -> None:
        admin = self._get_admin()
        try:
            admin.create_topics(
                {t: {"num_partitions": partitions, "replication_factor": -1} for t in topics}, raise_errors=False
            )
        except TopicAlreadyExistsError:
            pass
        admin.wait_for_topics(list(topics), timeout_ms=30_000)
        for topic in topics:
            self.partitions(topic)

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
            future = self._get_producer().send(
                topic, value=value, key=key, headers=list(headers), partition=partition
            )
            meta = future.get(timeout=self._produce_timeout)
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka did not acknowledge the write: {exc}") from exc
        return meta.partition, meta.offset

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        try:
            found = self._get_admin().list_partition_offsets(
                {TopicPartition(topic, p): OffsetSpec.LATEST for p in partitions}
            )
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka did not answer for end offsets: {exc}") from exc
        return {tp.partition: info.offset for tp, info in found.items()}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        try:
            found = self._get_admin().list_group_offsets({group: None})
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka did not answer for committed offsets: {exc}") from exc
        offsets = found.get(group, {}) if isinstance(found, dict) and group in found else found
        return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset >= 0}

    def consumer(self, group: str, topic: str, on_revoke: RevokeCallback | None = None) -> LogConsumer:
        return _KafkaConsumer(self._bootstrap, group, topic, on_revoke)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
        if self._admin is not None:
            self._admin.close()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoke: RevokeCallback | None) -> None:
        self._on_revoke = on_revoke

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._on_revoke is not None and revoked:
            self._on_revoke([Partition(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))


class _KafkaConsumer(LogConsumer):
    def __init__(self, bootstrap: str, group: str, topic: str, on_revoke: RevokeCallback | None) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=group,
            enable_auto_commit=False,  # offsets are committed by the pipeline, after the sink write
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            max_poll_interval_ms=300_000,
        )
        self._consumer.subscribe([topic], listener=_Listener(on_revoke))

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        out: list[Message] = []
        for tp, records in batches.items():
            partition = Partition(tp.topic, tp.partition)
            for r in records:
                out.append(Message(partition, r.offset, r.key, r.value, tuple(r.headers or ())))
        return out

    def commit(self, offsets: dict[Partition, int]) -> None:
        self._consumer.commit(
            {TopicPartition(p.topic, p.index): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        )

    def close(self) -> None:
        self._consumer.close(autocommit=False)
