"""`ordered_map`: a process pool's ordered map with a bounded number of results in flight.

`Pool.imap` reads its whole input at once and keeps every finished result until the consumer takes
it, so a slow consumer (the HDF5 writer) lets results pile up. Here the pool is fed through a
semaphore that the consumer releases per result taken: at most `in_flight` results are ever held.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from typing import Callable, Iterable, Iterator, Sequence


def ordered_map(fn: Callable, items: Sequence, workers: int, in_flight: int | None = None,
                chunksize: int | None = None) -> Iterator:
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
    pool = ctx.Pool(workers)
    try:
        for out in pool.imap(fn, feed(items), chunksize=chunksize):
            slots.release()
            yield out
        pool.close()
    finally:
        stopped.set()
        for _ in range(in_flight):          # unblock the pool's feeder thread so the pool can stop
            slots.release()
        pool.terminate()
        pool.join()
