"""What every handler is given: the gateway's clients and settings, nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.consistency import Barrier
from ingest.runstates import RunStates
from ingest.writer import EventWriter
from trackstream.objects import ObjectStore
from trackstream.reads import TrackingReader
from trackstream.reads.registry import RegistryReader
from trackstream.settings import Topics


@dataclass(frozen=True, slots=True)
class Context:
    """The gateway's shared state, passed to every handler as its first argument.

    ``run_states`` is the run-state view (None: every write check reads the store). ``objects`` and the
    artifact limits are set by ``ingest.app.create_app``; the runtime builds the rest.
    """

    writer: EventWriter
    reader: TrackingReader
    barrier: Barrier
    topics: Topics
    run_states: RunStates | None = None
    objects: ObjectStore | None = None
    artifact_inline_max_bytes: int = 0
    artifact_part_max_bytes: int = 0
    registry: RegistryReader | None = None  # the model registry's read model (the runtime sets it)

    def models(self) -> RegistryReader:
        assert self.registry is not None, "the runtime sets the registry reader"
        return self.registry

    def store(self) -> ObjectStore:
        assert self.objects is not None, "create_app sets the object store"
        return self.objects

    def wait(self, topic: str, keys: list[str] | None = None) -> None:
        """The read-your-writes barrier for ``topic`` (an attribute of ``Topics``), by hand: for a read
        after the handler's own write, or of a key the handler computes."""
        self.barrier.wait(getattr(self.topics, topic), keys)
