"""`hiclr show`: strips, GIFs and policy views of clips, written without a display."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data_prep import synth
from data_prep.presets import frame50
from hiclr.augment import GrowingPolicy
from hiclr.cli import main
from hiclr.common.errors import UserError
from hiclr.show import draw_skeleton, load_clips, policy_views, show
from tests.helpers.tiny_store import write_tiny_store

CFG = synth.SynthConfig(subjects=2, repeats=1, cameras=1)
ONE_PERSON, TWO_PERSONS = 1, 17  # raise and lower arms; push (1-based actions)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Four frame50 clips of the synthetic default: two actions, one of them by two persons."""
    keys = [(1, ONE_PERSON), (3, ONE_PERSON), (1, TWO_PERSONS), (3, TWO_PERSONS)]
    x = np.stack([frame50(synth.render_clip(CFG, 1, 1, p, 1, a).bodies()) for p, a in keys])
    labels = np.array([a - 1 for _, a in keys])
    performer = np.array([0, 1, 0, 1])
    path = tmp_path_factory.mktemp("show") / "store.h5"
    return write_tiny_store(path, x, labels, performer, test_performer=1, num_classes=18)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def _has_colour(pixels: np.ndarray, rgb, tol: int = 40) -> bool:
    return bool((np.abs(pixels - np.array(rgb)).sum(axis=-1) < tol).sum() > 20)


BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's tab:blue, tab:orange


def test_a_store_clip_gives_a_strip_png_of_the_expected_size_and_a_gif_with_one_frame_per_clip_frame(store, tmp_path):
    paths = show(store, tmp_path, index=0, frames=6)
    strip, gif = paths
    assert strip.suffix == ".png" and gif.suffix == ".gif"
    with Image.open(strip) as im:
        assert im.size == (int(1.6 * 6 * 100), 230)
    with Image.open(gif) as im:
        assert im.n_frames == 50
    pixels = _pixels(strip)
    assert pixels.std() > 10 and _has_colour(pixels, BLUE)  # not blank: the skeleton is there
    assert not list(tmp_path.glob("*partial*"))


def test_a_two_person_clip_is_drawn_in_two_colours_and_a_one_person_clip_in_one(store, tmp_path):
    one = _pixels(show(store, tmp_path / "one", index=0, gif=False)[0])
    two = _pixels(show(store, tmp_path / "two", index=2, gif=False)[0])
    assert _has_colour(one, BLUE) and not _has_colour(one, ORANGE)
    assert _has_colour(two, BLUE) and _has_colour(two, ORANGE)


def test_the_views_differ_from_each_other_and_from_the_clip(store):
    clip = load_clips(store, index=0)[0]
    policy = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml")
    views = policy_views(clip.x, policy, seed=0)
    assert views.x.shape == (1 + policy.num_stages,) + clip.x.shape
    np.testing.assert_array_equal(views.x[0], clip.x)
    for a in range(len(views.x)):  # the joint mask leaves the data: the mask tells them apart
        for b in range(a + 1, len(views.x)):
            assert not np.allclose(views.x[a], views.x[b]) or np.any(views.masks[a] != views.masks[b]), (a, b)
    assert views.masks[-1].any() and not views.masks[:-1].any()  # only the strong view masks joints


def test_a_masked_joint_is_not_drawn_as_a_joint_nor_by_its_bones():
    from matplotlib.figure import Figure

    clip = frame50(synth.render_clip(CFG, 1, 1, 1, 1, ONE_PERSON).bodies())[:, 10]  # (C, V, M)
    mask = np.zeros(25, dtype=bool)
    mask[7] = True  # a hand
    ax = Figure().add_subplot()
    drawn = draw_skeleton(ax, clip, [0], mask=mask)
    assert 7 not in drawn["joints"][0] and drawn["masked"] == [7]
    assert all(7 not in bone for bone in drawn["bones"][0])
    joint_dots = ax.collections[0].get_offsets()
    assert not np.any(np.all(np.isclose(joint_dots, clip[:2, 7, 0]), axis=1))
    assert len(joint_dots) == 24


def test_a_drop_edges_view_marks_the_bones_it_drops(store):
    clip = load_clips(store, index=0)[0]
    policy = GrowingPolicy.from_config(
        [[{"name": "shear", "amplitude": 0.5}], [{"name": "drop_add_edges", "drop": 0.9}]]
    )
    views = policy_views(clip.x, policy, seed=1)
    assert not views.dropped[0] and not views.dropped[1] and views.dropped[2]


def test_the_command_writes_two_pngs_and_a_gif_with_views_and_prints_their_paths(store, tmp_path, capsys):
    assert main(["show", "--data", str(store), "--index", "0", "--views", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    pngs, gifs = sorted(tmp_path.glob("*.png")), sorted(tmp_path.glob("*.gif"))
    assert len(pngs) == 2 and len(gifs) == 1
    assert sorted(printed) == sorted(str(p) for p in pngs + gifs)
    strip, views = sorted(pngs, key=lambda p: "views" in p.name)
    assert _pixels(views).shape != _pixels(strip).shape or np.any(_pixels(views) != _pixels(strip))
    assert _pixels(views).std() > 10


@pytest.mark.parametrize("stream", ["motion", "bone"])
def test_a_stream_is_drawn_differently_from_the_joints(store, tmp_path, stream):
    joint = _pixels(show(store, tmp_path, index=0, gif=False)[0])
    other = show(store, tmp_path, index=0, gif=False, stream=stream)[0]
    assert stream in other.name and np.any(_pixels(other) != joint)


def test_a_class_by_number_picks_its_clips_and_a_raw_skeleton_file_is_drawn_with_its_class_name(store, tmp_path):
    clips = load_clips(store, class_="16", n=5)  # the 0-based label of push
    assert [c.label for c in clips] == [16, 16]
    synth.write_ntu(tmp_path / "raw", synth.SynthConfig(subjects=1, classes=2, repeats=1, cameras=1))
    (raw,) = load_clips(next((tmp_path / "raw").glob("*A002.skeleton")))
    assert raw.class_name == synth.ACTIONS[1].name and raw.x.shape == (3, 50, 25, 2)


def test_a_sample_outside_the_store_is_refused_and_nothing_is_written(store, tmp_path):
    with pytest.raises(UserError, match="--index 9"):
        show(store, tmp_path / "out", index=9)
    assert not (tmp_path / "out").exists()
