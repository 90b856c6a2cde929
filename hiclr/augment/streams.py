"""Input streams derived from (augmented) joint coordinates: joint, motion, bone.

Batched and differentiable, on the input's device; applied after augmentation.
"""

from __future__ import annotations

import torch

from hiclr.config import STREAMS
from hiclr.models.graph import NTU_CENTER, NTU_EDGES_1BASED

from .ops import device_constant

__all__ = ["to_stream", "STREAMS", "NTU_BONES", "NTU_PARENT"]

# (child, parent), 1-based, one per joint in joint order: the 24 NTU RGB+D edges of the graph plus
# (21, 21), so that the centre joint's bone is zero, as the reference's `Bone` list.
NTU_BONES = tuple(sorted((*NTU_EDGES_1BASED, (NTU_CENTER + 1, NTU_CENTER + 1))))
NTU_PARENT = tuple(parent - 1 for _, parent in sorted(NTU_BONES))


def to_stream(x: torch.Tensor, stream: str) -> torch.Tensor:
    """``x`` (N, C, T, V, M) -> the same shape in the given stream.

    - ``joint``: x itself.
    - ``motion``: ``x[t + 1] - x[t]``, the last frame 0.
    - ``bone``: ``x[child] - x[parent]`` for every joint (NTU_BONES; joint 21 gives 0).
    """
    if stream == "joint":
        return x
    if stream == "motion":
        return torch.cat([x[:, :, 1:] - x[:, :, :-1], torch.zeros_like(x[:, :, :1])], dim=2)
    if stream == "bone":
        if x.shape[3] != len(NTU_PARENT):
            raise ValueError(f"bone stream needs the {len(NTU_PARENT)} NTU joints, got V={x.shape[3]}")
        parent = device_constant(("ntu_parent",), x.device, lambda: torch.tensor(NTU_PARENT))
        return x - x.index_select(3, parent)
    raise ValueError(f"unknown stream {stream!r}; choose one of {', '.join(STREAMS)}")
