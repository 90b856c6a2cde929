"""The frame50 preset reproduces the reference's preprocessing of five real NTU files."""

import numpy as np
import pytest
import torch

from data_prep.bodies import select_bodies
from data_prep.ntu import read_skeleton
from data_prep.presets import frame50, resize_linear, valid_length
from tests.helpers.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "ntu"
EXPECTED = np.load(FIXTURES / "expected_frame50.npz")


@pytest.mark.parametrize("index", range(len(EXPECTED["names"])))
def test_frame50_matches_reference_output(index):
    name = str(EXPECTED["names"][index])
    bodies = select_bodies(read_skeleton(FIXTURES / "skeletons" / f"{name}.skeleton"), "file-order")
    out = frame50(bodies)
    assert out.shape == (3, 50, 25, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, EXPECTED["frame50"][index], rtol=0, atol=1e-4)


@pytest.mark.parametrize("index", range(len(EXPECTED["names"])))
def test_file_order_bodies_match_reference_raw300(index):
    name = str(EXPECTED["names"][index])
    bodies = select_bodies(read_skeleton(FIXTURES / "skeletons" / f"{name}.skeleton"), "file-order")
    raw300 = np.zeros((3, 300, 25, 2), dtype=np.float32)
    raw300[:, : bodies.shape[0]] = bodies.transpose(2, 0, 1, 3)
    np.testing.assert_array_equal(raw300, EXPECTED["raw300"][index])
    assert int(EXPECTED["label"][index]) == int(name[-3:]) - 1


def test_resize_matches_torch_linear_interpolation():
    x = np.random.default_rng(0).normal(size=(37, 25, 3, 2))
    ours = resize_linear(x, 50)
    flat = torch.from_numpy(x.reshape(37, -1).T[None])  # (1, features, T)
    theirs = torch.nn.functional.interpolate(flat, size=50, mode="linear", align_corners=False)
    np.testing.assert_allclose(ours.reshape(50, -1), theirs[0].T.numpy(), atol=1e-12)


def test_valid_length_counts_frames_with_joint_one_of_body_zero():
    bodies = np.zeros((10, 25, 3, 2), dtype=np.float32)
    bodies[[0, 1, 2, 5], 0, 0, 0] = 1.0
    bodies[7, 3, :, 1] = 1.0  # body 1 alone does not count
    assert valid_length(bodies) == 4


def test_absent_second_body_stays_zero_and_empty_clip_is_zero():
    bodies = np.random.default_rng(0).normal(size=(40, 25, 3, 2)).astype(np.float32)
    bodies[..., 1] = 0
    out = frame50(bodies)
    assert not out[..., 1].any() and np.isfinite(out).all()
    assert not frame50(np.zeros((30, 25, 3, 2), np.float32)).any()


def test_view_alignment_puts_shoulders_on_the_x_axis():
    rng = np.random.default_rng(1)
    bodies = rng.normal(size=(60, 25, 3, 2)).astype(np.float32)
    bodies[:, 0, :, 0] += 5  # all frames valid
    angle = rng.uniform(0.1, 1.2, size=(60, 2))  # shoulders turned towards +z
    bodies[:, 8] = bodies[:, 4] + np.stack([np.cos(angle), np.full_like(angle, 0.2), np.sin(angle)], axis=1)
    out = frame50(bodies)
    shoulders = out[:, :, 8, :] - out[:, :, 4, :]  # (C, 50, M)
    np.testing.assert_allclose(shoulders[2], 0, atol=1e-3)
    assert (shoulders[0] > 0.9).all()


def release_frame50(bodies: np.ndarray) -> np.ndarray:
    """An independent statement of the release's preprocessing, loop by loop: (T, V, C, M) ->
    (C, 50, V, M). Valid length from joint 1 of body 0; each body of each frame centred on its
    joint 21; linear resize with half-pixel centres; each body of each frame turned about y by the
    angle of its shoulders (joints 5 -> 9), the sign of every angle of a body fixed once, by the sum
    over the 50 frames of that body's shoulder z."""
    T, V, C, M = bodies.shape
    length = sum(1 for t in range(T) if np.abs(bodies[t, 0, :, 0]).sum() != 0)
    x = bodies[:length].astype(np.float64).copy()
    for t in range(length):
        for m in range(M):
            x[t, :, :, m] = x[t, :, :, m] - x[t, 20, :, m]
    out = np.zeros((50, V, C, M))
    for d in range(50):
        s = min(max((d + 0.5) * length / 50 - 0.5, 0.0), length - 1)
        lo = int(np.floor(s))
        hi = min(lo + 1, length - 1)
        out[d] = x[lo] * (1 - (s - lo)) + x[hi] * (s - lo)
    for m in range(M):
        shoulders = [out[d, 8, :, m] - out[d, 4, :, m] for d in range(50)]
        facing_z = sum(u[2] for u in shoulders)
        for d in range(50):
            u = shoulders[d].copy()
            u[1] = 0.0
            theta = np.arccos(u[0] / (np.sqrt(u @ u) + 1e-4))
            if facing_z >= 0:
                theta = -theta
            rot = np.array([[np.cos(theta), 0, -np.sin(theta)], [0, 1, 0], [np.sin(theta), 0, np.cos(theta)]])
            out[d, :, :, m] = out[d, :, :, m] @ rot.T
    return out.transpose(2, 0, 1, 3).astype(np.float32)


def turning_bodies(frames: int, seed: int, z_sign_by_body=(1.0, -1.0), flip_at=None) -> np.ndarray:
    """Two bodies (T, V, C, 2) with every frame valid; body m's shoulders point to z_sign_by_body[m]
    in z, and, from frame `flip_at` on, to the other side (a clip whose facing flips over time)."""
    rng = np.random.default_rng(seed)
    bodies = rng.normal(size=(frames, 25, 3, 2))
    bodies[:, 0, :, 0] += 3.0
    angle = rng.uniform(0.2, 1.2, size=(frames, 2))
    sign = np.tile(np.asarray(z_sign_by_body, dtype=float), (frames, 1))
    if flip_at is not None:
        sign[flip_at:] *= -1
    bodies[:, 8] = bodies[:, 4] + np.stack([np.cos(angle), np.full_like(angle, 0.3), sign * np.sin(angle)], axis=1)
    return bodies.astype(np.float32)


def test_frame50_of_two_persons_facing_opposite_ways_matches_the_release():
    bodies = turning_bodies(64, seed=2, z_sign_by_body=(1.0, -1.0))
    out = frame50(bodies)
    np.testing.assert_allclose(out, release_frame50(bodies), rtol=0, atol=1e-4)
    shoulders = out[:, :, 8, :] - out[:, :, 4, :]  # (C, 50, M): both on the x axis
    np.testing.assert_allclose(shoulders[2], 0, atol=1e-3)


@pytest.mark.parametrize("flip_at", [20, 45])
def test_frame50_decides_the_facing_once_per_body_when_it_flips_over_time(flip_at):
    bodies = turning_bodies(60, seed=3, z_sign_by_body=(1.0, 1.0), flip_at=flip_at)
    bodies[:, :, :, 1] *= 0.5
    out = frame50(bodies)
    np.testing.assert_allclose(out, release_frame50(bodies), rtol=0, atol=1e-4)
    # the rotation's sign is the body's, not the frame's: the frames facing against the body's
    # majority keep their shoulders off the x axis, the others have them on it
    z = np.abs(out[2, :, 8, 0] - out[2, :, 4, 0])
    assert (z < 1e-3).any() and (z > 0.1).any()
