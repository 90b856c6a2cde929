"""Evaluation protocols of NTU RGB+D 60 and 120: which samples train and which test.

NTU60 xsub: training subjects listed below; xview: training cameras 2 and 3. NTU120 xsub: the
NTU60 subjects plus more; xset: even setup numbers train.
"""

from __future__ import annotations

import numpy as np

NTU60_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS + (
    45,
    46,
    47,
    49,
    50,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    70,
    74,
    78,
    80,
    81,
    82,
    83,
    84,
    85,
    86,
    89,
    91,
    92,
    93,
    94,
    95,
    97,
    98,
    100,
    103,
)
NTU60_TRAIN_CAMERAS = (2, 3)
NTU60_MAX_SETUP = 17

PROTOCOLS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}
NUM_CLASSES = {"ntu60": 60, "ntu120": 120}


def train_mask(meta: dict[str, np.ndarray], dataset: str, protocol: str) -> np.ndarray:
    """Boolean (N,) 'is a training sample' from the name metadata columns."""
    if dataset not in PROTOCOLS or protocol not in PROTOCOLS[dataset]:
        raise ValueError(f"unknown protocol {dataset}/{protocol}")
    if protocol == "xsub":
        subjects = NTU60_TRAIN_SUBJECTS if dataset == "ntu60" else NTU120_TRAIN_SUBJECTS
        return np.isin(np.asarray(meta["performer"]), subjects)
    if protocol == "xview":
        return np.isin(np.asarray(meta["camera"]), NTU60_TRAIN_CAMERAS)
    return np.asarray(meta["setup"]) % 2 == 0  # xset


def ntu_splits(meta: dict[str, np.ndarray], dataset: str = "ntu60") -> dict[str, dict[str, np.ndarray]]:
    """`{protocol: {"train": idx, "test": idx}}`, sorted int64 indices into the sample rows."""
    splits = {}
    for protocol in PROTOCOLS[dataset]:
        mask = train_mask(meta, dataset, protocol)
        splits[protocol] = {
            "train": np.flatnonzero(mask).astype(np.int64),
            "test": np.flatnonzero(~mask).astype(np.int64),
        }
    return splits
