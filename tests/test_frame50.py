"""The frame50 preset reproduces the reference's preprocessing of five real NTU files."""

from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.bodies import select_bodies
from data_prep.ntu import read_skeleton
from data_prep.presets import frame50, resize_linear, valid_length

FIXTURES = Path(__file__).parent / "fixtures" / "ntu"
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
    flat = torch.from_numpy(x.reshape(37, -1).T[None])                      # (1, features, T)
    theirs = torch.nn.functional.interpolate(flat, size=50, mode="linear", align_corners=False)
    np.testing.assert_allclose(ours.reshape(50, -1), theirs[0].T.numpy(), atol=1e-12)


def test_valid_length_counts_frames_with_joint_one_of_body_zero():
    bodies = np.zeros((10, 25, 3, 2), dtype=np.float32)
    bodies[[0, 1, 2, 5], 0, 0, 0] = 1.0
    bodies[7, 3, :, 1] = 1.0                     # body 1 alone does not count
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
    bodies[:, 0, :, 0] += 5                                       # all frames valid
    angle = rng.uniform(0.1, 1.2, size=(60, 2))                   # shoulders turned towards +z
    bodies[:, 8] = bodies[:, 4] + np.stack([np.cos(angle), np.full_like(angle, 0.2), np.sin(angle)], axis=1)
    out = frame50(bodies)
    shoulders = out[:, :, 8, :] - out[:, :, 4, :]                 # (C, 50, M)
    np.testing.assert_allclose(shoulders[2], 0, atol=1e-3)
    assert (shoulders[0] > 0.9).all()
