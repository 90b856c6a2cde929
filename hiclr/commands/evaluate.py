"""`hiclr linear | knn | semi | finetune | ensemble`: the evaluation protocols (`hiclr.eval.protocols`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from hiclr.eval.protocols import PROTOCOLS

    for protocol in PROTOCOLS.values():
        parser = sub.add_parser(
            protocol.name,
            help=protocol.help,
            description=protocol.help.replace("%%", "%"),
            epilog=protocol.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        protocol.add_arguments(parser)
        parser.set_defaults(func=_run, evaluation=protocol)


def _run(args: argparse.Namespace) -> int:
    protocol = args.evaluation
    entry = protocol.run(args)
    print(f"{protocol.summary(entry)}; report: {Path(entry['run_dir']) / 'report.md'}")
    return 0
