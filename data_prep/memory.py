"""Peak memory of this process and its worker processes, sampled from `/proc` (Linux).

`PeakMemory` samples every `interval_s` in a thread: the summed RSS and PSS (proportional set
size: a page shared by k processes counts 1/k in each, so the sum does not count forked pages
twice) of this process and all its descendants. `--stats` of `hiclr-prep` prints it.
"""

from __future__ import annotations

import json
import os
import resource
import threading
from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """The direct children of process `pid` (Linux /proc; empty elsewhere or when it has exited)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        stack += child_pids(p)
    return pids


def _rss_pss_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rss, pss


def tree_memory_mib() -> tuple[float, float, int]:
    """(summed RSS, summed PSS) in MiB of this process and its descendants, and how many processes."""
    pids = _tree(os.getpid())
    totals = [_rss_pss_kib(p) for p in pids]
    return sum(r for r, _ in totals) / 1024, sum(p for _, p in totals) / 1024, len(pids)


class PeakMemory:
    """Context manager: the peak of `tree_memory_mib()` while it is open, plus getrusage's peaks."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak_rss_mib = self.peak_pss_mib = 0.0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        rss, pss, count = tree_memory_mib()
        self.peak_rss_mib = max(self.peak_rss_mib, rss)
        self.peak_pss_mib = max(self.peak_pss_mib, pss)
        self.max_processes = max(self.max_processes, count)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()
        return False

    @staticmethod
    def cpu_s() -> float:
        """User + system CPU seconds of this process and its finished (waited-for) children."""
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def summary(self) -> dict:
        """Peaks in MiB: summed over the process tree (RSS, PSS), and the largest single process (getrusage)."""
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {
            "peak_tree_rss_mib": round(self.peak_rss_mib, 1),
            "peak_tree_pss_mib": round(self.peak_pss_mib, 1),
            "peak_main_rss_mib": round(own, 1),
            "peak_worker_rss_mib": round(children, 1),
            "processes": self.max_processes,
        }


def report_stats(dest: Path, memory: PeakMemory, items: list[str], elapsed: float, workers: int) -> None:
    """`--stats` of `hiclr-prep ntu60|ntu120|pkummd`: peak memory of every process, wall time, files/s,
    MB/s and CPU time per input file; printed (`dest` "-") or written to the JSON file `dest`."""
    megabytes = sum(os.path.getsize(p) for p in items) / 1e6
    stats = {
        "files": len(items),
        "workers": workers,
        "input_mb": round(megabytes, 1),
        "wall_s": round(elapsed, 2),
        "files_per_s": round(len(items) / elapsed, 2),
        "mb_per_s": round(megabytes / elapsed, 2),
        "cpu_ms_per_file": round(1000 * memory.cpu_s() / len(items), 3),
        **memory.summary(),
    }
    if str(dest) == "-":
        print("stats: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    else:
        from hiclr.common.atomic import atomic_write_text

        atomic_write_text(dest, json.dumps(stats, indent=1) + "\n", durable=False)
