"""Atomic checkpoints that load with `torch.load(weights_only=True)`, and every RNG state as tensors.

A training checkpoint (`last.pt`, `epoch_XXX.pt`) is a dict of plain types and tensors:

    format "hiclr-checkpoint/1", model (state_dict: for pre-training this includes the EMA key
    encoder, the queue, its ids and pointer, all registered as buffers), optimizer, scheduler,
    epoch (completed epochs), step (optimizer steps done), steps_per_epoch, world_size,
    rng {torch, cuda, numpy, python}, generators {augment (the running epoch's augmentation
    generator), augment_device}, task (the task's own state, if any), config (the resolved config).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_prep.atomic import atomic_write
from data_prep.errors import UserError

FORMAT = "hiclr-checkpoint/1"


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to `<path>.partial`, fsync, then rename over `path` (a crash never leaves half a file)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a training checkpoint safely (weights only); a missing or foreign file is a `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; start the run without --resume")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one sentence
        raise UserError(f"cannot read checkpoint {path} ({type(err).__name__}: {err}); "
                        "it may be truncated or not a hiclr checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a hiclr training checkpoint (format {FORMAT} expected)")
    return ckpt


def capture_rng() -> dict:
    """torch CPU, every CUDA device, numpy and python `random` states, as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
