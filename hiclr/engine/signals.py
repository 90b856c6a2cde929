"""SIGINT / SIGTERM during training: finish the step, save `last.pt`, stop with `Interrupted`."""

from __future__ import annotations

import signal
import sys
import threading

from hiclr.common.errors import UserError


class Interrupted(UserError):
    """Stopped by a signal after saving `last.pt`."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_of(name: str | None) -> int:
    """The shell's status for a stop by `name`: 143 for SIGTERM, 130 for SIGINT (or another rank's)."""
    return 143 if name == "SIGTERM" else 130


class StopRequest:
    """SIGINT / SIGTERM set `signal` (its name); the loop saves and stops after the current step.

    A second Ctrl-C aborts at once. Handlers are installed only in the main thread and restored on exit.
    """

    def __init__(self):
        self.signal: str | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        from hiclr.common.command_line import sigterm_received

        if sigterm_received():  # a SIGTERM the command's start-up received and a library swallowed
            self.signal = "SIGTERM"
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        print(
            f"\n{self.signal} received: finishing the current step, then saving last.pt "
            "(Ctrl-C again aborts without saving)",
            file=sys.stderr,
        )

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
