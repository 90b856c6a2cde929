"""A small HDF5 store of the data contract for tests: given clips, labels and performer ids."""

from __future__ import annotations

import numpy as np

from data_prep.store import write_store


def write_tiny_store(
    path,
    x: np.ndarray,
    labels: np.ndarray,
    performer: np.ndarray,
    *,
    test_performer: int,
    num_classes: int,
    parts=("train", "test"),
):
    """Write frame50 clips x (N, 3, 50, 25, 2) as an NTU60 store; sample i is named after
    performer[i] + 1 and labels[i] + 1. xsub: performers below `test_performer` train, that one
    tests; `parts` picks which of the two the file holds."""
    names = np.array([f"S001C001P{p + 1:03d}R{i:03d}A{c + 1:03d}" for i, (p, c) in enumerate(zip(performer, labels))])
    split = {"train": np.flatnonzero(performer < test_performer), "test": np.flatnonzero(performer == test_performer)}
    write_store(
        path,
        dataset="ntu60",
        samples={"name": names, "label": labels.astype(np.int64)},
        bodies=None,
        frame50=x,
        splits={"xsub": {p: split[p] for p in parts}},
        attrs={"num_classes": num_classes},
    )
    return path


def random_clips(n: int = 40, seed: int = 0) -> np.ndarray:
    """n clips (n, 3, 50, 25, 2) of standard normal coordinates, float32."""
    return np.random.default_rng(seed).normal(size=(n, 3, 50, 25, 2)).astype(np.float32)


def write_random_store(path, x: np.ndarray | None = None):
    """`write_tiny_store` of `x` (default `random_clips()`): 4 classes and 5 performers in turn,
    performer 4 the xsub test part."""
    x = random_clips() if x is None else x
    n = len(x)
    return write_tiny_store(path, x, np.arange(n) % 4, np.arange(n) % 5, test_performer=4, num_classes=4)
