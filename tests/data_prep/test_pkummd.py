"""PKU-MMD: skeleton, label and split files -> segments -> the HDF5 store; bad input in one sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from data_prep import pkummd, synth
from data_prep.cli import main
from data_prep.presets import frame50
from data_prep.store import verify_store
from hiclr.common.errors import UserError


@pytest.fixture(scope="module")
def pku(tmp_path_factory):
    root = tmp_path_factory.mktemp("pku")
    synth.write_pkummd(root, synth.SynthConfig(subjects=3, classes=6, repeats=1, anomalies=True), phase=1)
    return root


def _args(root, out, phase=1, extra=()):
    return [
        "pkummd",
        "--phase",
        str(phase),
        "--skeletons",
        str(root / "skeleton"),
        "--labels",
        str(root / "label"),
        "--splits",
        str(root / "split"),
        "--out",
        str(out),
        *extra,
    ]


def _copy(pku, tmp_path):
    root = tmp_path / "pku"
    shutil.copytree(pku, root)
    return root


def test_skeleton_parser_matches_loadtxt_and_puts_body_2_in_slot_2(pku):
    path = sorted((pku / "skeleton").glob("*.txt"))[0]
    frames = pkummd.read_skeleton(path)
    rows = np.loadtxt(path, dtype=np.float32)
    assert frames.shape == (rows.shape[0], 25, 3, 2)
    np.testing.assert_array_equal(frames[:, :, :, 0], rows[:, :75].reshape(-1, 25, 3))
    np.testing.assert_array_equal(frames[:, :, :, 1], rows[:, 75:].reshape(-1, 25, 3))


def test_split_files_accept_both_spellings_of_validation(tmp_path):
    for word in ("Validation", "Validataion"):
        path = tmp_path / f"{word}.txt"
        path.write_text(f"Training videos: \n0002-L, 0002-M,\n0003-R\n{word} videos: \n0004-L, 0005-M\n")
        assert pkummd.read_split(path) == (["0002-L", "0002-M", "0003-R"], ["0004-L", "0005-M"])


def test_segment_rows_keep_the_centre_300_frames():
    assert pkummd.segment_rows(11, 60) == (10, 60)
    assert pkummd.segment_rows(1, 300) == (0, 300)
    assert pkummd.segment_rows(101, 450) == (100 + 25, 100 + 25 + 300)  # L = 350, offset 25
    assert pkummd.video_view("0002-L") == 1 and pkummd.video_view("0291-R") == 3 and pkummd.video_view("x") == 0


def test_prep_stores_every_labelled_segment_with_its_rows_label_view_and_splits(pku, tmp_path):
    out = tmp_path / "pku.h5"
    assert main(_args(pku, out)) == 0
    assert main(["verify", str(out)]) == 0
    with h5py.File(out) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["samples/name"][()]]
        labels, start, end = f["samples/label"][()], f["samples/start"][()], f["samples/end"][()]
        views, videos = f["samples/view"][()], json.loads(f.attrs["videos"])
        offset, length, data = f["raw/offset"][()], f["raw/length"][()], f["raw/data"]
        counts = json.loads(f.attrs["counts"])
        assert f.attrs["dataset"] == "pkummd1"
        expected = 0
        for label_path in sorted((pku / "label").glob("*.txt")):
            rows = np.loadtxt(pku / "skeleton" / label_path.name, dtype=np.float32)
            for k, (lab, s, e, _) in enumerate(np.loadtxt(label_path, delimiter=",", dtype=np.int64).reshape(-1, 4)):
                i = names.index(f"{label_path.stem}_{k + 1:03d}")
                expected += 1
                e_clip = min(e, rows.shape[0])
                lo = s - 1 + max(0, (e_clip - s + 1 - 300) // 2)
                n = min(300, e_clip - s + 1)
                assert labels[i] == lab - 1 and start[i] == s and end[i] == e_clip
                assert videos[f["samples/video"][i]] == label_path.stem
                assert views[i] == {"L": 1, "M": 2, "R": 3}[label_path.stem[-1]]
                raw = data[offset[i] : offset[i] + length[i]]
                np.testing.assert_array_equal(raw[..., 0], rows[lo : lo + n, :75].reshape(-1, 25, 3))
                np.testing.assert_array_equal(raw[..., 1], rows[lo : lo + n, 75:].reshape(-1, 25, 3))
                np.testing.assert_allclose(f["views/frame50"][i], frame50(raw), atol=1e-6)
        assert len(names) == expected
        assert counts["segments_clipped"] == 1 and counts["segments_cropped_to_300"] >= 1
        assert counts["unlabelled_videos"] == 1
        for protocol, file in pkummd.PROTOCOL_FILES[1].items():
            train, test = pkummd.read_split(pku / "split" / file)
            sample_video = np.array([videos[v] for v in f["samples/video"][()]])
            for part, listed in (("train", train), ("test", test)):
                idx = f[f"splits/{protocol}/{part}"][()]
                assert np.all(np.diff(idx) > 0)
                assert set(sample_video[idx]) == set(listed) & set(sample_video)
        xview_test = f["splits/xview/test"][()]
        assert set(views[xview_test]) == {1}


def test_motion_body_selection_runs_on_pku_segments(pku, tmp_path):
    out = tmp_path / "pku_motion.h5"
    assert main(_args(pku, out, extra=["--bodies", "motion"])) == 0
    with h5py.File(out) as f:
        assert json.loads(f.attrs["preset"])["bodies"] == "motion"
        assert np.isfinite(f["views/frame50"][()]).all()


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiclr-prep: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_malformed_label_line_names_file_and_line(pku, tmp_path, capsys):
    root = _copy(pku, tmp_path)
    label = sorted((root / "label").glob("*.txt"))[1]
    lines = label.read_text().splitlines()
    lines[2] = "3,40,x,1"
    label.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.h5"
    assert main(_args(root, out)) == 1
    err = _one_error(capsys)
    assert f"{label}, line 3" in err and "label,start,end,confidence" in err
    assert not out.exists() and not out.with_name("o.h5.partial").exists()


def test_one_protocol_is_built_when_only_its_split_file_is_present(pku, tmp_path, capsys):
    root = _copy(pku, tmp_path)
    (root / "split" / "cross-view.txt").unlink()
    out = tmp_path / "o.h5"
    assert main(_args(root, out)) == 0
    printed = capsys.readouterr().out
    assert "protocol xview is not built (no cross-view.txt" in printed
    with h5py.File(out) as f:
        assert list(f["splits"]) == ["xsub"]
        assert json.loads(f.attrs["counts"])["protocols_missing"]["xview"].startswith("no cross-view.txt")
    assert verify_store(out) == []


def test_no_split_file_of_the_phase_is_an_error(pku, tmp_path, capsys):
    root = _copy(pku, tmp_path)
    out = tmp_path / "o.h5"
    assert main(_args(root, out, phase=2)) == 1  # phase 2 wants the _v2 names
    assert "cross_subject_v2.txt" in _one_error(capsys)
    assert not out.exists()


def test_unknown_video_in_a_split_file_is_reported(pku, tmp_path, capsys):
    root = _copy(pku, tmp_path)
    split = root / "split" / "cross-subject.txt"
    split.write_text(split.read_text().replace("Training videos: \n", "Training videos: \n9999-L, "))
    out = tmp_path / "o.h5"
    assert main(_args(root, out)) == 1
    err = _one_error(capsys)
    assert "9999-L" in err and "cross-subject.txt" in err
    assert not out.exists()


def test_skeleton_line_with_wrong_count_or_a_bad_number_is_reported(pku, tmp_path, capsys):
    root = _copy(pku, tmp_path)
    skeleton = sorted((root / "skeleton").glob("*.txt"))[0]
    lines = skeleton.read_text().splitlines()
    lines[4] = " ".join(lines[4].split()[:149])
    skeleton.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.h5"
    assert main(_args(root, out)) == 1
    err = _one_error(capsys)
    assert f"{skeleton}, line 5" in err and "150 numbers" in err and "found 149" in err
    lines[4] = lines[5].replace(lines[5].split()[7], "abc", 1)
    skeleton.write_text("\n".join(lines) + "\n")
    assert main(_args(root, out)) == 1
    assert f"{skeleton}, line 5: expected a number but found 'abc'" in _one_error(capsys)
    assert not out.exists()


def test_label_without_skeleton_and_empty_skeleton_are_reported(pku, tmp_path):
    root = _copy(pku, tmp_path)
    (root / "label" / "7777-M.txt").write_text("1,1,50,1\n")
    with pytest.raises(UserError, match="no skeleton file 7777-M.txt"):
        pkummd.load_pkummd(1, root / "skeleton", root / "label", root / "split")
    (root / "label" / "7777-M.txt").unlink()
    empty = sorted((root / "skeleton").glob("*.txt"))[0]
    empty.write_text("")
    with pytest.raises(UserError, match="line 1: expected 150 numbers"):
        pkummd.read_skeleton(empty)


def _store_contents(path) -> tuple[dict, dict]:
    """Every dataset of a store as an array and every attribute but the creation time."""
    arrays = {}
    with h5py.File(path) as f:
        f.visititems(lambda key, item: arrays.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None)
        attrs = {k: v for k, v in f.attrs.items() if k != "created"}
    return arrays, attrs


def _in_memory_store(root, out, bodies="file-order"):
    """The store as prep wrote it before streaming: every segment read first, then written in one go."""
    from data_prep.classes import class_names, read_class_names
    from data_prep.presets import FRAME50_PARAMS
    from data_prep.store import write_store

    data = pkummd.load_pkummd(1, root / "skeleton", root / "label", root / "split", bodies=bodies)
    write_store(
        out,
        dataset="pkummd1",
        samples=data.samples,
        bodies=data.bodies,
        frame50=np.stack([frame50(b) for b in data.bodies]),
        splits=data.splits,
        class_names=class_names("pkummd1", 51, read_class_names(root / "class_names.txt")),
        attrs={
            "num_classes": 51,
            "action_ids_present": sorted(set(int(k) + 1 for k in data.samples["label"])),
            "preset": {**FRAME50_PARAMS, "bodies": bodies, "max_frames": 300},
            "counts": data.counts,
            "videos": data.videos,
            "source": {
                "skeletons": str(root / "skeleton"),
                "labels": str(root / "label"),
                "splits": str(root / "split"),
                "phase": 1,
            },
        },
    )


@pytest.mark.parametrize("bodies", ["file-order", "motion"])
def test_streamed_store_is_identical_to_the_store_built_in_memory(pku, tmp_path, bodies):
    streamed, in_memory = tmp_path / "streamed.h5", tmp_path / "in_memory.h5"
    pkummd.prepare_pkummd(
        1, pku / "skeleton", pku / "label", pku / "split", streamed, bodies=bodies, workers=2, block=4
    )  # several blocks, videos from two processes
    _in_memory_store(pku, in_memory, bodies)
    (got, got_attrs), (want, want_attrs) = _store_contents(streamed), _store_contents(in_memory)
    assert sorted(got) == sorted(want) and got_attrs.keys() == want_attrs.keys()
    for key, array in want.items():
        assert got[key].dtype == array.dtype and got[key].shape == array.shape, key
        if array.dtype == object:
            assert list(got[key]) == list(array), key
        else:
            assert got[key].tobytes() == array.tobytes(), key
    for key, value in want_attrs.items():
        assert got_attrs[key] == value, key
    assert got["views/frame50"].shape[0] > 4 * 3  # more samples than three blocks


def _held_while_streaming(root, out, monkeypatch, block):
    """Run prep in this process and record, at every sample written, how many samples the writer
    buffers and how many videos have been read but not yet written out."""
    from data_prep.store import StoreWriter

    reads, seen = [], []
    read_skeleton, append = pkummd.read_skeleton, StoreWriter.append

    def counting_read(path):
        reads.append(path)
        return read_skeleton(path)

    def watching_append(writer, name, bodies, view):
        append(writer, name, bodies, view)
        videos_written = len({n.rsplit("_", 1)[0] for n in writer.names})
        seen.append((len(writer._pending), len(reads) - videos_written))

    monkeypatch.setattr(pkummd, "read_skeleton", counting_read)
    monkeypatch.setattr(StoreWriter, "append", watching_append)
    pkummd.prepare_pkummd(1, root / "skeleton", root / "label", root / "split", out, block=block)
    return len(reads), max(b for b, _ in seen), max(v for _, v in seen)


def test_prep_holds_one_block_and_one_video_whatever_the_number_of_videos(tmp_path, monkeypatch):
    small, large = tmp_path / "small", tmp_path / "large"
    synth.write_pkummd(small, synth.SynthConfig(subjects=1, classes=6), phase=1)
    synth.write_pkummd(large, synth.SynthConfig(subjects=4, classes=6), phase=1)
    held = {
        root.name: _held_while_streaming(root, tmp_path / f"{root.name}.h5", monkeypatch, block=5)
        for root in (small, large)
    }
    assert held["large"][0] == 4 * held["small"][0]  # four times the videos ...
    for _videos, buffered, videos_held in held.values():
        assert buffered <= 5 and videos_held <= 1  # ... the same bound: one block, one video


def _as_phase_2(pku, tmp_path, shift=0):
    """The synthetic set laid out as phase 2 (the _v2 split files), every action id raised by `shift`."""
    root = _copy(pku, tmp_path)
    for split in (root / "split").iterdir():
        split.rename(
            split.with_name(pkummd.PROTOCOL_FILES[2][{v: k for k, v in pkummd.PROTOCOL_FILES[1].items()}[split.name]])
        )
    for label in (root / "label").glob("*.txt"):
        rows = [line.split(",") for line in label.read_text().splitlines() if line.strip()]
        label.write_text("".join(",".join([str(int(r[0]) + shift)] + r[1:]) + "\n" for r in rows))
    return root


def test_class_names_come_from_a_file_when_given(pku, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("".join(f"action number {k + 1}\n" for k in range(41)))
    root = _as_phase_2(pku, tmp_path)
    out = tmp_path / "pku2.h5"
    assert main(_args(root, out, phase=2, extra=["--class-names", str(names)])) == 0
    with h5py.File(out) as f:
        stored = [n.decode() if isinstance(n, bytes) else n for n in f["classes/name"][()]]
    assert stored == [f"action number {k + 1}" for k in range(41)] + [f"class {k}" for k in range(41, 51)]


def test_phase_2_keeps_the_action_ids_above_41_as_labels_of_51_classes(pku, tmp_path, capsys):
    root = _as_phase_2(pku, tmp_path, shift=45)  # ids 46..51, as phase 2's files write them
    (root / "class_names.txt").unlink()  # the synthetic set's own names: not wanted here
    rows = pkummd.read_labels(sorted((root / "label").glob("*.txt"))[0])
    assert rows[:, 0].min() > 41 and rows[:, 0].max() <= 51
    out = tmp_path / "pku2.h5"
    assert main(_args(root, out, phase=2)) == 0
    assert "6 of the action ids 1-51 occur (51 classes)" in capsys.readouterr().out
    assert verify_store(out) == []
    with h5py.File(out) as f:
        labels = f["samples/label"][()]
        assert f.attrs["num_classes"] == 51 and f.attrs["dataset"] == "pkummd2"
        assert json.loads(f.attrs["action_ids_present"]) == [46, 47, 48, 49, 50, 51]
        names = [n.decode() if isinstance(n, bytes) else n for n in f["classes/name"][()]]
    assert sorted(set(labels.tolist())) == [45, 46, 47, 48, 49, 50]  # stored as id - 1
    bundled = [
        line
        for line in (Path(pkummd.__file__).parent / "resources" / "pkummd1_class_names.txt").read_text().splitlines()
        if line.strip()
    ]
    assert names == bundled and len(names) == 51  # phase 1's table names the shared ids
    phase_1 = tmp_path / "pku1.h5"
    main(_args(pku, phase_1))
    with h5py.File(phase_1) as f, h5py.File(out) as g:  # the same clips, the same ids shifted
        np.testing.assert_array_equal(f["views/frame50"][()], g["views/frame50"][()])
        np.testing.assert_array_equal(f["samples/label"][()] + 45, labels)


@pytest.mark.parametrize("action", ["52", "0", "-3"])
def test_an_action_id_outside_1_to_51_names_file_and_line(pku, tmp_path, capsys, action):
    root = _as_phase_2(pku, tmp_path)
    label = sorted((root / "label").glob("*.txt"))[1]
    lines = label.read_text().splitlines()
    lines[1] = ",".join([action] + lines[1].split(",")[1:])
    label.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.h5"
    assert main(_args(root, out, phase=2)) == 1
    err = _one_error(capsys)
    assert f"{label}, line 2: action id {action} is outside 1..51" in err
    assert not out.exists() and not out.with_name("o.h5.partial").exists()


def test_a_phase_2_store_reports_only_the_classes_present_with_51_outputs(pku, tmp_path, capsys):
    from hiclr.common.command_line import run_cli

    root = _as_phase_2(pku, tmp_path, shift=45)
    out = tmp_path / "pku2.h5"
    assert main(_args(root, out, phase=2)) == 0
    run = tmp_path / "run"
    argv = [
        "linear",
        "--encoder",
        "raw",
        "--data",
        str(out),
        "--out",
        str(run),
        "--no-plots",
        "--set",
        "eval.epochs=2",
        "--set",
        "eval.milestones=[1]",
        "--set",
        "engine.device=cpu",
    ]
    assert run_cli("hiclr", "", "hiclr.commands", ["evaluate"], "", argv) == 0
    logits = np.load(run / "logits.npz")
    assert logits["logits"].shape[1] == 51  # the head has an output per action id
    report = json.loads((run / "report.json").read_text())
    assert report["data"]["num_classes"] == 51
    per_class = report["protocols"]["linear"]["per_class"]
    assert [k for k, v in enumerate(per_class) if v is not None] == sorted(set(logits["labels"].tolist()))
    rows = [
        line
        for line in (run / "report.md").read_text().splitlines()
        if line.startswith("| 4") or line.startswith("| 5")
    ]
    assert rows and all(int(r.split("|")[1]) >= 45 for r in rows)
