"""`hiclr bench prep`: parse `.skeleton` files with our vectorised reader vs a per-line Python reader.

The baseline is the reference's reader (ST-GCN / AimCLR `read_skeleton` + `read_xyz`): one dict
per frame, body and joint, then the first two bodies copied into a `(3, T, 25, 2)` array. Ours is
`read_skeleton` + `select_bodies(file-order)`, which yields the same array. Both run on the same
files in the same process; `--workers N` also times our path spread over N processes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from data_prep.bodies import select_bodies
from data_prep.ntu import read_skeleton, write_skeleton

BODY_KEYS = ["bodyID", "clipedEdges", "handLeftConfidence", "handLeftState", "handRightConfidence",
             "handRightState", "isResticted", "leanX", "leanY", "trackingState"]
JOINT_KEYS = ["x", "y", "z", "depthX", "depthY", "colorX", "colorY", "orientationW", "orientationX",
              "orientationY", "orientationZ", "trackingState"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=40, help="files to generate (default 40)")
    parser.add_argument("--workers", type=int, default=1, help="processes for our reader (default 1)")
    parser.add_argument("--raw", type=Path, default=None,
                        help="folder of real .skeleton files to time instead of generated ones")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes, best is kept (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated files")
    parser.epilog = "examples:\n  hiclr bench prep --json\n  hiclr bench prep --raw nturgb+d_skeletons --files 200 --workers 4"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


# ------------------------------------------------------------------------------ baseline reader

def reference_read_skeleton(path: str) -> dict:
    """The reference's parser: one dict per frame, per body and per joint."""
    with open(path, "r") as f:
        sequence = {"numFrame": int(f.readline()), "frameInfo": []}
        for _ in range(sequence["numFrame"]):
            frame = {"numBody": int(f.readline()), "bodyInfo": []}
            for _ in range(frame["numBody"]):
                body = {k: float(v) for k, v in zip(BODY_KEYS, f.readline().split())}
                body["numJoint"] = int(f.readline())
                body["jointInfo"] = []
                for _ in range(body["numJoint"]):
                    joint = {k: float(v) for k, v in zip(JOINT_KEYS, f.readline().split())}
                    body["jointInfo"].append(joint)
                frame["bodyInfo"].append(body)
            sequence["frameInfo"].append(frame)
    return sequence


def reference_read_xyz(path: str, max_body: int = 2, num_joint: int = 25) -> np.ndarray:
    """`(3, T, 25, 2)` float32: the first two bodies of each frame, as the reference copies them."""
    sequence = reference_read_skeleton(path)
    data = np.zeros((3, sequence["numFrame"], num_joint, max_body), dtype=np.float32)
    for n, frame in enumerate(sequence["frameInfo"]):
        for m, body in enumerate(frame["bodyInfo"]):
            for j, v in enumerate(body["jointInfo"]):
                if m < max_body and j < num_joint:
                    data[:, n, j, m] = [v["x"], v["y"], v["z"]]
    return data


def ours_read_xyz(path: str) -> np.ndarray:
    return select_bodies(read_skeleton(path), "file-order").transpose(2, 0, 1, 3)


# ------------------------------------------------------------------------------ data and timing

def generate_files(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` files of 1-2 moving bodies and 50-300 frames, in the real grammar."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        frames = int(rng.integers(50, 301))
        bodies = int(rng.integers(1, 3))
        base = rng.normal(0, 0.3, size=(bodies, 1, 25, 3)) + np.array([0.0, 0.2, 3.2])
        walk = np.cumsum(rng.normal(0, 0.01, size=(bodies, frames, 25, 3)), axis=1)
        joints = base + walk
        ids = 72057594037927936 + rng.integers(0, 10_000, size=bodies)
        path = folder / f"S001C001P{1 + i % 40:03d}R001A{1 + i % 60:03d}.skeleton"
        if path.exists():
            path = folder / f"S002C{1 + i % 3:03d}P{1 + i % 40:03d}R{1 + i // 120:03d}A{1 + i % 60:03d}.skeleton"
        write_skeleton(path, [[(int(ids[b]), joints[b, t]) for b in range(bodies)] for t in range(frames)])
        paths.append(path)
    return paths


def _best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _interleaved_times(items: list[str], repeat: int) -> tuple[float, float]:
    """Total seconds of (baseline, ours) over `items`, file by file alternately, best pass of each.

    Alternating per file keeps both readers under the same machine load (shared CPUs drift a lot).
    """
    best_base, best_ours = float("inf"), float("inf")
    for _ in range(max(1, repeat)):
        base = ours = 0.0
        for path in items:
            t0 = time.perf_counter()
            reference_read_xyz(path)
            t1 = time.perf_counter()
            ours_read_xyz(path)
            t2 = time.perf_counter()
            base, ours = base + (t1 - t0), ours + (t2 - t1)
        best_base, best_ours = min(best_base, base), min(best_ours, ours)
    return best_base, best_ours


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="hiclr_bench_prep_") as tmp:
        if args.raw is not None:
            paths = sorted(Path(args.raw).glob("*.skeleton"))[: args.files]
            if not paths:
                from data_prep.errors import UserError
                raise UserError(f"{args.raw}: no .skeleton files found; give --raw a folder of NTU .skeleton files")
        else:
            paths = generate_files(Path(tmp), args.files, args.seed)
        items = [str(p) for p in paths]
        megabytes = sum(os.path.getsize(p) for p in items) / 1e6

        for a, b in zip(map(reference_read_xyz, items[:3]), map(ours_read_xyz, items[:3])):
            if not np.array_equal(a, b):
                raise RuntimeError("the two readers disagree; the benchmark would compare different work")

        baseline_s, ours_s = _interleaved_times(items, args.repeat)
        result = {
            "files": len(items),
            "megabytes": round(megabytes, 3),
            "baseline_samples_per_s": len(items) / baseline_s,
            "samples_per_s": len(items) / ours_s,
            "speedup": baseline_s / ours_s,
            "baseline_files_per_s": len(items) / baseline_s,
            "files_per_s": len(items) / ours_s,
            "baseline_mb_per_s": megabytes / baseline_s,
            "mb_per_s": megabytes / ours_s,
            "workers": args.workers,
        }
        if args.workers > 1:
            with multiprocessing.get_context("fork").Pool(args.workers) as pool:
                pool.map(ours_read_xyz, items[: args.workers])           # warm the workers
                parallel_s = _best_time(lambda: pool.map(ours_read_xyz, items, chunksize=4), args.repeat)
            result["parallel_samples_per_s"] = len(items) / parallel_s
            result["parallel_mb_per_s"] = megabytes / parallel_s
            result["parallel_speedup"] = baseline_s / parallel_s
        return result
