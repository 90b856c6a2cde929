"""`hiclr bench NAME`: throughput against a baseline measured in the same run."""

from __future__ import annotations

import argparse
import importlib
import json

BENCHES = {
    "prep": "parse raw .skeleton files: vectorised reader vs a per-line Python reader",
    "aug": "four-view growing augmentation: batched on-device vs per-sample numpy",
    "train": "pre-training steps: the reference formulation vs ours and each switch on / off",
    "linear": "100-epoch linear probe: cached features vs the frozen encoder every epoch",
    "verify": "checking a store's stored sha256 (first and cached) vs reading its training split",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks that print ratios against a baseline", description=__doc__)
    names = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, help_text in BENCHES.items():
        p = names.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument("--json", action="store_true", help="print one JSON object")
        importlib.import_module(f"hiclr.bench.{name}").add_arguments(p)
        p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    result = importlib.import_module(f"hiclr.bench.{args.bench}").run(args)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                print(f"{key}:")
                for row in value:  # one line per row: its scalar fields
                    print(
                        "  " + ", ".join(f"{k} {_shown(v)}" for k, v in row.items() if not isinstance(v, (dict, list)))
                    )
                continue
            if isinstance(value, dict):  # a group of scalars on one line
                value = ", ".join(f"{k} {_shown(v)}" for k, v in value.items())
            print(f"{key:<{width}}  {_shown(value)}")
    return 0


def _shown(value) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)
