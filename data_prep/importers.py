"""Import the files other toolkits pass around into our HDF5 store.

ST-GCN, AimCLR / HiCLR, CTR-GCN and PYSKL files stream into a `StoreWriter`; arrays are read with
`np.load(allow_pickle=False)`, pickles with `data_prep.safe_pickle`. The formats, where the class count
comes from and the memory bound: docs/data.md (`hiclr-prep import`); raw coordinates and frame50:
docs/internals.md, 'Data side'.
"""

from __future__ import annotations

import functools
import math
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from data_prep.empty import empty_counts, is_empty
from data_prep.safe_pickle import safe_load
from hiclr.common.errors import UserError

V, C, M = 25, 3, 2
NTU_META = ("setup", "camera", "performer", "replication", "action")
KINDS = ("stgcn", "aimclr", "ctrgcn", "pyskl")


# PKU-MMD phase 2 holds 41 actions but labels them by phase 1's ids 1..51 (data_prep.pkummd)
DATASET_CLASSES = {"ntu60": 60, "ntu120": 120, "pkummd1": 51, "pkummd2": 51}
MAX_CLASSES = 10_000  # 0-based labels beyond this are corrupt (NTU120 has 120 classes)
COORD_LIMIT = 1.0e4  # metres, as the raw readers (ntu.COORD_LIMIT)
_ARCHIVE_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass
class Imported:
    """What an importer produced: names, labels, splits, and the samples as a stream.

    `rows()` yields one `(bodies (T, V, C, M) or None, frame50 (C, 50, V, M) or None)` per sample,
    in `names` order; `has_raw` says which of the two it gives.
    """

    names: list[str]
    labels: np.ndarray
    has_raw: bool
    rows: Callable[[], Iterator[tuple[np.ndarray | None, np.ndarray | None]]]
    splits: dict[str, dict[str, np.ndarray]]
    source: dict = field(default_factory=dict)
    label_width: int | None = None  # CTR-GCN's one-hot width: the class count of its dataset


# ---------------------------------------------------------------------------------- file access


def _npy_header(f) -> tuple[tuple, np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) of the `.npy` stream `f`, positioned at its start."""
    version = np.lib.format.read_magic(f)
    reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if reader is None:
        raise ValueError(f"unknown .npy format version {version}")
    try:
        shape, fortran, dtype = reader(f, max_header_size=10_000)
    except (ValueError, EOFError):
        raise
    except Exception as err:  # noqa: BLE001 - the header is parsed as a Python literal
        raise ValueError(f"unreadable .npy header ({type(err).__name__})") from None
    if any(d < 0 for d in shape) or math.prod(shape) * max(1, dtype.itemsize) >= 2**62:
        raise ValueError(f"impossible shape {tuple(shape)[:6]} in the .npy header")
    return shape, dtype, fortran, f.tell()


def check_not_truncated(path: str, what: str) -> None:
    """A `.npy` file shorter than its header declares is reported as truncated."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                return
            f.seek(0)
            shape, dtype, _, offset = _npy_header(f)
    except OSError:
        return
    except (ValueError, EOFError) as err:
        raise UserError(
            f"{path}: {what} has an unreadable .npy header ({str(err)[:60]}); the file is damaged, "
            f"copy or download it again"
        ) from None
    if dtype.hasobject:
        return
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < expected:
        raise UserError(
            f"{path}: {what} is truncated: its header declares {tuple(shape)} {dtype} "
            f"({expected:,} bytes) but the file holds {size:,}; copy or download it again"
        )


def load_array(path: str | os.PathLike, what: str, mmap: bool = False) -> np.ndarray:
    """`np.load(path, allow_pickle=False)` with one-sentence errors."""
    path = os.fspath(path)
    if os.path.isfile(path):
        check_not_truncated(path, what)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; check the path") from None
    except ValueError as err:
        raise UserError(
            f"{path}: {what} cannot be read without pickle ({str(err)[:80]}); re-save it as a plain numeric .npy array"
        ) from None
    except IsADirectoryError:
        raise UserError(f"{path}: {what} is a folder, not a file; check the path") from None
    except _ARCHIVE_ERRORS as err:
        raise UserError(
            f"{path}: {what} is not a readable .npy/.npz file ({type(err).__name__}: "
            f"{str(err)[:80]}); it may be truncated, copy or download it again"
        ) from None


def _numeric(path, array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "fiu":
        raise UserError(
            f"{path}: {what} holds {array.dtype} values, expected real numbers; pass the "
            f"numeric array that toolkit wrote"
        )
    return array


def _check_shape(path, array: np.ndarray, tail: tuple, what: str) -> None:
    if array.ndim != len(tail) + 1 or tuple(array.shape[1:]) != tail:
        want = "(N, " + ", ".join(str(t) for t in tail) + ")"
        raise UserError(
            f"{path}: {what} has shape {tuple(array.shape)}, expected {want}; pass the matching file of that toolkit"
        )


def read_label_pickle(path, n: int | None = None) -> tuple[list[str], np.ndarray]:
    """ST-GCN / AimCLR label pickle `(names, labels)` -> names, int64 labels."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        head = b""
    if head == b"\x93NUMPY":
        raise UserError(
            f"{path}: this is a .npy array, but the labels must be the label .pkl (sample names, "
            f"labels) written beside the data, e.g. train_label.pkl / val_label.pkl; pass that file"
        )
    obj = safe_load(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise UserError(
            f"{path}: expected a pickled pair (sample names, labels), found {type(obj).__name__}; "
            f"pass the label .pkl written by the ST-GCN/AimCLR data generator"
        )
    try:
        names = [_as_name(x) for x in obj[0]]
    except (TypeError, UnicodeError):
        raise UserError(
            f"{path}: the sample names are not a list of strings; pass the label .pkl written "
            f"by the ST-GCN/AimCLR data generator"
        ) from None
    try:
        labels = np.asarray([_as_label(x) for x in obj[1]], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(
            f"{path}: the labels are not integer class indices below {MAX_CLASSES}; pass the "
            f"label .pkl of the data file"
        ) from None
    if len(names) != labels.size:
        raise UserError(f"{path}: {len(names)} names but {labels.size} labels; the pickle is inconsistent")
    if n is not None and labels.size != n:
        raise UserError(
            f"{path}: {labels.size} labels for {n} samples in the data file; pass the label file "
            f"of the same part (train or test)"
        )
    return names, labels


def _as_label(x) -> int:
    """An integer class index (int, integral float, numpy scalar); anything else is a `ValueError`."""
    value = float(x) if not isinstance(x, (int, np.integer)) else int(x)
    if value != int(value) or not 0 <= value < MAX_CLASSES:
        raise ValueError(f"label {x!r}")
    return int(value)


def _as_name(x) -> str:
    name = x.decode() if isinstance(x, bytes) else str(x)
    return name[: -len(".skeleton")] if name.endswith(".skeleton") else name


# ------------------------------------------------------------------------------------ raw -> bodies


def trim(bodies: np.ndarray) -> np.ndarray:
    """(T, V, C, M) zero-padded -> up to the last frame with any non-zero coordinate (at least 1)."""
    nonzero = np.flatnonzero(np.abs(bodies).reshape(bodies.shape[0], -1).max(axis=1) > 0)
    end = int(nonzero[-1]) + 1 if nonzero.size else 1
    return np.ascontiguousarray(bodies[:end], dtype=np.float32)


def _pad_persons(x: np.ndarray) -> np.ndarray:
    """(T, V, C, m) with any m -> exactly M = 2 persons (extra ones dropped, missing ones zeros)."""
    if x.shape[-1] >= M:
        return x[..., :M]
    return np.concatenate([x, np.zeros(x.shape[:-1] + (M - x.shape[-1],), x.dtype)], axis=-1)


# -------------------------------------------------------------------------------------- importers

_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, UnicodeError)


def _one_sentence(kind: str):
    """Turn what a malformed (but safely loaded) input raises deep inside an importer into one sentence."""

    def wrap(importer):
        @functools.wraps(importer)
        def run(*args, **kwargs):
            try:
                return importer(*args, **kwargs)
            except _MALFORMED as err:
                raise UserError(
                    f"the {kind} input is not laid out as that toolkit writes it "
                    f"({type(err).__name__}: {str(err)[:80]}); pass the files that toolkit "
                    f"wrote"
                ) from None
            except _ARCHIVE_ERRORS as err:
                raise UserError(
                    f"the {kind} input cannot be read ({type(err).__name__}: {str(err)[:80]}); "
                    f"it is truncated or damaged, copy or download it again"
                ) from None

        return run

    return wrap


@_one_sentence("ST-GCN")
def import_stgcn(parts: dict[str, tuple[str, str]], protocol: str) -> Imported:
    """ST-GCN `{part: (data .npy (N, 3, 300, 25, 2), label .pkl)}` -> raw bodies and frame50."""
    names, labels, arrays, split = [], [], [], {}
    for part, (data_path, label_path) in parts.items():
        data = _numeric(data_path, load_array(data_path, "ST-GCN data", mmap=True), "ST-GCN data")
        if data.ndim != 5 or data.shape[1] != C or data.shape[3] != V or data.shape[4] < 1:
            raise UserError(
                f"{data_path}: ST-GCN data has shape {tuple(data.shape)}, expected (N, 3, T, 25, M) "
                f"(e.g. (N, 3, 300, 25, 2)); pass the *_data_joint.npy file"
            )
        if data.shape[2] == 50:
            raise UserError(
                f"{data_path}: ST-GCN data has 50 frames ({tuple(data.shape)}), the length of "
                f"AimCLR/HiCLR's frame50 files; import it with `hiclr-prep import aimclr`"
            )
        part_names, part_labels = read_label_pickle(label_path, data.shape[0])
        split[part] = np.arange(len(names), len(names) + len(part_names), dtype=np.int64)
        names += part_names
        labels.append(part_labels)
        arrays.append(data)

    def rows():
        for data in arrays:
            for i in range(data.shape[0]):
                yield trim(_pad_persons(np.asarray(data[i], dtype=np.float32).transpose(1, 2, 0, 3))), None

    return Imported(
        names,
        np.concatenate(labels),
        True,
        rows,
        {protocol: split},
        {k: [str(a), str(b)] for k, (a, b) in parts.items()},
    )


@_one_sentence("AimCLR")
def import_aimclr(parts: dict[str, tuple[str, str]], protocol: str) -> Imported:
    """AimCLR / HiCLR `{part: (*_position.npy (N, 3, 50, 25, 2), label .pkl)}` -> frame50 as given."""
    names, labels, arrays, split = [], [], [], {}
    for part, (data_path, label_path) in parts.items():
        data = _numeric(data_path, load_array(data_path, "AimCLR position data", mmap=True), "AimCLR position data")
        _check_shape(data_path, data, (C, 50, V, M), "AimCLR position data")
        part_names, part_labels = read_label_pickle(label_path, data.shape[0])
        split[part] = np.arange(len(names), len(names) + len(part_names), dtype=np.int64)
        names += part_names
        labels.append(part_labels)
        arrays.append(data)

    def rows():
        for data in arrays:
            for i in range(data.shape[0]):
                yield None, np.asarray(data[i], dtype=np.float32)

    return Imported(
        names,
        np.concatenate(labels),
        False,
        rows,
        {protocol: split},
        {k: [str(a), str(b)] for k, (a, b) in parts.items()},
    )


class NpzMember:
    """One array of an `.npz` archive, read in row blocks without loading it whole."""

    def __init__(self, archive: zipfile.ZipFile, key: str, path: str):
        self.archive, self.key, self.path = archive, key, path
        with archive.open(f"{key}.npy") as f:
            try:
                self.shape, self.dtype, self.fortran, _ = _npy_header(f)
            except ValueError as err:
                raise UserError(
                    f"{path}: {key} cannot be read ({str(err)[:60]}); re-save the archive with numeric arrays"
                ) from None
        if self.dtype.kind not in "fiu":
            raise UserError(
                f"{path}: {key} holds {self.dtype} values, not numbers; re-save the archive with numeric arrays"
            )
        self.ndim = len(self.shape)

    def blocks(self, rows: int = 256) -> Iterator[np.ndarray]:
        """Consecutive row blocks of the array (the whole array at once if stored in Fortran order)."""
        row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        with self.archive.open(f"{self.key}.npy") as f:
            _npy_header(f)
            if self.fortran:
                yield np.frombuffer(f.read(), dtype=self.dtype).reshape(self.shape, order="F")
                return
            for lo in range(0, self.shape[0], rows):
                count = min(rows, self.shape[0] - lo)
                data = f.read(count * row_items * self.dtype.itemsize)
                if len(data) < count * row_items * self.dtype.itemsize:
                    raise UserError(
                        f"{self.path}: {self.key} is truncated inside the archive; copy or download it again"
                    )
                yield np.frombuffer(data, dtype=self.dtype).reshape((count,) + tuple(self.shape[1:]))

    def read(self) -> np.ndarray:
        return np.concatenate(list(self.blocks())) if self.shape[0] else np.zeros(self.shape, self.dtype)


def _one_hot_labels(y: np.ndarray, path: str, key: str) -> np.ndarray:
    """CTR-GCN's one-hot rows -> class indices; a row without exactly one 1 is refused."""
    if y.shape[1] == 0:
        raise UserError(f"{path}: {key} has no classes (shape {tuple(y.shape)}); pass the CTR-GCN .npz file")
    ones = (y == 1).sum(axis=1)
    bad = np.flatnonzero((ones != 1) | ((y != 0) & (y != 1)).any(axis=1))
    if bad.size:
        row = int(bad[0])
        what = "is all zero" if not y[row].any() else "is not one-hot"
        raise UserError(
            f"{path}: {key} row {row} {what} ({bad.size} such rows); the labels are lost, "
            f"re-create the archive with CTR-GCN's seq_transformation.py"
        )
    return y.argmax(axis=1).astype(np.int64)


@_one_sentence("CTR-GCN")
def import_ctrgcn(npz_path: str, protocol: str) -> Imported:
    """CTR-GCN `.npz` (x_train (N, T, 150), one-hot y_train, x_test, y_test) -> raw bodies and frame50."""
    npz_path = os.fspath(npz_path)
    if not os.path.isfile(npz_path):
        raise UserError(f"{npz_path}: CTR-GCN archive not found; check the path")
    try:
        archive = zipfile.ZipFile(npz_path)
    except (zipfile.BadZipFile, OSError):
        raise UserError(
            f"{npz_path}: expected an .npz archive with x_train, y_train, x_test, y_test; "
            f"pass the NTU60_CS.npz-style file of CTR-GCN"
        ) from None
    found = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    names, labels, members, split, width = [], [], [], {}, None
    for part in ("train", "test"):
        for key in (f"x_{part}", f"y_{part}"):
            if key not in found:
                raise UserError(f"{npz_path}: no array '{key}' (found {', '.join(found)}); pass the CTR-GCN .npz file")
        x, y = NpzMember(archive, f"x_{part}", npz_path), NpzMember(archive, f"y_{part}", npz_path)
        if x.ndim != 3 or x.shape[2] != M * V * C:
            raise UserError(
                f"{npz_path}: x_{part} has shape {tuple(x.shape)}, expected (N, T, 150); pass the CTR-GCN .npz file"
            )
        if y.ndim == 2 and y.shape[0] == x.shape[0]:
            part_labels = _one_hot_labels(y.read(), npz_path, f"y_{part}")
            width = y.shape[1]
        elif y.ndim == 1 and y.shape[0] == x.shape[0]:
            values = y.read()
            if not np.isfinite(values).all() or (values != np.round(values)).any():
                raise UserError(f"{npz_path}: y_{part} holds labels that are not integers; pass the CTR-GCN .npz file")
            part_labels = values.astype(np.int64)
        else:
            raise UserError(
                f"{npz_path}: y_{part} has shape {tuple(y.shape)}, expected one-hot "
                f"({x.shape[0]}, classes); pass the CTR-GCN .npz file"
            )
        split[part] = np.arange(len(names), len(names) + x.shape[0], dtype=np.int64)
        names += [f"{part}_{i:06d}" for i in range(x.shape[0])]
        labels.append(part_labels)
        members.append(x)

    def rows():
        for x in members:
            for block in x.blocks():
                per = block.reshape(block.shape[0], block.shape[1], M, V, C).transpose(0, 1, 3, 4, 2)
                for b in per:  # (T, V, C, M)
                    yield trim(np.asarray(b, dtype=np.float32)), None

    return Imported(
        names, np.concatenate(labels), True, rows, {protocol: split}, {"npz": str(npz_path)}, label_width=width
    )


@_one_sentence("PYSKL")
def import_pyskl(ann_path: str) -> Imported:
    """PYSKL annotation `.pkl` -> raw bodies and frame50; every `<protocol>_train/_val` split kept."""
    obj = safe_load(ann_path)
    if not (isinstance(obj, dict) and "annotations" in obj and "split" in obj):
        raise UserError(
            f"{ann_path}: expected a dict with 'split' and 'annotations' (a PYSKL annotation "
            f"file); pass e.g. ntu60_3danno.pkl"
        )
    names, labels, bodies = [], [], []
    for k, ann in enumerate(obj["annotations"]):
        try:
            name, label, keypoint = _as_name(ann["frame_dir"]), int(ann["label"]), np.asarray(ann["keypoint"])
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(
                f"{ann_path}: annotation {k} lacks frame_dir, label or keypoint ({err}); pass a PYSKL annotation file"
            ) from None
        if keypoint.ndim != 4 or keypoint.shape[2] != V or keypoint.shape[3] < C:
            raise UserError(
                f"{ann_path}: annotation {k} ({name}) has keypoint shape {tuple(keypoint.shape)}, "
                f"expected (M, T, 25, 3); only 3D NTU-layout annotations can be imported"
            )
        total = int(ann.get("total_frames", keypoint.shape[1]))
        x = keypoint[:, :total, :, :C].astype(np.float32).transpose(1, 2, 3, 0)  # (T, V, C, m)
        names.append(name)
        labels.append(label)
        bodies.append(np.ascontiguousarray(_pad_persons(x)))
    index = {n: i for i, n in enumerate(names)}
    splits: dict[str, dict[str, np.ndarray]] = {}
    for split_name, members in obj["split"].items():
        protocol, _, part = str(split_name).rpartition("_")
        part = {"train": "train", "val": "test", "test": "test"}.get(part)
        if not protocol or part is None:
            continue
        try:
            idx = np.array(sorted(index[_as_name(m)] for m in members), dtype=np.int64)
        except KeyError as err:
            raise UserError(
                f"{ann_path}: split '{split_name}' names {err.args[0]}, which has no annotation; "
                f"the file is inconsistent"
            ) from None
        splits.setdefault(protocol, {})[part] = idx
    return Imported(
        names,
        np.asarray(labels, dtype=np.int64),
        True,
        lambda: ((b, None) for b in bodies),
        splits,
        {"ann": str(ann_path)},
    )


# ---------------------------------------------------------------------------------------- to store


def sample_columns(names: list[str], labels: np.ndarray) -> dict[str, np.ndarray]:
    """`name`, `label`, plus the NTU metadata columns when every name is an NTU sample name."""
    from data_prep.ntu import NAME_RE

    columns = {"name": np.array(names, dtype=object), "label": np.asarray(labels, dtype=np.int64)}
    matches = [NAME_RE.match(n) for n in names]
    if names and all(matches):
        values = np.array([[int(g) for g in m.groups()] for m in matches], dtype=np.int64)
        columns.update({key: values[:, i] for i, key in enumerate(NTU_META)})
    return columns


def resolve_dataset(imported: Imported, dataset: str | None, num_classes: int | None, kind: str) -> tuple[str, int]:
    """The dataset name and class count: as given, else inferred from the names or CTR-GCN's label width."""
    from data_prep.ntu import NAME_RE

    matches = [NAME_RE.match(n) for n in imported.names]
    ntu = bool(imported.names) and all(matches)
    beyond = None
    if ntu:
        values = np.array([[int(m.group(1)), int(m.group(5))] for m in matches])
        outside = np.flatnonzero((values[:, 0] > 17) | (values[:, 1] > 60))
        beyond = imported.names[int(outside[0])] if outside.size else None
    if dataset is None:
        if ntu:
            dataset = "ntu120" if beyond else "ntu60"
        elif imported.label_width in (60, 120):
            dataset = f"ntu{imported.label_width}"
        elif num_classes is None:
            raise UserError(
                f"the {kind} input does not say its dataset (no NTU sample names); pass --dataset "
                f"({', '.join(DATASET_CLASSES)}) or --dataset NAME --num-classes K"
            )
        else:
            dataset = "custom"
    if dataset == "ntu60" and beyond:
        raise UserError(
            f"the {kind} input holds NTU120 samples (e.g. {beyond}: setup above 17 or action above 60) "
            f"but --dataset is ntu60; pass --dataset ntu120 or an NTU60 file"
        )
    if num_classes is None:
        if dataset not in DATASET_CLASSES:
            raise UserError(
                f"--dataset {dataset}: unknown dataset, so its class count is unknown; pass --num-classes K"
            )
        num_classes = DATASET_CLASSES[dataset]
    if imported.labels.size and imported.labels.max() >= num_classes:
        raise UserError(
            f"the {kind} input has label {int(imported.labels.max())}, outside the {num_classes} "
            f"classes of {dataset}; pass the right --dataset or --num-classes"
        )
    return dataset, num_classes


def write_imported(imported: Imported, out, dataset: str | None, kind: str, num_classes: int | None = None) -> dict:
    """Check an `Imported`, stream it into the store; return a summary (with the parts each protocol lacks)."""
    from data_prep.presets import FRAME50_PARAMS, frame50
    from data_prep.store import StoreWriter

    n = len(imported.names)
    if n == 0:
        raise UserError(f"the {kind} input holds no samples; pass non-empty files")
    dupes = [x for x, k in Counter(imported.names).items() if k > 1]
    if dupes:
        raise UserError(
            f"the {kind} input names sample {sorted(dupes)[0]} more than once (e.g. in both train and "
            f"test); import one protocol per file"
        )
    if (imported.labels < 0).any():
        raise UserError(f"the {kind} input has negative labels; labels must be 0-based class indices")
    dataset, num_classes = resolve_dataset(imported, dataset, num_classes, kind)
    lacking = {p: [part for part in ("train", "test") if part not in parts] for p, parts in imported.splits.items()}
    lacking = {p: parts for p, parts in lacking.items() if parts}
    from data_prep.classes import class_names

    kept, empty = [], []
    with StoreWriter(out, raw=imported.has_raw) as writer:
        for i, (bodies, view) in enumerate(_rows(imported, kind)):
            if is_empty(bodies if bodies is not None else view):
                empty.append(imported.names[i])
                continue
            if bodies is not None and not (np.abs(bodies) <= COORD_LIMIT).all():
                raise UserError(
                    f"the {kind} input's sample {imported.names[i]} holds coordinates that are not "
                    f"finite or beyond +-{COORD_LIMIT:g} m; the source file is damaged"
                )
            if view is None:
                view = frame50(bodies)
            if not (np.abs(view) <= COORD_LIMIT).all():
                raise UserError(
                    f"the {kind} input holds coordinates that are not finite or beyond "
                    f"+-{COORD_LIMIT:g} m (sample {imported.names[i]}); check the source files"
                )
            writer.append(imported.names[i], bodies, view)
            kept.append(i)
        if not kept:
            raise UserError(f"the {kind} input holds no sample with a non-zero coordinate; pass non-empty files")
        names, labels, splits = _without_empty(imported, np.array(kept, dtype=np.int64))
        writer.finish(
            dataset=dataset,
            samples=sample_columns(names, labels),
            splits=splits,
            class_names=class_names(dataset, num_classes),
            attrs={
                "num_classes": num_classes,
                "preset": {
                    **FRAME50_PARAMS,
                    "imported_from": kind,
                    "frame50": "computed from raw" if imported.has_raw else "as given",
                },
                "source": {"kind": kind, **imported.source},
                "counts": {**empty_counts(empty), **({"parts_missing": lacking} if lacking else {})},
            },
        )
    return {
        "samples": len(kept),
        "raw": imported.has_raw,
        "dataset": dataset,
        "num_classes": num_classes,
        "missing_parts": lacking,
        "skipped_empty": len(empty),
        "splits": {p: {k: int(v.size) for k, v in parts.items()} for p, parts in splits.items()},
    }


def _rows(imported: Imported, kind: str):
    """`imported.rows()`, with what a damaged source raises while it streams as one sentence."""
    try:
        yield from imported.rows()
    except _ARCHIVE_ERRORS as err:
        raise UserError(
            f"the {kind} input cannot be read to its end ({type(err).__name__}: {str(err)[:80]}); "
            f"it is truncated or damaged, copy or download it again"
        ) from None
    except _MALFORMED as err:
        raise UserError(
            f"the {kind} input is not laid out as that toolkit writes it ({type(err).__name__}: "
            f"{str(err)[:80]}); pass the files that toolkit wrote"
        ) from None


def _without_empty(imported: Imported, kept: np.ndarray):
    """Names, labels and splits of the `kept` samples (the empty clips left out), splits re-indexed."""
    if kept.size == len(imported.names):
        return imported.names, imported.labels, imported.splits
    new_index = np.full(len(imported.names), -1, dtype=np.int64)
    new_index[kept] = np.arange(kept.size)
    splits = {
        p: {part: new_index[idx][new_index[idx] >= 0] for part, idx in parts.items()}
        for p, parts in imported.splits.items()
    }
    return [imported.names[i] for i in kept.tolist()], imported.labels[kept], splits
