"""`hiclr-prep ntu60|ntu120`: raw NTU RGB+D `.skeleton` files -> one HDF5 store (frame50 + raw + splits).

Parsed samples stream from the worker processes into the store block by block (`StoreWriter`,
`ordered_map`), so memory stays bounded whatever the number of files.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path

import numpy as np

from data_prep.bodies import METHODS, MOTION_FIXES, select_bodies
from data_prep.classes import CLASS_NAMES_FILE, class_names, read_class_names
from data_prep.empty import empty_counts, is_empty
from data_prep.errors import UserError
from data_prep.memory import PeakMemory
from data_prep.missing import load_missing_list, missing_samples
from data_prep.ntu import parse_ntu_name, read_skeleton
from data_prep.parallel import ordered_map
from data_prep.presets import FRAME50_PARAMS, frame50
from data_prep.progress import progress
from data_prep.splits import NTU60_MAX_SETUP, NUM_CLASSES, ntu_splits
from data_prep.store import StoreWriter

META = ("setup", "camera", "performer", "replication", "action")

EPILOG = """examples:
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}.h5
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}_motion.h5 --bodies motion --workers 8
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}_motion_fixed.h5 --bodies motion --motion-fix all
  hiclr-prep {ds} --raw data/synth_raw --out data/synth.h5 --limit 200 --skip-bad --stats
"""


def register(sub: argparse._SubParsersAction) -> None:
    for dataset, title in (("ntu60", "NTU RGB+D 60 (setups 1-17)"), ("ntu120", "NTU RGB+D 120")):
        p = sub.add_parser(dataset, help=f"prepare {title} from raw .skeleton files",
                           description=f"Prepare {title}: parse every .skeleton file of --raw, skip the "
                                       f"official missing-skeleton samples, select two bodies, build the "
                                       f"frame50 view, the raw bodies and the protocol splits, and write "
                                       f"one HDF5 store.",
                           epilog=EPILOG.format(ds=dataset),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--raw", required=True, type=Path, help="folder of .skeleton files")
        p.add_argument("--out", required=True, type=Path, help="output HDF5 file")
        p.add_argument("--bodies", choices=METHODS, default="file-order",
                       help="body selection (default: file-order, the reference's; motion: CTR-GCN's denoising)")
        p.add_argument("--motion-fix", action="append", default=[], metavar="FIX",
                       choices=(*MOTION_FIXES, "all"),
                       help="with --bodies motion, correct one of CTR-GCN's quirks (repeatable; 'all'): "
                            + "; ".join(f"{k}: {v}" for k, v in MOTION_FIXES.items()))
        p.add_argument("--workers", type=int, default=1, help="parallel parser processes (default 1)")
        p.add_argument("--missing-list", type=Path, default=None,
                       help="list of sample names to skip instead of the bundled official list")
        p.add_argument("--limit", type=int, default=None, help="only the first N files (sorted by name)")
        p.add_argument("--skip-bad", action="store_true",
                       help="skip and count malformed files instead of stopping at the first")
        p.add_argument("--compression", choices=("none", "gzip", "lzf"), default="none",
                       help="HDF5 compression of the arrays (default none)")
        p.add_argument("--class-names", type=Path, default=None,
                       help="text file, one action name per line (default: RAW/class_names.txt if present, "
                            "else the official NTU names)")
        p.add_argument("--stats", type=Path, nargs="?", const=Path("-"), default=None, metavar="JSON",
                       help="print (or write to JSON) peak memory of all processes, time and per-file cost")
        p.set_defaults(func=run, dataset=dataset)


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
        raise UserError(f"{raw}: no .skeleton files found; give --raw the folder holding the NTU "
                        f".skeleton files (e.g. nturgb+d_skeletons/)")
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
        raise UserError(f"{raw}: none of the {len(files)} .skeleton files belongs to {dataset} once the "
                        f"missing-skeleton samples are left out; check --raw and the dataset name")
    return keep, {"files_found": len(files), "skipped_missing": skipped_missing,
                  "outside_dataset": outside}


def run(args: argparse.Namespace) -> int:
    dataset = args.dataset
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: give 1 or more worker processes")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: give a positive number of files")
    if args.out.suffix not in (".h5", ".hdf5"):
        raise UserError(f"--out {args.out}: the store must be an .h5 or .hdf5 file")
    fixes = tuple(MOTION_FIXES) if "all" in args.motion_fix else tuple(dict.fromkeys(args.motion_fix))
    if fixes and args.bodies != "motion":
        raise UserError(f"--motion-fix {fixes[0]} corrects the motion denoising; add --bodies motion or drop it")
    missing = load_missing_list(args.missing_list) if args.missing_list else missing_samples(dataset)
    paths, counts = list_samples(args.raw, dataset, missing, args.limit)
    num_classes = NUM_CLASSES[dataset]
    names_file = args.class_names or (args.raw / CLASS_NAMES_FILE)
    given_names = read_class_names(names_file) if args.class_names or names_file.is_file() else None
    for path in paths:
        action = parse_ntu_name(path.name)["action"]
        if action > num_classes:
            raise UserError(f"{path.name}: action A{action:03d} is outside the {num_classes} classes of {dataset}; "
                            f"use `hiclr-prep ntu120` for actions above 60")

    start = time.perf_counter()
    work = partial(_prepare_one, method=args.bodies, fixes=fixes, skip_bad=args.skip_bad)
    items = [str(p) for p in paths]
    bad: list[str] = []
    empty: list[str] = []
    with PeakMemory() as memory:
        with StoreWriter(args.out, raw=True,
                         compression=None if args.compression == "none" else args.compression) as writer:
            with progress(len(items), desc=f"{dataset} parse", unit="file") as bar:
                for out in ordered_map(work, items, args.workers):
                    if out[0] is not None:
                        writer.append(*out)
                    elif len(out) == 3:
                        empty.append(out[2])
                    else:
                        bad.append(out[1])
                    bar.update()
            if not writer.names:
                first = bad[0] if bad else f"{empty[0]} holds no non-zero coordinate"
                raise UserError(f"{args.raw}: none of the {len(items)} files holds a usable clip (first: {first})")
            names = writer.names
            meta = {k: np.array([parse_ntu_name(n)[k] for n in names], dtype=np.int64) for k in META}
            labels = meta["action"] - 1
            samples = {"name": np.array(names, dtype=object), "label": labels.astype(np.int64), **meta}
            splits = ntu_splits(meta, dataset)
            counts["skipped_bad"] = len(bad)
            counts.update(empty_counts(empty))
            if bad:
                counts["bad_files"] = bad[:50]
            preset = {"frame50": FRAME50_PARAMS, "bodies": args.bodies, "raw": "selected bodies, all frames"}
            if args.bodies == "motion":
                preset["motion_fixes"] = list(fixes)
            attrs = {
                "num_classes": num_classes,
                "preset": preset,
                "counts": counts,
                "source": {"raw": str(args.raw.resolve()),
                           "missing_list": str(args.missing_list) if args.missing_list else f"bundled {dataset}"},
            }
            writer.finish(dataset=dataset, samples=samples, splits=splits, attrs=attrs,
                          class_names=class_names(dataset, num_classes, given_names))
    elapsed = time.perf_counter() - start
    sizes = ", ".join(f"{p} {len(s['train'])}/{len(s['test'])}" for p, s in splits.items())
    print(f"wrote {args.out}: {len(names)} samples of {dataset} ({np.unique(labels).size} classes present), "
          f"skipped {counts['skipped_missing']} on the missing list, {len(empty)} empty "
          f"and {len(bad)} malformed, "
          f"{counts['outside_dataset']} outside {dataset}; splits train/test: {sizes}")
    if args.stats is not None:
        _report_stats(args.stats, memory, items, elapsed, args.workers)
    return 0


def _report_stats(dest: Path, memory: PeakMemory, items: list[str], elapsed: float, workers: int) -> None:
    """`--stats`: peak memory of every process, wall time, files/s, MB/s and CPU time per file."""
    megabytes = sum(os.path.getsize(p) for p in items) / 1e6
    stats = {"files": len(items), "workers": workers, "input_mb": round(megabytes, 1),
             "wall_s": round(elapsed, 2), "files_per_s": round(len(items) / elapsed, 2),
             "mb_per_s": round(megabytes / elapsed, 2),
             "cpu_ms_per_file": round(1000 * memory.cpu_s() / len(items), 3), **memory.summary()}
    if str(dest) == "-":
        print("stats: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    else:
        from data_prep.atomic import atomic_write_text
        atomic_write_text(dest, json.dumps(stats, indent=1) + "\n", durable=False)
