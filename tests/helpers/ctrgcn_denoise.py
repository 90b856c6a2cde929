"""CTR-GCN's raw-skeleton reading and denoising, transcribed step by step for the tests.

A plain, per-line re-statement of `get_raw_skes_data.py` (`get_raw_bodies_data`) and
`get_raw_denoised_data.py` (length and spread denoising, motion ranking, two-actor placement,
removal of all-zero frames) of the CTR-GCN release, kept close to the original's control flow so
that `data_prep.bodies.select_bodies(..., "motion")` can be checked against it. Returns CTR-GCN's
`(T, 150)` rows (one actor's 75 padded with zeros, as `seq_transformation.py` pads them): actor 1's 25 x 3 values, then actor 2's.
"""

from __future__ import annotations

import numpy as np


def read_bodies(path) -> dict:
    """`get_raw_bodies_data`: bodies keyed by bodyID string, frames without bodies dropped."""
    with open(path) as f:
        lines = f.readlines()
    num_frames = int(lines[0].strip("\r\n"))
    bodies: dict[str, dict] = {}
    valid, line, dropped = -1, 1, 0
    for _ in range(num_frames):
        count = int(lines[line].strip("\r\n"))
        line += 1
        if count == 0:
            dropped += 1
            continue
        valid += 1
        joints = np.zeros((count, 25, 3), dtype=np.float32)
        for b in range(count):
            body_id = lines[line].strip("\r\n").split()[0]
            line += 1
            num_joints = int(lines[line].strip("\r\n"))
            line += 1
            for j in range(num_joints):
                joints[b, j, :] = np.array(lines[line].strip("\r\n").split()[:3], dtype=np.float32)
                line += 1
            if body_id not in bodies:
                bodies[body_id] = {"joints": joints[b], "interval": [valid]}
            else:
                body = bodies[body_id]
                body["joints"] = np.vstack((body["joints"], joints[b]))
                body["interval"].append(body["interval"][-1] + 1)
    if len(bodies) > 1:
        for body in bodies.values():
            body["motion"] = np.sum(np.var(body["joints"], axis=0))
    return {"data": bodies, "num_frames": num_frames - dropped}


def _valid_by_spread(points: np.ndarray) -> list[int]:
    return [
        i
        for i in range(points.shape[0])
        if points[i, :, 0].max() - points[i, :, 0].min() <= 0.8 * (points[i, :, 1].max() - points[i, :, 1].min())
    ]


def _denoise(bodies: dict) -> list:
    for body_id in list(bodies):  # by length
        if len(bodies[body_id]["interval"]) <= 11:
            del bodies[body_id]
    if len(bodies) == 1:
        return list(bodies.items())
    for body_id, body in list(bodies.items()):  # by spread
        if len(bodies) == 1:
            break
        valid = _valid_by_spread(body["joints"].reshape(-1, 25, 3))
        total = len(body["interval"])
        noise = total - len(valid)
        if noise == 0:
            continue
        if noise / float(total) >= 0.69754:
            del bodies[body_id]
        else:
            joints = body["joints"].reshape(-1, 25, 3)[valid]
            body["motion"] = min(body["motion"], np.sum(np.var(joints.reshape(-1, 3), axis=0)))
    if len(bodies) == 1:
        return list(bodies.items())
    ranked = sorted(((k, b["motion"]) for k, b in bodies.items()), key=lambda x: x[1], reverse=True)
    return [(k, bodies[k]) for k, _ in ranked]


def _one_actor(body: dict, num_frames: int) -> np.ndarray:
    joints = np.zeros((num_frames, 75), dtype=np.float32)
    start, end = body["interval"][0], body["interval"][-1]
    joints[start : end + 1] = body["joints"].reshape(-1, 75)
    return joints


def denoised_joints(path) -> np.ndarray:
    """`(T, 150)` float32: CTR-GCN's `raw_denoised_joints` entry for one `.skeleton` file."""
    raw = read_bodies(path)
    num_frames = raw["num_frames"]
    if len(raw["data"]) == 1:
        return _two_columns(_one_actor(next(iter(raw["data"].values())), num_frames))
    ranked = _denoise(dict(raw["data"]))
    if len(ranked) == 1:
        joints = _one_actor(ranked[0][1], num_frames)
    else:
        joints = np.zeros((num_frames, 150), dtype=np.float32)
        _, actor1 = ranked.pop(0)
        start1, end1 = actor1["interval"][0], actor1["interval"][-1]
        joints[start1 : end1 + 1, :75] = actor1["joints"].reshape(-1, 75)
        start2, end2 = 0, 0
        for _, actor in ranked:
            start, end = actor["interval"][0], actor["interval"][-1]
            if min(end1, end) - max(start1, start) <= 0:
                joints[start : end + 1, :75] = actor["joints"].reshape(-1, 75)
                start1, end1 = min(start, start1), max(end, end1)
            elif min(end2, end) - max(start2, start) <= 0:
                joints[start : end + 1, 75:] = actor["joints"].reshape(-1, 75)
                start2, end2 = min(start, start2), max(end, end2)
    return _two_columns(joints[joints.sum(axis=1) != 0])


def _two_columns(joints: np.ndarray) -> np.ndarray:
    """One actor's 75 columns padded to 150 with zeros (as `seq_transformation.py` pads them)."""
    if joints.shape[1] == 150:
        return joints
    return np.concatenate([joints, np.zeros_like(joints)], axis=1)


def as_rows(bodies: np.ndarray) -> np.ndarray:
    """Our `(T, V, C, M)` selection as CTR-GCN's `(T, 150)` rows."""
    return bodies.transpose(0, 3, 1, 2).reshape(bodies.shape[0], -1)
