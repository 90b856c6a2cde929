"""`ordered_map`: results in input order, from worker processes, with a bounded number in flight."""

import os
import time

from data_prep.parallel import ordered_map


def _square_with_pid(x):
    time.sleep(0.001 * (x % 3))                  # uneven work, so completion order differs from input order
    return x * x, os.getpid()


def test_results_come_back_in_input_order_from_several_processes():
    out = list(ordered_map(_square_with_pid, list(range(200)), workers=2, in_flight=8, chunksize=2))
    assert [r for r, _ in out] == [x * x for x in range(200)]
    assert len({pid for _, pid in out} - {os.getpid()}) == 2


def test_one_worker_maps_in_this_process_and_stopping_early_is_clean():
    assert [r for r, pid in ordered_map(_square_with_pid, [1, 2, 3], workers=1)] == [1, 4, 9]
    results = ordered_map(_square_with_pid, list(range(1000)), workers=2, in_flight=4, chunksize=1)
    first = [next(results)[0] for _ in range(3)]
    results.close()                              # the pool stops although most items were never fed
    assert first == [0, 1, 4]
