"""Batched, seeded skeleton augmentations, the growing policy of HiCLR, and input streams.

Build the released policy and draw HiCLR's four views::

    from hiclr.augment import GrowingPolicy, HICLR_VIEWS
    policy = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml")
    views = policy.named_views(x, generator, HICLR_VIEWS)   # v0, key, v1, v2 -> View(x, mask, params)
"""

from .ops import (AUGMENTATIONS, NTU_FLIP_ORDER, Augmentation, AxisMask, GaussianBlur,
                  GaussianNoise, JointMask, Rotate, Shear, SpatialFlip, TemporalCrop, apply_matrix)
from .policy import HICLR_VIEWS, QUIRK_FIXES, GrowingPolicy, View, build_augmentation
from .streams import NTU_BONES, NTU_PARENT, STREAMS, to_stream

__all__ = [
    "AUGMENTATIONS", "NTU_FLIP_ORDER", "Augmentation", "AxisMask", "GaussianBlur", "GaussianNoise",
    "JointMask", "Rotate", "Shear", "SpatialFlip", "TemporalCrop", "apply_matrix",
    "HICLR_VIEWS", "QUIRK_FIXES", "GrowingPolicy", "View", "build_augmentation",
    "NTU_BONES", "NTU_PARENT", "STREAMS", "to_stream",
]
