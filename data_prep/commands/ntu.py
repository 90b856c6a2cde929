"""`hiclr-prep ntu60|ntu120`: raw NTU RGB+D `.skeleton` files -> one HDF5 store (frame50 + raw + splits).

A thin command on `data_prep.ntu_prepare.prepare_ntu` (plus `--stats`: peak memory and cost per file).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from data_prep.bodies import METHODS, MOTION_FIXES
from data_prep.memory import PeakMemory, report_stats
from data_prep.ntu_prepare import prepare_ntu, summary_line

EPILOG = """examples:
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}.h5
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}_motion.h5 --bodies motion --workers 8
  hiclr-prep {ds} --raw nturgb+d_skeletons/ --out data/{ds}_motion_fixed.h5 --bodies motion --motion-fix all
  hiclr-prep {ds} --raw data/synth_raw --out data/synth.h5 --limit 200 --skip-bad --stats
"""


def register(sub: argparse._SubParsersAction) -> None:
    for dataset, title in (("ntu60", "NTU RGB+D 60 (setups 1-17)"), ("ntu120", "NTU RGB+D 120")):
        p = sub.add_parser(
            dataset,
            help=f"prepare {title} from raw .skeleton files",
            description=f"Prepare {title}: parse every .skeleton file of --raw, skip the "
            f"official missing-skeleton samples, select two bodies, build the "
            f"frame50 view, the raw bodies and the protocol splits, and write "
            f"one HDF5 store.",
            epilog=EPILOG.format(ds=dataset),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--raw", required=True, type=Path, help="folder of .skeleton files")
        p.add_argument("--out", required=True, type=Path, help="output HDF5 file")
        p.add_argument(
            "--bodies",
            choices=METHODS,
            default="file-order",
            help="body selection (default: file-order, the reference's; motion: CTR-GCN's denoising)",
        )
        p.add_argument(
            "--motion-fix",
            action="append",
            default=[],
            metavar="FIX",
            choices=(*MOTION_FIXES, "all"),
            help="with --bodies motion, correct one of CTR-GCN's quirks (repeatable; 'all'): "
            + "; ".join(f"{k}: {v}" for k, v in MOTION_FIXES.items()),
        )
        p.add_argument("--workers", type=int, default=1, help="parallel parser processes (default 1)")
        p.add_argument(
            "--missing-list",
            type=Path,
            default=None,
            help="list of sample names to skip instead of the bundled official list",
        )
        p.add_argument("--limit", type=int, default=None, help="only the first N files (sorted by name)")
        p.add_argument(
            "--skip-bad", action="store_true", help="skip and count malformed files instead of stopping at the first"
        )
        p.add_argument(
            "--compression",
            choices=("none", "gzip", "lzf"),
            default="none",
            help="HDF5 compression of the arrays (default none)",
        )
        p.add_argument(
            "--class-names",
            type=Path,
            default=None,
            help="text file, one action name per line (default: RAW/class_names.txt if present, "
            "else the official NTU names)",
        )
        p.add_argument(
            "--stats",
            type=Path,
            nargs="?",
            const=Path("-"),
            default=None,
            metavar="JSON",
            help="print (or write to JSON) peak memory of all processes, time and per-file cost",
        )
        p.set_defaults(func=run, dataset=dataset)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    with PeakMemory() as memory:
        summary = prepare_ntu(
            args.dataset,
            args.raw,
            args.out,
            bodies=args.bodies,
            motion_fixes=args.motion_fix,
            workers=args.workers,
            missing_list=args.missing_list,
            limit=args.limit,
            skip_bad=args.skip_bad,
            compression=None if args.compression == "none" else args.compression,
            class_names_file=args.class_names,
        )
    elapsed = time.perf_counter() - start
    print(summary_line(summary))
    if args.stats is not None:
        report_stats(args.stats, memory, summary["files"], elapsed, args.workers)
    return 0
