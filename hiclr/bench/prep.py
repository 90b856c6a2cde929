"""`hiclr bench prep`: parse `.skeleton` files with our vectorised reader vs a per-line Python reader.

The baseline is the reference's reader (ST-GCN / AimCLR `read_skeleton` + `read_xyz`): one dict
per frame, body and joint, then the first two bodies copied into a `(3, T, 25, 2)` array. Ours is
`read_skeleton` + `select_bodies(file-order)`, which yields the same array. Both run on the same
files in the same process, alternately file by file (at most `--baseline-files` of them: the
per-line reader is slow); `--workers N` also times our reader spread over N processes.

Then the whole `hiclr-prep ntu120` runs on all `--files N` in a child process with `--workers N
--stats` (parse, body selection, frame50, HDF5 writing): files/s, MB/s, CPU time per file, peak
memory of every process, and a projection to the 114,480 files of NTU120. `--files` above
`--distinct` are hard links to the distinct generated files under further sample names (their
content repeats; disk and page cache are spared, the per-file work is the same).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from data_prep.bodies import select_bodies
from data_prep.ntu import read_skeleton, write_skeleton

BODY_KEYS = [
    "bodyID",
    "clipedEdges",
    "handLeftConfidence",
    "handLeftState",
    "handRightConfidence",
    "handRightState",
    "isResticted",
    "leanX",
    "leanY",
    "trackingState",
]
JOINT_KEYS = [
    "x",
    "y",
    "z",
    "depthX",
    "depthY",
    "colorX",
    "colorY",
    "orientationW",
    "orientationX",
    "orientationY",
    "orientationZ",
    "trackingState",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=40, help="files to generate (default 40)")
    parser.add_argument("--workers", type=int, default=1, help="processes for our reader (default 1)")
    parser.add_argument(
        "--raw", type=Path, default=None, help="folder of real .skeleton files to time instead of generated ones"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed passes, best is kept (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated files")
    parser.add_argument(
        "--distinct",
        type=int,
        default=200,
        help="distinct generated files; more --files are hard links to them (default 200)",
    )
    parser.add_argument("--baseline-files", type=int, default=100, help="files timed with both readers (default 100)")
    parser.add_argument("--no-prep", action="store_true", help="skip the full hiclr-prep run")
    parser.epilog = (
        "examples:\n  hiclr bench prep --json\n"
        "  hiclr bench prep --files 20000 --workers 2 --json\n"
        "  hiclr bench prep --raw nturgb+d_skeletons --files 200 --workers 4"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


# ------------------------------------------------------------------------------ baseline reader


def reference_read_skeleton(path: str) -> dict:
    """The reference's parser: one dict per frame, per body and per joint."""
    with open(path) as f:
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


NTU120_FILES = 114_480
_RADIX = (("action", 120), ("setup", 32), ("performer", 106), ("camera", 3), ("replication", 2))
_STRIDE = 1_000_003  # a prime that divides none of the radices: i -> i * stride is a bijection


def ntu120_names(count: int) -> list[str]:
    """`count` distinct NTU120 sample names spread over every action, setup, performer and camera."""
    total = 1
    for _, size in _RADIX:
        total *= size
    if count > total:
        raise ValueError(f"at most {total} distinct NTU120 names exist")
    names = []
    for i in range(count):
        j, fields = (i * _STRIDE) % total, {}
        for key, size in _RADIX:
            j, fields[key] = divmod(j, size)
        names.append(
            f"S{fields['setup'] + 1:03d}C{fields['camera'] + 1:03d}P{fields['performer'] + 1:03d}"
            f"R{fields['replication'] + 1:03d}A{fields['action'] + 1:03d}"
        )
    return names


def linked_files(folder: Path, count: int, distinct: int, seed: int = 0) -> list[Path]:
    """`count` files under NTU120 names in `folder`: `distinct` generated ones, the rest hard links."""
    sources = generate_files(folder / "distinct", min(count, max(1, distinct)), seed)
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(ntu120_names(count)):
        path = raw / f"{name}.skeleton"
        os.link(sources[i % len(sources)], path)
        paths.append(path)
    return paths


def run_prep(raw: Path, out: Path, workers: int) -> dict:
    """`hiclr-prep ntu120 --raw RAW --workers N --stats` in a child process (one thread per process)."""
    stats = out.with_suffix(".stats.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "data_prep.cli",
        "ntu120",
        "--raw",
        str(raw),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--skip-bad",
        "--stats",
        str(stats),
    ]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"hiclr-prep ntu120 failed with status {done.returncode}")
    result = json.loads(stats.read_text())
    result["store_mb"] = out.stat().st_size / 1e6
    return result


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
                from hiclr.common.errors import UserError

                raise UserError(f"{args.raw}: no .skeleton files found; give --raw a folder of NTU .skeleton files")
            raw = Path(args.raw)
            if len(paths) < len(sorted(raw.glob("*.skeleton"))):  # prep the chosen files only
                raw = Path(tmp) / "raw"
                raw.mkdir()
                for p in paths:
                    os.symlink(p.resolve(), raw / p.name)
        else:
            paths = linked_files(Path(tmp), args.files, args.distinct, args.seed)
            raw = paths[0].parent
        items = [str(p) for p in paths]
        timed = items[: max(1, min(len(items), args.baseline_files))]
        megabytes = sum(os.path.getsize(p) for p in timed) / 1e6

        for a, b in zip(map(reference_read_xyz, timed[:3]), map(ours_read_xyz, timed[:3])):
            if not np.array_equal(a, b):
                raise RuntimeError("the two readers disagree; the benchmark would compare different work")

        baseline_s, ours_s = _interleaved_times(timed, args.repeat)
        result = {
            "files": len(items),
            "timed_files": len(timed),
            "megabytes": round(megabytes, 3),
            "baseline_samples_per_s": len(timed) / baseline_s,
            "samples_per_s": len(timed) / ours_s,
            "speedup": baseline_s / ours_s,
            "baseline_files_per_s": len(timed) / baseline_s,
            "files_per_s": len(timed) / ours_s,
            "baseline_mb_per_s": megabytes / baseline_s,
            "mb_per_s": megabytes / ours_s,
            "workers": args.workers,
        }
        if args.workers > 1:
            with multiprocessing.get_context("fork").Pool(args.workers) as pool:
                pool.map(ours_read_xyz, timed[: args.workers])  # warm the workers
                parallel_s = _best_time(lambda: pool.map(ours_read_xyz, timed, chunksize=4), args.repeat)
            result["parallel_samples_per_s"] = len(timed) / parallel_s
            result["parallel_mb_per_s"] = megabytes / parallel_s
            result["parallel_speedup"] = baseline_s / parallel_s
        if not args.no_prep:
            prep = run_prep(raw, Path(tmp) / "bench.h5", args.workers)
            per_core_files = 1000.0 / prep["cpu_ms_per_file"]
            result.update(
                {
                    "prep_files": prep["files"],
                    "prep_wall_s": prep["wall_s"],
                    "prep_files_per_s": prep["files_per_s"],
                    "prep_mb_per_s": prep["mb_per_s"],
                    "prep_cpu_ms_per_file": prep["cpu_ms_per_file"],
                    "prep_files_per_core_s": per_core_files,
                    "prep_mb_per_core_s": prep["input_mb"] / prep["files"] * per_core_files,
                    "prep_speedup_per_core_vs_baseline_parse": per_core_files / result["baseline_files_per_s"],
                    "prep_peak_tree_pss_mib": prep["peak_tree_pss_mib"],
                    "prep_peak_tree_rss_mib": prep["peak_tree_rss_mib"],
                    "prep_peak_main_rss_mib": prep["peak_main_rss_mib"],
                    "prep_store_mb": prep["store_mb"],
                    "projected_ntu120_wall_h": NTU120_FILES * prep["wall_s"] / prep["files"] / 3600,
                    "projected_ntu120_cpu_h": NTU120_FILES * prep["cpu_ms_per_file"] / 3.6e6,
                    "projected_ntu120_store_gb": NTU120_FILES * prep["store_mb"] / prep["files"] / 1000,
                }
            )
        return result
