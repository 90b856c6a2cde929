"""The raw-input baseline: the input coordinates themselves as the feature, no network."""

from __future__ import annotations

import math

import torch
from torch import nn


class RawInput(nn.Module):
    """(N, C, T, V, M) stream tensor -> (N, C*T*V*M): the clip flattened, no parameters.

    `input_shape` (C, T, V, M) fixes `feature_dim`; it is also kept as a buffer so that the
    module's state (hence `hiclr.eval.common.state_checksum` and the feature cache key) records
    which shape it flattens.
    """

    def __init__(self, input_shape):
        super().__init__()
        self.shape = tuple(int(s) for s in input_shape)
        if len(self.shape) != 4 or min(self.shape) < 1:
            raise ValueError(f"input_shape must be (C, T, V, M), got {input_shape}")
        self.register_buffer("input_shape", torch.tensor(self.shape, dtype=torch.int64))
        self.feature_dim = math.prod(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"RawInput flattens clips of shape {self.shape}, got {tuple(x.shape[1:])}")
        return x.flatten(1)

    def extra_repr(self) -> str:
        return f"input_shape={self.shape}, feature_dim={self.feature_dim}"
