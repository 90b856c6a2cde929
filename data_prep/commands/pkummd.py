"""`hiclr-prep pkummd`: PKU-MMD phase 1 or 2 skeleton, label and split files -> one HDF5 store."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from data_prep.memory import PeakMemory, report_stats
from data_prep.pkummd import PROTOCOL_FILES, prepare_pkummd

EPILOG = """examples:
  hiclr-prep pkummd --phase 1 --skeletons PKU/PKU_Skeleton_Renew --labels PKU/Train_Label_PKU_final \\
      --splits PKU/Split --out data/pku1.h5
  hiclr-prep pkummd --phase 2 --skeletons PKU2/skeleton --labels PKU2/label --splits PKU2/split --out data/pku2.h5 \\
      --workers 4 --stats
  hiclr-prep synth --out data/synth_pku --format pkummd && hiclr-prep pkummd --phase 1 \\
      --skeletons data/synth_pku/skeleton --labels data/synth_pku/label --splits data/synth_pku/split --out data/pku.h5
"""


def register(sub: argparse._SubParsersAction) -> None:
    files = "; ".join(f"phase {k}: {', '.join(v.values())}" for k, v in PROTOCOL_FILES.items())
    p = sub.add_parser(
        "pkummd",
        help="prepare PKU-MMD phase 1 or 2",
        description="Prepare PKU-MMD: every labelled segment of every video is one sample "
        "(the centre 300 frames when longer); protocols xsub and xview from the "
        f"official split files ({files}).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--phase", type=int, choices=(1, 2), required=True, help="PKU-MMD phase")
    p.add_argument("--skeletons", required=True, type=Path, help="folder of skeleton files (NAME.txt)")
    p.add_argument("--labels", required=True, type=Path, help="folder of label files (NAME.txt)")
    p.add_argument("--splits", required=True, type=Path, help="folder of the official split files")
    p.add_argument("--out", required=True, type=Path, help="output HDF5 file")
    p.add_argument(
        "--bodies",
        choices=("file-order", "motion"),
        default="file-order",
        help="body selection: the file's two slots (default) or motion ranking",
    )
    p.add_argument(
        "--class-names",
        type=Path,
        default=None,
        help="text file, one action name per line, line k for action id k (default: "
        "class_names.txt beside --labels if present, else the bundled names of ids 1-51, "
        "which phase 2 shares with phase 1)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel reader processes, one video each (default 1)")
    p.add_argument(
        "--stats",
        type=Path,
        nargs="?",
        const=Path("-"),
        default=None,
        metavar="JSON",
        help="print (or write to JSON) peak memory of all processes, time and per-video cost",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    with PeakMemory() as memory:
        summary = prepare_pkummd(
            args.phase,
            args.skeletons,
            args.labels,
            args.splits,
            args.out,
            bodies=args.bodies,
            progress=True,
            workers=args.workers,
            class_names_file=args.class_names,
        )
    elapsed = time.perf_counter() - start
    splits = ", ".join(f"{p} {s['train']}/{s['test']}" for p, s in summary["splits"].items())
    skipped = {k: v for k, v in summary["counts"].items() if v and k.startswith(("segments", "skipped"))}
    for protocol, why in summary["protocols_missing"].items():
        print(f"note: protocol {protocol} is not built ({why}); add its split file and re-run for it")
    print(
        f"pkummd: {summary['samples']} samples from {summary['videos']} videos -> {args.out} "
        f"(train/test {splits}{'; ' + ', '.join(f'{k} {v}' for k, v in skipped.items()) if skipped else ''}) "
        f"in {elapsed:.1f} s; {len(summary['action_ids_present'])} of the action ids 1-51 occur (51 classes)"
    )
    if args.stats is not None:
        report_stats(args.stats, memory, summary["files"], elapsed, args.workers)
    return 0
