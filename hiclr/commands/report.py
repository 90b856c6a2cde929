"""`hiclr report RUN...`: several runs' results as one Markdown table (rows = runs, columns = protocols)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  hiclr report checkpoints/ntu60_xsub_linear_joint checkpoints/ntu60_xsub_linear_bone
  hiclr report checkpoints/*_linear_* checkpoints/*_ensemble --out results.md
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one Markdown table of several runs' reports",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding report.json")
    p.add_argument("--out", metavar="FILE.md", help="also write the table to this file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hiclr.report import assemble

    table = assemble(args.runs)
    print(table, end="")
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(table)
        tmp.replace(path)
        print(f"wrote {path}")
    return 0
