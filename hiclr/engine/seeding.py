"""Seeds: every random choice of a run flows from `run.seed` (per rank under DDP)."""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed per (run seed, epoch, stream): data order is stream 0, augmentation 1 + rank."""
    words = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
