"""Run a reader on one fuzzed input: only the tool's own one-sentence error, bounded time and memory."""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

from hiclr.common.errors import UserError

MEMORY_PER_BYTE = 200  # a reader may take this many bytes per input byte ...
MEMORY_FLOOR = 96 << 20  # ... plus this much (the unpickler's budget floor is 64 MiB)
TIME_LIMIT_S = 20.0  # far above any input here (they are a few kB): a hang, not slowness

_DIR = Path(tempfile.mkdtemp(prefix="hiclr-fuzz-"))
_TRIED = {"inputs": 0}


def tried() -> int:
    """How many inputs this process has fed to readers (reported by the campaign)."""
    return _TRIED["inputs"]


def run_reader(read, raw: bytes, name: str = "input.bin"):
    """`read(path)` on `raw` written to `name`: its result, or the `UserError` it raised.

    Fails the test on any other exception, on an error that is not one line naming the file, on more
    than `TIME_LIMIT_S`, or on more memory than `MEMORY_PER_BYTE * len(raw) + MEMORY_FLOOR`.
    """
    path = _DIR / name
    path.write_bytes(raw)
    _TRIED["inputs"] += 1
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    try:
        result = read(path)
    except UserError as err:
        result = err
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - before
        if started:
            tracemalloc.stop()
    assert elapsed < TIME_LIMIT_S, f"{elapsed:.1f} s on {len(raw)} bytes"
    assert peak <= MEMORY_PER_BYTE * len(raw) + MEMORY_FLOOR, f"{peak} bytes traced for {len(raw)} bytes of input"
    if isinstance(result, UserError):
        message = str(result)
        assert message and "\n" not in message and "Traceback" not in message, message
        assert name in message or "input" in message, message
    return result
