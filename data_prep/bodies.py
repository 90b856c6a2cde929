"""Body selection: which recorded bodies become the two person slots `M = 2` of a sample.

`file-order` is the reference's rule (the first two bodies listed in each frame). `motion` is the
CTR-GCN/SGN denoising: bodies are tracked by bodyID, short-lived and noisy (wider than tall)
bodies are dropped, the rest are ranked by motion and placed greedily into two actors.
"""

from __future__ import annotations

import numpy as np

from data_prep.ntu import NUM_JOINTS, SkeletonFile

METHODS = ("file-order", "motion")
MIN_FRAMES = 11            # a body seen in this many frames or fewer is noise
SPREAD_RATIO = 0.8         # a frame is noisy when x-spread > 0.8 * y-spread
NOISY_SHARE = 0.69754      # a body with this share of noisy frames or more is dropped


def select_bodies(skel: SkeletonFile, method: str = "file-order") -> np.ndarray:
    """Return `(T, V, C, M)` float32 joints (T = frames in the file, M = 2, absent = zeros)."""
    if method == "file-order":
        return _file_order(skel)
    if method == "motion":
        return _by_motion(skel)
    raise ValueError(f"unknown body selection {method!r}; choose one of {', '.join(METHODS)}")


def _file_order(skel: SkeletonFile) -> np.ndarray:
    out = np.zeros((skel.num_frames, NUM_JOINTS, 3, 2), dtype=np.float32)
    keep = skel.slot < 2
    out[skel.frame[keep], :, :, skel.slot[keep]] = skel.joints[keep]
    return out


def _motion(joints: np.ndarray) -> float:
    """Sum over x, y, z of the variance over all frames and joints of `(F, V, 3)` joints."""
    return float(np.var(joints.reshape(-1, 3).astype(np.float64), axis=0).sum())


def _by_motion(skel: SkeletonFile) -> np.ndarray:
    out = np.zeros((skel.num_frames, NUM_JOINTS, 3, 2), dtype=np.float32)
    if skel.body_ids.size == 0:
        return out
    # Track bodies by ID, in order of first appearance (as a dict keyed by ID would iterate).
    ids, first, inverse = np.unique(skel.body_ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    tracks = [np.flatnonzero(inverse == k) for k in order]          # body-record indices per body
    bodies = [{"records": r, "motion": _motion(skel.joints[r])} for r in tracks]

    kept = [b for b in bodies if len(b["records"]) > MIN_FRAMES]
    if not kept:                                                     # everything is short: keep the longest
        kept = [max(bodies, key=lambda b: len(b["records"]))]
    if len(kept) > 1:
        survivors = list(kept)
        for body in kept:
            if len(survivors) == 1:
                break
            joints = skel.joints[body["records"]].astype(np.float64)
            spread = joints.max(axis=1) - joints.min(axis=1)        # (F, 3)
            valid = spread[:, 0] <= SPREAD_RATIO * spread[:, 1]
            noisy = int((~valid).sum())
            if noisy == 0:
                continue
            if noisy / len(valid) >= NOISY_SHARE:
                survivors = [b for b in survivors if b is not body]
            else:
                body["motion"] = min(body["motion"], _motion(joints[valid]))
        kept = sorted(survivors, key=lambda b: b["motion"], reverse=True)

    ranges: list[tuple[int, int] | None] = [None, None]
    for body in kept:
        frames = skel.frame[body["records"]]
        start, end = int(frames[0]), int(frames[-1])
        for actor in (0, 1):
            span = ranges[actor]
            if span is None or end < span[0] or start > span[1]:
                out[frames, :, :, actor] = skel.joints[body["records"]]
                ranges[actor] = (start, end) if span is None else (min(start, span[0]), max(end, span[1]))
                break
    return out
