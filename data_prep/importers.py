"""Import the files other toolkits pass around into our HDF5 store.

- ST-GCN: `(N, 3, 300, 25, 2)` `.npy` + label `.pkl` `(names, labels)`, one pair per part (train, test);
- AimCLR / HiCLR: `*_position.npy` `(N, 3, 50, 25, 2)` (already frame50) + label `.pkl`;
- CTR-GCN: `.npz` with `x_train (N, 300, 150)`, one-hot `y_train`, `x_test`, `y_test`;
- PYSKL: annotation `.pkl` `{"split": {name: [frame_dir ...]}, "annotations": [{frame_dir, label,
  keypoint (M, T, V, C), total_frames}, ...]}`.

Arrays are read with `np.load(allow_pickle=False)`, pickles with `data_prep.safe_pickle`. Where raw
coordinates exist they go to `/raw` and frame50 is computed from them; AimCLR's frame50 is stored
as given (no `/raw`).
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from data_prep.errors import UserError
from data_prep.safe_pickle import safe_load

V, C, M = 25, 3, 2
NTU_META = ("setup", "camera", "performer", "replication", "action")
KINDS = ("stgcn", "aimclr", "ctrgcn", "pyskl")


@dataclass
class Imported:
    """What an importer produced: sample columns, raw bodies (or None), frame50 (or None), splits."""
    names: list[str]
    labels: np.ndarray
    bodies: list[np.ndarray] | None
    frame50: np.ndarray | None
    splits: dict[str, dict[str, np.ndarray]]
    source: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------- file access

def load_array(path: str | os.PathLike, what: str, mmap: bool = False) -> np.ndarray:
    """`np.load(path, allow_pickle=False)` with one-sentence errors."""
    path = os.fspath(path)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; check the path") from None
    except ValueError as err:
        raise UserError(f"{path}: {what} cannot be read without pickle ({str(err)[:80]}); "
                        f"re-save it as a plain numeric .npy array") from None
    except OSError as err:
        raise UserError(f"{path}: {what} is not a .npy/.npz file ({str(err)[:80]}); check the path") from None


def _check_shape(path, array: np.ndarray, tail: tuple, what: str) -> None:
    if array.ndim != len(tail) + 1 or tuple(array.shape[1:]) != tail:
        want = "(N, " + ", ".join(str(t) for t in tail) + ")"
        raise UserError(f"{path}: {what} has shape {tuple(array.shape)}, expected {want}; "
                        f"pass the matching file of that toolkit")


def read_label_pickle(path, n: int | None = None) -> tuple[list[str], np.ndarray]:
    """ST-GCN / AimCLR label pickle `(names, labels)` -> names, int64 labels."""
    obj = safe_load(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise UserError(f"{path}: expected a pickled pair (sample names, labels), found {type(obj).__name__}; "
                        f"pass the label .pkl written by the ST-GCN/AimCLR data generator")
    names = [_as_name(x) for x in obj[0]]
    try:
        labels = np.asarray([int(x) for x in obj[1]], dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: the labels are not integers; pass the label .pkl of the data file") from None
    if len(names) != labels.size:
        raise UserError(f"{path}: {len(names)} names but {labels.size} labels; the pickle is inconsistent")
    if n is not None and labels.size != n:
        raise UserError(f"{path}: {labels.size} labels for {n} samples in the data file; pass the label file "
                        f"of the same part (train or test)")
    return names, labels


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

def import_stgcn(parts: dict[str, tuple[str, str]], protocol: str) -> Imported:
    """ST-GCN `{part: (data .npy (N, 3, 300, 25, 2), label .pkl)}` -> raw bodies and frame50."""
    names, labels, bodies, split = [], [], [], {}
    for part, (data_path, label_path) in parts.items():
        data = load_array(data_path, "ST-GCN data", mmap=True)
        if data.ndim != 5 or data.shape[1] != C or data.shape[3] != V or data.shape[4] < 1:
            raise UserError(f"{data_path}: ST-GCN data has shape {tuple(data.shape)}, expected (N, 3, T, 25, M) "
                            f"(e.g. (N, 3, 300, 25, 2)); pass the *_data_joint.npy file")
        part_names, part_labels = read_label_pickle(label_path, data.shape[0])
        split[part] = np.arange(len(names), len(names) + len(part_names), dtype=np.int64)
        names += part_names
        labels.append(part_labels)
        for i in range(data.shape[0]):
            bodies.append(trim(_pad_persons(np.asarray(data[i], dtype=np.float32).transpose(1, 2, 0, 3))))
    return Imported(names, np.concatenate(labels), bodies, None, {protocol: split},
                    {k: [str(a), str(b)] for k, (a, b) in parts.items()})


def import_aimclr(parts: dict[str, tuple[str, str]], protocol: str) -> Imported:
    """AimCLR / HiCLR `{part: (*_position.npy (N, 3, 50, 25, 2), label .pkl)}` -> frame50 as given."""
    names, labels, views, split = [], [], [], {}
    for part, (data_path, label_path) in parts.items():
        data = load_array(data_path, "AimCLR position data")
        _check_shape(data_path, data, (C, 50, V, M), "AimCLR position data")
        part_names, part_labels = read_label_pickle(label_path, data.shape[0])
        split[part] = np.arange(len(names), len(names) + len(part_names), dtype=np.int64)
        names += part_names
        labels.append(part_labels)
        views.append(np.asarray(data, dtype=np.float32))
    return Imported(names, np.concatenate(labels), None, np.concatenate(views), {protocol: split},
                    {k: [str(a), str(b)] for k, (a, b) in parts.items()})


def import_ctrgcn(npz_path: str, protocol: str) -> Imported:
    """CTR-GCN `.npz` (x_train (N, T, 150), one-hot y_train, x_test, y_test) -> raw bodies and frame50."""
    archive = load_array(npz_path, "CTR-GCN archive")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{npz_path}: expected an .npz archive with x_train, y_train, x_test, y_test; "
                        f"pass the NTU60_CS.npz-style file of CTR-GCN")
    names, labels, bodies, split = [], [], [], {}
    with archive:
        for part, suffix in (("train", "train"), ("test", "test")):
            for key in (f"x_{suffix}", f"y_{suffix}"):
                if key not in archive.files:
                    raise UserError(f"{npz_path}: no array '{key}' (found {', '.join(archive.files)}); "
                                    f"pass the CTR-GCN .npz file")
            try:
                x, y = archive[f"x_{suffix}"], archive[f"y_{suffix}"]
            except (ValueError, zipfile.BadZipFile) as err:
                raise UserError(f"{npz_path}: x_{suffix}/y_{suffix} cannot be read ({str(err)[:60]}); "
                                f"re-save the archive with numeric arrays") from None
            if x.ndim != 3 or x.shape[2] != M * V * C:
                raise UserError(f"{npz_path}: x_{suffix} has shape {tuple(x.shape)}, expected (N, T, 150); "
                                f"pass the CTR-GCN .npz file")
            if y.ndim == 2 and y.shape[0] == x.shape[0]:
                part_labels = y.argmax(axis=1).astype(np.int64)
            elif y.ndim == 1 and y.shape[0] == x.shape[0]:
                part_labels = y.astype(np.int64)
            else:
                raise UserError(f"{npz_path}: y_{suffix} has shape {tuple(y.shape)}, expected one-hot "
                                f"({x.shape[0]}, classes); pass the CTR-GCN .npz file")
            split[part] = np.arange(len(names), len(names) + x.shape[0], dtype=np.int64)
            names += [f"{part}_{i:06d}" for i in range(x.shape[0])]
            labels.append(part_labels)
            per = x.reshape(x.shape[0], x.shape[1], M, V, C).transpose(0, 1, 3, 4, 2)   # (N, T, V, C, M)
            bodies += [trim(np.asarray(b, dtype=np.float32)) for b in per]
    return Imported(names, np.concatenate(labels), bodies, None, {protocol: split}, {"npz": str(npz_path)})


def import_pyskl(ann_path: str) -> Imported:
    """PYSKL annotation `.pkl` -> raw bodies and frame50; every `<protocol>_train/_val` split kept."""
    obj = safe_load(ann_path)
    if not (isinstance(obj, dict) and "annotations" in obj and "split" in obj):
        raise UserError(f"{ann_path}: expected a dict with 'split' and 'annotations' (a PYSKL annotation "
                        f"file); pass e.g. ntu60_3danno.pkl")
    names, labels, bodies = [], [], []
    for k, ann in enumerate(obj["annotations"]):
        try:
            name, label, keypoint = _as_name(ann["frame_dir"]), int(ann["label"]), np.asarray(ann["keypoint"])
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{ann_path}: annotation {k} lacks frame_dir, label or keypoint ({err}); "
                            f"pass a PYSKL annotation file") from None
        if keypoint.ndim != 4 or keypoint.shape[2] != V or keypoint.shape[3] < C:
            raise UserError(f"{ann_path}: annotation {k} ({name}) has keypoint shape {tuple(keypoint.shape)}, "
                            f"expected (M, T, 25, 3); only 3D NTU-layout annotations can be imported")
        total = int(ann.get("total_frames", keypoint.shape[1]))
        x = keypoint[:, :total, :, :C].astype(np.float32).transpose(1, 2, 3, 0)   # (T, V, C, m)
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
            raise UserError(f"{ann_path}: split '{split_name}' names {err.args[0]}, which has no annotation; "
                            f"the file is inconsistent") from None
        splits.setdefault(protocol, {})[part] = idx
    return Imported(names, np.asarray(labels, dtype=np.int64), bodies, None, splits, {"ann": str(ann_path)})


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


def write_imported(imported: Imported, out, dataset: str, kind: str) -> dict:
    """Check an `Imported` and write it with `write_store`; return a summary."""
    from data_prep.presets import FRAME50_PARAMS, frame50
    from data_prep.store import write_store

    n = len(imported.names)
    if n == 0:
        raise UserError(f"the {kind} input holds no samples; pass non-empty files")
    dupes = [x for x, k in Counter(imported.names).items() if k > 1]
    if dupes:
        raise UserError(f"the {kind} input names sample {sorted(dupes)[0]} more than once (e.g. in both train and "
                        f"test); import one protocol per file")
    if (imported.labels < 0).any():
        raise UserError(f"the {kind} input has negative labels; labels must be 0-based class indices")
    views = imported.frame50
    if views is None:
        views = np.stack([frame50(b) for b in imported.bodies])
    if not np.isfinite(views).all():
        raise UserError(f"the {kind} input holds non-finite coordinates; check the source files")
    write_store(out, dataset=dataset, samples=sample_columns(imported.names, imported.labels),
                bodies=imported.bodies, frame50=views, splits=imported.splits,
                attrs={"preset": {**FRAME50_PARAMS, "imported_from": kind,
                                  "frame50": "as given" if imported.frame50 is not None else "computed from raw"},
                       "source": {"kind": kind, **imported.source}})
    return {"samples": n, "raw": imported.bodies is not None,
            "splits": {p: {k: int(v.size) for k, v in parts.items()} for p, parts in imported.splits.items()}}
