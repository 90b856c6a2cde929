"""Normalisation presets: `frame50`, the view the reference trains on."""

from __future__ import annotations

import numpy as np

FRAMES = 50
CENTRE_JOINT = 20  # joint 21 (1-based), spine-shoulder
LEFT_SHOULDER = 4  # joint 5
RIGHT_SHOULDER = 8  # joint 9

FRAME50_PARAMS = {
    "name": "frame50",
    "frames": FRAMES,
    "centre_joint": CENTRE_JOINT + 1,
    "resize": "linear, half-pixel centres",
    "valid_length": "joint 1 of body 0 non-zero",
    "view_alignment": "per body per frame, shoulders 5-9 about y",
}


def valid_length(bodies: np.ndarray) -> int:
    """Frames whose joint 1 of body 0 is not all zero (`bodies` is `(T, V, C, M)`)."""
    return int((np.abs(bodies[:, 0, :, 0]).sum(axis=-1) != 0).sum())


def resize_linear(x: np.ndarray, frames: int) -> np.ndarray:
    """Resample axis 0 of `x` to `frames` like `interpolate(mode='linear', align_corners=False)`."""
    length = x.shape[0]
    src = (np.arange(frames, dtype=np.float64) + 0.5) * length / frames - 0.5
    src = np.clip(src, 0, length - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, length - 1)
    w = (src - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return x[lo] * (1 - w) + x[hi] * w


def align_view(x: np.ndarray) -> np.ndarray:
    """Rotate each body of `(T, V, C, M)` about y so that its shoulders lie along x, frame by frame."""
    u = x[:, RIGHT_SHOULDER] - x[:, LEFT_SHOULDER]  # (T, C, M)
    u[:, 1] = 0
    theta = np.arccos(u[:, 0] / (np.linalg.norm(u, axis=1) + 1e-4))  # (T, M)
    theta = np.where(u[:, 2].sum(axis=0) >= 0, -theta, theta)
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]  # (T, 1, M)
    px, py, pz = x[:, :, 0], x[:, :, 1], x[:, :, 2]  # (T, V, M)
    return np.stack([c * px - s * pz, py, s * px + c * pz], axis=2)


def frame50(bodies: np.ndarray) -> np.ndarray:
    """`(T, V, C, M)` selected bodies -> `(C, 50, V, M)` float32: centred, resized, view-aligned."""
    bodies = np.asarray(bodies, dtype=np.float64)
    length = valid_length(bodies)
    v, c, m = bodies.shape[1:]
    if length == 0:
        return np.zeros((c, FRAMES, v, m), dtype=np.float32)
    x = bodies[:length] - bodies[:length, CENTRE_JOINT : CENTRE_JOINT + 1]
    x = align_view(resize_linear(x, FRAMES))
    return np.ascontiguousarray(x.transpose(2, 0, 1, 3), dtype=np.float32)
