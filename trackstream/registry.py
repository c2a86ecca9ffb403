"""The sink registry: every sink worker, in one table (part of the composition root).

The runtime (which sinks run, their topics and consumer groups), ``Runtime.groups()`` (the read
barrier's topic → groups), the CLI's ``consume`` choices and the bench's workers all derive from
:data:`SINKS`. Adding a sink is one entry here; if it reads a new event family it also needs that
family's topic (a ``Topics`` field) and its event classes (``schemas/events.py``). A topic may feed
several sinks: each is its own consumer group, and a read of the topic waits for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consumers.artifacts import ArtifactSink
from consumers.metadata import MetadataSink
from consumers.metrics import MetricsSink
from consumers.registry import RegistrySink
from consumers.sink import Sink
from schemas.events import ARTIFACT, METADATA, METRICS, REGISTRY
from trackstream.objects import ObjectStore
from trackstream.tables import TableStore


@dataclass(frozen=True, slots=True)
class SinkSpec:
    name: str  # `trackstream consume <name>`
    topic: str  # the Topics setting naming the topic it reads
    family: str  # the event family it reads (its topic carries that family)
    make: Callable[[TableStore, ObjectStore], Sink]
    group: str = ""  # consumer group suffix (after TRACKSTREAM_CONSUMER_GROUP_PREFIX); default: name

    @property
    def group_suffix(self) -> str:
        return self.group or self.name


SINKS: tuple[SinkSpec, ...] = (
    SinkSpec("metrics", "metrics", METRICS, lambda tables, objects: MetricsSink(tables)),
    SinkSpec("metadata", "metadata", METADATA, lambda tables, objects: MetadataSink(tables)),
    SinkSpec("artifacts", "artifacts", ARTIFACT, ArtifactSink),
    SinkSpec("registry", "registry", REGISTRY, lambda tables, objects: RegistrySink(tables)),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SINKS)


def names() -> tuple[str, ...]:
    return tuple(s.name for s in SINKS)


def spec(name: str) -> SinkSpec:
    for s in SINKS:
        if s.name == name:
            return s
    raise ValueError(f"unknown sink {name!r}; expected one of {', '.join(names())}")
