"""Synthetic raw data: real grammar, determinism, NTU splits, anomalies, and no trivial class cue."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from data_prep import synth
from data_prep.cli import main
from data_prep.ntu import parse_ntu_name, read_skeleton, write_skeleton
from data_prep.presets import frame50

SMALL = synth.SynthConfig(subjects=2, classes=4, repeats=1, cameras=3)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        synth.write_ntu(tmp_path / name, synth.SynthConfig(seed=seed, subjects=1, classes=3, repeats=1, anomalies=True))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_written_files_parse_back_to_the_generated_joints(tmp_path):
    summary = synth.write_ntu(tmp_path, SMALL)
    clips = list(synth.iter_ntu_clips(SMALL))
    assert summary["files"] == len(clips) == 2 * 4 * 3
    for clip in clips:
        skel = read_skeleton(tmp_path / f"{clip.name}.skeleton")
        np.testing.assert_array_equal(skel.body_counts, clip.present.sum(axis=0))
        frame, body = np.nonzero(clip.present.T)
        np.testing.assert_allclose(skel.joints, clip.joints[body, frame], atol=1e-6)
        assert [int(i) for i in skel.body_ids] == [clip.body_ids[b] for b in body]
        assert parse_ntu_name(clip.name)["action"] == clip.label + 1


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_fast_writer_agrees_with_the_reference_writer(tmp_path, newline):
    clip = synth.render_clip(synth.SynthConfig(anomalies=True), 1, 2, 3, 1, 13)  # two persons
    clip.newline = newline
    clip.present[:, :2] = False  # 0-body frames
    (tmp_path / "fast.skeleton").write_bytes(synth.skeleton_text(clip))
    write_skeleton(tmp_path / "ref.skeleton", clip.frames(), newline=newline)
    fast, ref = read_skeleton(tmp_path / "fast.skeleton"), read_skeleton(tmp_path / "ref.skeleton")
    np.testing.assert_array_equal(fast.body_counts, ref.body_counts)
    np.testing.assert_array_equal(fast.body_ids, ref.body_ids)
    np.testing.assert_allclose(fast.joints, ref.joints, atol=1e-6)
    lines = (tmp_path / "fast.skeleton").read_bytes().split(newline.encode())
    ref_lines = (tmp_path / "ref.skeleton").read_bytes().split(newline.encode())
    assert len(lines) == len(ref_lines)
    assert [len(x.split()) for x in lines] == [len(x.split()) for x in ref_lines]


def test_format_table_prints_numbers_that_read_back_exactly():
    values = np.array([[0.2181153, -3.785547, 0.0, 2.0, -1e-9, 1234.5, -0.5, 10.0, 123456.25, 3e-7]])
    text, ends = synth.format_table(values, decimals=7)
    assert text == b"0.2181153 -3.785547 0 2 0 1234.5 -0.5 10 123456.25 0.0000003\n"
    assert ends.tolist() == [len(text)]
    rng = np.random.default_rng(0)
    table = rng.normal(0, 300, (200, 12))
    text, ends = synth.format_table(table, decimals=6, newline="\r\n")
    back = np.array(text.split(), dtype=float).reshape(table.shape)
    np.testing.assert_allclose(back, table, atol=5.1e-7)
    assert text.count(b"\r\n") == 200 and ends[-1] == len(text)


def test_forward_kinematics_keeps_every_bone_length():
    rng = np.random.default_rng(1)
    lengths = synth.body_lengths(0, 7)
    angles = rng.uniform(-1.5, 1.5, (30, synth.V, 3))
    pos = synth.forward_kinematics(lengths, angles, rng.uniform(-3, 3, 30))
    for j in range(1, synth.V):
        bone = np.linalg.norm(pos[:, j] - pos[:, synth.PARENT[j]], axis=-1)
        np.testing.assert_allclose(bone, lengths[j], rtol=1e-9)


def test_names_cover_both_xsub_sides_all_cameras_and_plausible_kinect_values():
    clips = list(synth.iter_ntu_clips(synth.SynthConfig(subjects=4, classes=len(synth.ACTIONS), repeats=1)))
    meta = [parse_ntu_name(c.name) for c in clips]
    subjects = {m["performer"] for m in meta}
    assert subjects & set(synth.NTU60_TRAIN_SUBJECTS) and subjects & set(synth.NTU60_TEST_SUBJECTS)
    assert {m["camera"] for m in meta} == {1, 2, 3}
    assert len({m["action"] for m in meta}) == len(synth.ACTIONS) >= 12
    lengths = np.array([c.present.shape[1] for c in clips])
    assert lengths.min() >= 40 and lengths.max() <= 300
    two = [c for c in clips if synth.ACTIONS[c.label].persons == 2]
    assert two and all(c.joints.shape[0] == 2 for c in two)
    xyz = np.concatenate([c.joints.reshape(-1, 3) for c in clips])
    assert 2.0 < np.median(xyz[:, 2]) < 4.5 and np.abs(xyz[:, 0]).max() < 3.0
    height = np.array([c.joints[0, :, 3, 1].mean() - c.joints[0, :, 19, 1].mean() for c in clips])
    assert 1.0 < np.median(height) < 2.0  # head above the feet, metres
    for a in synth.CAMERA_YAW_DEG:  # one yaw per camera id
        cams = [synth.camera(0, s, a) for s in range(1, 4)]
        assert np.ptp([c.yaw for c in cams]) < np.deg2rad(20)


def test_anomalies_inject_empty_frames_noise_bodies_crlf_and_a_missing_list_sample(tmp_path):
    cfg = synth.SynthConfig(subjects=5, classes=len(synth.ACTIONS), repeats=2, cameras=3, anomalies=True)
    clips = list(synth.iter_ntu_clips(cfg))
    assert any((c.present.sum(axis=0) == 0).any() for c in clips)
    assert any(c.present.sum(axis=0).max() > synth.ACTIONS[c.label].persons for c in clips)
    assert any(c.present.sum(axis=0).max() == 3 for c in clips)  # a third body
    assert any(c.newline == "\r\n" for c in clips)
    missing = [c for c in clips if c.name == synth.MISSING_SAMPLE]
    assert len(missing) == 1
    listed = Path(synth.__file__).parent / "resources" / "NTU_RGBD_samples_with_missing_skeletons.txt"
    assert synth.MISSING_SAMPLE in listed.read_text().split()
    clean = list(synth.iter_ntu_clips(synth.SynthConfig(subjects=5, classes=len(synth.ACTIONS), repeats=2)))
    assert all(c.present.all() and c.newline == "\n" for c in clean)


def _ridge_accuracy(train_x, train_y, test_x, test_y, classes, lam):
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    targets = np.eye(classes)[train_y]
    gram = a @ a.T  # kernel form: N < features
    w = a.T @ np.linalg.solve(gram + lam * np.eye(len(a)), targets - targets.mean(0))
    return float(((b @ w).argmax(1) == test_y).mean())


@pytest.mark.parametrize("family", ["default", "field"])
def test_the_class_is_in_how_the_body_moves_not_in_templates_or_the_mean_pose(family):
    """Nearest-neighbour template matching on the frame50 coordinates of other subjects and a
    linear read-out of the mean pose are weak, while a linear read-out of a shift-invariant motion
    summary (each joint's spread over time) is far better: the class is in which joints move and
    how, hidden under per-subject, per-camera and timing nuisance (in both families)."""
    cfg = synth.SynthConfig.of_family(family, subjects=6, repeats=2, cameras=2)
    clips = list(synth.iter_ntu_clips(cfg))
    labels = np.array([c.label for c in clips])
    test = np.array([parse_ntu_name(c.name)["performer"] in synth.NTU60_TEST_SUBJECTS for c in clips])
    bodies = [c.bodies() for c in clips]
    mean_pose = np.stack([np.concatenate([b.mean(0).reshape(-1), [b.shape[0]]]) for b in bodies])
    views = np.stack([frame50(b) for b in bodies])  # (N, C, T, V, M)
    k = len(cfg.kind().actions)
    cue = max(
        _ridge_accuracy(mean_pose[~test], labels[~test], mean_pose[test], labels[test], k, lam)
        for lam in (1.0, 10.0, 100.0)
    )
    whole = views.reshape(len(views), -1)
    unit = whole / np.linalg.norm(whole, axis=1, keepdims=True)
    nearest = labels[~test][(unit[test] @ unit[~test].T).argmax(axis=1)]
    template = float((nearest == labels[test]).mean())
    spread = views[..., 0].std(axis=2).reshape(len(views), -1)  # (N, C * V) of the first body
    motion = _ridge_accuracy(spread[~test], labels[~test], spread[test], labels[test], k, 10.0)
    assert template <= 0.5, template
    assert cue <= 0.45, cue
    assert motion >= 0.5 and motion - max(template, cue) >= 0.2, (motion, template, cue)


def test_performers_differ_in_posture_and_side_and_a_mirrored_motion_swaps_the_sides():
    people = [synth.performer(0, s) for s in range(1, 41)]
    assert {p.left_handed for p in people} == {True, False}
    assert np.ptp([p.posture[synth.SPINE_LOW, synth.PITCH] for p in people]) > 0.3
    assert synth.performer(0, 3).posture.tolist() == synth.performer(0, 3).posture.tolist()
    rng = np.random.default_rng(0)
    m = synth.Motion(rng.normal(size=(5, synth.V, 3)), rng.normal(size=5), rng.normal(size=(5, 3)), np.zeros(5))
    back = synth.mirror(synth.mirror(m))
    np.testing.assert_allclose(back.angles, m.angles)
    flipped = synth.mirror(m)
    np.testing.assert_allclose(flipped.angles[:, synth.R_UPPER, synth.PITCH], m.angles[:, synth.L_UPPER, synth.PITCH])
    np.testing.assert_allclose(flipped.angles[:, synth.R_UPPER, synth.YAW], -m.angles[:, synth.L_UPPER, synth.YAW])
    lengths = synth.BASE_LENGTH
    pos, mir = (
        synth.forward_kinematics(lengths, m.angles, m.yaw),
        synth.forward_kinematics(lengths, flipped.angles, flipped.yaw),
    )
    swap = list(range(synth.V))
    for left, right in synth.MIRROR:
        swap[left], swap[right] = right, left
    np.testing.assert_allclose(mir[:, swap] * [-1, 1, 1], pos, atol=1e-9)  # the mirror image, exactly


def test_cli_synth_then_prep_then_verify_on_synthetic_ntu(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "x.h5"
    assert (
        main(["synth", "--out", str(raw), "--subjects", "2", "--classes", "14", "--repeats", "1", "--anomalies"]) == 0
    )
    assert main(["ntu60", "--raw", str(raw), "--out", str(out)]) == 0
    assert main(["verify", str(out)]) == 0
    import h5py

    with h5py.File(out) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["samples/name"][()]]
        assert synth.MISSING_SAMPLE not in names
        assert len(names) == len(list(raw.glob("*.skeleton"))) - 1
        assert set(f["splits"]) >= {"xsub", "xview"}


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--cameras", "4"], "--cameras 4"),
        (["--subjects", "0"], "--subjects 0"),
        (["--classes", "99"], "--classes 99"),
    ],
)
def test_cli_synth_refuses_bad_sizes_in_one_sentence(tmp_path, capsys, argv, words):
    out = tmp_path / "raw"
    assert main(["synth", "--out", str(out), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and err.count("\n") == 0 and "Traceback" not in err
    assert not out.exists()


def test_pkummd_format_writes_skeletons_labels_and_both_split_files(tmp_path):
    summary = synth.write_pkummd(tmp_path, synth.SynthConfig(subjects=3, classes=6, repeats=1), phase=2)
    assert (tmp_path / "split" / "cross_subject_v2.txt").is_file()
    assert (tmp_path / "split" / "cross_view_v2.txt").is_file()
    skeletons = sorted((tmp_path / "skeleton").glob("*.txt"))
    assert len(skeletons) == summary["videos"] == 9
    rows = np.loadtxt(skeletons[0])
    assert rows.shape[1] == 150
    labels = np.loadtxt(tmp_path / "label" / skeletons[0].name, delimiter=",", dtype=np.int64)
    assert sorted(labels[:, 0]) == list(range(1, 7))
    assert (labels[:, 2] <= rows.shape[0]).all()
    for label, start, end, _ in labels:  # body 2 only in 2-person classes
        second = np.abs(rows[start - 1 : end, 75:]).sum(axis=1) > 0
        assert second.all() == (synth.ACTIONS[label - 1].persons == 2)


def test_the_default_family_is_unchanged_and_the_field_family_has_its_own_actions_nuisance_and_size(tmp_path):
    assert synth.SynthConfig() == synth.SynthConfig.of_family("default")
    field = synth.SynthConfig.of_family("field")
    assert (field.subjects, field.repeats, field.classes) == (20, 1, len(synth.FIELD_ACTIONS))
    assert not {a.name for a in synth.FIELD_ACTIONS} & {a.name for a in synth.ACTIONS}
    small = synth.SynthConfig.of_family("field", subjects=2, cameras=1)
    clips = list(synth.iter_ntu_clips(small))
    assert len(clips) == 2 * len(synth.FIELD_ACTIONS)
    for clip in clips:
        assert len(clip.joints) == synth.FIELD_ACTIONS[clip.label].persons
    default_clips = list(synth.iter_ntu_clips(synth.SynthConfig(subjects=2, cameras=1, repeats=1)))
    lengths = lambda cs: np.median([c.joints.shape[1] for c in cs])  # noqa: E731
    assert lengths(clips) < lengths(default_clips)  # shorter clips, among other nuisance


def test_cli_synth_writes_the_field_family_with_its_class_names_and_refuses_it_for_pkummd(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert main(["synth", "--out", str(raw), "--family", "field", "--subjects", "2", "--cameras", "1"]) == 0
    names = (raw / "class_names.txt").read_text().splitlines()
    assert names == [a.name for a in synth.FIELD_ACTIONS]
    assert len(list(raw.glob("*.skeleton"))) == 2 * len(names)
    assert main(["synth", "--out", str(tmp_path / "pku"), "--family", "field", "--format", "pkummd"]) == 1
    assert "--family field" in capsys.readouterr().err and not (tmp_path / "pku").exists()
    assert main(["synth", "--out", str(tmp_path / "many"), "--family", "field", "--classes", "18"]) == 1
    assert "--classes 18" in capsys.readouterr().err
