"""Batched, seeded skeleton augmentations, the growing policy of HiCLR, and input streams.

Build the released policy and draw HiCLR's four views::

    from hiclr.augment import GrowingPolicy, HICLR_VIEWS
    policy = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml")
    v0, key, v1, v2 = policy.views(x, generator, HICLR_VIEWS)   # View(x, mask, params, edges) each
"""

from .edges import DropAddEdges, EdgePerturbation
from .ops import (
    AUGMENTATIONS,
    KINDS,
    NTU_FLIP_ORDER,
    Augmentation,
    AxisMask,
    GaussianBlur,
    GaussianNoise,
    JointMask,
    Rotate,
    Shear,
    SkeleAdaIN,
    SpatialFlip,
    TemporalCrop,
    apply_matrix,
    register_augmentation,
    take_indices,
)
from .policy import HICLR_VIEWS, QUIRK_FIXES, SKELETONCLR_VIEWS, GrowingPolicy, View, ViewLayout, build_augmentation
from .streams import NTU_BONES, NTU_PARENT, STREAMS, to_stream

__all__ = [
    "AUGMENTATIONS",
    "KINDS",
    "NTU_FLIP_ORDER",
    "Augmentation",
    "AxisMask",
    "GaussianBlur",
    "GaussianNoise",
    "JointMask",
    "Rotate",
    "Shear",
    "SkeleAdaIN",
    "SpatialFlip",
    "TemporalCrop",
    "apply_matrix",
    "register_augmentation",
    "take_indices",
    "DropAddEdges",
    "EdgePerturbation",
    "HICLR_VIEWS",
    "QUIRK_FIXES",
    "SKELETONCLR_VIEWS",
    "GrowingPolicy",
    "View",
    "ViewLayout",
    "build_augmentation",
    "NTU_BONES",
    "NTU_PARENT",
    "STREAMS",
    "to_stream",
]
