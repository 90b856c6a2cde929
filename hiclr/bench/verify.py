"""`hiclr bench verify`: what verifying a store costs against the read every run does anyway.

Writes a store of about --size-gb of random frame50 clips (N, 3, 50, 25, 2) under --dir, then, in
this order: reads the xsub training split as a run does (`load_split`, no verification: the
baseline), checks the stored sha256 of every dataset a run reads (view, labels, names, both split
indices: what `verify_store_of` does before a protocol starts, first call of the process), the
same check again (cached by the file's identity: what the next run of a sweep pays), the sha256 of
the file's bytes (the store entry of the reports' provenance), and the peak of memory the hashing
allocates (tracemalloc, a second uncached pass). The store is deleted at the end unless --keep.
The page cache is left as it is (warm: the file was just written); a cold read adds the disk's
time to the baseline and to the check alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-gb", type=float, default=2.0, help="size of frame50 in GB (default 2)")
    parser.add_argument("--dir", default=None, help="folder of the store (default: the system's temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the store (printed as `store`)")
    parser.add_argument("--seed", type=int, default=0)


def write_bench_store(path: Path, size_gb: float, seed: int = 0) -> int:
    """A store whose frame50 holds about `size_gb` GB, written block by block (bounded memory);
    xsub: every fifth clip tests. Returns the number of clips."""
    from data_prep.store import FRAME50_SHAPE, StoreWriter

    per_clip = int(np.prod(FRAME50_SHAPE)) * 4
    n = max(10, int(size_gb * 1e9) // per_clip)
    rng = np.random.default_rng(seed)
    block = 512
    with StoreWriter(path, raw=False, block=block) as writer:
        for lo in range(0, n, block):
            clips = rng.random((min(block, n - lo),) + FRAME50_SHAPE, dtype=np.float32)
            for k, clip in enumerate(clips):
                writer.append(f"clip{lo + k:07d}", None, clip)
        index = np.arange(n, dtype=np.int64)
        writer.finish(
            dataset="bench",
            samples={"name": np.array(writer.names, dtype=object), "label": index % 60},
            splits={"xsub": {"train": index[index % 5 != 0], "test": index[index % 5 == 0]}},
            attrs={"num_classes": 60},
        )
    return n


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(args: argparse.Namespace) -> dict:
    import hiclr.data as D
    from hiclr.config import load_config

    folder = Path(args.dir or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"hiclr_bench_verify_{os.getpid()}.h5"
    try:
        write_s, n = _timed(lambda: write_bench_store(path, args.size_gb, args.seed))
        size = path.stat().st_size
        cfg = load_config(None, [f"data.path={path}", "data.protocol=xsub"])

        read_s, split = _timed(lambda: D.load_split(path, "xsub", "train", verify=False))
        del split
        D._VERIFIED.clear()
        verify_s, _ = _timed(lambda: D.verify_store_of(cfg))
        cached_s, _ = _timed(lambda: D.verify_store_of(cfg))
        D._SHA256.clear()
        sha_s, _ = _timed(lambda: D.store_sha256(path))
        D._VERIFIED.clear()
        tracemalloc.start()
        D.verify_store_of(cfg)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        if not args.keep:
            for leftover in (path, path.with_name(path.name + ".partial")):
                leftover.unlink(missing_ok=True)
    gb = size / 1e9
    return {
        "store": str(path) if args.keep else f"{path} (deleted)",
        "clips": n,
        "file_gb": gb,
        "write_s": write_s,
        "read_train_split_s": read_s,
        "verify_first_s": verify_s,
        "verify_gb_per_s": gb / verify_s if verify_s else float("inf"),
        "verify_cached_s": cached_s,
        "file_sha256_s": sha_s,
        "verify_over_read": verify_s / read_s if read_s else float("inf"),
        "verify_peak_mb": peak / 1e6,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
