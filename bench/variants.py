"""What-if variants of the gateway, to measure a proposal's gain before anyone changes the code.

    python -m bench.variants switch1ms,linger0 serve     (what ``bench/run.py --variant`` starts)

Each variant is a monkeypatch applied in this launcher process, which then runs ``trackstream serve``
in-process. Nothing under ingest/, consumers/ or trackstream/ is modified; the patches are deliberately
minimal (they skip corner cases a real change must handle, noted per variant) and exist only so that
the bench can put a measured number next to each proposal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def switch_interval(ms: float) -> Callable[[], None]:
    """CPython's GIL switch interval (default 5 ms): how long a thread woken by I/O (a Kafka ack, a
    finished handler) may wait for the GIL while another thread computes."""

    def apply() -> None:
        sys.setswitchinterval(ms / 1000)

    return apply


def linger(ms: int) -> Callable[[], None]:
    def apply() -> None:
        from trackstream.log import kafka

        kafka.PRODUCER_CONFIG["linger_ms"] = ms

    return apply


def gc_stats() -> None:
    """Report the time the cyclic garbage collector took, per generation, when the gateway exits."""
    import gc

    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            runs[info["generation"]] += 1
            if info["generation"] == 2 or runs[0] % 2000 == 0:
                print(f"bench.variants gc: runs {runs}, seconds {[round(x, 3) for x in spent]}", flush=True)

    gc.callbacks.append(callback)


def ui_identity() -> None:
    """The web app's files sent uncompressed, as before they were gzipped (bench/chart.py's A/B)."""
    import ingest.ui

    ingest.ui.COMPRESSED.clear()


VARIANTS: dict[str, Callable[[], None]] = {
    "switch1ms": switch_interval(1),
    "switch20ms": switch_interval(20),
    "linger0": linger(0),
    "linger10": linger(10),
    "gc-stats": gc_stats,
    "ui-identity": ui_identity,
}


def main() -> None:
    names = [n for n in sys.argv[1].split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"bench.variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    for name in names:
        VARIANTS[name]()
    print(f"bench.variants: applied {names}", flush=True)
    from trackstream.cli import main as cli_main

    cli_main(sys.argv[2:])


if __name__ == "__main__":
    main()
