"""`ordered_map`: a process pool's ordered map with a bounded number of results in flight.

`Pool.imap` reads its whole input at once and keeps every finished result until the consumer takes
it, so a slow consumer (the HDF5 writer) lets results pile up. Here the pool is fed through a
semaphore that the consumer releases per result taken: at most `in_flight` results are ever held.

Signals: the workers ignore SIGINT and die at once on SIGTERM (the default action). Ctrl-C reaches
the whole process group; only this process turns it into `KeyboardInterrupt`, which stops the pool
(`terminate`: SIGTERM to every worker) and unwinds the caller, whose `.partial` file is removed.
A worker with Python-level handlers would print a traceback per Ctrl-C, lose its task (the map
would wait for it forever), or miss the SIGTERM that arrives just before it blocks on the task
queue (the pool's join would then hang).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence


def ordered_map(
    fn: Callable, items: Sequence, workers: int, in_flight: int | None = None, chunksize: int | None = None
) -> Iterator:
    """Yield `fn(item)` for every item, in order; `workers` > 1 spreads the calls over processes."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    workers = min(workers, len(items))
    chunksize = chunksize or max(1, min(16, len(items) // (8 * workers)))
    in_flight = max(in_flight or 16 * workers * chunksize, 2 * workers * chunksize)
    slots = threading.Semaphore(in_flight)
    stopped = threading.Event()

    def feed(source: Iterable) -> Iterator:
        for item in source:
            slots.acquire()
            if stopped.is_set():
                return
            yield item

    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ctx.Pool(workers, initializer=_worker_signals)
    try:
        for out in pool.imap(fn, feed(items), chunksize=chunksize):
            slots.release()
            yield out
        pool.close()
    finally:
        stopped.set()
        for _ in range(in_flight):  # unblock the pool's feeder thread so the pool can stop
            slots.release()
        pool.terminate()
        pool.join()


def _worker_signals() -> None:
    """Pool initializer: Ctrl-C is the parent's to handle; SIGTERM kills without running Python."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
