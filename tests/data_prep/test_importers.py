"""Importers: files written in each toolkit's layout round-trip into the store; bad files are refused."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest

from data_prep import synth
from data_prep.cli import main
from data_prep.presets import frame50


def _bodies(n_clips: int = 6):
    """(names, labels, bodies (T_i, 25, 3, 2)) from synthetic clips, lengths varying."""
    cfg = synth.SynthConfig(subjects=2, classes=len(synth.ACTIONS), repeats=1, cameras=1)
    clips = list(synth.iter_ntu_clips(cfg))[10 : 10 + n_clips]
    return [c.name for c in clips], np.array([c.label for c in clips]), [c.bodies() for c in clips]


def _stgcn_array(bodies, frames=300):
    data = np.zeros((len(bodies), 3, frames, 25, 2), dtype=np.float32)
    for i, b in enumerate(bodies):
        data[i, :, : b.shape[0]] = b.transpose(2, 0, 1, 3)
    return data


def _read(path):
    with h5py.File(path) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["samples/name"][()]]
        raw = None
        if "raw" in f:
            raw = [f["raw/data"][o : o + n] for o, n in zip(f["raw/offset"][()], f["raw/length"][()])]
        return {
            "names": names,
            "label": f["samples/label"][()],
            "frame50": f["views/frame50"][()],
            "raw": raw,
            "splits": {p: {k: f[f"splits/{p}/{k}"][()] for k in f[f"splits/{p}"]} for p in f["splits"]},
            "columns": set(f["samples"]),
            "dataset": f.attrs["dataset"],
        }


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiclr-prep: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_stgcn_files_round_trip_with_raw_frame50_and_ntu_metadata(tmp_path):
    names, labels, bodies = _bodies()
    np.save(tmp_path / "train_data.npy", _stgcn_array(bodies[:4]))
    np.save(tmp_path / "val_data.npy", _stgcn_array(bodies[4:]))
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump(([n + ".skeleton" for n in names[:4]], [int(x) for x in labels[:4]]), f)
    with open(tmp_path / "val_label.pkl", "wb") as f:
        pickle.dump((names[4:], list(labels[4:].astype(np.int64))), f, protocol=2)
    out = tmp_path / "x.h5"
    assert (
        main(
            [
                "import",
                "stgcn",
                "--train-data",
                str(tmp_path / "train_data.npy"),
                "--train-labels",
                str(tmp_path / "train_label.pkl"),
                "--test-data",
                str(tmp_path / "val_data.npy"),
                "--test-labels",
                str(tmp_path / "val_label.pkl"),
                "--dataset",
                "ntu60",
                "--protocol",
                "xsub",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    got = _read(out)
    assert got["names"] == names and got["label"].tolist() == labels.tolist()
    assert {"setup", "camera", "performer", "replication", "action"} <= got["columns"]
    assert got["splits"]["xsub"]["train"].tolist() == [0, 1, 2, 3] and got["splits"]["xsub"]["test"].tolist() == [4, 5]
    for i, b in enumerate(bodies):
        np.testing.assert_array_equal(got["raw"][i], b)
        np.testing.assert_allclose(got["frame50"][i], frame50(b), atol=1e-6)


def test_aimclr_position_files_keep_the_given_frame50_without_raw(tmp_path):
    names, labels, bodies = _bodies()
    views = np.stack([frame50(b) for b in bodies])
    np.save(tmp_path / "train_position.npy", views[:3])
    np.save(tmp_path / "val_position.npy", views[3:])
    for part, sl in (("train", slice(0, 3)), ("val", slice(3, 6))):
        with open(tmp_path / f"{part}_label.pkl", "wb") as f:
            pickle.dump((names[sl], list(labels[sl])), f)
    out = tmp_path / "a.h5"
    assert (
        main(
            [
                "import",
                "aimclr",
                "--train-data",
                str(tmp_path / "train_position.npy"),
                "--train-labels",
                str(tmp_path / "train_label.pkl"),
                "--test-data",
                str(tmp_path / "val_position.npy"),
                "--test-labels",
                str(tmp_path / "val_label.pkl"),
                "--protocol",
                "xview",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    got = _read(out)
    np.testing.assert_array_equal(got["frame50"], views)
    assert got["raw"] is None and got["names"] == names
    assert got["splits"]["xview"]["test"].tolist() == [3, 4, 5]


def test_ctrgcn_npz_round_trips_one_hot_labels_and_raw(tmp_path):
    _, labels, bodies = _bodies()
    x = _stgcn_array(bodies).transpose(0, 2, 4, 3, 1).reshape(len(bodies), 300, 150)  # (N, T, M*V*C)
    onehot = np.eye(60, dtype=np.float32)[labels]
    np.savez(tmp_path / "NTU60_CS.npz", x_train=x[:4], y_train=onehot[:4], x_test=x[4:], y_test=onehot[4:])
    out = tmp_path / "c.h5"
    assert main(["import", "ctrgcn", "--npz", str(tmp_path / "NTU60_CS.npz"), "--out", str(out)]) == 0
    got = _read(out)
    assert got["label"].tolist() == labels.tolist() and got["names"][0] == "train_000000"
    for i, b in enumerate(bodies):
        np.testing.assert_array_equal(got["raw"][i], b)
    assert got["splits"]["xsub"]["test"].tolist() == [4, 5]


def test_pyskl_annotations_round_trip_with_every_protocol(tmp_path):
    names, labels, bodies = _bodies()
    annotations = [
        {
            "frame_dir": n,
            "label": int(l),
            "total_frames": b.shape[0],
            "keypoint": b[..., : (2 if synth.ACTIONS[l].persons == 2 else 1)].transpose(3, 0, 1, 2).copy(),
        }
        for n, l, b in zip(names, labels, bodies)
    ]
    ann = {
        "split": {"xsub_train": names[:4], "xsub_val": names[4:], "xview_train": names[::2], "xview_val": names[1::2]},
        "annotations": annotations,
    }
    with open(tmp_path / "ntu60_3danno.pkl", "wb") as f:
        pickle.dump(ann, f)
    out = tmp_path / "p.h5"
    assert main(["import", "pyskl", "--ann", str(tmp_path / "ntu60_3danno.pkl"), "--out", str(out)]) == 0
    got = _read(out)
    assert got["names"] == names
    assert got["splits"]["xview"]["train"].tolist() == [0, 2, 4] and got["splits"]["xsub"]["test"].tolist() == [4, 5]
    for i, b in enumerate(bodies):
        np.testing.assert_array_equal(got["raw"][i], b)
        np.testing.assert_allclose(got["frame50"][i], frame50(b), atol=1e-6)


@pytest.mark.parametrize(
    "kind, shape", [("stgcn", (2, 3, 300, 24, 2)), ("aimclr", (2, 3, 64, 25, 2)), ("stgcn", (2, 300, 150))]
)
def test_wrong_array_shapes_are_refused_without_output(tmp_path, capsys, kind, shape):
    np.save(tmp_path / "d.npy", np.zeros(shape, np.float32))
    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump((["a", "b"], [0, 1]), f)
    out = tmp_path / "o.h5"
    assert (
        main(
            [
                "import",
                kind,
                "--train-data",
                str(tmp_path / "d.npy"),
                "--train-labels",
                str(tmp_path / "l.pkl"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    err = _one_error(capsys)
    assert "d.npy" in err and str(shape).replace(" ", "") in err.replace(" ", "")
    assert not out.exists() and not out.with_name("o.h5.partial").exists()


def test_bad_npz_label_count_pickle_arrays_and_malicious_labels_are_refused(tmp_path, capsys):
    out = tmp_path / "o.h5"
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 300, 150)), y_train=np.eye(2))
    assert main(["import", "ctrgcn", "--npz", str(tmp_path / "bad.npz"), "--out", str(out)]) == 1
    assert "no array 'x_test'" in _one_error(capsys)

    np.save(tmp_path / "d.npy", np.zeros((3, 3, 300, 25, 2), np.float32))
    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump((["a", "b"], [0, 1]), f)
    assert (
        main(
            [
                "import",
                "stgcn",
                "--train-data",
                str(tmp_path / "d.npy"),
                "--train-labels",
                str(tmp_path / "l.pkl"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "2 labels for 3 samples" in _one_error(capsys)

    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert (
        main(
            [
                "import",
                "aimclr",
                "--train-data",
                str(tmp_path / "obj.npy"),
                "--train-labels",
                str(tmp_path / "l.pkl"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "cannot be read without pickle" in _one_error(capsys)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump((["a", "b", "c"], [Evil(), 1, 2]), f)
    assert (
        main(
            [
                "import",
                "stgcn",
                "--train-data",
                str(tmp_path / "d.npy"),
                "--train-labels",
                str(tmp_path / "evil.pkl"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "refused to load the pickle global" in _one_error(capsys)
    assert not marker.exists() and not out.exists()


def _stgcn_pair(tmp_path, bodies, names, labels, frames=300, stem="train"):
    np.save(tmp_path / f"{stem}_data.npy", _stgcn_array(bodies, frames))
    with open(tmp_path / f"{stem}_label.pkl", "wb") as f:
        pickle.dump((list(names), [int(x) for x in labels]), f)
    return ["--train-data", str(tmp_path / f"{stem}_data.npy"), "--train-labels", str(tmp_path / f"{stem}_label.pkl")]


def test_an_import_without_a_test_part_says_so_and_verifies(tmp_path, capsys):
    from data_prep.store import verify_store

    names, labels, bodies = _bodies(4)
    out = tmp_path / "t.h5"
    assert main(["import", "stgcn", *_stgcn_pair(tmp_path, bodies, names, labels), "--out", str(out)]) == 0
    assert "protocol xsub has no test part" in capsys.readouterr().out
    assert verify_store(out) == []


def test_the_class_count_comes_from_the_dataset_not_the_largest_label(tmp_path):
    names, labels, bodies = _bodies(4)
    out = tmp_path / "n.h5"
    assert main(["import", "stgcn", *_stgcn_pair(tmp_path, bodies, names, labels), "--out", str(out)]) == 0
    with h5py.File(out) as f:
        assert f.attrs["dataset"] == "ntu60" and f.attrs["num_classes"] == 60
        assert f["classes/name"].asstr()[0] == "drink water" and len(f["classes/name"]) == 60
    x = _stgcn_array(bodies).transpose(0, 2, 4, 3, 1).reshape(len(bodies), 300, 150)
    onehot = np.eye(120, dtype=np.float32)[labels]
    np.savez_compressed(tmp_path / "c.npz", x_train=x[:3], y_train=onehot[:3], x_test=x[3:], y_test=onehot[3:])
    out = tmp_path / "c.h5"
    assert main(["import", "ctrgcn", "--npz", str(tmp_path / "c.npz"), "--out", str(out)]) == 0
    got = _read(out)
    assert got["dataset"] == "ntu120" and got["label"].tolist() == labels.tolist()
    for i, b in enumerate(bodies):  # streamed out of a compressed member, row block by block
        np.testing.assert_array_equal(got["raw"][i], b)


def test_ctrgcn_labels_with_an_all_zero_row_are_refused(tmp_path, capsys):
    _, labels, bodies = _bodies(4)
    x = _stgcn_array(bodies).transpose(0, 2, 4, 3, 1).reshape(len(bodies), 300, 150)
    onehot = np.eye(60, dtype=np.float32)[labels]
    onehot[1] = 0
    np.savez(tmp_path / "z.npz", x_train=x[:2], y_train=onehot[:2], x_test=x[2:], y_test=onehot[2:])
    out = tmp_path / "z.h5"
    assert main(["import", "ctrgcn", "--npz", str(tmp_path / "z.npz"), "--out", str(out)]) == 1
    assert "y_train row 1 is all zero" in _one_error(capsys)
    assert not out.exists()


def test_ntu120_samples_are_not_imported_as_ntu60(tmp_path, capsys):
    _, labels, bodies = _bodies(2)
    names = ["S018C001P008R001A061", "S001C001P001R001A001"]
    annotations = [
        {"frame_dir": n, "label": int(l), "total_frames": b.shape[0], "keypoint": b.transpose(3, 0, 1, 2).copy()}
        for n, l, b in zip(names, [60, 0], bodies)
    ]
    with open(tmp_path / "ntu60_3danno.pkl", "wb") as f:
        pickle.dump({"split": {"xsub_train": names[:1], "xsub_val": names[1:]}, "annotations": annotations}, f)
    out = tmp_path / "p.h5"
    args = ["import", "pyskl", "--ann", str(tmp_path / "ntu60_3danno.pkl"), "--out", str(out)]
    assert main(args + ["--dataset", "ntu60"]) == 1
    assert "holds NTU120 samples (e.g. S018C001P008R001A061" in _one_error(capsys)
    assert main(args) == 0
    assert _read(out)["dataset"] == "ntu120"


def test_a_frame50_array_given_to_import_stgcn_points_to_import_aimclr(tmp_path, capsys):
    names, labels, bodies = _bodies(2)
    out = tmp_path / "a.h5"
    assert (
        main(
            [
                "import",
                "stgcn",
                *_stgcn_pair(tmp_path, [b[:50] for b in bodies], names, labels, frames=50),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "hiclr-prep import aimclr" in _one_error(capsys)


def test_label_npy_and_truncated_npy_get_their_own_sentence(tmp_path, capsys):
    np.save(tmp_path / "train_position.npy", np.zeros((2, 3, 50, 25, 2), np.float32))
    np.save(tmp_path / "train_label.npy", np.array([0, 1]))
    out = tmp_path / "a.h5"
    assert (
        main(
            [
                "import",
                "aimclr",
                "--train-data",
                str(tmp_path / "train_position.npy"),
                "--train-labels",
                str(tmp_path / "train_label.npy"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "the labels must be the label .pkl" in _one_error(capsys)

    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump((["a", "b"], [0, 1]), f)
    data = (tmp_path / "train_position.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    assert (
        main(
            [
                "import",
                "aimclr",
                "--train-data",
                str(tmp_path / "cut.npy"),
                "--train-labels",
                str(tmp_path / "l.pkl"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "cut.npy: AimCLR position data is truncated" in _one_error(capsys)
    assert not out.exists()
