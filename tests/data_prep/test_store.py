"""The HDF5 store: contents, atomic writes, version check, and what `verify_store` catches."""

import json

import h5py
import numpy as np
import pytest

from data_prep.splits import ntu_splits
from data_prep.store import open_store, split_sha256, store_summary, verify_store, write_store
from hiclr.common.errors import UserError

NAMES = [
    "S001C001P001R001A001",
    "S001C002P002R001A002",
    "S001C003P003R001A003",
    "S002C001P001R002A001",
    "S002C002P002R002A002",
    "S002C003P004R002A003",
]


def sample_columns():
    meta = {
        k: np.array([int(n[i + 1 : i + 4]) for n in NAMES])
        for k, i in (("setup", 0), ("camera", 4), ("performer", 8), ("replication", 12), ("action", 16))
    }
    return {"name": np.array(NAMES, dtype=object), "label": meta["action"] - 1, **meta}


def write(path, **overrides):
    rng = np.random.default_rng(0)
    samples = sample_columns()
    lengths = [30, 45, 60, 31, 80, 52]
    args = dict(
        dataset="ntu60",
        samples=samples,
        bodies=[rng.normal(size=(t, 25, 3, 2)).astype(np.float32) for t in lengths],
        frame50=rng.normal(size=(6, 3, 50, 25, 2)).astype(np.float32),
        splits=ntu_splits({k: samples[k] for k in ("setup", "camera", "performer")}, "ntu60"),
        attrs={"num_classes": 60, "preset": {"name": "frame50"}, "counts": {"skipped_missing": 2}},
    )
    args.update(overrides)
    return write_store(path, **args), args


def test_store_holds_the_contract(tmp_path):
    out, args = write(tmp_path / "s.h5")
    with open_store(out) as f:
        assert f.attrs["format_version"] == 1 and f.attrs["dataset"] == "ntu60"
        assert f.attrs["num_classes"] == 60
        assert f["samples/name"].asstr()[()].tolist() == NAMES
        assert f["samples/label"].dtype == np.int64
        assert f["views/frame50"].chunks == (1, 3, 50, 25, 2)
        np.testing.assert_array_equal(f["views/frame50"][()], args["frame50"])
        offset, length = f["raw/offset"][()], f["raw/length"][()]
        assert length.tolist() == [30, 45, 60, 31, 80, 52]
        np.testing.assert_array_equal(f["raw/data"][offset[4] : offset[4] + length[4]], args["bodies"][4])
        checksums = json.loads(f.attrs["split_sha256"])
        for protocol, parts in args["splits"].items():
            for part, index in parts.items():
                np.testing.assert_array_equal(f[f"splits/{protocol}/{part}"][()], index)
                assert checksums[f"{protocol}/{part}"] == split_sha256(index)
        counts = json.loads(f.attrs["counts"])
        assert counts == {"skipped_missing": 2, "samples": 6}
    assert verify_store(out) == []
    assert not (tmp_path / "s.h5.partial").exists()


def test_compressed_store_reads_the_same(tmp_path):
    out, args = write(tmp_path / "c.h5", compression="gzip")
    with open_store(out) as f:
        np.testing.assert_array_equal(f["views/frame50"][()], args["frame50"])
    assert verify_store(out) == []


def test_failed_write_leaves_no_file_and_keeps_an_old_one(tmp_path):
    bad_bodies = [np.zeros((10, 25, 3, 2), np.float32)] * 5 + [np.zeros((10, 24, 3, 2), np.float32)]
    with pytest.raises(ValueError):
        write(tmp_path / "new.h5", bodies=bad_bodies)
    assert list(tmp_path.iterdir()) == []
    write(tmp_path / "old.h5")
    before = (tmp_path / "old.h5").read_bytes()
    with pytest.raises(ValueError):
        write(tmp_path / "old.h5", bodies=bad_bodies)
    assert (tmp_path / "old.h5").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]


def test_unknown_format_version_is_refused_with_advice(tmp_path):
    out, _ = write(tmp_path / "v.h5")
    with h5py.File(out, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(UserError, match="format version 99.*re-create"):
        open_store(out)
    with pytest.raises(UserError, match="no such file"):
        open_store(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(UserError, match="not an HDF5 file"):
        open_store(tmp_path / "text.h5")


def test_verify_finds_tampered_values_and_checksums(tmp_path):
    out, _ = write(tmp_path / "t.h5")
    with h5py.File(out, "r+") as f:
        f["views/frame50"][2, 0, 0, 0, 0] = np.nan
        f["samples/label"][0] = 75
        f["raw/data"][3, 0, 0, 0] = np.inf
        f["splits/xview/test"][0] = 5  # no longer sorted, no longer its checksum
    problems = verify_store(out)
    text = "\n".join(problems)
    assert "/views/frame50 holds 1 non-finite values" in text
    assert "/raw/data holds 1 non-finite values" in text
    assert "label spans" in text
    assert "/splits/xview/test is not sorted" in text
    assert "/splits/xview/test does not match its stored sha256" in text


def test_verify_finds_a_subject_and_a_camera_on_both_sides(tmp_path):
    splits = {
        "xsub": {"train": np.array([0, 1, 2]), "test": np.array([3, 4, 5])},  # P001 in both
        "xview": {"train": np.array([0, 1]), "test": np.array([2, 3, 4, 5])},
    }  # C001 in both
    out, _ = write(tmp_path / "d.h5", splits=splits)
    text = "\n".join(verify_store(out))
    assert "/splits/xsub: subjects [1, 2] are on both" in text
    assert "/splits/xview: cameras [1, 2] are on both" in text


def test_summary_reports_counts_and_protocols(tmp_path):
    out, args = write(tmp_path / "i.h5")
    summary = store_summary(out)
    assert summary["dataset"] == "ntu60" and summary["samples"] == 6
    assert summary["num_classes"] == 60 and summary["classes_present"] == 3
    assert len(summary["labels_present"]) == 3 and summary["labels_present"] == sorted(summary["labels_present"])
    assert summary["protocols"]["xsub"] == {
        "train": len(args["splits"]["xsub"]["train"]),
        "test": len(args["splits"]["xsub"]["test"]),
    }
    assert summary["preset"] == {"name": "frame50"} and summary["raw_frames"] == 298


def test_the_writer_appends_in_blocks_and_an_abort_leaves_nothing(tmp_path):
    from data_prep.store import StoreWriter

    _, args = write(tmp_path / "whole.h5")
    with StoreWriter(tmp_path / "blocks.h5", raw=True, block=4) as writer:
        for name, bodies, view in zip(NAMES, args["bodies"], args["frame50"]):
            writer.append(name, bodies, view)
        writer.finish(dataset="ntu60", samples=args["samples"], splits=args["splits"], attrs=args["attrs"])
    with h5py.File(tmp_path / "whole.h5") as a, h5py.File(tmp_path / "blocks.h5") as b:
        for key in ("views/frame50", "raw/data", "raw/offset", "raw/length", "classes/name"):
            np.testing.assert_array_equal(a[key][()], b[key][()])
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(tmp_path / "cut.h5", raw=False) as writer:
            writer.append(NAMES[0], None, args["frame50"][0])
            raise KeyboardInterrupt
    assert not (tmp_path / "cut.h5").exists() and not (tmp_path / "cut.h5.partial").exists()
