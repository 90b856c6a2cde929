"""`hiclr-prep import stgcn|aimclr|ctrgcn|pyskl`: other toolkits' prepared files -> one HDF5 store."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from data_prep import importers
from hiclr.common.errors import UserError

EPILOG = """examples:
  hiclr-prep import stgcn --train-data xsub/train_data_joint.npy --train-labels xsub/train_label.pkl \\
      --test-data xsub/val_data_joint.npy --test-labels xsub/val_label.pkl --dataset ntu60 --protocol xsub --out data/ntu60_xsub.h5
  hiclr-prep import aimclr --train-data xsub/train_position.npy --train-labels xsub/train_label.pkl \\
      --test-data xsub/val_position.npy --test-labels xsub/val_label.pkl --out data/ntu60_aimclr_xsub.h5
  hiclr-prep import ctrgcn --npz NTU60_CS.npz --dataset ntu60 --protocol xsub --out data/ntu60_ctrgcn_xsub.h5
  hiclr-prep import pyskl --ann ntu60_3danno.pkl --dataset ntu60 --out data/ntu60_pyskl.h5
"""

HELP = {
    "stgcn": "ST-GCN data (N, 3, 300, 25, 2) .npy + label .pkl per part",
    "aimclr": "AimCLR/HiCLR *_position.npy (N, 3, 50, 25, 2) + label .pkl per part (frame50 as given)",
    "ctrgcn": "CTR-GCN .npz (x_train (N, 300, 150), one-hot y_train, x_test, y_test)",
    "pyskl": "PYSKL annotation .pkl (split + annotations with 3D keypoints), every protocol inside",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import ST-GCN, AimCLR/HiCLR, CTR-GCN or PYSKL files",
        description="Import the prepared files of another toolkit into the HDF5 store "
        "(arrays read without pickle; label pickles through a restricted unpickler).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    for kind in importers.KINDS:
        k = kinds.add_parser(
            kind,
            help=HELP[kind],
            description=f"Import {HELP[kind]}.",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if kind in ("stgcn", "aimclr"):
            for part in ("train", "test"):
                k.add_argument(f"--{part}-data", type=Path, required=part == "train", help=f"{part} data .npy")
                k.add_argument(
                    f"--{part}-labels", type=Path, required=part == "train", help=f"{part} label .pkl (names, labels)"
                )
        elif kind == "ctrgcn":
            k.add_argument("--npz", type=Path, required=True, help="CTR-GCN .npz archive")
        else:
            k.add_argument("--ann", type=Path, required=True, help="PYSKL annotation .pkl")
        k.add_argument(
            "--dataset",
            default=None,
            help="ntu60, ntu120, pkummd1, pkummd2 or a name of yours (default: inferred from the sample "
            "names, or from CTR-GCN's one-hot width); sets the class count the heads use",
        )
        k.add_argument(
            "--num-classes",
            type=int,
            default=None,
            help="class count, for a dataset this tool does not know (default: the dataset's)",
        )
        if kind != "pyskl":
            k.add_argument("--protocol", default="xsub", help="protocol name of the train/test parts (default xsub)")
        k.add_argument("--out", type=Path, required=True, help="output HDF5 file")
        k.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.kind in ("stgcn", "aimclr"):
        parts = {"train": (args.train_data, args.train_labels)}
        if (args.test_data is None) != (args.test_labels is None):
            raise UserError("--test-data and --test-labels go together; pass both or neither")
        if args.test_data is not None:
            parts["test"] = (args.test_data, args.test_labels)
        reader = importers.import_stgcn if args.kind == "stgcn" else importers.import_aimclr
        imported = reader(parts, args.protocol)
    elif args.kind == "ctrgcn":
        imported = importers.import_ctrgcn(args.npz, args.protocol)
    else:
        imported = importers.import_pyskl(args.ann)
    summary = importers.write_imported(imported, args.out, args.dataset, args.kind, args.num_classes)
    splits = ", ".join(
        f"{p} {'/'.join(str(s.get(k, 0)) for k in ('train', 'test'))}" for p, s in summary["splits"].items()
    )
    print(
        f"import {args.kind}: {summary['samples']} samples of {summary['dataset']} ({summary['num_classes']} "
        f"classes) -> {args.out} (train/test {splits}; "
        f"{'raw + frame50' if summary['raw'] else 'frame50 only'}; skipped {summary['skipped_empty']} empty) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    for protocol, parts in summary["missing_parts"].items():
        print(
            f"note: protocol {protocol} has no {' and no '.join(parts)} part (no --{parts[0]}-data given): "
            f"pre-training works, linear/kNN evaluation of {protocol} needs both parts"
        )
    return 0
