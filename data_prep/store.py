"""The HDF5 store: one file per dataset, every protocol inside (docs/internals.md, format version 1).

`StoreWriter` (and `write_store` on top of it) writes `<out>.partial` and renames it at the end, so an interrupted or failed prep
never leaves a file that looks complete. `open_store` refuses unknown format versions;
`verify_store` lists every problem it finds; `store_summary` is what `hiclr-prep info` prints.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from data_prep import __version__
from data_prep.checksums import content_problems, implausible_size, write_content_checksums
from hiclr.common.atomic import atomic_path
from hiclr.common.errors import UserError

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
FRAME50_SHAPE = (3, 50, 25, 2)
RAW_SHAPE = (25, 3, 2)
_BLOCK = 512  # samples per read/write block: bounds memory on NTU120 scale files
_JSON_ATTRS = ("preset", "counts", "split_sha256", "source")


def split_sha256(index: np.ndarray) -> str:
    """sha256 hex digest of the little-endian int64 bytes of a split index array."""
    return hashlib.sha256(np.ascontiguousarray(index, dtype="<i8").tobytes()).hexdigest()


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


class StoreWriter:
    """Append samples to a new store block by block; `finish` adds columns, splits, attributes.

    Memory stays bounded by one block of samples whatever the dataset size: frame50 and `/raw` are
    resizable datasets that grow as blocks arrive. The file is `<out>.partial` until `finish`
    renames it; `abort` (or leaving the `with` block by an exception) removes it.
    """

    def __init__(
        self, out_path: str | os.PathLike, *, raw: bool, compression: str | None = None, block: int | None = None
    ):
        if compression not in (None, "gzip", "lzf"):
            raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
        self.out = Path(out_path)
        self.names: list[str] = []
        self._block = max(1, int(block or _BLOCK))
        self._pending: list[tuple[np.ndarray | None, np.ndarray]] = []
        self._lengths: list[int] = []
        self._frames_written = 0
        self._stack = contextlib.ExitStack()
        self._partial = self._stack.enter_context(atomic_path(self.out))
        self._file = self._stack.enter_context(h5py.File(self._partial, "w"))
        self._frame50 = self._file.create_group("views").create_dataset(
            "frame50",
            shape=(0,) + FRAME50_SHAPE,
            maxshape=(None,) + FRAME50_SHAPE,
            dtype=np.float32,
            chunks=(1,) + FRAME50_SHAPE,
            compression=compression,
        )
        self._raw = None
        if raw:
            self._raw = self._file.create_group("raw").create_dataset(
                "data",
                shape=(0,) + RAW_SHAPE,
                maxshape=(None,) + RAW_SHAPE,
                dtype=np.float32,
                chunks=(1024,) + RAW_SHAPE,
                compression=compression,
            )

    def append(self, name: str, bodies: np.ndarray | None, frame50: np.ndarray) -> None:
        """One sample: `bodies` `(T, V, C, M)` float32 (None when the store has no `/raw`), frame50 `(C, 50, V, M)`."""
        frame50 = np.asarray(frame50, dtype=np.float32)
        if frame50.shape != FRAME50_SHAPE:
            raise ValueError(f"frame50 of {name} must be {FRAME50_SHAPE}, got {frame50.shape}")
        if (bodies is None) != (self._raw is None):
            raise ValueError(f"{name}: bodies must be given exactly when the store has /raw")
        if bodies is not None:
            bodies = np.asarray(bodies, dtype=np.float32)
            if bodies.shape[1:] != RAW_SHAPE:
                raise ValueError(f"bodies of {name} must be (T,) + {RAW_SHAPE}, got {bodies.shape}")
            self._lengths.append(int(bodies.shape[0]))
        self.names.append(str(name))
        self._pending.append((bodies, frame50))
        if len(self._pending) >= self._block:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        lo = self._frame50.shape[0]
        self._frame50.resize(lo + len(self._pending), axis=0)
        self._frame50[lo:] = np.stack([view for _, view in self._pending])
        if self._raw is not None:
            blocks = [b for b, _ in self._pending if b.shape[0]]
            if blocks:
                stacked = np.concatenate(blocks)
                start = self._frames_written
                self._raw.resize(start + stacked.shape[0], axis=0)
                self._raw[start:] = stacked
                self._frames_written += stacked.shape[0]
        self._pending = []

    def finish(
        self,
        *,
        dataset: str,
        samples: dict[str, np.ndarray],
        splits: dict[str, dict[str, np.ndarray]],
        attrs: dict,
        class_names: list[str] | None = None,
    ) -> Path:
        """Write the columns (`name` in append order), splits, class names and attributes; rename.

        `class_names`: one per class (`/classes/name`); default: the dataset's (`data_prep.classes`).
        """
        self._flush()
        f, n = self._file, len(self.names)
        names = [str(x) for x in samples["name"]]
        if names != self.names:
            raise ValueError("samples['name'] must list the appended samples in append order")
        if len(set(names)) != n:
            raise ValueError("sample names must be unique")
        for key, column in samples.items():
            if len(column) != n:
                raise ValueError(f"samples[{key!r}] has {len(column)} rows, 'name' has {n}")
        group = f.create_group("samples")
        for key, column in samples.items():
            if key == "name":
                group.create_dataset("name", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
            else:
                group.create_dataset(key, data=np.asarray(column, dtype=np.int64))
        if self._raw is not None:
            lengths = np.asarray(self._lengths, dtype=np.int64)
            offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64) if n else lengths
            f["raw"].create_dataset("offset", data=offsets)
            f["raw"].create_dataset("length", data=lengths)

        checksums = {}
        sgroup = f.create_group("splits")
        for protocol, parts in splits.items():
            pgroup = sgroup.create_group(protocol)
            for part, index in parts.items():
                index = np.asarray(index, dtype=np.int64)
                pgroup.create_dataset(part, data=index)
                checksums[f"{protocol}/{part}"] = split_sha256(index)

        extra = dict(attrs)
        labels = np.asarray(samples.get("label", np.zeros(0, np.int64)), dtype=np.int64)
        num_classes = int(extra.pop("num_classes", int(labels.max()) + 1 if labels.size else 0))
        if class_names is None:
            from data_prep.classes import class_names as dataset_class_names

            class_names = dataset_class_names(dataset, num_classes)
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        f.create_group("classes").create_dataset(
            "name", data=np.array([str(c) for c in class_names], dtype=object), dtype=h5py.string_dtype("utf-8")
        )
        counts = dict(extra.pop("counts", {}))
        counts["samples"] = n
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["dataset"] = dataset
        f.attrs["num_classes"] = num_classes
        f.attrs["tool_version"] = f"hiclr-toolkit {__version__}"
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["preset"] = json.dumps(extra.pop("preset", {}), default=_json_default)
        f.attrs["counts"] = json.dumps(counts, default=_json_default)
        f.attrs["split_sha256"] = json.dumps(checksums)
        for key, value in extra.items():
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, default=_json_default)
            elif isinstance(value, Path):
                value = str(value)
            f.attrs[key] = value
        write_content_checksums(f)
        self._stack.close()  # closes the file, fsyncs and renames `.partial` over `out`
        return self.out

    def abort(self) -> None:
        """Drop the partial file (nothing is left under `out`)."""
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._stack.__exit__(exc_type, exc, tb)
        return False


def write_store(
    out_path: str | os.PathLike,
    *,
    dataset: str,
    samples: dict[str, np.ndarray],
    bodies: list[np.ndarray] | None,
    frame50: np.ndarray,
    splits: dict[str, dict[str, np.ndarray]],
    attrs: dict,
    compression: str | None = None,
    class_names: list[str] | None = None,
) -> Path:
    """Write a whole store held in memory (through `StoreWriter`); return the final path.

    `samples`: columns with one row per sample (`name` str, `label` int64, metadata ints);
    `bodies`: per sample `(T_i, V, C, M)` float32 (None: no `/raw`); `frame50` `(N, C, 50, V, M)`;
    `splits`: `{protocol: {"train": idx, "test": idx}}`; `attrs`: JSON-able extras (preset,
    counts, source, num_classes ...). `compression`: None, "gzip" or "lzf".
    """
    names = [str(n) for n in samples["name"]]
    n = len(names)
    if len(set(names)) != n:
        raise ValueError("sample names must be unique")
    frame50 = np.asarray(frame50)
    if frame50.shape != (n,) + FRAME50_SHAPE:
        raise ValueError(f"frame50 must be {(n,) + FRAME50_SHAPE}, got {frame50.shape}")
    if bodies is not None and len(bodies) != n:
        raise ValueError(f"bodies has {len(bodies)} samples, 'name' has {n}")
    with StoreWriter(out_path, raw=bodies is not None, compression=compression) as writer:
        for i, name in enumerate(names):
            writer.append(name, None if bodies is None else bodies[i], frame50[i])
        return writer.finish(dataset=dataset, samples=samples, splits=splits, attrs=attrs, class_names=class_names)


def open_store(path: str | os.PathLike) -> h5py.File:
    """Open a store read-only; `UserError` if it is missing, not HDF5, or of an unknown version."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; create it with `hiclr-prep ntu60|ntu120|pkummd|import ...`")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path}: not an HDF5 file; give a file written by hiclr-prep") from None
    version = f.attrs.get("format_version")
    if version is None or int(version) not in SUPPORTED_VERSIONS:
        f.close()
        shown = "none" if version is None else int(version)
        raise UserError(
            f"{path}: store format version {shown} is not one this tool reads "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))}); re-create the file "
            f"with this version of hiclr-prep or upgrade hiclr-toolkit"
        )
    return f


def _attr_json(f: h5py.File, key: str, default):
    value = f.attrs.get(key)
    if value is None:
        return default
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


def _finite_blocks(ds: h5py.Dataset) -> int:
    """Number of non-finite values in `ds`, read in blocks (0 for a dataset whose size is implausible:
    `content_problems` reports it)."""
    if implausible_size(ds):
        return 0
    bad = 0
    step = max(1, 16_000_000 // max(1, int(np.prod(ds.shape[1:]))))
    for lo in range(0, ds.shape[0], step):
        bad += int((~np.isfinite(ds[lo : lo + step])).sum())
    return bad


@contextlib.contextmanager
def damaged_store_guard(path):
    """Whatever h5py raises while reading a store whose metadata is damaged becomes one `UserError`."""
    try:
        yield
    except UserError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError, UnicodeError) as err:
        raise UserError(
            f"{path}: the HDF5 file is damaged and cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:100] if str(err) else ''}); re-create it with hiclr-prep "
            f"or restore a copy"
        ) from None


def verify_store(path: str | os.PathLike) -> list[str]:
    """Every problem found in the store (empty list: the file is sound), the content checksums included."""
    with damaged_store_guard(path), open_store(path) as f:
        problems = _problems(f)
        return problems + content_problems(f) if problems != ["/samples/name is missing"] else problems


def _problems(f: h5py.File) -> list[str]:
    """`verify_store`'s structural checks on an open store."""
    problems: list[str] = []
    if "samples" not in f or "name" not in f["samples"]:
        return ["/samples/name is missing"]
    samples = f["samples"]
    names = samples["name"].asstr()[()]
    n = len(names)
    for key in samples:
        if samples[key].shape != (n,):
            problems.append(f"/samples/{key} has shape {samples[key].shape}, expected ({n},)")
    if len(set(names)) != n:
        problems.append(f"/samples/name holds {n - len(set(names))} duplicate names")
    num_classes = int(f.attrs.get("num_classes", 0))
    if "label" not in samples:
        problems.append("/samples/label is missing")
    else:
        labels = samples["label"][()]
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            problems.append(
                f"/samples/label spans {labels.min()}..{labels.max()}, "
                f"outside 0..{num_classes - 1} (num_classes = {num_classes})"
            )

    if "views/frame50" not in f:
        problems.append("/views/frame50 is missing")
    else:
        ds = f["views/frame50"]
        if ds.shape != (n,) + FRAME50_SHAPE or ds.dtype != np.float32:
            problems.append(f"/views/frame50 is {ds.dtype} {ds.shape}, expected float32 {(n,) + FRAME50_SHAPE}")
        else:
            bad = _finite_blocks(ds)
            if bad:
                problems.append(f"/views/frame50 holds {bad} non-finite values")

    if "raw" in f:
        raw = f["raw"]
        if not all(k in raw for k in ("data", "offset", "length")):
            problems.append("/raw must hold data, offset and length")
        else:
            data, offset, length = raw["data"], raw["offset"][()], raw["length"][()]
            if data.shape[1:] != RAW_SHAPE:
                problems.append(f"/raw/data has rows of shape {data.shape[1:]}, expected {RAW_SHAPE}")
            if offset.shape != (n,) or length.shape != (n,):
                problems.append(f"/raw/offset and /raw/length must have shape ({n},)")
            elif n:
                expected = np.concatenate(([0], np.cumsum(length)[:-1]))
                if (length < 0).any() or not np.array_equal(offset, expected) or int(length.sum()) != data.shape[0]:
                    problems.append("/raw/offset and /raw/length do not tile /raw/data")
            bad = _finite_blocks(data)
            if bad:
                problems.append(f"/raw/data holds {bad} non-finite values")

    stored = _attr_json(f, "split_sha256", {})
    declared_missing = _attr_json(f, "counts", {}).get("parts_missing", {})  # an import of one part
    meta = {k: samples[k][()] for k in ("performer", "camera", "view") if k in samples}
    if "splits" not in f or not len(f["splits"]):
        problems.append("/splits holds no protocol")
    for protocol in f["splits"] if "splits" in f else []:
        parts = {}
        for part in ("train", "test"):
            key = f"{protocol}/{part}"
            if part not in f["splits"][protocol]:
                if part not in declared_missing.get(protocol, []):
                    problems.append(f"/splits/{key} is missing")
                continue
            index = f["splits"][protocol][part][()]
            parts[part] = index
            if index.dtype != np.int64:
                problems.append(f"/splits/{key} is {index.dtype}, expected int64")
            if index.size and (np.diff(index) <= 0).any():
                problems.append(f"/splits/{key} is not sorted and unique")
            if index.size and (index.min() < 0 or index.max() >= n):
                problems.append(f"/splits/{key} indexes outside 0..{n - 1}")
            if key not in stored:
                problems.append(f"/splits/{key} has no stored sha256")
            elif stored[key] != split_sha256(index):
                problems.append(f"/splits/{key} does not match its stored sha256")
        if len(parts) == 2:
            train, test = parts["train"], parts["test"]
            both = np.intersect1d(train, test)
            if both.size:
                problems.append(f"/splits/{protocol}: {both.size} samples are in both train and test")
            in_range = lambda idx: idx[(idx >= 0) & (idx < n)]  # noqa: E731
            column = {"xsub": "performer", "xview": "camera" if "camera" in meta else "view"}.get(protocol)
            if column in meta:
                shared = np.intersect1d(meta[column][in_range(train)], meta[column][in_range(test)])
                if shared.size:
                    what = {"performer": "subjects", "camera": "cameras", "view": "views"}[column]
                    problems.append(
                        f"/splits/{protocol}: {what} {shared.tolist()[:10]} are on both the train and the test side"
                    )
    return problems


def stored_class_names(f: h5py.File) -> list[str]:
    """`/classes/name` of an open store; `class 0`, `class 1` ... for stores written before it existed."""
    if "classes/name" in f:
        return [str(x) for x in f["classes/name"].asstr()[()]]
    return [f"class {k}" for k in range(int(f.attrs.get("num_classes", 0)))]


def store_summary(path: str | os.PathLike) -> dict:
    """Dataset, counts, classes, protocols with sizes, preset: what `hiclr-prep info` prints."""
    with damaged_store_guard(path), open_store(path) as f:
        labels = f["samples/label"][()] if "samples/label" in f else np.zeros(0, np.int64)
        protocols = {
            p: {part: int(f["splits"][p][part].shape[0]) for part in ("train", "test") if part in f["splits"][p]}
            for p in (f["splits"] if "splits" in f else [])
        }
        return {
            "path": str(path),
            "dataset": str(f.attrs.get("dataset", "")),
            "format_version": int(f.attrs["format_version"]),
            "tool_version": str(f.attrs.get("tool_version", "")),
            "created": str(f.attrs.get("created", "")),
            "samples": int(f["samples/name"].shape[0]) if "samples/name" in f else 0,
            "num_classes": int(f.attrs.get("num_classes", 0)),
            "classes_present": int(np.unique(labels).size),
            "labels_present": [int(k) for k in np.unique(labels)],
            "class_names": stored_class_names(f),
            "views": sorted(f["views"]) if "views" in f else [],
            "view_shapes": {v: list(f["views"][v].shape) for v in f["views"]} if "views" in f else {},
            "raw_frames": int(f["raw/data"].shape[0]) if "raw/data" in f else 0,
            "protocols": protocols,
            "preset": _attr_json(f, "preset", {}),
            "counts": _attr_json(f, "counts", {}),
            "split_sha256": _attr_json(f, "split_sha256", {}),
        }
