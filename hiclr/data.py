"""Splits of a prepared dataset for the learning side, built on the store's reader.

`data_prep.store` owns the HDF5 format (versions, attributes, summary; layout in
docs/internals.md); this module turns a protocol's part into tensors. Every read goes through
`load_split`, which first checks the stored sha256 of each dataset it reads (`verify_datasets`,
once per process per file identity; `data.verify: false` / `--no-verify` skips it), so a damaged
store is refused before any training or evaluation starts (docs/data_integrity.md).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from data_prep.checksums import check_datasets
from data_prep.store import damaged_store_guard, open_store, store_summary
from hiclr.common.errors import UserError

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
            raise UserError(f"part {part!r} of {path} needs a protocol; it has: {', '.join(known) or 'none'}")
        if protocol not in known:
            raise UserError(f"{path} has no protocol {protocol!r}; it has: {', '.join(known) or 'none'}")
        parts = sorted(f["splits"][protocol].keys())
        if part != "all" and part not in parts:
            raise UserError(
                f"{path} has no part {part!r} in protocol {protocol!r}; it has: {', '.join(parts) or 'none'}"
            )
    if part == "all":
        return np.arange(num_samples, dtype=np.int64)
    index = np.asarray(f["splits"][protocol][part][...], dtype=np.int64)
    if index.size and (np.any(np.diff(index) <= 0) or index[0] < 0 or index[-1] >= num_samples):
        raise UserError(
            f"{path}: /splits/{protocol}/{part} is not a sorted set of sample indices "
            f"in [0, {num_samples}); the file is damaged, re-create it with `hiclr-prep`"
        )
    return index


def _read_rows(dset: h5py.Dataset, index: np.ndarray) -> np.ndarray:
    """dset[index] for sorted `index`, read in slabs of at most `_BLOCK` rows."""
    out = np.empty((len(index),) + dset.shape[1:], dtype=np.float32)
    start = 0
    while start < len(index):
        first = index[start]
        stop = int(np.searchsorted(index, first + _BLOCK, side="left"))
        rows = index[start:stop]
        slab = dset[first : rows[-1] + 1]
        out[start:stop] = slab[rows - first]
        start = stop
    return out


def verify_wanted(cfg: dict | None) -> bool:
    """Whether a run of the resolved config `cfg` verifies its store: `data.verify` (default true;
    `--no-verify` sets it false)."""
    return bool(((cfg or {}).get("data") or {}).get("verify", True))


def store_identity(path) -> tuple:
    """(resolved path, device, inode, size, modification time in ns): a rewritten, replaced or
    touched file gets a new identity, so nothing cached about the old one is reused."""
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_VERIFIED: dict[tuple, set[str]] = {}  # store identity -> datasets whose sha256 matched
_SHA256: dict[tuple, str] = {}  # store identity -> sha256 of the file's bytes


def verify_datasets(f: h5py.File, path, datasets) -> None:
    """Check the stored sha256 of `datasets` of the open store `f` (at `path`), each once per
    process per `store_identity`; a mismatch is a `UserError` naming the file and the dataset.

    Datasets without a stored digest (a store of an older hiclr-prep) get one note and are read.
    """
    verified = _VERIFIED.setdefault(store_identity(path), set())
    todo = [d for d in datasets if d not in verified]
    if not todo:
        return
    mismatched, unchecked = check_datasets(f, todo)
    if mismatched:
        others = f" (and {', '.join(mismatched[1:])})" if len(mismatched) > 1 else ""
        raise UserError(
            f"{path}: dataset {mismatched[0]}{others} does not match the sha256 that hiclr-prep "
            f"stored with it, so the file changed after it was written (a flipped bit, a bad copy or "
            f"an edit); restore a good copy or re-create the store with hiclr-prep, or pass "
            f"--no-verify (data.verify: false) to use it as it is"
        )
    if unchecked:
        print(
            f"note: {path}: {', '.join(unchecked)} {'has' if len(unchecked) == 1 else 'have'} no stored "
            f"sha256 (a store of an older hiclr-prep), so {'it is' if len(unchecked) == 1 else 'they are'} "
            f"read unverified; re-create the store to have them checked",
            file=sys.stderr,
        )
    verified.update(todo)


def _datasets_read(view: str, protocol: str | None, parts) -> list[str]:
    """The datasets `load_split` reads for `parts` of `protocol` ("all" reads no split index)."""
    return [f"/views/{view}", "/samples/label", "/samples/name"] + [
        f"/splits/{protocol}/{part}" for part in parts if part != "all"
    ]


def verify_store_of(cfg: dict, parts=("train", "test")) -> None:
    """Check, before a run writes anything, what a run of `cfg` will read: `data.view`, the labels,
    the names and `parts` of `data.protocol` (`verify_datasets`). Nothing when `data.verify` is off;
    a missing file, protocol or view is left to `load_split`, which says what exists."""
    if not verify_wanted(cfg):
        return
    data = cfg["data"]
    path = Path(data["path"])
    if not path.is_file():
        return
    with damaged_store_guard(path), open_store(path) as f:
        verify_datasets(f, path, _datasets_read(data["view"], data["protocol"], parts))


def store_sha256(path) -> str:
    """sha256 of the store file's bytes, computed once per process per `store_identity`."""
    key = store_identity(path)
    if key not in _SHA256:
        _SHA256[key] = file_sha256(path)
    return _SHA256[key]


def load_split(path, protocol: str | None, part: str, view: str = "frame50", *, verify: bool = True) -> Split:
    """Part "train", "test" or "all" (every sample; the protocol is then optional) of `protocol`.

    `verify`: first check the stored sha256 of every dataset read (the view, the labels, the
    names, the split index; `verify_datasets`); pass `verify_wanted(cfg)`.
    """
    path = Path(path)
    with damaged_store_guard(path), open_store(path) as f:
        views = _views(f)
        if view not in views:
            raise UserError(f"{path} has no view {view!r}; it has: {', '.join(views) or 'none'}")
        index = _split_index(f, path, protocol, part)
        if verify:
            verify_datasets(f, path, _datasets_read(view, protocol, [part]))
        x = _read_rows(f["views"][view], index)
        labels = np.asarray(f["samples/label"][...], dtype=np.int64)[index]
        names = f["samples/name"].asstr()[...][index].tolist()
    return Split(x=torch.from_numpy(x), labels=torch.from_numpy(labels), names=names, index=torch.from_numpy(index))


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (the data-file checksum that reports record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dataset_info(path, *, hash_file: bool = True) -> dict:
    """What the store holds (`store_summary`), as the reports record it: dataset, num_classes,
    protocols with part sizes, view shapes, counts, split checksums, class names, sha256."""
    with damaged_store_guard(path):
        summary = store_summary(path)
    info = {
        "path": str(path),
        "format_version": summary["format_version"],
        "dataset": summary["dataset"],
        "num_classes": summary["num_classes"] or None,
        "num_samples": summary["samples"],
        "protocols": summary["protocols"],
        "views": summary["view_shapes"],
        "counts": summary["counts"],
        "split_sha256": summary["split_sha256"],
        "class_names": summary["class_names"],
        "labels_present": summary["labels_present"],
    }
    if hash_file:
        info["sha256"] = store_sha256(path)
    return info
