"""Progress of long work: a tqdm bar on a terminal, a plain line every few seconds elsewhere.

CI logs, `nohup` and batch systems capture stderr into a file, where a bar is either silent
(tqdm's `disable=None`) or a stream of carriage returns. `progress(...)` gives those a line such
as `ntu120 parse: 1200/20000 files (6.0 %), 142.3 files/s, ETA 2 min 12 s` every
`HICLR_PROGRESS_SECONDS` seconds (default 10) and a last line when long work ends.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO

DEFAULT_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """`3725` -> `1 h 2 min`, `75` -> `1 min 15 s`, `4.2` -> `4 s`."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


class LineProgress:
    """tqdm's `update / set_postfix / close` surface, printing one line per interval.

    `clock` is injectable so tests can drive time; `interval_s` <= 0 prints on every update.
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        interval_s: float | None = None,
        file: IO[str] | None = None,
        clock=time.monotonic,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start_n = initial
        self.interval_s = _interval_from_env() if interval_s is None else float(interval_s)
        self.file = file if file is not None else sys.stderr
        self._clock = clock
        self._start = self._last = clock()
        self._postfix: dict = {}
        self._closed = False
        self._printed = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self.interval_s:
            self._last = now
            self._emit(now)

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **kwargs) -> None:
        self._postfix = {**(values or {}), **kwargs}

    def line(self, now: float | None = None) -> str:
        """The progress line: done / total (percent), rate, ETA, then the postfix values."""
        now = self._clock() if now is None else now
        elapsed = max(1e-9, now - self._start)
        rate = (self.n - self._start_n) / elapsed
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            text = f"{head}{self.n}/{self.total} {self.unit}s ({100.0 * self.n / self.total:.1f} %), {rate:.1f} {self.unit}s/s"
            left = self.total - self.n
            if left > 0 and rate > 0:
                text += f", ETA {format_duration(left / rate)}"
            elif left <= 0:
                text += f", took {format_duration(elapsed)}"
        else:
            text = f"{head}{self.n} {self.unit}s, {rate:.1f} {self.unit}s/s"
        if self._postfix:
            text += " [" + ", ".join(f"{k}={v}" for k, v in self._postfix.items()) + "]"
        return text

    def _emit(self, now: float) -> None:
        self._printed += 1
        print(self.line(now), file=self.file, flush=True)

    def close(self) -> None:
        """A last line, when the work lasted long enough to have shown progress (short work stays quiet)."""
        if not self._closed:
            self._closed = True
            now = self._clock()
            if self.n != self._start_n and (self._printed or now - self._start >= self.interval_s):
                self._emit(now)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # the error's one sentence stays the last line
            self._closed = True
        return False


class _Silent:
    """The same surface doing nothing (progress switched off)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _interval_from_env() -> float:
    try:
        return float(os.environ.get("HICLR_PROGRESS_SECONDS", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


def progress(
    total: int | None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    file: IO[str] | None = None,
    leave: bool = False,
):
    """A tqdm bar when `file` (stderr) is a terminal, else a `LineProgress`; nothing when disabled."""
    if not enabled:
        return _Silent()
    file = file if file is not None else sys.stderr
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file, dynamic_ncols=True, leave=leave)
    return LineProgress(total, desc=desc, unit=unit, initial=initial, file=file)
