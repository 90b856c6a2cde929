"""Read a split of a prepared dataset (the HDF5 store of `hiclr-prep`, format version 1).

This is the only way the learning side reads data; the layout is fixed in docs/internals.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from data_prep.errors import UserError
from data_prep.store import damaged_store_guard
from data_prep.store import stored_class_names

FORMAT_VERSIONS = (1,)
PARTS = ("train", "test", "all")
_BLOCK = 1024  # rows read per slab: bounded memory, few HDF5 calls


@dataclass
class Split:
    """One part of a protocol: x (N, C, T, V, M) float32, labels (N,), names, index into /samples."""

    x: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.names)


def open_dataset(path) -> h5py.File:
    """The store opened read-only, after checking that it exists and that its format version is known."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dataset file {path} does not exist; create it with `hiclr-prep` "
                        "(e.g. `hiclr-prep synth` or `hiclr-prep ntu60`)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path} is not a readable HDF5 file ({err}); create it with `hiclr-prep`") from err
    version = f.attrs.get("format_version")
    if version is None:
        f.close()
        raise UserError(f"{path} has no 'format_version' attribute, so it is not a `hiclr-prep` "
                        "store; create it with `hiclr-prep`")
    if int(version) not in FORMAT_VERSIONS:
        f.close()
        raise UserError(f"{path} has format version {int(version)}, this version of hiclr reads "
                        f"{', '.join(map(str, FORMAT_VERSIONS))}; re-create the file with the "
                        "`hiclr-prep` of this version or install the hiclr that wrote it")
    return f


def _protocols(f: h5py.File) -> list[str]:
    return sorted(f["splits"].keys()) if "splits" in f else []


def _views(f: h5py.File) -> list[str]:
    return sorted(f["views"].keys()) if "views" in f else []


def _split_index(f: h5py.File, path: Path, protocol: str | None, part: str) -> np.ndarray:
    if part not in PARTS:
        raise UserError(f"unknown split part {part!r} for {path}; use one of {', '.join(PARTS)}")
    num_samples = len(f["samples/name"])
    if part != "all" or protocol not in (None, "all"):
        known = _protocols(f)
        if protocol is None:
            raise UserError(f"part {part!r} of {path} needs a protocol; it has: "
                            f"{', '.join(known) or 'none'}")
        if protocol not in known:
            raise UserError(f"{path} has no protocol {protocol!r}; it has: "
                            f"{', '.join(known) or 'none'}")
        parts = sorted(f["splits"][protocol].keys())
        if part != "all" and part not in parts:
            raise UserError(f"{path} has no part {part!r} in protocol {protocol!r}; it has: "
                            f"{', '.join(parts) or 'none'}")
    if part == "all":
        return np.arange(num_samples, dtype=np.int64)
    index = np.asarray(f["splits"][protocol][part][...], dtype=np.int64)
    if index.size and (np.any(np.diff(index) <= 0) or index[0] < 0 or index[-1] >= num_samples):
        raise UserError(f"{path}: /splits/{protocol}/{part} is not a sorted set of sample indices "
                        f"in [0, {num_samples}); the file is damaged, re-create it with `hiclr-prep`")
    return index


def _read_rows(dset: h5py.Dataset, index: np.ndarray) -> np.ndarray:
    """dset[index] for sorted `index`, read in slabs of at most `_BLOCK` rows."""
    out = np.empty((len(index),) + dset.shape[1:], dtype=np.float32)
    start = 0
    while start < len(index):
        first = index[start]
        stop = int(np.searchsorted(index, first + _BLOCK, side="left"))
        rows = index[start:stop]
        slab = dset[first:rows[-1] + 1]
        out[start:stop] = slab[rows - first]
        start = stop
    return out


def load_split(path, protocol: str | None, part: str, view: str = "frame50") -> Split:
    """Part "train", "test" or "all" (every sample; the protocol is then optional) of `protocol`."""
    path = Path(path)
    with damaged_store_guard(path), open_dataset(path) as f:
        views = _views(f)
        if view not in views:
            raise UserError(f"{path} has no view {view!r}; it has: {', '.join(views) or 'none'}")
        index = _split_index(f, path, protocol, part)
        x = _read_rows(f["views"][view], index)
        labels = np.asarray(f["samples/label"][...], dtype=np.int64)[index]
        names = f["samples/name"].asstr()[...][index].tolist()
    return Split(x=torch.from_numpy(x), labels=torch.from_numpy(labels), names=names,
                 index=torch.from_numpy(index))


def _json_attr(f: h5py.File, key: str):
    value = f.attrs.get(key)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (the data-file checksum that reports record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dataset_info(path, *, hash_file: bool = True) -> dict:
    """What the store holds: dataset, num_classes, protocols with part sizes, views, counts, sha256."""
    path = Path(path)
    with damaged_store_guard(path), open_dataset(path) as f:
        protocols = {p: {part: int(len(f["splits"][p][part])) for part in sorted(f["splits"][p])}
                     for p in _protocols(f)}
        views = {v: list(f["views"][v].shape) for v in _views(f)}
        num_classes = f.attrs.get("num_classes")
        if num_classes is None and "samples/label" in f:
            num_classes = int(np.max(f["samples/label"][...])) + 1 if len(f["samples/label"]) else 0
        info = {
            "path": str(path),
            "format_version": int(f.attrs["format_version"]),
            "dataset": _json_attr(f, "dataset"),
            "num_classes": int(num_classes) if num_classes is not None else None,
            "num_samples": int(len(f["samples/name"])) if "samples/name" in f else 0,
            "protocols": protocols,
            "views": views,
            "counts": _json_attr(f, "counts"),
            "split_sha256": _json_attr(f, "split_sha256"),
            "class_names": stored_class_names(f),
        }
    if hash_file:
        info["sha256"] = file_sha256(path)
    return info
