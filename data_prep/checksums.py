"""Checksums of what a store holds: one sha256 per dataset, over its decoded values.

`hiclr-prep verify` recomputes them, so a flipped byte inside `/views/frame50`, a value overwritten
with another finite one, or two labels swapped in `/samples/label` is found, not only a changed split.
The digest covers dtype, shape and the little-endian bytes of the values (strings: their UTF-8
bytes, each with its length), read in blocks, so it does not depend on chunking or compression.
"""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np

ATTR = "content_sha256"  # root attribute: JSON {dataset path: hex digest}
_BLOCK_BYTES = 4 << 20  # per read: small blocks stay in cache and read faster than large ones


def dataset_sha256(ds: h5py.Dataset) -> str:
    """sha256 of one dataset's dtype, shape and values, read in blocks of about 4 MiB."""
    digest = hashlib.sha256(f"{ds.dtype.str if ds.dtype.kind != 'O' else 'str'}{ds.shape}".encode())
    if ds.dtype.kind == "O" or h5py.check_string_dtype(ds.dtype) is not None:
        for value in ds.asstr()[()].reshape(-1).tolist():
            data = value.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()
    if not ds.shape or ds.shape[0] == 0:
        digest.update(np.ascontiguousarray(ds[()]).astype(ds.dtype.newbyteorder("<")).tobytes())
        return digest.hexdigest()
    row = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
    step = max(1, _BLOCK_BYTES // row)
    little = ds.dtype.newbyteorder("<")
    for lo in range(0, ds.shape[0], step):  # the block itself is hashed: no copy of its bytes
        digest.update(memoryview(np.ascontiguousarray(ds[lo : lo + step], dtype=little)).cast("B"))
    return digest.hexdigest()


MAX_COMPRESSION = 1100  # gzip's best ratio is about 1032: a dataset cannot hold more than this per stored byte


def implausible_size(ds: h5py.Dataset) -> str | None:
    """Why `ds` cannot be as large as its shape says (damaged metadata), or None: reading it would
    mean iterating over fill values for days, so such a dataset is reported, never read."""
    nbytes = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize if ds.shape else ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if nbytes > MAX_COMPRESSION * stored + (1 << 20):
        return (
            f"/{ds.name.lstrip('/')} declares shape {ds.shape} ({nbytes} bytes) but stores {stored} bytes; "
            f"the file's metadata is damaged"
        )
    return None


def content_sha256(f: h5py.File) -> dict[str, str]:
    """{"/group/name": digest} for every dataset of the file."""
    out: dict[str, str] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[f"/{name}"] = "implausible size" if implausible_size(obj) else dataset_sha256(obj)

    f.visititems(visit)
    return dict(sorted(out.items()))


def write_content_checksums(f: h5py.File) -> None:
    """Store `content_sha256(f)` as the root attribute `ATTR` (call once every dataset is written)."""
    f.attrs[ATTR] = json.dumps(content_sha256(f))


def content_problems(f: h5py.File) -> list[str]:
    """What does not match the stored checksums (empty list: every dataset is as written)."""
    raw = f.attrs.get(ATTR)
    if raw is None:
        return [
            f"the store has no content checksums (attribute {ATTR}; written by an older hiclr-prep): "
            f"re-create it to have its arrays checked"
        ]
    try:
        stored = json.loads(raw)
    except (TypeError, ValueError):
        return [f"the attribute {ATTR} is not readable JSON; the file's metadata is damaged"]
    if not isinstance(stored, dict):
        return [f"the attribute {ATTR} is not a mapping; the file's metadata is damaged"]
    found = content_sha256(f)
    problems = [
        implausible_size(f[path]) or f"{path} does not match its stored sha256 (a changed value or byte)"
        for path, digest in found.items()
        if path in stored and stored[path] != digest
    ]
    problems += [f"{path} is missing (it was written with a checksum)" for path in stored if path not in found]
    problems += [
        f"{path} has no stored sha256 (it was added after the store was written)"
        for path in found
        if path not in stored
    ]
    return problems


def stored_checksums(f: h5py.File) -> dict[str, str] | None:
    """The root attribute `ATTR` as {dataset path: digest}; None when the store has none (an older
    hiclr-prep) or it is unreadable (`content_problems` says which)."""
    raw = f.attrs.get(ATTR)
    try:
        stored = json.loads(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def check_datasets(f: h5py.File, paths) -> tuple[list[str], list[str]]:
    """(mismatched, unchecked) among the datasets `paths` ("/views/frame50" ...) of an open store.

    Each dataset is hashed as `dataset_sha256` does (blocks of about 4 MiB: memory stays bounded
    whatever its size) and compared with its stored digest. Mismatched: a digest that differs, a
    dataset whose size is implausible, or a checksummed dataset that is gone. Unchecked: no stored
    digest to compare with (a store of an older hiclr-prep, or a dataset added later); a split
    index of such a store is still compared with the `split_sha256` attribute it has always had.
    """
    stored = stored_checksums(f) or {}
    raw = f.attrs.get("split_sha256")
    try:
        splits = json.loads(raw) if raw is not None else {}
    except (TypeError, ValueError):
        splits = {}
    mismatched, unchecked = [], []
    for path in paths:
        key = "/" + path.lstrip("/")
        if key.lstrip("/") not in f:
            if key in stored:
                mismatched.append(key)
            continue
        ds = f[key]
        if key in stored:
            if implausible_size(ds) or dataset_sha256(ds) != stored[key]:
                mismatched.append(key)
        elif key.startswith("/splits/") and isinstance(splits, dict) and key[len("/splits/") :] in splits:
            index = np.ascontiguousarray(ds[()], dtype="<i8")
            if hashlib.sha256(index.tobytes()).hexdigest() != splits[key[len("/splits/") :]]:
                mismatched.append(key)
        else:
            unchecked.append(key)
    return mismatched, unchecked
