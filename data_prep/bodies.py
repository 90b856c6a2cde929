"""Body selection: which recorded bodies become the two person slots `M = 2` of a sample.

`file-order` is the reference's rule (the first two bodies listed in each frame). `motion` is
CTR-GCN's `get_raw_skes_data.py` + `get_raw_denoised_data.py` (from SGN), quirks included: frames
listing no body are dropped before the sequence is formed; a body's records are laid end to end
from its first frame; bodies seen in 11 frames or fewer and bodies whose frames are mostly wider
than tall are dropped; the rest are ranked by motion and placed greedily into two actors, where
two intervals that share one frame count as not overlapping and actor 2's interval starts at a
virtual frame 0; in files with several body IDs, frames left all zero are dropped at the end.
`MOTION_FIXES` names the corrected behaviours, each one switchable on its own.
"""

from __future__ import annotations

import numpy as np

from data_prep.ntu import NUM_JOINTS, SkeletonFile

METHODS = ("file-order", "motion")
MIN_FRAMES = 11  # a body seen in this many frames or fewer is noise
SPREAD_RATIO = 0.8  # a frame is noisy when x-spread > 0.8 * y-spread
NOISY_SHARE = 0.69754  # a body with this share of noisy frames or more is dropped
MOTION_FIXES = {
    "empty-frames": "keep frames without bodies (and frames left empty by denoising) as zero rows; "
    "records then go to the frames they were recorded in",
    "touching": "a body that starts in the frame where another ends overlaps it (goes to the other actor)",
    "third-body": "actor 2's interval starts at its first body, so a later body before it is kept",
    "gaps": "a body's records go to the frames they were recorded in, not end to end from its first frame",
}


def select_bodies(skel: SkeletonFile, method: str = "file-order", fixes=()) -> np.ndarray:
    """Return `(T, V, C, M)` float32 joints (M = 2, absent = zeros).

    `file-order`: T = frames in the file. `motion`: CTR-GCN's denoising; T = frames kept (see the
    module docstring); `fixes` is a subset of `MOTION_FIXES` to correct its quirks.
    """
    unknown = set(fixes) - set(MOTION_FIXES)
    if unknown:
        raise ValueError(f"unknown motion fix {sorted(unknown)[0]!r}; choose from {', '.join(MOTION_FIXES)}")
    if method == "file-order":
        return _file_order(skel)
    if method == "motion":
        return _by_motion(skel, frozenset(fixes))
    raise ValueError(f"unknown body selection {method!r}; choose one of {', '.join(METHODS)}")


def _file_order(skel: SkeletonFile) -> np.ndarray:
    out = np.zeros((skel.num_frames, NUM_JOINTS, 3, 2), dtype=np.float32)
    keep = skel.slot < 2
    out[skel.frame[keep], :, :, skel.slot[keep]] = skel.joints[keep]
    return out


def _motion(joints: np.ndarray) -> np.float32:
    """CTR-GCN's motion of `(F, V, 3)` float32 joints: sum over x, y, z of the variance over frames and joints.

    Computed in float32 exactly as CTR-GCN computes it, so ties and near-ties rank the same way.
    """
    return np.sum(np.var(np.ascontiguousarray(joints, dtype=np.float32).reshape(-1, 3), axis=0))


def _noisy_frames(joints: np.ndarray) -> np.ndarray:
    """(F,) True where a frame's x-spread exceeds 0.8 times its y-spread (float32, as CTR-GCN)."""
    spread = joints.max(axis=1) - joints.min(axis=1)  # (F, 3) float32
    return ~(spread[:, 0] <= np.float32(SPREAD_RATIO) * spread[:, 1])


class _Body:
    """One tracked bodyID: its records, where they go in the sequence, its motion."""

    def __init__(self, records: np.ndarray, positions: np.ndarray, joints: np.ndarray):
        self.records, self.positions, self.joints = records, positions, joints
        self.motion = _motion(joints)

    @property
    def interval(self) -> tuple[int, int]:
        return int(self.positions[0]), int(self.positions[-1])


def _denoise(bodies: list[_Body]) -> list[_Body]:
    """Length, then spread denoising, then the survivors ranked by motion (highest first)."""
    kept = [b for b in bodies if len(b.records) > MIN_FRAMES]
    if not kept:  # CTR-GCN fails on such a file; keep the longest body instead
        return [max(bodies, key=lambda b: len(b.records))]
    if len(kept) == 1:
        return kept
    survivors = list(kept)
    for body in kept:
        if len(survivors) == 1:
            break
        noisy = _noisy_frames(body.joints)
        count = int(noisy.sum())
        if count == 0:
            continue
        if count / float(len(noisy)) >= NOISY_SHARE:
            survivors.remove(body)
        else:
            body.motion = min(body.motion, _motion(body.joints[~noisy]))
    if len(survivors) == 1:
        return survivors
    return sorted(survivors, key=lambda b: b.motion, reverse=True)  # stable: ties keep file order


def _apart(a: tuple[int, int] | None, b: tuple[int, int], touching_overlaps: bool) -> bool:
    """Whether intervals `a` and `b` may share an actor (CTR-GCN: `min(ends) - max(starts) <= 0`)."""
    if a is None:
        return True
    shared = min(a[1], b[1]) - max(a[0], b[0])
    return shared < 0 if touching_overlaps else shared <= 0


def _by_motion(skel: SkeletonFile, fixes: frozenset) -> np.ndarray:
    listed = skel.body_counts > 0
    if skel.body_ids.size == 0:
        return np.zeros((skel.num_frames, NUM_JOINTS, 3, 2), dtype=np.float32)
    if "empty-frames" in fixes:
        frame_of = skel.frame
        num_frames = skel.num_frames
    else:  # frames without bodies are not part of the sequence
        valid_index = np.cumsum(listed) - 1
        frame_of = valid_index[skel.frame]
        num_frames = int(listed.sum())

    # Track bodies by ID, in order of first appearance (as a dict keyed by ID iterates).
    _, first, inverse = np.unique(skel.body_ids, return_index=True, return_inverse=True)
    bodies = []
    for k in np.argsort(first, kind="stable"):
        records = np.flatnonzero(inverse == k)
        frames = frame_of[records]
        positions = frames if fixes & {"gaps", "empty-frames"} else frames[0] + np.arange(records.size)
        bodies.append(_Body(records, positions, skel.joints[records]))
    length = max(num_frames, max(int(b.positions[-1]) + 1 for b in bodies))
    out = np.zeros((length, NUM_JOINTS, 3, 2), dtype=np.float32)
    if len(bodies) == 1:
        out[bodies[0].positions, :, :, 0] = bodies[0].joints
        return out

    ranked = _denoise(bodies)
    touching = "touching" in fixes
    spans: list[tuple[int, int] | None] = [None, None if "third-body" in fixes else (0, 0)]
    for rank, body in enumerate(ranked):
        interval = body.interval
        if rank == 0:
            actor = 0
        elif _apart(spans[0], interval, touching):
            actor = 0
        elif _apart(spans[1], interval, touching):
            actor = 1
        else:
            continue  # overlaps both actors: dropped
        out[body.positions, :, :, actor] = body.joints
        span = spans[actor]
        spans[actor] = interval if span is None else (min(span[0], interval[0]), max(span[1], interval[1]))
    if "empty-frames" in fixes:
        return out
    # CTR-GCN drops the frames whose 150 values (actor-major) sum to zero
    sums = out.transpose(0, 3, 1, 2).reshape(length, -1).sum(axis=1)
    return np.ascontiguousarray(out[sums != 0])
