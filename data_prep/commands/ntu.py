"""`hiclr-prep ntu60|ntu120`: raw NTU RGB+D `.skeleton` files -> one HDF5 store (frame50 + raw + splits)."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.bodies import METHODS, select_bodies
from data_prep.errors import UserError
from data_prep.missing import load_missing_list, missing_samples
from data_prep.ntu import parse_ntu_name, read_skeleton
from data_prep.presets import FRAME50_PARAMS, frame50
from data_prep.splits import NTU60_MAX_SETUP, NUM_CLASSES, ntu_splits
from data_prep.store import write_store

META = ("setup", "camera", "performer", "replication", "action")

EPILOG = """examples:
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}.h5
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}_motion.h5 --bodies motion --workers 8
  hiclr-prep {ds} --raw data/synth_raw --out data/synth.h5 --limit 200 --skip-bad
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
                       help="body selection (default: file-order, the reference's)")
        p.add_argument("--workers", type=int, default=1, help="parallel parser processes (default 1)")
        p.add_argument("--missing-list", type=Path, default=None,
                       help="list of sample names to skip instead of the bundled official list")
        p.add_argument("--limit", type=int, default=None, help="only the first N files (sorted by name)")
        p.add_argument("--skip-bad", action="store_true",
                       help="skip and count malformed files instead of stopping at the first")
        p.add_argument("--compression", choices=("none", "gzip", "lzf"), default="none",
                       help="HDF5 compression of the arrays (default none)")
        p.set_defaults(func=run, dataset=dataset)


def _prepare_one(path: str, method: str, skip_bad: bool):
    """Worker: one file -> (name, bodies (T, V, C, M), frame50 (C, 50, V, M)) or ("bad", message)."""
    try:
        bodies = select_bodies(read_skeleton(path), method)
    except UserError as err:
        if skip_bad:
            return None, str(err)
        raise
    return Path(path).name[: -len(".skeleton")], bodies, frame50(bodies)


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
    missing = load_missing_list(args.missing_list) if args.missing_list else missing_samples(dataset)
    paths, counts = list_samples(args.raw, dataset, missing, args.limit)
    num_classes = NUM_CLASSES[dataset]

    work = partial(_prepare_one, method=args.bodies, skip_bad=args.skip_bad)
    results, bad = [], []
    bar = tqdm(total=len(paths), desc=f"{dataset} parse", unit="file", disable=None, file=sys.stderr)
    items = [str(p) for p in paths]
    if args.workers > 1 and len(items) > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(min(args.workers, len(items))) as pool:
            for out in pool.imap(work, items, chunksize=max(1, min(64, len(items) // (8 * args.workers)))):
                (bad if out[0] is None else results).append(out)
                bar.update()
    else:
        for item in items:
            out = work(item)
            (bad if out[0] is None else results).append(out)
            bar.update()
    bar.close()
    if not results:
        raise UserError(f"{args.raw}: all {len(items)} files are malformed (first: {bad[0][1]})")

    names = [r[0] for r in results]
    meta = {k: np.array([parse_ntu_name(n)[k] for n in names], dtype=np.int64) for k in META}
    labels = meta["action"] - 1
    if labels.max() >= num_classes:
        first = names[int(np.argmax(labels >= num_classes))]
        raise UserError(f"{first}: action {first[-3:]} is outside the {num_classes} classes of {dataset}; "
                        f"use `hiclr-prep ntu120` for actions above 60")
    samples = {"name": np.array(names, dtype=object), "label": labels.astype(np.int64), **meta}
    splits = ntu_splits(meta, dataset)
    counts["skipped_bad"] = len(bad)
    if bad:
        counts["bad_files"] = [msg for _, msg in bad[:50]]
    attrs = {
        "num_classes": num_classes,
        "preset": {"frame50": FRAME50_PARAMS, "bodies": args.bodies, "raw": "selected bodies, all frames"},
        "counts": counts,
        "source": {"raw": str(args.raw.resolve()),
                   "missing_list": str(args.missing_list) if args.missing_list else f"bundled {dataset}"},
    }
    write_store(args.out, dataset=dataset, samples=samples, bodies=[r[1] for r in results],
                frame50=np.stack([r[2] for r in results]), splits=splits, attrs=attrs,
                compression=None if args.compression == "none" else args.compression)
    sizes = ", ".join(f"{p} {len(s['train'])}/{len(s['test'])}" for p, s in splits.items())
    print(f"wrote {args.out}: {len(names)} samples of {dataset} ({np.unique(labels).size} classes present), "
          f"skipped {counts['skipped_missing']} on the missing list and {len(bad)} malformed, "
          f"{counts['outside_dataset']} outside {dataset}; splits train/test: {sizes}")
    return 0
