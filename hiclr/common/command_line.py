"""Shared command-line driver: subcommand registry, one-sentence errors, exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from hiclr.common.errors import UserError


class Terminated(BaseException):
    """SIGTERM outside the training loop (which handles it itself): unwinds like Ctrl-C, so that
    `finally` blocks remove `.partial` files, and the command exits 143 with one line."""


_MAIN_PID = os.getpid()
# Set by the handler: a library that swallows the raised exception (C++ code of an extension's
# import catching every error, say) cannot make the command forget the signal.
_TERMINATED = False


def _terminate(signum, frame):
    global _TERMINATED
    if os.getpid() != _MAIN_PID:  # a forked worker (e.g. a Pool's, on terminate): die quietly
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _TERMINATED = True
    raise Terminated


def sigterm_received() -> bool:
    """Whether the running command has received SIGTERM (even if a library swallowed the exception
    its handler raised); False outside a command."""
    return _TERMINATED


def run_cli(
    prog: str, description: str, package: str, modules: list[str], epilog: str, argv: list[str] | None = None
) -> int:
    """Build the parser from `package.<module>.register(subparsers)` and run the chosen handler.

    A `UserError` is printed as one line and gives exit status 1; Ctrl-C (130) and SIGTERM (143)
    at any moment, start-up included, print one line too; `--debug` re-raises to show the traceback.
    """
    global _MAIN_PID, _TERMINATED
    _MAIN_PID = os.getpid()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = argparse.ArgumentParser(
            prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name in modules:
            importlib.import_module(f"{package}.{name}").register(sub)
        args = parser.parse_args(argv)
        if _TERMINATED:  # received during the imports, and swallowed there
            raise Terminated
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UserError as err:
        if debug:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted (Ctrl-C); no half-written file is left under its final name", file=sys.stderr)
        return 130
    except Terminated:
        if debug:
            raise
        print(f"{prog}: terminated (SIGTERM); no half-written file is left under its final name", file=sys.stderr)
        return 143
    finally:
        _TERMINATED = False  # the signal was this command's, not the next one's
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
