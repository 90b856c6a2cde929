"""Atomic file writes: write `<path>.partial`, rename it over `path`; never half a file under `path`.

Every writer of the toolkit (stores, checkpoints, reports, configs, synthetic files) goes through
here, so an interrupted run leaves either the old file or the new one, and at most a `.partial`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield the temporary path to write; on success rename it over `path`, on failure remove it.

    `durable` fsyncs the file and its folder so the rename survives a power cut (checkpoints,
    stores); files that are cheap to regenerate may skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent, os.O_RDONLY)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object], *, durable: bool = True) -> Path:
    """Call `write(file)` on a binary file that becomes `path` only once it is complete."""
    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    return atomic_write(path, lambda f: f.write(data), durable=durable)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def _fsync(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)
