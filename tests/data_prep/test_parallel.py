"""`ordered_map`: results in input order, from worker processes, with a bounded number in flight;
Ctrl-C stops the workers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep.memory import child_pids
from data_prep.parallel import ordered_map
from tests.helpers.paths import ROOT_DIR


def _square_with_pid(x):
    time.sleep(0.001 * (x % 3))  # uneven work, so completion order differs from input order
    return x * x, os.getpid()


def test_results_come_back_in_input_order_from_several_processes():
    out = list(ordered_map(_square_with_pid, list(range(200)), workers=2, in_flight=8, chunksize=2))
    assert [r for r, _ in out] == [x * x for x in range(200)]
    assert len({pid for _, pid in out} - {os.getpid()}) == 2


def test_one_worker_maps_in_this_process_and_stopping_early_is_clean():
    assert [r for r, pid in ordered_map(_square_with_pid, [1, 2, 3], workers=1)] == [1, 4, 9]
    results = ordered_map(_square_with_pid, list(range(1000)), workers=2, in_flight=4, chunksize=1)
    first = [next(results)[0] for _ in range(3)]
    results.close()  # the pool stops although most items were never fed
    assert first == [0, 1, 4]


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def many_ntu_files(tmp_path_factory):
    """4,000 NTU120 file names (12 distinct files hard-linked): a 2-worker prep runs for many seconds."""
    from hiclr.bench.prep import linked_files

    folder = tmp_path_factory.mktemp("many")
    linked_files(folder, 4000, 12)
    return folder / "raw"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker processes from /proc")
@pytest.mark.parametrize("target", ["process group (Ctrl-C in a terminal)", "main process (kill -INT)"])
def test_sigint_during_a_two_worker_prep_stops_the_workers_and_leaves_no_file(many_ntu_files, tmp_path, target):
    out = tmp_path / "out.h5"
    partial = out.with_name(out.name + ".partial")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT_DIR)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "data_prep.cli",
            "ntu120",
            "--raw",
            str(many_ntu_files),
            "--out",
            str(out),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and len(child_pids(proc.pid)) >= 2):  # the store is being written
            assert proc.poll() is None and time.monotonic() < deadline, "prep ended before it could be interrupted"
            time.sleep(0.05)
        workers = child_pids(proc.pid)
        time.sleep(0.3)
        if target.startswith("process group"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == [
        "hiclr-prep: interrupted (Ctrl-C); no half-written file is left under its final name"
    ]
    assert not out.exists() and not partial.exists()
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in workers), "a worker process outlived the interrupted prep"
