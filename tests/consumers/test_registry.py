"""The sink registry: one entry per sink worker; a topic may feed several sinks (consumer groups) and
reads (and decided writes' outcomes) wait for all of them."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from consumers.sink import Event, Sink
from ingest.consistency import Barrier
from ingest.errors import MlflowError
from schemas import events
from schemas.events import METADATA
from tests.conftest import SettingsFactory
from trackstream import registry
from trackstream.errors import StoreUnavailable
from trackstream.log import Partition
from trackstream.log.memory import MemoryLog
from trackstream.runtime import build
from trackstream.settings import Topics


def test_every_sink_reads_the_topic_of_its_family() -> None:
    assert len(set(registry.names())) == len(registry.SINKS)
    for spec in registry.SINKS:
        assert spec.topic in Topics.model_fields
        assert Topics.FAMILIES[spec.family] == spec.topic
        sink = spec.make(None, None)  # type: ignore[arg-type]  # the factories only keep their stores
        assert sink.family == spec.family
        assert sink.name == spec.name


def test_the_barrier_waits_for_every_group_of_a_topic() -> None:
    log = MemoryLog()
    log.ensure_topics(["t"], 1)
    partition, offset = log.produce("t", b"k", b"v")
    barrier = Barrier(log, {"t": ["first", "second"]}, timeout=0.3)
    log.consumer("first", "t").commit({Partition("t", partition): offset + 1})
    with pytest.raises(MlflowError, match="not yet applied"):
        barrier.wait("t")
    log.consumer("second", "t").commit({Partition("t", partition): offset + 1})
    barrier.wait("t")
    barrier.wait_applied(Partition("t", partition), offset)


class GatedSink(Sink):
    """A second sink on the metadata topic that applies nothing until its gate opens."""

    name = "audit"
    family = METADATA

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seen: list[events.Event] = []

    def rows(self, event: Event) -> int:
        return 1

    def write(self, batch: Sequence[Event]) -> None:
        if not self.gate.wait(0.2):
            raise StoreUnavailable("gate closed")
        self.seen.extend(e.data for e in batch)


def test_a_sink_added_by_one_registry_entry_runs_and_is_waited_for(
    embedded_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = GatedSink()
    extra = registry.SinkSpec("audit", "metadata", METADATA, lambda tables, objects: audit)
    monkeypatch.setattr(registry, "SINKS", (*registry.SINKS, extra))
    runtime = build(embedded_settings(read_barrier_timeout=10))
    try:
        topic = runtime.settings.topics.metadata
        assert runtime.groups()[topic] == ["trackstream-metadata", "trackstream-audit"]
        runtime.start_consumers()
        runtime.wait_consumers_ready(30)
        assert sorted(p.name for p in runtime.pipelines) == [
            "artifacts",
            "audit",
            "metadata",
            "metrics",
            "registry",
            "traces",
        ]
        tracking = runtime.tracking()
        tags = events.ExperimentTags(experiment_id="0", tags=[events.Tag(key="team", value="a")])
        tracking.writer.emit(tags)  # acknowledged once in the log
        read = threading.Event()

        def read_your_write() -> None:
            tracking.wait("metadata", ["0"])
            read.set()

        thread = threading.Thread(target=read_your_write, daemon=True)
        thread.start()
        # the metadata sink applies it at once; a read of the topic waits until the audit sink did too
        assert not read.wait(1.0)
        audit.gate.set()
        assert read.wait(10)
        assert audit.seen == [tags]
    finally:
        runtime.close()
