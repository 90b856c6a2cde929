"""Body selection: the reference's file order, and CTR-GCN/SGN-style denoising ranked by motion."""

import numpy as np
import pytest

from data_prep.bodies import select_bodies
from data_prep.ntu import read_skeleton, write_skeleton

ID = 72057594037927936


def close(actual, expected):
    """Equal up to the 7 significant digits a .skeleton file stores."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6)


def standing(rng, amplitude, t, wide=False):
    """A tall body (y-spread >> x-spread) swaying by `amplitude`; `wide` lies it on its side."""
    base = np.stack([rng.uniform(-0.15, 0.15, 25), np.linspace(-0.8, 0.8, 25), np.full(25, 3.0)], axis=1)
    if wide:
        base = base[:, [1, 0, 2]]
    return base + amplitude * np.sin(0.3 * t + np.arange(25)[:, None] * 0.1)


def build(tmp_path, tracks, frames):
    """tracks: list of (body_id, first, last, amplitude, wide); bodies listed in `tracks` order."""
    rng = np.random.default_rng(0)
    shapes = {tid: standing(rng, 0, 0, wide) for tid, _, _, _, wide in tracks}
    content, truth = [], {tid: {} for tid, *_ in tracks}
    for t in range(frames):
        bodies = []
        for tid, first, last, amplitude, _wide in tracks:
            if first <= t <= last:
                joints = shapes[tid] + amplitude * np.sin(0.3 * t + np.arange(25)[:, None] * 0.1)
                bodies.append((tid, joints))
                truth[tid][t] = joints.astype(np.float32)
        content.append(bodies)
    path = tmp_path / "S001C001P001R001A050.skeleton"
    write_skeleton(path, content)
    return read_skeleton(path), truth


def test_file_order_takes_the_first_two_bodies_listed(tmp_path):
    rng = np.random.default_rng(1)
    frames = [[], [(ID + k, rng.normal(size=(25, 3))) for k in range(3)], [(ID + 5, rng.normal(size=(25, 3)))]]
    write_skeleton(tmp_path / "a.skeleton", frames)
    out = select_bodies(read_skeleton(tmp_path / "a.skeleton"), "file-order")
    assert out.shape == (3, 25, 3, 2) and out.dtype == np.float32
    assert not out[0].any()
    np.testing.assert_allclose(out[1, :, :, 0], frames[1][0][1], atol=1e-6)
    np.testing.assert_allclose(out[1, :, :, 1], frames[1][1][1], atol=1e-6)
    np.testing.assert_allclose(out[2, :, :, 0], frames[2][0][1], atol=1e-6)
    assert not out[2, :, :, 1].any()


def test_motion_drops_short_and_noisy_bodies_and_ranks_by_motion(tmp_path):
    tracks = [
        (ID + 1, 0, 39, 0.05, True),  # lying (x-spread > 0.8 y-spread): noise
        (ID + 2, 3, 13, 0.20, False),  # 11 frames: noise
        (ID + 3, 0, 39, 0.01, False),  # still
        (ID + 4, 0, 39, 0.10, False),
    ]  # moving most
    skel, truth = build(tmp_path, tracks, 40)
    out = select_bodies(skel, "motion")
    assert out.shape == (40, 25, 3, 2)
    expected_first = np.stack([truth[ID + 4][t] for t in range(40)])
    expected_second = np.stack([truth[ID + 3][t] for t in range(40)])
    close(out[..., 0], expected_first)
    close(out[..., 1], expected_second)
    # file order would have kept the lying body in slot 0
    close(select_bodies(skel, "file-order")[..., 0], np.stack([truth[ID + 1][t] for t in range(40)]))


def test_motion_keeps_a_body_seen_in_twelve_frames(tmp_path):
    tracks = [(ID + 1, 0, 11, 0.3, False), (ID + 2, 0, 29, 0.01, False)]
    skel, truth = build(tmp_path, tracks, 30)
    out = select_bodies(skel, "motion")
    close(out[:12, :, :, 0], np.stack([truth[ID + 1][t] for t in range(12)]))
    assert not out[12:, :, :, 0].any()


def test_motion_places_non_overlapping_bodies_in_the_same_actor(tmp_path):
    tracks = [
        (ID + 1, 0, 49, 0.01, False),  # least motion, whole clip
        (ID + 2, 25, 49, 0.10, False),  # second, later half
        (ID + 3, 0, 19, 0.30, False),
    ]  # most motion, first part
    skel, truth = build(tmp_path, tracks, 50)
    out = select_bodies(skel, "motion")
    close(out[:20, :, :, 0], np.stack([truth[ID + 3][t] for t in range(20)]))
    assert not out[20:25, :, :, 0].any()
    close(out[25:, :, :, 0], np.stack([truth[ID + 2][t] for t in range(25, 50)]))
    close(out[..., 1], np.stack([truth[ID + 1][t] for t in range(50)]))


def test_motion_with_one_body_equals_file_order(tmp_path):
    skel, _ = build(tmp_path, [(ID, 0, 29, 0.1, False)], 30)
    np.testing.assert_array_equal(select_bodies(skel, "motion"), select_bodies(skel, "file-order"))


def test_unknown_method_is_refused(tmp_path):
    skel, _ = build(tmp_path, [(ID, 0, 29, 0.1, False)], 30)
    with pytest.raises(ValueError, match="file-order"):
        select_bodies(skel, "random")


def test_motion_drops_a_noisy_body_listed_after_good_ones(tmp_path):
    tracks = [(ID + 1, 0, 39, 0.02, False), (ID + 2, 0, 39, 0.10, False), (ID + 3, 0, 39, 0.30, True)]
    skel, truth = build(tmp_path, tracks, 40)
    out = select_bodies(skel, "motion")
    close(out[..., 0], np.stack([truth[ID + 2][t] for t in range(40)]))
    close(out[..., 1], np.stack([truth[ID + 1][t] for t in range(40)]))
