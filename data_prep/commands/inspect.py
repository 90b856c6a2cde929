"""`hiclr-prep info FILE` and `hiclr-prep verify FILE`: look inside a store and check it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_prep.store import store_summary, verify_store

EPILOG_INFO = """examples:
  hiclr-prep info data/ntu60.h5
  hiclr-prep info data/ntu60.h5 --json
"""
EPILOG_VERIFY = """examples:
  hiclr-prep verify data/ntu60.h5        # exit 0 and "OK", or exit 1 and one line per problem
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="print a summary of a store",
        description="Print the dataset, counts, classes, protocols with sizes and preset of a store.",
        epilog=EPILOG_INFO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="HDF5 store written by hiclr-prep")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=info)

    p = sub.add_parser(
        "verify",
        help="check shapes, values, labels, splits and checksums of a store",
        description="Check a store: shapes, finite values, label range, split disjointness "
        "(subjects for xsub, cameras for xview), sorted indices, checksums.",
        epilog=EPILOG_VERIFY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="HDF5 store written by hiclr-prep")
    p.set_defaults(func=verify)


def info(args: argparse.Namespace) -> int:
    summary = store_summary(args.file)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"{summary['path']}: {summary['dataset']} (format {summary['format_version']}, "
        f"{summary['tool_version']}, created {summary['created']})"
    )
    print(f"  samples   {summary['samples']} ({summary['raw_frames']} raw frames)")
    present = [summary["class_names"][k] for k in summary["labels_present"] if 0 <= k < len(summary["class_names"])]
    print(
        f"  classes   {summary['num_classes']} ({summary['classes_present']} present): "
        + ", ".join(present[:5])
        + (" ..." if len(present) > 5 else "")
    )
    print(f"  views     {', '.join(summary['views'])}")
    for protocol, parts in summary["protocols"].items():
        print(f"  {protocol:<9} " + ", ".join(f"{k} {v}" for k, v in parts.items()))
    counts = {k: v for k, v in summary["counts"].items() if k != "bad_files"}
    print(f"  counts    {json.dumps(counts)}")
    print(f"  preset    {json.dumps(summary['preset'])}")
    return 0


def verify(args: argparse.Namespace) -> int:
    problems = verify_store(args.file)
    if problems:
        for problem in problems:
            print(f"{args.file}: {problem}")
        print(f"{args.file}: {len(problems)} problem(s) found")
        return 1
    print(f"{args.file}: OK")
    return 0
