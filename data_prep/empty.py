"""Empty clips: samples without one non-zero coordinate (no frames, only 0-body frames, all zeros).

They carry nothing to learn from and would train and score as a silent class of their own, so every
prep path skips them, counts them (`counts.skipped_empty`) and names them (`counts.empty_samples`,
the first `NAMES_KEPT`), and pre-training leaves out any that an older store still holds.
"""

from __future__ import annotations

import numpy as np

NAMES_KEPT = 50


def is_empty(clip: np.ndarray) -> bool:
    """True when `clip` (any shape, e.g. bodies (T, V, C, M) or frame50) has no non-zero value."""
    return clip.size == 0 or not np.any(clip)


def empty_counts(names: list[str]) -> dict:
    """The counts entries that record the empty clips skipped."""
    return {"skipped_empty": len(names), "empty_samples": list(names[:NAMES_KEPT])}
