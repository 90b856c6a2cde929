"""Shared command-line driver: subcommand registry, one-sentence errors, exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys

from data_prep.errors import UserError


def run_cli(prog: str, description: str, package: str, modules: list[str], epilog: str,
            argv: list[str] | None = None) -> int:
    """Build the parser from `package.<module>.register(subparsers)` and run the chosen handler.

    A `UserError` (or Ctrl-C) is printed as one line and gives exit status 1 (130 for Ctrl-C);
    `--debug` re-raises to show the traceback.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        importlib.import_module(f"{package}.{name}").register(sub)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        if args.debug:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
