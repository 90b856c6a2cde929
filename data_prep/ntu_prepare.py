"""NTU RGB+D 60 / 120: a folder of raw `.skeleton` files -> one HDF5 store (frame50, raw bodies, splits).

`prepare_ntu` is the whole pipeline as a library function (as `prepare_pkummd` is for PKU-MMD);
`hiclr-prep ntu60|ntu120` is a thin command on it. Parsed samples stream from the worker
processes into the store block by block (`StoreWriter`, `ordered_map`), so memory stays bounded
whatever the number of files.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from data_prep.bodies import MOTION_FIXES, select_bodies
from data_prep.classes import CLASS_NAMES_FILE, class_names, read_class_names
from data_prep.empty import empty_counts, is_empty
from data_prep.missing import load_missing_list, missing_samples
from data_prep.ntu import parse_ntu_name, read_skeleton
from data_prep.parallel import ordered_map
from data_prep.presets import FRAME50_PARAMS, frame50
from data_prep.splits import NTU60_MAX_SETUP, NUM_CLASSES, ntu_splits
from data_prep.store import StoreWriter
from hiclr.common.errors import UserError
from hiclr.common.progress import progress

META = ("setup", "camera", "performer", "replication", "action")


def prepare_ntu(
    dataset: str,
    raw,
    out,
    *,
    bodies: str = "file-order",
    motion_fixes=(),
    workers: int = 1,
    missing_list=None,
    limit: int | None = None,
    skip_bad: bool = False,
    compression: str | None = None,
    class_names_file=None,
) -> dict:
    """Prepare `dataset` ("ntu60" or "ntu120") from the `.skeleton` files in `raw` into the store
    `out`; return a summary (samples, classes present, counts, split sizes, the files read).

    bodies: "file-order" (the reference's) or "motion" (CTR-GCN's denoising, `motion_fixes` from
    `MOTION_FIXES` or "all"); missing_list: a file of names to skip instead of the bundled official
    list; class_names_file: one action name per line (default: raw/class_names.txt if present, else
    the official names).
    """
    raw, out = Path(raw), Path(out)
    if workers < 1:
        raise UserError(f"--workers {workers}: give 1 or more worker processes")
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: give a positive number of files")
    if out.suffix not in (".h5", ".hdf5"):
        raise UserError(f"--out {out}: the store must be an .h5 or .hdf5 file")
    fixes = tuple(MOTION_FIXES) if "all" in motion_fixes else tuple(dict.fromkeys(motion_fixes))
    if fixes and bodies != "motion":
        raise UserError(f"--motion-fix {fixes[0]} corrects the motion denoising; add --bodies motion or drop it")
    missing = load_missing_list(missing_list) if missing_list else missing_samples(dataset)
    paths, counts = list_samples(raw, dataset, missing, limit)
    num_classes = NUM_CLASSES[dataset]
    names_file = Path(class_names_file) if class_names_file else raw / CLASS_NAMES_FILE
    given_names = read_class_names(names_file) if class_names_file or names_file.is_file() else None
    for path in paths:
        action = parse_ntu_name(path.name)["action"]
        if action > num_classes:
            raise UserError(
                f"{path.name}: action A{action:03d} is outside the {num_classes} classes of {dataset}; "
                f"use `hiclr-prep ntu120` for actions above 60"
            )

    work = partial(_prepare_one, method=bodies, fixes=fixes, skip_bad=skip_bad)
    items = [str(p) for p in paths]
    bad: list[str] = []
    empty: list[str] = []
    with StoreWriter(out, raw=True, compression=compression) as writer:
        with progress(len(items), desc=f"{dataset} parse", unit="file") as bar:
            for result in ordered_map(work, items, workers):
                if result[0] is not None:
                    writer.append(*result)
                elif len(result) == 3:
                    empty.append(result[2])
                else:
                    bad.append(result[1])
                bar.update()
        if not writer.names:
            first = bad[0] if bad else f"{empty[0]} holds no non-zero coordinate"
            raise UserError(f"{raw}: none of the {len(items)} files holds a usable clip (first: {first})")
        names = writer.names
        meta = {k: np.array([parse_ntu_name(n)[k] for n in names], dtype=np.int64) for k in META}
        labels = meta["action"] - 1
        samples = {"name": np.array(names, dtype=object), "label": labels.astype(np.int64), **meta}
        splits = ntu_splits(meta, dataset)
        counts["skipped_bad"] = len(bad)
        counts.update(empty_counts(empty))
        if bad:
            counts["bad_files"] = bad[:50]
        preset = {"frame50": FRAME50_PARAMS, "bodies": bodies, "raw": "selected bodies, all frames"}
        if bodies == "motion":
            preset["motion_fixes"] = list(fixes)
        attrs = {
            "num_classes": num_classes,
            "preset": preset,
            "counts": counts,
            "source": {
                "raw": str(raw.resolve()),
                "missing_list": str(missing_list) if missing_list else f"bundled {dataset}",
            },
        }
        writer.finish(
            dataset=dataset,
            samples=samples,
            splits=splits,
            attrs=attrs,
            class_names=class_names(dataset, num_classes, given_names),
        )
    return {
        "out": str(out),
        "dataset": dataset,
        "samples": len(names),
        "classes_present": int(np.unique(labels).size),
        "counts": counts,
        "bad_files": len(bad),
        "empty_files": len(empty),
        "splits": {p: {"train": len(s["train"]), "test": len(s["test"])} for p, s in splits.items()},
        "files": items,
    }


def summary_line(summary: dict) -> str:
    """The one line `hiclr-prep ntu60|ntu120` ends with."""
    dataset, counts = summary["dataset"], summary["counts"]
    sizes = ", ".join(f"{p} {s['train']}/{s['test']}" for p, s in summary["splits"].items())
    return (
        f"wrote {summary['out']}: {summary['samples']} samples of {dataset} ({summary['classes_present']} "
        f"classes present), skipped {counts['skipped_missing']} on the missing list, "
        f"{summary['empty_files']} empty and {summary['bad_files']} malformed, {counts['outside_dataset']} outside {dataset}; "
        f"splits train/test: {sizes}"
    )


def _prepare_one(path: str, method: str, fixes: tuple, skip_bad: bool):
    """Worker: one file -> (name, bodies (T, V, C, M), frame50 (C, 50, V, M)), (None, message) for a
    malformed file, or (None, None, name) for an empty clip (`data_prep.empty`)."""
    try:
        bodies = select_bodies(read_skeleton(path), method, fixes)
    except UserError as err:
        if skip_bad:
            return None, str(err)
        raise
    name = Path(path).name[: -len(".skeleton")]
    if is_empty(bodies):
        return None, None, name
    return name, bodies, frame50(bodies)


def list_samples(raw: Path, dataset: str, missing: frozenset[str], limit: int | None):
    """Sorted `.skeleton` paths to prepare, plus counts of what was left out and why."""
    if not raw.is_dir():
        raise UserError(f"{raw}: not a folder; give --raw the folder holding the NTU .skeleton files")
    files = sorted(raw.glob("*.skeleton"), key=lambda p: p.name)
    if not files:
        raise UserError(
            f"{raw}: no .skeleton files found; give --raw the folder holding the NTU "
            f".skeleton files (e.g. nturgb+d_skeletons/)"
        )
    keep, skipped_missing, outside = [], 0, 0
    for path in files:
        meta = parse_ntu_name(path.name)
        stem = path.name[: -len(".skeleton")]
        if dataset == "ntu60" and meta["setup"] > NTU60_MAX_SETUP:
            outside += 1
        elif stem in missing:
            skipped_missing += 1
        else:
            keep.append(path)
    if limit is not None:
        keep = keep[:limit]
    if not keep:
        raise UserError(
            f"{raw}: none of the {len(files)} .skeleton files belongs to {dataset} once the "
            f"missing-skeleton samples are left out; check --raw and the dataset name"
        )
    return keep, {"files_found": len(files), "skipped_missing": skipped_missing, "outside_dataset": outside}
