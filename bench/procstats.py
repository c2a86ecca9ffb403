"""CPU and RSS of process trees and of the whole machine, sampled from /proc (Linux only, no dependency)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, cpu seconds, rss bytes) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid=4, utime=14, stime=15, rss=24 (pages)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK, int(fields[21]) * PAGE


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _stat(int(name))
            if s is not None:
                out.setdefault(s[0], []).append(int(name))
    return out


def tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children.get(p, []))
    return pids


def machine_cpu() -> tuple[float, float, float]:
    """(busy, idle, steal) seconds since boot, all CPUs."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (parts + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICK, (idle + iowait) / TICK, steal / TICK


@dataclass
class Tracked:
    pid: int
    with_children: bool
    max_rss: int = 0
    last_rss: int = 0
    cpu: dict[int, float] = field(default_factory=dict)  # per pid, latest cpu seconds seen
    cpu_at_mark: float = 0.0

    def cpu_total(self) -> float:
        return sum(self.cpu.values())


class ProcSampler:
    """Samples registered process trees every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.procs: dict[str, Tracked] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procstats", daemon=True)
        self._lock = threading.Lock()
        self._machine_mark: tuple[float, float, float] | None = None
        self._machine_end: tuple[float, float, float] | None = None
        self._t_mark = 0.0
        self._t_end = 0.0

    def add(self, name: str, pid: int, with_children: bool = True) -> None:
        with self._lock:
            self.procs[name] = Tracked(pid, with_children)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        children = _children()
        with self._lock:
            for t in self.procs.values():
                pids = tree(t.pid, children) if t.with_children else [t.pid]
                rss = 0
                for p in pids:
                    s = _stat(p)
                    if s is None:
                        continue
                    t.cpu[p] = s[1]
                    rss += s[2]
                if rss:
                    t.last_rss = rss
                    t.max_rss = max(t.max_rss, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def mark(self) -> None:
        """Start of the measured window."""
        self.sample()
        with self._lock:
            for t in self.procs.values():
                t.cpu_at_mark = t.cpu_total()
                t.max_rss = t.last_rss
        self._machine_mark = machine_cpu()
        self._t_mark = time.monotonic()

    def end(self) -> None:
        """End of the measured window."""
        self.sample()
        self._machine_end = machine_cpu()
        self._t_end = time.monotonic()
        with self._lock:
            for t in self.procs.values():
                t.cpu_at_mark = t.cpu_total() - t.cpu_at_mark  # now: cpu seconds in the window

    def stop(self) -> None:
        self._stop.set()

    def report(self) -> dict[str, Any]:
        wall = max(self._t_end - self._t_mark, 1e-9)
        out: dict[str, Any] = {"window_seconds": round(wall, 2), "processes": {}}
        ours = 0.0
        for name, t in self.procs.items():
            ours += t.cpu_at_mark
            out["processes"][name] = {
                "cpu_seconds": round(t.cpu_at_mark, 2),
                "cpu_cores_avg": round(t.cpu_at_mark / wall, 2),
                "max_rss_mib": round(t.max_rss / 2**20, 1),
            }
        if self._machine_mark and self._machine_end:
            busy = self._machine_end[0] - self._machine_mark[0]
            idle = self._machine_end[1] - self._machine_mark[1]
            steal = self._machine_end[2] - self._machine_mark[2]
            out["machine"] = {
                "cpus": os.cpu_count(),
                "busy_cores_avg": round(busy / wall, 2),
                "idle_cores_avg": round(idle / wall, 2),
                "steal_cores_avg": round(steal / wall, 2),
                # CPU used by processes this bench did not start or track (other engineers' test runs, ...)
                "other_busy_cores_avg": round(max(busy - ours, 0.0) / wall, 2),
                "loadavg": os.getloadavg(),
            }
        return out
