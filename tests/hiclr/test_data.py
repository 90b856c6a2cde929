"""Reading splits of the HDF5 store (format version 1, docs/internals.md) on the learning side."""

import hashlib
import json

import h5py
import numpy as np
import pytest
import torch

import hiclr.data
from hiclr.common.errors import UserError
from hiclr.data import dataset_info, load_split


def write_tiny_store(path, num_samples=12, num_classes=4, seed=0, format_version=1, frames=50):
    """A small store in the layout of docs/internals.md; returns (frame50, labels, names, splits)."""
    rng = np.random.default_rng(seed)
    frame50 = rng.standard_normal((num_samples, 3, frames, 25, 2)).astype(np.float32)
    labels = np.arange(num_samples, dtype=np.int64) % num_classes
    performer = (np.arange(num_samples) // 3) % 4 + 1
    camera = np.arange(num_samples) % 3 + 1
    names = [
        f"S001C{c:03d}P{p:03d}R001A{a + 1:03d}" + f"_{i}" for i, (c, p, a) in enumerate(zip(camera, performer, labels))
    ]
    splits = {
        "xsub": {"train": np.flatnonzero(performer % 2 == 1), "test": np.flatnonzero(performer % 2 == 0)},
        "xview": {"train": np.flatnonzero(camera != 1), "test": np.flatnonzero(camera == 1)},
    }
    with h5py.File(path, "w") as f:
        samples = f.create_group("samples")
        samples.create_dataset("name", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        samples.create_dataset("label", data=labels)
        samples.create_dataset("camera", data=camera.astype(np.int64))
        samples.create_dataset("performer", data=performer.astype(np.int64))
        f.create_group("views").create_dataset("frame50", data=frame50, chunks=(1,) + frame50.shape[1:])
        checksums = {}
        for protocol, parts in splits.items():
            for part, index in parts.items():
                index = index.astype(np.int64)
                f.create_dataset(f"splits/{protocol}/{part}", data=index)
                checksums[f"{protocol}/{part}"] = hashlib.sha256(index.astype("<i8").tobytes()).hexdigest()
        if format_version is not None:
            f.attrs["format_version"] = format_version
        f.attrs["dataset"] = "tiny"
        f.attrs["num_classes"] = num_classes
        f.attrs["counts"] = json.dumps({"samples": num_samples, "skipped": {}})
        f.attrs["split_sha256"] = json.dumps(checksums)
    return frame50, labels, names, splits


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "tiny.h5"
    return path, write_tiny_store(path)


@pytest.mark.parametrize("protocol,part", [("xsub", "train"), ("xsub", "test"), ("xview", "test")])
def test_load_split_returns_the_rows_labels_and_names_of_the_split(store, protocol, part):
    path, (frame50, labels, names, splits) = store
    split = load_split(path, protocol, part)
    index = splits[protocol][part]
    assert split.x.dtype == torch.float32 and split.x.shape == (len(index), 3, 50, 25, 2)
    np.testing.assert_array_equal(split.x.numpy(), frame50[index])
    np.testing.assert_array_equal(split.labels.numpy(), labels[index])
    assert split.labels.dtype == torch.int64
    assert split.names == [names[i] for i in index]
    np.testing.assert_array_equal(split.index.numpy(), index)
    assert len(split) == len(index)


def test_all_means_every_sample_with_or_without_a_protocol(store):
    path, (frame50, labels, names, _) = store
    for protocol in (None, "xsub"):
        split = load_split(path, protocol, "all")
        np.testing.assert_array_equal(split.x.numpy(), frame50)
        assert split.names == names and split.index.tolist() == list(range(len(names)))


def test_sparse_indices_are_read_correctly_across_slabs(tmp_path, monkeypatch):
    path = tmp_path / "more.h5"
    frame50, _, _, splits = write_tiny_store(path, num_samples=40, frames=4)
    monkeypatch.setattr(hiclr.data, "_BLOCK", 3)
    for protocol in splits:
        for part, index in splits[protocol].items():
            np.testing.assert_array_equal(load_split(path, protocol, part).x.numpy(), frame50[index])


def test_unknown_protocol_part_or_view_is_refused_with_what_exists(store):
    path, _ = store
    with pytest.raises(UserError, match="no protocol 'xset'.*xsub, xview"):
        load_split(path, "xset", "train")
    with pytest.raises(UserError, match="no protocol 'xset'"):
        load_split(path, "xset", "all")
    with pytest.raises(UserError, match="unknown split part 'val'"):
        load_split(path, "xsub", "val")
    with pytest.raises(UserError, match="no view 'frame64'.*frame50"):
        load_split(path, "xsub", "train", view="frame64")
    with pytest.raises(UserError, match="needs a protocol"):
        load_split(path, None, "train")


@pytest.mark.parametrize("version,message", [(2, "format version 2"), (None, "format version none")])
def test_unknown_or_missing_format_version_is_refused(tmp_path, version, message):
    path = tmp_path / "other.h5"
    write_tiny_store(path, num_samples=2, format_version=version)
    with pytest.raises(UserError, match=message):
        load_split(path, "xsub", "train")
    with pytest.raises(UserError, match=message):
        dataset_info(path)


def test_missing_and_non_hdf5_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_split(tmp_path / "absent.h5", "xsub", "train")
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(UserError, match="not an HDF5 file"):
        load_split(text, "xsub", "train")


def test_dataset_info_describes_the_store(store):
    path, (_, _, names, splits) = store
    info = dataset_info(path)
    assert info["num_classes"] == 4 and info["num_samples"] == len(names)
    assert info["format_version"] == 1 and info["dataset"] == "tiny"
    assert info["protocols"] == {p: {part: len(i) for part, i in parts.items()} for p, parts in splits.items()}
    assert info["views"] == {"frame50": [len(names), 3, 50, 25, 2]}
    assert info["counts"]["samples"] == len(names)
    expected = hashlib.sha256(splits["xsub"]["test"].astype("<i8").tobytes()).hexdigest()
    assert info["split_sha256"]["xsub/test"] == expected
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
