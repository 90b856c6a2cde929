"""The growing policy's joint masks: a view carries the union of the masks of all its stages."""

from __future__ import annotations

import pytest
import torch

from hiclr.augment import GrowingPolicy

MASK = {"name": "joint_mask", "ratio": 0.2, "per_sample": True}  # 5 of 25 joints per frame


@pytest.mark.parametrize("fast", [True, False], ids=["fast_paths", "plain"])
def test_a_view_masks_the_union_of_its_stages_joint_masks(fast):
    stages = [[MASK], [{"name": "gaussian_noise", "p": 1.0, "std": 0.01}], [dict(MASK)]]
    options = {} if fast else {"concat_views": False, "fuse_linear": False}
    policy = GrowingPolicy.from_config(stages, record=True, **options)
    x = torch.randn(6, 3, 12, 25, 2)
    views = policy.views(x, torch.Generator().manual_seed(0), [0, 1, 2])
    for view, expected_masks in zip(views, (1, 1, 2)):
        drawn = [d["mask"] for name, d in view.params["ops"] if name == "joint_mask"]
        assert len(drawn) == expected_masks
        union = drawn[0] if len(drawn) == 1 else drawn[0] | drawn[1]
        assert torch.equal(view.mask, union)
    # the two draws of the last view differ, so the union is larger than either mask
    first, second = [d["mask"] for name, d in views[2].params["ops"] if name == "joint_mask"]
    per_frame = views[2].mask.sum(dim=3)  # (B, 1, T, 1)
    assert not torch.equal(first, second)
    assert (per_frame >= 5).all() and (per_frame <= 10).all() and (per_frame > 5).any()


def test_recording_changes_no_mask():
    stages = [[MASK], [dict(MASK)]]
    x = torch.randn(4, 3, 10, 25, 2)
    plain = GrowingPolicy.from_config(stages).apply(x, torch.Generator().manual_seed(3))
    recorded = GrowingPolicy.from_config(stages, record=True).apply(x, torch.Generator().manual_seed(3))
    assert torch.equal(plain.mask, recorded.mask)
